"""Deletion requests as a stream: apply k requests one after another, and measure the drift.

Real deletion requests arrive one after another. :func:`apply` serves ``k`` requests of sample ids
(rows of the dataset's train split) in order with one method, and after each one evaluates the
model against the oracle retrained from scratch without *everything removed so far*. What it
returns, and what ``obliviate requests status`` prints, is the drift curve: the average gap to the
oracle, the forget accuracy (over every removed row) and the validation accuracy after each request.

Methods:
- any registered method (approximate ones, ``retrain``, ``sisa``): request ``i`` runs
  ``ob.unlearn`` on the model the previous request produced, with the scenario ``then``-chained
  from it (its training set is what is left), and seed ``seeds[i]`` drawn from ``seed``. For
  ``sisa`` the first request trains the sharded ensemble from the original's architecture (its
  time is ``prepare_seconds``; the ensemble, with every slice checkpoint, is the state kept between
  requests);
- ``"certified"``: a certified-removal logistic regression
  (:class:`~obliviate.certified.CertifiedLogisticRegression`) on the raw inputs of the training
  rows, fitted at the start; each request is one Newton removal (retraining with fresh noise when
  the budget runs out), and its oracle is the same estimator, with the same λ and σ, fitted on what
  is left. Its noise comes from the operating system unless ``params`` gives ``random_state``.

Drift is also a health check: each method run checks its own request (the retained-class
validation accuracy against the model it started from), which a slow slide over many requests
never trips. So a request is also ``"collapsed"`` when the validation accuracy after it is more than
``collapse_drop`` points below that of the model the stream *started* from (the original; for
``certified``, the estimator fitted at the start) (``diagnostics["val_acc_drop_total"]``, with
a note), whatever the method's own verdict.

The stream directory (``out``) makes the run crash-safe and resumable:

- ``stream.json``: what is applied (method, preset, parameters, seed, the requests, the original
  model's digest and training set); a second :func:`apply` into the same directory must match it;
- ``ledger.sqlite``: a :class:`~obliviate.ledger.DeletionLedger` with the training rows (``fit``)
  and one entry per request, holding its timing, status and metrics;
- ``state.safetensors``: the current model (weights, the SISA ensemble, or the certified model).

Each request takes effect in three steps: the ledger records it with the digests of the current
and the new state file (``prepared``), the new file replaces the old one atomically, the ledger
records ``committed``. A process killed anywhere leaves either nothing or a pending request that
the next :func:`apply` resolves from the file on disk (the new digest: roll forward; the old one:
roll back), so no request is lost or applied twice, and the run resumes after the last committed
request. The environment variable ``OBLIVIATE_CRASH_AT`` (``stream_after_prepare`` or
``stream_after_replace``) kills the process at that point, for the crash tests.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidConfigError, LedgerError

__all__ = ["apply", "status", "read_ids_file", "RequestResult", "StreamResult", "CURVE_METRICS", "CertifiedModule"]

STREAM_FILE = "stream.json"
LEDGER_FILE = "ledger.sqlite"
STATE_FILE = "state.safetensors"
CRASH_ENV = "OBLIVIATE_CRASH_AT"
CURVE_METRICS: tuple[str, ...] = ("avg_gap", "forget_acc", "retain_acc", "val_acc", "test_acc")
"""What is measured after each request (against the oracle retrained without everything removed so far)."""


@dataclass
class RequestResult:
    """One served request.

    Attributes:
        index: Its position in the stream (0-based).
        request_id: Its id in the ledger.
        ids: The train-split rows it removed.
        seconds: Wall time of the method on it (``prepare_seconds`` apart, see ``diagnostics``).
        status: The health verdict ("ok", "collapsed", "unchecked"): the method's on this request,
            or "collapsed" when the validation accuracy fell more than ``collapse_drop`` points
            below the starting model's over the stream so far.
        metrics: :data:`CURVE_METRICS` after it, against its oracle.
        oracle_seconds: Time of retraining the oracle (not part of the method's cost).
        diagnostics: The method's diagnostics.
        notes: Warnings raised by the method.
    """

    index: int
    request_id: str
    ids: list[int]
    seconds: float
    status: str
    metrics: dict[str, float]
    oracle_seconds: float = math.nan
    diagnostics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "request_id": self.request_id,
            "ids": self.ids,
            "seconds": self.seconds,
            "status": self.status,
            "metrics": self.metrics,
            "oracle_seconds": self.oracle_seconds,
            "diagnostics": self.diagnostics,
            "notes": self.notes,
        }


@dataclass
class StreamResult:
    """What :func:`apply` returns, and what :func:`status` reads back.

    Attributes:
        path: The stream directory.
        method: The method's name.
        total: Number of requests in the stream.
        results: The requests served so far, in order.
        resumed_at: Requests already served when this call started (0 for a fresh stream).
        recovered: What resuming did with a request left pending by a killed run (one line each).
        pending: Requests recorded but neither committed nor aborted (read by :func:`status`; a
            later :func:`apply` resolves them).
    """

    path: Path
    method: str
    total: int
    results: list[RequestResult]
    resumed_at: int = 0
    recovered: list[str] = field(default_factory=list)
    pending: int = 0

    @property
    def done(self) -> bool:
        return len(self.results) == self.total

    def curve(self) -> dict[str, list[float]]:
        """The drift curve: ``requests`` (1..n) and each of :data:`CURVE_METRICS`, plus ``seconds``."""
        out: dict[str, list[float]] = {"requests": [r.index + 1 for r in self.results]}
        for name in CURVE_METRICS:
            out[name] = [r.metrics.get(name, math.nan) for r in self.results]
        out["seconds"] = [r.seconds for r in self.results]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "method": self.method,
            "total": self.total,
            "served": len(self.results),
            "resumed_at": self.resumed_at,
            "curve": self.curve(),
            "requests": [r.to_dict() for r in self.results],
        }


# ---------------------------------------------------------------------------------------------- helpers
def _crash_point(name: str) -> None:
    """Kill the process here when ``OBLIVIATE_CRASH_AT`` names this point (certified runs' crash hook)."""
    from .certified.run import _crash_point as kill

    kill(name)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str | None:
    return _sha(path.read_bytes()) if path.is_file() else None


def _request_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0]) % 2**31


