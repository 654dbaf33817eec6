"""A certified-removal run directory: the model, its deletion ledger, and the crash-safe protocol.

Layout of a run directory::

    certified.json         what was trained: dataset, classes, feature extractor, estimator, parameters
    model.safetensors      the current model (weights, removal state, certificate; never the noise b)
    ledger.sqlite          the append-only deletion ledger (WAL mode; -wal/-shm files beside it)
    secret.json            mode 0600: the key that authenticates the ledger's hash chain (never the seed)
    extractor.safetensors  the frozen feature extractor's weights (for "model" and "dp" features)

Sample ids are indices into the dataset's train split (the whole split, or the rows of the chosen
classes), so they stay valid whatever else is removed.

A removal request takes effect in three steps, all under an exclusive lock of the directory:
(1) the ledger records the request, the digest of the current model file and the digest of the
model it will produce (``prepared``); (2) the new model file is written atomically (temporary
file, fsync, ``os.replace``); (3) the ledger records ``committed``. A process killed between the
steps leaves a pending request that the next :meth:`CertifiedRun.open` resolves from the file on
disk (the new digest: roll forward; the old one: roll back; anything else: error), so the model
file and the ledger always agree on what was removed. The environment variable
``OBLIVIATE_CRASH_AT`` (``after_prepare`` or ``after_replace`` in a removal, ``fit_after_spec`` or
``fit_after_prepare`` in a fit) kills the process at that point; it exists for the crash tests.

Tamper evidence: the ledger is a hash chain whose head is authenticated with the key in
``secret.json`` (see :mod:`obliviate.ledger.ledger`). :meth:`CertifiedRun.status` recomputes the
chain and cross-checks what the ledger certifies (the removed ids, beta and retraining of each
request, the retrain count, epsilon spent) against what the model file carries; a mismatch is
reported as ``ledger_consistent: false`` with a ``reason``, and a removal refuses such a run.

States of a directory: *empty* (no run file), *complete* (``certified.json``, ``ledger.sqlite`` and
``model.safetensors``), or *incomplete*: some of the run's files but not all of them, which a fit
stopped before it finished leaves behind. ``fit`` refuses an incomplete directory and ``status`` and
``remove`` report it, all with the same words: delete the folder and fit again.

Access: :meth:`CertifiedRun.open` with ``read_only=True`` (what ``obliviate certified status``
uses) needs only read access: it opens the ledger read-only, takes no lock file, resolves nothing
and reports a pending request instead. A removal needs write access to the directory and says so
in one line when it lacks it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .._utils import versions
from ..data import DatasetSplits, Subset, load_dataset
from ..errors import BudgetExhaustedError, IncompatibleModelError, InvalidConfigError, LedgerError
from ..io import load_weights, read_json, save_model, write_json
from ..ledger import DeletionLedger, DeletionRequest, new_key
from .features import RawFeatures, TorchFeatures, train_dp_extractor
from .model import (
    CertifiedLinearClassifier,
    CertifiedLogisticRegression,
    CertifiedRidgeClassifier,
    RemovalReport,
    atomic_write,
    file_digest,
    read_secret_file,
)

__all__ = ["CertifiedRun", "fit_run", "SPEC_FILE", "MODEL_FILE", "LEDGER_FILE", "EXTRACTOR_FILE", "SECRET_FILE", "CRASH_ENV"]

SPEC_FILE = "certified.json"
MODEL_FILE = "model.safetensors"
LEDGER_FILE = "ledger.sqlite"
EXTRACTOR_FILE = "extractor.safetensors"
SECRET_FILE = "secret.json"
SECRET_FORMAT = "obliviate.certified-secret/1"
RUN_FILES = (SPEC_FILE, LEDGER_FILE, MODEL_FILE, SECRET_FILE, EXTRACTOR_FILE)
CRASH_ENV = "OBLIVIATE_CRASH_AT"
HEAD_ONLY = "linear head only: the extractor saw the removed rows"
SCOPES = {
    "raw": "the whole model (its features are the inputs)",
    "dp": "the linear head; the extractor is covered by its DP-SGD guarantee (see extractor_privacy)",
    "model": HEAD_ONLY,
}
"""What a run's certificate covers, by feature kind. Guo et al.'s guarantee needs a public or
differentially private extractor; a trained model's features ("model", e.g. ``--features
run:RUN_DIR``) come from a network that saw the rows being removed and is not private, so only the
linear head on top of it is certified, and every output says so."""
SPEC_FORMAT = "obliviate.certified-run/1"
ESTIMATORS: dict[str, type[CertifiedLinearClassifier]] = {
    "logistic": CertifiedLogisticRegression,
    "ridge": CertifiedRidgeClassifier,
}


def _crash_point(name: str) -> None:
    """Kill this process here when ``OBLIVIATE_CRASH_AT`` names this point (crash tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        sys.stdout.flush()
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # pragma: no cover - platforms without SIGKILL


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive advisory lock on the run directory (POSIX ``flock``; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fh = open(run_dir / ".lock", "a+")
    except PermissionError:
        raise _not_writable(run_dir) from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _shared_lock(run_dir: Path) -> Iterator[None]:
    """A shared lock where the lock file exists and can be opened for reading; else nothing (read-only use)."""
    try:
        import fcntl

        fh = open(run_dir / ".lock")
    except (ImportError, OSError):
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _not_writable(run_dir: Path) -> LedgerError:
    return LedgerError(
        f"Cannot change the certified run {str(run_dir)!r}: this user cannot write to the directory (a removal needs "
        "write access; 'obliviate certified status' needs only read access)."
    )


def run_state(path: str | os.PathLike[str]) -> str:
    """What a directory holds: "empty" (no run file), "complete" (spec, ledger and model file) or
    "incomplete" (some of a run's files: a fit that was stopped before it finished).
    """
    path = Path(path)
    present = {f for f in RUN_FILES if (path / f).exists()}
    if not present:
        return "empty"
    return "complete" if {SPEC_FILE, LEDGER_FILE, MODEL_FILE} <= present else "incomplete"


def _incomplete(path: Path) -> InvalidConfigError:
    return InvalidConfigError(
        f"{str(path)!r} holds an incomplete certified fit (the fit was stopped before it finished): delete the folder "
        "and run 'obliviate certified fit' again."
    )


def _write_secret(path: Path, key: bytes) -> None:
    data = json.dumps({"format": SECRET_FORMAT, "ledger_key": key.hex()}).encode()
    atomic_write(path / SECRET_FILE, data, private=True)


def _read_run_key(path: Path) -> tuple[bytes | None, str | None]:
    """The run's ledger key from its secret file, or None and why it cannot be had."""
    file = path / SECRET_FILE
    if not file.exists():
        return None, f"the run has no secret file {SECRET_FILE} (a run from an older version, or the file was deleted)"
    try:
        data = json.loads(read_secret_file(file))
        if not isinstance(data, dict) or data.get("format") != SECRET_FORMAT:
            raise ValueError
        return bytes.fromhex(data["ledger_key"]), None
    except InvalidConfigError as e:
        return None, str(e).rstrip(".")
    except PermissionError:
        return None, f"this user cannot read the run's secret file {SECRET_FILE}"
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None, f"the run's secret file {SECRET_FILE} is not a certified-run secret file"


def _training_rows(ds: DatasetSplits, classes: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    return _training_rows_of(ds, classes, split="train")


def _training_rows_of(ds: DatasetSplits, classes: Sequence[int] | None, *, split: str) -> tuple[np.ndarray, np.ndarray]:
    targets = ds.train_targets if split == "train" else ds.test_targets
    ids = np.arange(len(targets), dtype=np.int64)
    if classes is not None:
        bad = [c for c in classes if not (0 <= c < ds.num_classes)]
        if bad:
            raise InvalidConfigError(f"Classes {bad} are not classes of {ds.name!r} (0..{ds.num_classes - 1}).")
        if len(set(classes)) < 2:
            raise InvalidConfigError(f"Certified removal needs at least two distinct classes; got {list(classes)}.")
        ids = ids[np.isin(targets, list(classes))]
    return ids, targets[ids]


def _build_extractor_module(spec: dict[str, Any], ds: DatasetSplits) -> nn.Module:
    from ..models import build_model

    arch = spec["model"]
    module = build_model(arch["name"], ds, seed=int(arch.get("seed", 0)), **arch.get("options", {}))
    if spec["kind"] == "dp":
        from opacus.validators import ModuleValidator

        module = ModuleValidator.fix(module)
    return module


def _rows_digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()


def fit_run(
    out: str | os.PathLike[str],
    *,
    dataset: str = "digits",
    root: str | None = None,
    classes: Sequence[int] | None = None,
    features: str = "raw",
    feature_model: tuple[dict[str, Any], nn.Module] | None = None,
    dp: dict[str, Any] | None = None,
    estimator: str = "logistic",
    params: dict[str, Any] | None = None,
    seed: int | None = None,
) -> CertifiedRun:
    """Train a certified-removal model on a registered dataset and create its run directory.

    Args:
        out: The run directory to create (must not hold a run yet).
        dataset: Registered dataset name (default "digits", embedded).
        root: Directory of the dataset's files (torchvision datasets).
        classes: Train on these classes only (e.g. ``(3, 8)``: binary 3-vs-8); default all.
        features: "raw" (flattened inputs), "model" (a frozen trained classifier's penultimate
            features: give ``feature_model``) or "dp" (train an extractor with DP-SGD on the
            training rows first; ``dp`` holds its settings).
        feature_model: ``(architecture, module)`` for ``features="model"``: the architecture dict
            ``{"name", "options", "seed"}`` (as in a run record's ``origin.model``) and the trained module.
        dp: Settings of :func:`~obliviate.certified.features.train_dp_extractor` plus ``model``
            (architecture name, default "mlp") and ``options``.
        estimator: "logistic" (default) or "ridge".
        params: Parameters of the estimator (``lam``, ``sigma``, ``epsilon``, ``delta``, ``removals``,
            ...). ``lam`` and ``sigma`` left out (or "auto") are planned for ``removals`` expected
            removals (see :mod:`obliviate.certified.planning`).
        seed: Seed of the noise ``b`` (and subsampling, DP-SGD's sampling and noise). None (default)
            draws them from operating-system entropy, which is what a deployment should do: a known
            seed is a known ``b``. The seed is written to no file of the run directory (so retrainings
            after the run is reopened draw their noise from the operating system).

    Raises:
        InvalidConfigError: bad arguments or an existing run in ``out``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidConfigError(f"--out {str(out)!r} is a file, not a directory.")
    _check_free(out)
    if estimator not in ESTIMATORS:
        raise InvalidConfigError(f"estimator must be one of {sorted(ESTIMATORS)}; got {estimator!r}.")
    if features not in ("raw", "model", "dp"):
        raise InvalidConfigError(f"features must be 'raw', 'model' or 'dp'; got {features!r}.")
    if features == "model" and feature_model is None:
        raise InvalidConfigError("features='model' needs feature_model=(architecture, module).")
    cls = ESTIMATORS[estimator]
    params = dict(params or {})
    valid = set(cls().get_params()) - {"random_state"}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise InvalidConfigError(
            f"{cls.__name__} has no parameter {unknown[0]!r}; valid: {', '.join(sorted(valid))} (the seed is --seed)."
        )
    model = cls(**params, random_state=seed)
    model._validated()  # bad parameters fail before anything is written
    from ..runs import DirClaim

    # Claimed (exclusive claim file, locked) before the compute, so two fits into one --out cannot both
    # run; a failure abandons the claim (and the directory when it created it and it is still empty).
    try:
        claim = DirClaim.acquire(out, flag="--out")
    except InvalidConfigError:
        _check_free(out)  # one state, named as status names it
        raise
    with claim:
        _check_free(out)  # again under the claim: another fit may have finished meanwhile
        return _fit_claimed(out, model, cls, dataset, root, classes, features, feature_model, dp, estimator, seed)


def _check_free(out: Path) -> None:
    """Refuse an ``out`` that holds a certified run, complete or not."""
    state = run_state(out)
    if state == "complete":
        raise InvalidConfigError(f"{str(out)!r} already holds a certified run; choose another directory.")
    if state == "incomplete":
        raise _incomplete(out)


def _fit_claimed(
    out: Path,
    model: Any,
    cls: Any,
    dataset: str,
    root: str | None,
    classes: Sequence[int] | None,
    features: str,
    feature_model: Any,
    dp: dict[str, Any] | None,
    estimator: str,
    seed: int | None,
) -> CertifiedRun:
    """The body of :func:`fit_run`, run while ``out`` is claimed."""
    ds = load_dataset(dataset, root=root)
    ids, labels = _training_rows(ds, classes)
    rows = Subset(ds.train, ids)
    feature_spec: dict[str, Any] = {"kind": features}
    module: nn.Module | None = None
    if features == "raw":
        extractor: Any = RawFeatures()
    elif features == "model":
        arch, module = feature_model  # type: ignore[misc]
        feature_spec["model"] = {"name": arch["name"], "options": arch.get("options", {}), "seed": int(arch.get("seed", 0))}
        extractor = TorchFeatures(module)
    else:
        from ..models import build_model

        settings = dict(dp or {})
        # the initialisation is public (DP-SGD does not need it secret) and fixed: the run's seed, which
        # determines the DP-SGD noise, is recorded nowhere
        arch = {"name": settings.pop("model", "mlp"), "options": settings.pop("options", {}), "seed": 0}
        import inspect

        allowed = set(inspect.signature(train_dp_extractor).parameters) - {"model", "dataset", "seed"}
        if set(settings) - allowed:
            bad = sorted(set(settings) - allowed)[0]
            raise InvalidConfigError(f"Unknown DP-SGD setting {bad!r}; valid: model, options, {', '.join(sorted(allowed))}.")
        base = build_model(arch["name"], ds, seed=arch["seed"], **arch["options"])
        extractor = train_dp_extractor(base, rows, seed=seed, **settings)  # None: OS entropy
        module = extractor.module
        feature_spec["model"] = arch
        feature_spec["privacy"] = extractor.describe()
    x = extractor.transform(rows)
    model.fit(x, labels)
    if features == "model":
        model.certificate_scope_ = HEAD_ONLY
    out.mkdir(parents=True, exist_ok=True)
    if module is not None:
        save_model(module, out / EXTRACTOR_FILE, {"role": "certified feature extractor"})
        feature_spec["sha256"] = file_digest(out / EXTRACTOR_FILE)
    spec = {
        "format": SPEC_FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {"name": ds.name, "root": root},
        "classes": None if classes is None else [int(c) for c in classes],
        "features": feature_spec,
        "features_sha256": _rows_digest(x),
        "estimator": estimator,
        "params": {k: v for k, v in model.get_params().items() if k != "random_state"},
        "resolved": {"lam": model.lam_, "sigma": model.sigma_},  # the planned values where params say "auto"
        "seeded": seed is not None,
        "versions": versions(),
    }
    write_json(out / SPEC_FILE, spec)
    _crash_point("fit_after_spec")
    key = new_key()  # authenticates the ledger's chain; kept in the 0600 secret file only
    _write_secret(out, key)
    data = model.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with _locked(out), DeletionLedger(out / LEDGER_FILE, create=True, key=key) as ledger:
        req = ledger.prepare(
            [int(i) for i in ids],
            kind="fit",
            digest_before=None,
            digest_after=digest,
            method={"estimator": cls.__name__, "params": spec["params"], "resolved": spec["resolved"], "features": feature_spec},
            certificate=_certificate(model, None),
        )
        _crash_point("fit_after_prepare")
        atomic_write(out / MODEL_FILE, data)
        ledger.commit(req.request_id)
    return CertifiedRun.open(out)


def _integrity(ledger: DeletionLedger, key_problem: str | None) -> str | None:
    """The ledger's integrity problem, worded for a run (whose key lives in its secret file)."""
    problem = ledger.integrity_problem()
    if problem is not None and problem.startswith("the chain head cannot be authenticated") and key_problem:
        return f"the ledger's chain head cannot be authenticated: {key_problem}"
    return problem


def _read_model(path: Path) -> tuple[bytes, str]:
    try:
        data = (path / MODEL_FILE).read_bytes()
    except PermissionError:
        raise LedgerError(f"This user cannot read {str(path / MODEL_FILE)!r}.") from None
    return data, hashlib.sha256(data).hexdigest()


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12) or (math.isinf(a) and a == b)


def _certificate(model: CertifiedLinearClassifier, report: RemovalReport | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "beta": model.budget_.spent,
        "budget": model.budget_.budget,
        "epsilon_spent": model.budget_.epsilon_spent(),
        "epsilon": model.budget_.epsilon,
        "delta": model.budget_.delta,
        "sigma": model.budget_.sigma,
        "training_residual": model.training_residual_,
        "retrain_count": model.retrain_count_,
        "scope": model.certificate_scope_ or SCOPES["raw"],
    }
    if report is not None:
        out.update({k: v for k, v in report.to_dict().items() if k not in ("indices", "beta", "epsilon", "scope")})
    return out


class CertifiedRun:
    """An open run directory: its model (with the training data attached) and its ledger.

    Use :func:`fit_run` to create one and :meth:`open` to open one; opening resolves any request a
    crashed process left pending (``open(path, read_only=True)`` resolves nothing and only reports).

    Attributes:
        path: The run directory.
        spec: Its ``certified.json``.
        model: The :class:`~obliviate.certified.CertifiedLinearClassifier`, ready to remove.
        sample_ids: Train-split index of each training row, in row order.
        recovered: What recovery did on open (one line per resolved request).
        read_only: Opened with ``read_only=True`` (it cannot remove).
        problems: What a read-only open found inconsistent; :meth:`status` reports them.
    """

    def __init__(
        self,
        path: Path,
        spec: dict[str, Any],
        model: CertifiedLinearClassifier,
        sample_ids: np.ndarray,
        digest: str,
        data: tuple[np.ndarray, np.ndarray, DatasetSplits],
    ) -> None:
        self.path = path
        self._x, self._labels, self._dataset = data
        self.spec = spec
        self.model = model
        self.sample_ids = sample_ids
        self._position = {int(s): i for i, s in enumerate(sample_ids)}
        self._digest = digest
        self._broken = False
        self.recovered: list[str] = []
        self.read_only = False
        self.problems: list[str] = []  # what a read-only open found inconsistent (status reports them)
        self._key: bytes | None = None
        self._key_problem: str | None = None

    @property
    def certificate_scope(self) -> str:
        """What the run's certificate covers (see :data:`SCOPES`)."""
        return SCOPES.get(self.spec["features"]["kind"], SCOPES["model"])

    def __repr__(self) -> str:
        m = self.model
        return (
            f"CertifiedRun({str(self.path)!r}, {type(m).__name__}, n_removed={m.n_removed_}, "
            f"certified epsilon={m.budget_.epsilon_spent():.4g} at delta={m.budget_.delta:g}, "
            f"certificate: {self.certificate_scope})"
        )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, read_only: bool = False) -> CertifiedRun:
        """Open a run directory, resolve pending requests, and check model and ledger agree.

        Args:
            path: The run directory.
            read_only: Need only read access (what ``obliviate certified status`` uses): the ledger
                is opened read-only, no lock file is created, nothing is resolved or cleaned up,
                and what is inconsistent (a tampered or older ledger, a pending request, a model
                that disagrees with the ledger) is collected in :attr:`problems` for
                :meth:`status` instead of raised. Such a run cannot :meth:`remove`.

        Raises:
            InvalidConfigError: not a certified run directory, or an incomplete one (a fit that
                was stopped: delete the folder and fit again).
            LedgerError: (unless ``read_only``) the ledger fails its integrity check (edited
                outside obliviate, or from an older version), the model file and the ledger
                disagree beyond recovery, or the directory is not writable.
            IncompatibleModelError: the training data or extractor changed since the fit.
        """
        path = Path(path)
        state = run_state(path)
        if state == "empty" or not path.is_dir():
            raise InvalidConfigError(
                f"{str(path)!r} is not a certified run directory (no {SPEC_FILE} or {LEDGER_FILE}); create one with "
                "'obliviate certified fit'."
            )
        if state == "incomplete":
            raise _incomplete(path)
        try:
            spec = read_json(path / SPEC_FILE)
        except PermissionError:
            raise LedgerError(f"This user cannot read {str(path / SPEC_FILE)!r}.") from None
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
            raise InvalidConfigError(f"{str(path / SPEC_FILE)!r} is not a certified run spec.")
        key, key_problem = _read_run_key(path)
        problems: list[str] = []
        if read_only:
            with _shared_lock(path):
                with DeletionLedger(path / LEDGER_FILE, key=key, read_only=True, verify=False) as ledger:
                    problem = _integrity(ledger, key_problem)
                    if problem:
                        problems.append(problem)
                    if ledger.pending():
                        problems.append(
                            "a request is pending (a process was stopped mid-way); the next 'obliviate certified remove' "
                            "resolves it"
                        )
                    forgotten = ledger.forgotten_ids()
                    actions: list[str] = []
                data, digest = _read_model(path)
        else:
            if not os.access(path, os.W_OK):
                raise _not_writable(path)
            with _locked(path):
                with DeletionLedger(path / LEDGER_FILE, key=key, verify=False) as ledger:
                    problem = _integrity(ledger, key_problem)
                    if problem:
                        raise LedgerError(
                            f"The deletion ledger of {str(path)!r} cannot be trusted: {problem}. Refusing to change the run."
                        )
                    for stale in path.glob(f".{MODEL_FILE}.tmp-*"):  # a write a crash interrupted before os.replace
                        stale.unlink(missing_ok=True)
                    digest = file_digest(path / MODEL_FILE)
                    actions = ledger.recover(digest)
                    forgotten = ledger.forgotten_ids()
                data, digest = _read_model(path)
        ds = load_dataset(spec["dataset"]["name"], root=spec["dataset"].get("root"))
        ids, labels = _training_rows(ds, spec.get("classes"))
        x = cls._features(path, spec, ds, ids)
        if _rows_digest(x) != spec.get("features_sha256"):
            raise IncompatibleModelError(
                f"The features of {spec['dataset']['name']!r} computed now differ from those the model was fitted on; "
                "the dataset files or the extractor changed."
            )
        model = CertifiedLinearClassifier.from_bytes(data, x, labels)
        removed = {int(s) for s in ids[model.removed_]}
        if removed != forgotten:
            mismatch = (
                f"the model has removed {len(removed)} samples but the ledger committed {len(forgotten)} removals; "
                "the run directory was changed outside obliviate"
            )
            if not read_only:
                raise LedgerError(mismatch[0].upper() + mismatch[1:] + ".")
            problems.append(mismatch)
        run = cls(path, spec, model, ids, digest, (x, labels, ds))
        run.recovered = actions
        run.read_only = read_only
        run.problems = problems
        run._key, run._key_problem = key, key_problem
        return run

    @staticmethod
    def _features(path: Path, spec: dict[str, Any], ds: DatasetSplits, ids: np.ndarray, split: str = "train") -> np.ndarray:
        fs = spec["features"]
        rows = Subset(ds.train if split == "train" else ds.test, ids)
        if fs["kind"] == "raw":
            return RawFeatures().transform(rows)
        file = path / EXTRACTOR_FILE
        if not file.is_file() or file_digest(file) != fs.get("sha256"):
            raise IncompatibleModelError(f"{str(file)!r} is missing or changed since the fit.")
        module = _build_extractor_module(fs, ds)
        load_weights(module, file)
        return TorchFeatures(module).transform(rows)

    def _cross_check(self, entries: list[Any]) -> list[str]:
        """What the ledger certifies against what the model file carries; one line per disagreement."""
        m = self.model
        out: list[str] = []
        committed = [e for e in entries if e.status == "committed"]
        removals = [e for e in committed if e.request.kind == "remove"]
        removed = {int(s) for s in self.sample_ids[m.removed_]}
        forgotten = {i for e in removals for i in e.request.sample_ids}
        if removed != forgotten:
            out.append(f"the model file has removed {len(removed)} samples but the ledger certifies {len(forgotten)}")
        if len(removals) != len(m.history_):
            out.append(f"the ledger certifies {len(removals)} removals but the model file records {len(m.history_)}")
        else:
            for e, r in zip(removals, m.history_, strict=True):
                rid = e.request.request_id
                if {int(self.sample_ids[i]) for i in r.indices} != set(e.request.sample_ids):
                    out.append(f"request {rid!r}: the model file removed other samples than the ledger certifies")
                if not _close(e.certificate.get("beta"), r.beta) or bool(e.retrained) != bool(r.retrained):
                    out.append(
                        f"request {rid!r}: the ledger certifies beta {e.certificate.get('beta')} (retrained: {e.retrained}) "
                        f"but the model file carries beta {r.beta} (retrained: {r.retrained})"
                    )
        retrains = sum(bool(e.retrained) for e in removals)
        if retrains != m.retrain_count_:
            out.append(f"the ledger certifies {retrains} retrains but the model file carries {m.retrain_count_}")
        if committed:
            cert = committed[-1].certificate
            for key, value in (
                ("beta", m.budget_.spent),
                ("epsilon_spent", m.budget_.epsilon_spent()),
                ("retrain_count", m.retrain_count_),
            ):
                if key in cert and not _close(cert[key], value):
                    out.append(f"the ledger certifies {key} {cert[key]} but the model file carries {key} {value}")
        return out

    def _check_fresh(self) -> None:
        if self._broken:
            raise LedgerError("An earlier request on this object failed midway; open the run directory again.")
        now = file_digest(self.path / MODEL_FILE)
        if now != self._digest:
            raise LedgerError("The model file changed since this run was opened (another process?); open it again.")

    def remove(
        self,
        sample_ids: Sequence[int] | np.ndarray,
        *,
        request_id: str | None = None,
        reason: str | None = None,
        allow_single_class: bool = False,
    ) -> tuple[DeletionRequest, RemovalReport]:
        """Remove samples (train-split ids) and record the request in the ledger, crash-safely.

        Args:
            sample_ids: Train-split ids of the samples to remove.
            request_id: Id of the request (default: generated); an aborted request's id may be used again.
            reason: Free text recorded with the request.
            allow_single_class: Let a binary model lose every training row of one class (it would
                then be retrained on one class only); refused by default.

        Raises:
            UnknownSampleError: an id not in the training set.
            DuplicateRequestError: an id repeated or already removed, or a request id reused.
            InvalidConfigError: the removal would leave a binary model one class (see ``allow_single_class``).
            BudgetExhaustedError: the model's ``auto_retrain`` is off and the budget would be
                exceeded (the refusal is recorded in the ledger as an aborted request).
            LedgerError: the run changed under this object, a request is pending, the run was
                opened read-only or its directory is not writable, or the ledger fails its
                integrity check.
        """
        if self.read_only:
            raise LedgerError("This run was opened read-only; open it with CertifiedRun.open(path) to remove samples.")
        if not os.access(self.path, os.W_OK):
            raise _not_writable(self.path)
        method = {"estimator": type(self.model).__name__, "params": self.spec["params"]}
        with _locked(self.path), DeletionLedger(self.path / LEDGER_FILE, key=self._key, verify=False) as ledger:
            problem = _integrity(ledger, self._key_problem)
            if problem:
                raise LedgerError(f"The deletion ledger of {str(self.path)!r} cannot be trusted: {problem}. Refusing to remove.")
            self._check_fresh()
            ids = ledger.check_request(sample_ids, request_id)
            rows = np.array([self._position[i] for i in ids], dtype=np.int64)
            before = self._digest
            try:
                report = self.model.remove(rows, allow_single_class=allow_single_class)
            except BudgetExhaustedError as e:
                ledger.record_refused(ids, digest=before, reason=reason, note=str(e), method=method, request_id=request_id)
                raise
            try:
                data = self.model.to_bytes()
                after = hashlib.sha256(data).hexdigest()
                retrained = None
                if report.retrained:
                    retrained = {"retrain_count": self.model.retrain_count_, "training_residual": self.model.training_residual_}
                req = ledger.prepare(
                    ids,
                    digest_before=before,
                    digest_after=after,
                    certificate=_certificate(self.model, report),
                    method=method,
                    reason=reason,
                    request_id=request_id,
                    retrained=retrained,
                )
                _crash_point("after_prepare")
                atomic_write(self.path / MODEL_FILE, data)
                _crash_point("after_replace")
                ledger.commit(req.request_id)
            except BaseException:
                self._broken = True  # the in-memory model is ahead of the file: reopen to continue
                raise
            self._digest = after
        return req, report

    def status(self) -> dict[str, Any]:
        """A summary of the run: data, certificate, budget, requests, and whether all is consistent.

        Needs only read access (the ledger is opened read-only). ``ledger_consistent`` is False,
        with the first problem in ``reason``, when the ledger fails its integrity check (edited
        outside obliviate, no key to authenticate it, or from an older version), a request is
        pending, the model file is not the one the ledger's last committed request produced, or
        what the ledger certifies (removed ids, beta and retraining per request, the retrain
        count, epsilon spent) differs from what the model file carries.
        """
        m = self.model
        problems = list(self.problems)
        with (
            _shared_lock(self.path),
            DeletionLedger(self.path / LEDGER_FILE, key=self._key, read_only=True, verify=False) as ledger,
        ):
            entries = ledger.entries()
            problem = _integrity(ledger, self._key_problem)
            if problem and problem not in problems:
                problems.append(problem)
            try:
                ledger.verify(file_digest(self.path / MODEL_FILE))
            except LedgerError as e:
                text = str(e).rstrip(".")
                if not any("pending" in p for p in problems) or "pending" not in text:
                    problems.append(text[0].lower() + text[1:])
        problems.extend(self._cross_check(entries))
        consistent = not problems
        removals = [e for e in entries if e.request.kind == "remove"]
        keep = np.ones(len(self.sample_ids), dtype=bool)
        keep[m.removed_] = False
        test_ids, test_labels = _training_rows_of(self._dataset, self.spec.get("classes"), split="test")
        x_test = self._features(self.path, self.spec, self._dataset, test_ids, split="test")
        if len(test_ids):
            cost = m.accuracy_cost(x_test, test_labels)
        else:  # no test split: the comparison on the remaining training rows
            cost = m.accuracy_cost(self._x[keep], self._labels[keep])
        out = {
            "run_dir": str(self.path),
            "dataset": self.spec["dataset"]["name"],
            "classes": self.spec.get("classes"),
            "features": self.spec["features"]["kind"],
            "estimator": type(m).__name__,
            "mode": m.mode_,
            "n_train": int(len(self.sample_ids)),
            "n_removed": m.n_removed_,
            "train_acc": float(m.score(self._x[keep], self._labels[keep])),
            "test_acc": float(m.score(x_test, test_labels)) if len(test_ids) else None,
            # the same model (same lam, same remaining rows) fitted without noise: what certification costs
            "unperturbed_train_acc": m.unperturbed_score(self._x[keep], self._labels[keep]),
            "unperturbed_test_acc": cost["unperturbed"] if len(test_ids) else None,
            "accuracy_cost": cost["cost"],
            "lam": m.lam_,
            "requests_committed": sum(e.status == "committed" for e in removals),
            "requests_aborted": sum(e.status == "aborted" for e in removals),
            "retrains": m.retrain_count_,
            "beta": m.budget_.spent,
            "budget": m.budget_.budget,
            "budget_left": m.budget_left(),
            "epsilon_spent": m.budget_.epsilon_spent(),
            "epsilon": m.budget_.epsilon,
            "delta": m.budget_.delta,
            "sigma": m.budget_.sigma,
            "removals_planned": m.removals,
            "expected_charge_per_removal": m.expected_charge(),
            "removals_left_expected": m.expected_removals_left(),
            "certificate_scope": self.certificate_scope,
            "model_sha256": self._digest,
            "ledger_consistent": consistent,
            "reason": problems[0] if problems else None,
            "recovered": list(self.recovered),
        }
        if "privacy" in self.spec["features"]:
            p = self.spec["features"]["privacy"]
            out["extractor_privacy"] = {"epsilon": p["epsilon"], "delta": p["delta"], "group_of_removed": None}
            if m.n_removed_:
                from .features import group_privacy

                eps_k, delta_k = group_privacy(p["epsilon"], p["delta"], m.n_removed_)
                out["extractor_privacy"]["group_of_removed"] = {"epsilon": eps_k, "delta": delta_k}
        return out
