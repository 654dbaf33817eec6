"""A certified-removal run directory: the model, its deletion ledger, and the crash-safe protocol.

Layout of a run directory::

    certified.json         what was trained: dataset, classes, feature extractor, estimator, parameters
    model.safetensors      the current model (weights, removal state, certificate; never the noise b)
    ledger.sqlite          the append-only deletion ledger (WAL mode; -wal/-shm files beside it)
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
``OBLIVIATE_CRASH_AT`` (``after_prepare`` or ``after_replace``) kills the process at that point;
it exists for the crash tests.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from ..ledger import DeletionLedger, DeletionRequest
from .features import RawFeatures, TorchFeatures, train_dp_extractor
from .model import (
    CertifiedLinearClassifier,
    CertifiedLogisticRegression,
    CertifiedRidgeClassifier,
    RemovalReport,
    atomic_write,
    file_digest,
)

__all__ = ["CertifiedRun", "fit_run", "SPEC_FILE", "MODEL_FILE", "LEDGER_FILE", "EXTRACTOR_FILE", "CRASH_ENV"]

SPEC_FILE = "certified.json"
MODEL_FILE = "model.safetensors"
LEDGER_FILE = "ledger.sqlite"
EXTRACTOR_FILE = "extractor.safetensors"
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
    with open(run_dir / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


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
    if any((out / f).exists() for f in (SPEC_FILE, MODEL_FILE, LEDGER_FILE)):
        raise InvalidConfigError(f"{str(out)!r} already holds a certified run; choose another directory.")
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
    data = model.to_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with _locked(out), DeletionLedger(out / LEDGER_FILE, create=True) as ledger:
        req = ledger.prepare(
            [int(i) for i in ids],
            kind="fit",
            digest_before=None,
            digest_after=digest,
            method={"estimator": cls.__name__, "params": spec["params"], "resolved": spec["resolved"], "features": feature_spec},
            certificate=_certificate(model, None),
        )
        atomic_write(out / MODEL_FILE, data)
        ledger.commit(req.request_id)
    return CertifiedRun.open(out)


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
    crashed process left pending.

    Attributes:
        path: The run directory.
        spec: Its ``certified.json``.
        model: The :class:`~obliviate.certified.CertifiedLinearClassifier`, ready to remove.
        sample_ids: Train-split index of each training row, in row order.
        recovered: What recovery did on open (one line per resolved request).
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
    def open(cls, path: str | os.PathLike[str]) -> CertifiedRun:
        """Open a run directory, resolve pending requests, and check model and ledger agree.

        Raises:
            InvalidConfigError: not a certified run directory.
            LedgerError: the model file and the ledger disagree beyond recovery.
            IncompatibleModelError: the training data or extractor changed since the fit.
        """
        path = Path(path)
        if not (path / SPEC_FILE).is_file() or not (path / LEDGER_FILE).is_file():
            raise InvalidConfigError(
                f"{str(path)!r} is not a certified run directory (no {SPEC_FILE} or {LEDGER_FILE}); create one with "
                "'obliviate certified fit'."
            )
        spec = read_json(path / SPEC_FILE)
        if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
            raise InvalidConfigError(f"{str(path / SPEC_FILE)!r} is not a certified run spec.")
        with _locked(path):
            for stale in path.glob(f".{MODEL_FILE}.tmp-*"):  # a write a crash interrupted before os.replace
                stale.unlink(missing_ok=True)
            with DeletionLedger(path / LEDGER_FILE) as ledger:
                digest = file_digest(path / MODEL_FILE) if (path / MODEL_FILE).is_file() else None
                actions = ledger.recover(digest)
                forgotten = ledger.forgotten_ids()
            if digest is None:
                raise LedgerError(
                    f"{str(path)!r} has no committed model: its fit did not complete. Delete the directory and fit again."
                )
            data = (path / MODEL_FILE).read_bytes()
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
            raise LedgerError(
                f"The model has removed {len(removed)} samples but the ledger committed {len(forgotten)} removals; "
                "the run directory was changed outside obliviate."
            )
        run = cls(path, spec, model, ids, digest, (x, labels, ds))
        run.recovered = actions
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

    def _check_fresh(self) -> None:
        if self._broken:
            raise LedgerError("An earlier request on this object failed midway; open the run directory again.")
        now = file_digest(self.path / MODEL_FILE)
        if now != self._digest:
            raise LedgerError("The model file changed since this run was opened (another process?); open it again.")

    def remove(
        self, sample_ids: Sequence[int] | np.ndarray, *, request_id: str | None = None, reason: str | None = None
    ) -> tuple[DeletionRequest, RemovalReport]:
        """Remove samples (train-split ids) and record the request in the ledger, crash-safely.

        Raises:
            UnknownSampleError: an id not in the training set.
            DuplicateRequestError: an id repeated or already removed, or a request id reused.
            BudgetExhaustedError: the model's ``auto_retrain`` is off and the budget would be
                exceeded (the refusal is recorded in the ledger as an aborted request).
            LedgerError: the run changed under this object, or a request is pending.
        """
        method = {"estimator": type(self.model).__name__, "params": self.spec["params"]}
        with _locked(self.path), DeletionLedger(self.path / LEDGER_FILE) as ledger:
            self._check_fresh()
            ids = ledger.check_request(sample_ids, request_id)
            rows = np.array([self._position[i] for i in ids], dtype=np.int64)
            before = self._digest
            try:
                report = self.model.remove(rows)
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
        """A summary of the run: data, certificate, budget, requests, and whether all is consistent."""
        m = self.model
        with DeletionLedger(self.path / LEDGER_FILE) as ledger:
            entries = ledger.entries()
            consistent = True
            try:
                ledger.verify(file_digest(self.path / MODEL_FILE))
            except LedgerError:
                consistent = False
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