def read_ids_file(path: str | os.PathLike[str], batch: int | None = None) -> list[list[int]]:
    """Requests from a text file: one request per line (ids separated by spaces or commas), or with
    ``batch`` = m, every id of the file in order, cut into requests of ``m`` ids (the last may be shorter).

    Lines that are empty or start with ``#`` are skipped.

    Raises:
        InvalidConfigError: the file is missing, or holds something that is not a non-negative integer.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidConfigError(f"The ids file {str(p)!r} does not exist.")
    lines = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        try:
            ids = [int(t) for t in text]
        except ValueError:
            raise InvalidConfigError(f"{str(p)!r} line {n}: {line.strip()!r} is not a list of integer sample ids.") from None
        if min(ids) < 0:
            raise InvalidConfigError(f"{str(p)!r} line {n}: sample ids are non-negative; got {min(ids)}.")
        lines.append(ids)
    if not lines:
        raise InvalidConfigError(f"The ids file {str(p)!r} holds no sample ids.")
    if batch is None:
        return lines
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InvalidConfigError(f"batch must be a positive integer; got {batch!r}.")
    flat = [i for ids in lines for i in ids]
    return [flat[i : i + batch] for i in range(0, len(flat), batch)]


def _public_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as ``stream.json`` keeps them: a certified estimator's ``random_state`` (which determines
    its secret noise) only as a SHA-256, so that a resumed stream is still checked to use the same one.
    """
    if "random_state" not in params:
        return params
    digest = hashlib.sha256(repr(params["random_state"]).encode()).hexdigest()
    return {**params, "random_state": f"sha256:{digest}"}


def _check_requests(requests: Any, train_rows: np.ndarray) -> list[list[int]]:
    """The requests as lists of ints, checked before anything runs: non-empty, no id twice, all trained on."""
    if isinstance(requests, (str, bytes)) or not isinstance(requests, Iterable):
        raise InvalidConfigError("requests must be a sequence of requests, each a sequence of train-split sample ids.")
    out, seen = [], {}
    held = set(train_rows.tolist())
    for i, req in enumerate(requests):
        try:
            ids = [int(v) for v in np.asarray(req, dtype=np.int64).reshape(-1)]
        except (TypeError, ValueError):
            raise InvalidConfigError(f"Request {i + 1} is not a sequence of integer sample ids.") from None
        if not ids:
            raise InvalidConfigError(f"Request {i + 1} is empty.")
        for v in ids:
            if v in seen:
                where = "twice in it" if seen[v] == i else f"also in request {seen[v] + 1}"
                raise InvalidConfigError(f"Sample {v} of request {i + 1} is {where}; each sample is removed once.")
            if v not in held:
                raise InvalidConfigError(
                    f"Sample {v} of request {i + 1} is not in the model's training set (never trained on, or held out)."
                )
            seen[v] = i
        out.append(ids)
    if not out:
        raise InvalidConfigError("requests is empty.")
    return out


def _scenario(dataset: Any, train_rows: np.ndarray, forget: Sequence[int], name: str) -> Any:
    """A custom scenario over exactly ``train_rows``: its held-out rows are the rest of the train split."""
    from .data.scenario import Scenario

    forget_idx = np.sort(np.asarray(forget, dtype=np.int64))
    val = np.setdiff1d(np.arange(len(dataset.train)), train_rows)
    return Scenario(
        dataset=dataset,
        forget_idx=forget_idx,
        retain_idx=np.setdiff1d(train_rows, forget_idx),
        val_idx=val,
        test_idx=np.arange(len(dataset.test)),
        kind="custom",
        name=name,
    )


class CertifiedModule(nn.Module):
    """A certified linear classifier on raw inputs as a module: ``forward(x)`` is its decision function.

    So that :func:`obliviate.evaluate` measures it like any model (accuracies from the arg-max;
    the losses of the membership attacks take the decision values as logits).
    """

    def __init__(self, estimator: Any) -> None:
        super().__init__()
        self.estimator = estimator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.estimator.decision_function(x.detach().cpu().reshape(x.shape[0], -1).double().numpy())
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim == 1:  # binary: one score for classes_[1]
            scores = np.stack([-scores, scores], axis=1)
        logits = torch.from_numpy(scores).to(torch.float32)
        full = torch.full((x.shape[0], int(max(self.estimator.classes_)) + 1), -1e4)
        full[:, torch.as_tensor(self.estimator.classes_, dtype=torch.long)] = logits
        return full


# ---------------------------------------------------------------------------------------------- steppers
class _MethodSteps:
    """Requests served by a registered method through ``ob.unlearn``."""

    def __init__(self, name: str, preset: str | None, params: dict[str, Any], device: Any, progress: bool | None) -> None:
        from .methods.base import get_method, make_method

        self.name, self.preset, self.params, self.device, self.progress = name, preset, params, device, progress
        get_method(name)  # unknown names fail here, before anything is written
        make_method(name, preset=preset, **params)

    def start(self, original: nn.Module, scenario: Any, seed: int) -> nn.Module:
        return original

    def step(self, state: Any, scenario: Any, seed: int, recording: Any) -> tuple[Any, Any]:
        from .methods.base import UnlearningResult, make_method

        method = make_method(self.name, preset=self.preset, **self.params)
        # the state is, in effect, trained on what is left: exactly this request's training set
        model = UnlearningResult(
            model=state, seconds=0.0, config={}, diagnostics={}, method="", training_set=scenario.training_set
        )
        res = method.unlearn(model, scenario, seed=seed, device=self.device, progress=self.progress, recording=recording)
        return res.model, res

    def save(self, state: Any, path: Path) -> None:
        from .io import save_model
        from .sisa import SISAEnsemble

        if isinstance(state, SISAEnsemble):
            state.save(path)
        else:
            save_model(state, path)

    def load(self, path: Path, original: nn.Module, dataset: Any) -> Any:
        from .io import load_weights, read_metadata
        from .sisa import SISAEnsemble

        if read_metadata(path).get("format") == "obliviate-sisa":
            return SISAEnsemble.load(path, lambda k: copy.deepcopy(original), dataset.train, device=self.device)
        return load_weights(copy.deepcopy(original), path)

    def module(self, state: Any) -> nn.Module:
        return state


class _CertifiedSteps:
    """Requests served by certified removal on a logistic regression over the raw inputs."""

    name = "certified"

    def __init__(self, params: dict[str, Any]) -> None:
        from .certified import CertifiedLogisticRegression

        self.params = dict(params)
        CertifiedLogisticRegression(**self.params)._validated()  # bad parameters fail before anything is written
        self.rows: np.ndarray | None = None

    def _xy(self, dataset: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from .certified.features import RawFeatures
        from .data.base import Subset

        return RawFeatures().transform(Subset(dataset.train, rows)), np.asarray(dataset.train_targets)[rows]

    def start(self, original: Any, scenario: Any, seed: int) -> Any:
        from .certified import CertifiedLogisticRegression

        self.rows = np.asarray(scenario.train_idx)
        x, y = self._xy(scenario.dataset, self.rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a seeded fit warns that its noise is known; the caller chose it
            return CertifiedLogisticRegression(**self.params).fit(x, y)

    def _positions(self, ids: Sequence[int]) -> np.ndarray:
        return np.searchsorted(self.rows, np.asarray(ids, dtype=np.int64))

    def step(self, state: Any, scenario: Any, seed: int, recording: Any) -> tuple[Any, Any]:
        t0 = time.perf_counter()
        report = state.remove(self._positions(scenario.forget_idx))
        seconds = time.perf_counter() - t0
        info = report.to_dict()
        diagnostics = {k: float(v) for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return state, _Served(seconds, "ok", diagnostics, [])

    def oracle(self, state: Any, dataset: Any, remaining: np.ndarray) -> Any:
        from .certified import CertifiedLogisticRegression

        x, y = self._xy(dataset, remaining)
        params = {**self.params, "lam": state.lam_, "sigma": state.sigma_}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return CertifiedLogisticRegression(**params).fit(x, y)

    def save(self, state: Any, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(state.to_bytes())
        os.replace(tmp, path)

    def load(self, path: Path, original: Any, dataset: Any) -> Any:
        from .certified import CertifiedLogisticRegression

        x, y = self._xy(dataset, self.rows)
        return CertifiedLogisticRegression.from_bytes(path.read_bytes(), x, y)

    def module(self, state: Any) -> nn.Module:
        return CertifiedModule(state)


@dataclass
class _Served:
    seconds: float
    status: str
    diagnostics: dict[str, float]
    notes: list[str]


# ---------------------------------------------------------------------------------------------- the stream
def apply(
    model: Any,
    dataset: Any,
    requests: Sequence[Sequence[int]],
    method: str,
    *,
    out: str | os.PathLike[str],
    seed: int = 0,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    device: str | torch.device = "auto",
    oracle: bool = True,
    progress: bool | None = None,
    recording: Any = None,
    on_request: Callable[[RequestResult], None] | None = None,
    oracles: dict[str, Any] | None = None,
    collapse_drop: float = 10.0,
) -> StreamResult:
    """Serve ``requests`` one after another with ``method``, evaluating after each against its oracle.

    Args:
        model: The trained model, with its training set known: a ``TrainResult``, an
            ``UnlearningResult`` or a run directory (``obliviate train --out``).
        dataset: The :class:`~obliviate.data.DatasetSplits` it was trained on (sample ids are rows
            of its train split).
        requests: ``k`` requests, each a sequence of train-split ids; checked before anything runs
            (every id in the training set, none twice).
        method: A registered method name, or ``"certified"``.
        out: The stream directory (created; a directory of the same stream resumes it).
        seed: The seed of the stream: request ``i`` runs with a seed drawn from ``(seed, i)``. The
            oracles are retrained with ``seed`` itself (the original model's seed, so that
            ``retrain`` starts from the original's initial weights).
        preset: The method's preset (e.g. "digits").
        params: The method's hyperparameters (for "certified": the estimator's, e.g.
            ``{"lam": 1e-3, "removals": 200}``).
        device: Where to run.
        oracle: Retrain the oracle after each request and measure the gap to it (default). False
            measures the accuracies only (``avg_gap`` is NaN).
        progress: Progress bars of the runs (None: only on a terminal).
        recording: The original training's recording, for methods that unroll it.
        on_request: Called with each :class:`RequestResult` as it is committed (progress output).
        oracles: A dict shared by several streams over the same model (e.g. one per method): each
            oracle is retrained once per set of removed rows and seed, and reused from it.
        collapse_drop: Points of validation accuracy below the starting model's beyond which a request
            is "collapsed" (default 10, as ``ob.unlearn``'s).

    Returns:
        The :class:`StreamResult` of every request served so far (all of them, unless an error stopped it).

    Raises:
        InvalidConfigError: bad arguments, or ``out`` holds another stream.
        LedgerError: the stream directory was changed outside obliviate.
        DivergenceError: the method diverged on a request; it is recorded as aborted (the model
            stays the previous one) and the stream stops there.
    """
    from ._utils import resolve_device, state_digest
    from .errors import DivergenceError
    from .evaluation import evaluate as ob_evaluate
    from .ledger import DeletionLedger
    from .methods.base import unlearn
    from .runs import resolve_model
    from .training import accuracy

    original, training_set = resolve_model(model, "requests.apply")
    if training_set is not None and training_set.indices is None:
        training_set = _rows_of_run(model, training_set, dataset)
    if training_set is None or training_set.indices is None:
        raise InvalidConfigError(
            "requests.apply needs the model's training set: pass the TrainResult of ob.train, an UnlearningResult "
            "or a run directory, not a bare module."
        )
    train_rows = np.asarray(training_set.indices, dtype=np.int64)
    reqs = _check_requests(requests, train_rows)
    params = dict(params or {})
    dev = resolve_device(device)
    steps: Any = _CertifiedSteps(params) if method == "certified" else _MethodSteps(method, preset, params, dev, progress)
    out = Path(out)
    spec = {
        "format": "obliviate-requests",
        "method": method,
        "preset": preset,
        "params": _public_params(params),
        "seed": int(seed),
        "requests": reqs,
        "dataset": getattr(dataset, "name", None),
        "train_set": training_set.digest,
        "original": state_digest(original),
    }
    spec_path, ledger_path, state_path = out / STREAM_FILE, out / LEDGER_FILE, out / STATE_FILE
    first = _scenario(dataset, train_rows, reqs[0], "request 1")
    if spec_path.is_file():
        stored = json.loads(spec_path.read_text())
        differs = sorted(k for k in spec if stored.get(k) != json.loads(json.dumps(spec[k])))
        if differs:
            raise InvalidConfigError(
                f"{str(out)!r} holds another stream (its {', '.join(differs)} differ); choose another --out to start one."
            )
        ledger = DeletionLedger(ledger_path)
        if isinstance(steps, _CertifiedSteps):
            steps.rows = train_rows
        actions = ledger.recover(_file_sha(state_path))
        state = steps.load(state_path, original, dataset)
        original_val = math.nan if stored.get("start_val_acc") is None else float(stored["start_val_acc"])
    else:
        if out.exists() and any(out.iterdir()):
            raise InvalidConfigError(f"--out {str(out)!r} exists and is not a stream directory; choose an empty or new one.")
        out.mkdir(parents=True, exist_ok=True)
        state = steps.start(original, first, seed)
        # the health reference of the stream: the model it starts from (for certified, the fitted estimator)
        original_val = accuracy(steps.module(state), first.val, device=dev) if len(first.val) else math.nan
        steps.save(state, state_path)
        ledger = DeletionLedger(ledger_path, create=True)
        entry = ledger.prepare(train_rows.tolist(), kind="fit", digest_before=None, digest_after=_file_sha(state_path))
        ledger.commit(entry.request_id)
        tmp = spec_path.with_name(f".{STREAM_FILE}.tmp")
        start = {"start_val_acc": None if math.isnan(original_val) else original_val}  # not part of what must match
        tmp.write_text(json.dumps({**spec, **start}, indent=1))
        os.replace(tmp, spec_path)  # last: a directory without it is not a stream yet
        actions = []
    try:
        results = _served(ledger, reqs)
        result = StreamResult(out, method, len(reqs), results, resumed_at=len(results), recovered=actions)
        removed = [i for r in results for i in r.ids]
        for i in range(len(results), len(reqs)):
            rows_now = np.setdiff1d(train_rows, removed)
            scenario = _scenario(dataset, rows_now, reqs[i], f"request {i + 1}")
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    state, res = steps.step(state, scenario, _request_seed(seed, i), recording)
            except DivergenceError as err:
                digest = _file_sha(state_path)
                ledger.record_refused(reqs[i], digest=digest, reason=f"request {i + 1}/{len(reqs)}", note=f"diverged: {err}")
                raise
            removed = removed + reqs[i]
            cumulative = _scenario(dataset, train_rows, removed, f"after request {i + 1}")
            model_now = steps.module(state)
            oracle_seconds = math.nan
            reference = None
            if oracle:
                t0 = time.perf_counter()
                if isinstance(steps, _CertifiedSteps):
                    reference = CertifiedModule(steps.oracle(state, dataset, cumulative.retain_idx))
                else:
                    key = f"{cumulative.retain_set.digest}:{seed}"
                    cache = oracles if oracles is not None else {}
                    if key not in cache:
                        cache[key] = unlearn(model, cumulative, "retrain", seed=seed, device=dev, progress=progress).model
                    reference = cache[key]
                oracle_seconds = time.perf_counter() - t0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bare modules: the training sets were checked above
                ev = ob_evaluate(model_now, cumulative, reference, metrics=[m for m in CURVE_METRICS if oracle or m != "avg_gap"])
            metrics = {m: float(ev.metrics.get(m, math.nan)) for m in CURVE_METRICS}
            notes = list(getattr(res, "notes", []))
            status = str(res.status)
            diagnostics = {k: float(v) for k, v in res.diagnostics.items()}
            total_drop = 100.0 * (original_val - metrics["val_acc"])
            if math.isfinite(total_drop):
                diagnostics["val_acc_drop_total"] = total_drop
                if total_drop > collapse_drop:
                    status = "collapsed"
                    notes.append(
                        f"Collapsed over the stream: the validation accuracy fell from {100 * original_val:.1f} % (at the start) "
                        f"to {100 * metrics['val_acc']:.1f} % after {i + 1} requests (more than {collapse_drop:g} points)."
                    )
            notes += [f"{w.category.__name__}: {w.message}" for w in caught if f"{w.category.__name__}: {w.message}" not in notes]
            served = RequestResult(
                index=i,
                request_id="",
                ids=list(reqs[i]),
                seconds=float(res.seconds),
                status=status,
                metrics=metrics,
                oracle_seconds=oracle_seconds,
                diagnostics=diagnostics,
                notes=[n for n in notes if "UncheckedTrainingSet" not in n],
            )
            tmp = state_path.with_name(f".{STATE_FILE}.{os.getpid()}.new")
            steps.save(state, tmp)
            details = {k: v for k, v in served.to_dict().items() if k not in ("request_id", "ids")}
            entry = ledger.prepare(
                reqs[i],
                digest_before=_file_sha(state_path),
                digest_after=_file_sha(tmp),
                method={"name": method, **details},
                reason=f"request {i + 1}/{len(reqs)}",
            )
            _crash_point("stream_after_prepare")
            os.replace(tmp, state_path)
            _crash_point("stream_after_replace")
            ledger.commit(entry.request_id)
            served.request_id = entry.request_id
            result.results.append(served)
            if on_request is not None:
                on_request(served)
        return result
    finally:
        ledger.close()


def _rows_of_run(model: Any, known: Any, dataset: Any) -> Any:
    """The training set of a run directory with its rows (a record keeps only their digest), checked against it."""
    from .data.scenario import TrainingSet, validation_split
    from .runs import RunDir

    if not isinstance(model, (str, os.PathLike, RunDir)):
        return known
    run = model if isinstance(model, RunDir) else RunDir(model)
    if run.record.get("kind") == "unlearn" and run.has_scenario:
        rows = run.scenario().retain_idx
    else:
        origin = run.origin
        val = validation_split(dataset, fraction=float(origin["val_fraction"]), seed=int(origin["val_seed"]))
        rows = np.setdiff1d(np.arange(len(dataset.train)), val)
    derived = TrainingSet.of(dataset.name, rows)
    if derived.digest != known.digest:
        raise InvalidConfigError(
            f"The rows of run {str(run.path)!r} could not be recovered (its record's training set differs from its "
            "validation split's complement); pass the TrainResult or UnlearningResult instead."
        )
    return derived


def _served(ledger: Any, reqs: list[list[int]]) -> list[RequestResult]:
    """The committed requests of a stream's ledger, checked to be the first requests of the stream in order."""
    out = []
    for e in ledger.committed():
        if e.request.kind != "remove":
            continue
        i = len(out)
        if i >= len(reqs) or sorted(e.request.sample_ids) != sorted(reqs[i]):
            raise LedgerError(
                f"The ledger's request {i + 1} removed other samples than the stream's request {i + 1}; the stream "
                "directory was changed outside obliviate."
            )
        m = e.method or {}
        out.append(
            RequestResult(
                index=i,
                request_id=e.request.request_id,
                ids=list(e.request.sample_ids),
                seconds=float(m.get("seconds", math.nan)),
                status=str(m.get("status", "")),
                metrics={k: (math.nan if v is None else float(v)) for k, v in (m.get("metrics") or {}).items()},
                oracle_seconds=math.nan if m.get("oracle_seconds") is None else float(m["oracle_seconds"]),
                diagnostics={k: float(v) for k, v in (m.get("diagnostics") or {}).items() if v is not None},
                notes=list(m.get("notes") or []),
            )
        )
    return out


def status(out: str | os.PathLike[str]) -> StreamResult:
    """Read a stream directory (read-only): the requests served so far and the ones still to come.

    Raises:
        InvalidConfigError: ``out`` is not a stream directory.
    """
    from .ledger import DeletionLedger

    out = Path(out)
    spec_path = out / STREAM_FILE
    if not spec_path.is_file():
        raise InvalidConfigError(f"{str(out)!r} is not a request-stream directory (no {STREAM_FILE}).")
    spec = json.loads(spec_path.read_text())
    with DeletionLedger(out / LEDGER_FILE, read_only=True) as ledger:
        results = _served(ledger, spec["requests"])
        pending = len(ledger.pending())
    return StreamResult(out, spec["method"], len(spec["requests"]), results, resumed_at=len(results), pending=pending)
