"""Run directories as library objects, and the check that a scenario splits a model's training set.

A run directory holds one trained or unlearned model and everything needed to rebuild it and every
scenario over exactly the rows it was trained on:

- ``model.safetensors``: the weights (never pickled);
- ``run.json``: one run record (see :func:`obliviate.report.run_record`) with an ``origin`` block:
  the dataset (``name``, ``root``), the model (``name``, ``options``, ``seed``), the validation split
  (``val_fraction``, ``val_seed``) and the training ``recipe``; and a ``train_set`` (the rows the model
  was trained on; for an unlearned model, its scenario's retain set);
- ``scenario.json`` (unlearning runs): the scenario it was unlearned on;
- ``masks.safetensors`` (pruned models): the sparsity masks every method keeps;
- ``recording.safetensors`` + ``recording.json`` (``train(..., record=True)``): the training
  recording that sgu and amnesiac replay.

:class:`RunDir` reads and writes these files; ``obliviate train/unlearn/evaluate`` are thin layers over
it. Writing is safe against a second writer and against crashes: :meth:`RunDir.create` claims the
directory atomically (:class:`DirClaim`: an exclusive, locked ``.obliviate-claim`` file) before the
computation, :meth:`RunDir.save` moves the finished files in whole (``run.json`` last) and then
releases the claim, and a claim left by a process that died is reported as an unfinished run. Files
of another run are never overwritten. Reading checks ``run.json`` against the run-record schema
(:func:`check_run_record`), naming the file and the field. ``obliviate evaluate`` appends its
results, with the reference they were measured against, to the record's ``evaluations`` list
(:meth:`RunDir.add_evaluation`); the run's own metrics stay as written. Example::

    import obliviate as ob
    from obliviate.runs import RunDir, default_recipe, make_origin

    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    recipe = default_recipe(ds)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, **recipe)
    with RunDir.create("runs/cnn") as run:                # claims it; refuses a directory that holds a run
        run.save(base.model, {"kind": "train", "train_set": base.training_set.to_json(),
                              "origin": make_origin(ds, "cnn", seed=0, recipe=base.config.to_dict())})

    run = RunDir("runs/cnn")
    model = run.load_model()                              # rebuilt from the origin, weights loaded
    sc = run.make_scenario("class:3", seed=0)             # over the run's own validation split
    oracle = ob.unlearn(run, sc, method="retrain")        # with the run's training recipe

``ob.unlearn`` and ``ob.evaluate`` accept a model in four forms, and :func:`resolve_model` turns
each into the module plus, where it is known, its :class:`~obliviate.data.TrainingSet`:

- a :class:`~obliviate.training.TrainResult` (``ob.train(model, scenario.train)``),
- an :class:`~obliviate.methods.UnlearningResult` (trained, in effect, on its scenario's retain set),
- a run directory (a path, a :class:`RunDir` or a loaded :class:`Run`),
- a bare ``nn.Module``: accepted with an :class:`~obliviate.errors.UncheckedTrainingSetWarning`.

A scenario fits a model for *unlearning* when its training set (forget ∪ retain) is exactly the
model's; for *evaluation* also when its retain set is (the model was unlearned on it). Anything
else is a :class:`~obliviate.errors.TrainingSetMismatchError`: the scenario's "retain" rows would
hold samples the model never saw, or its held-out rows samples it trained on.

Layering: this module sits above ``data``, ``models``, ``training``, ``recording`` and ``pruning`` (it
builds datasets and models) and below ``methods`` (whose ``unlearn`` checks training sets through it);
:mod:`obliviate.io`, at the bottom, keeps the file formats.
"""

from __future__ import annotations

import abc
import contextlib
import datetime
import hashlib
import json
import math
import os
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from torch import nn

from .data import DatasetSplits, Scenario, TrainingSet, load_dataset, parse_scenario, validation_split
from .errors import InvalidConfigError, MissingDataError, TrainingSetMismatchError, UncheckedTrainingSetWarning
from .io import MODEL_FILE, RUN_FILE, SCENARIO_FILE, load_masks, load_weights, read_json, save_masks, save_model, write_json

try:  # advisory locks (POSIX); without them a claim file alone marks a directory as taken
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch

    from .recording import Recording

__all__ = [
    "RunDir",
    "Run",
    "DirClaim",
    "CLAIM_FILE",
    "check_run_record",
    "file_sha256",
    "load_run",
    "default_recipe",
    "make_origin",
    "DIGITS_RECIPE",
    "resolve_model",
    "check_training_set",
    "run_training_set",
]

# The training recipe of the embedded digits data (the demo's original model and its oracle).
DIGITS_RECIPE: dict[str, Any] = {
    "epochs": 30,
    "lr": 0.05,
    "batch_size": 64,
    "schedule": "cosine",
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "milestones": None,
}

# ---------------------------------------------------------------------------- claiming output directories
CLAIM_FILE = ".obliviate-claim"
_STAGING_PREFIX = ".obliviate-staging-"
_CLAIM_RETRIES = 40  # x 0.05 s: how long a claim file that is still being written up is waited for


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _replace_json(path: Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then move it over ``path`` (readers see old or new)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        write_json(tmp, obj)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _dir_lock(path: Path) -> Any:
    """An exclusive advisory lock on a directory for a read-modify-write of its files (waits for it)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _where(path: str | os.PathLike[str], flag: str | None) -> str:
    return f"{flag} {str(path)!r}" if flag else repr(str(path))


def _claim_info(fd: int) -> dict[str, Any] | None:
    """The JSON a claimant wrote into its claim file (None while it is still empty or unreadable)."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode()) if raw else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process"
    host = info.get("host")
    text = f"pid {info.get('pid', '?')}" + (f" on {host}" if host and host != socket.gethostname() else "")
    return text + (f", started {info['started']}" if info.get("started") else "")


def _existing_claim(path: Path, flag: str | None) -> InvalidConfigError | None:
    """Why the claim file in ``path`` stops a new claim, or None when it vanished meanwhile (retry).

    A claim whose lock is held belongs to a running process; one whose lock is free was left by a
    process that stopped before finishing (a crash, ``kill -9``).
    """
    claim = path / CLAIM_FILE
    where = _where(path, flag)
    for _ in range(_CLAIM_RETRIES):
        try:
            fd = os.open(claim, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as e:
            return InvalidConfigError(f"Cannot read the claim file {str(claim)!r}: {e}")
        try:
            info = _claim_info(fd)
            if fcntl is None:
                return InvalidConfigError(
                    f"{where} is claimed by {_describe(info)} ({CLAIM_FILE}); if no obliviate process is writing it, "
                    "remove the directory and run again."
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                other = f"another {flag}" if flag else "another directory"
                return InvalidConfigError(
                    f"{where} is being written by another obliviate process ({_describe(info)}); choose {other} or "
                    "wait for it to finish."
                )
            try:  # unlocked: released a moment ago (the file is gone or new), or abandoned
                same = os.fstat(fd).st_ino == os.stat(claim).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                return None
            if info is not None:
                return InvalidConfigError(
                    f"{where} holds an unfinished run: {CLAIM_FILE} was left by {_describe(info)}, which stopped before "
                    "writing its results; remove the directory and run again."
                )
        finally:
            os.close(fd)
        time.sleep(0.05)  # a claimant between creating its claim file and locking it
    return InvalidConfigError(
        f"{where} holds an unfinished run: its {CLAIM_FILE} is empty (a process stopped while claiming it); "
        "remove the directory and run again."
    )


class _Claimed(abc.ABC):
    """A context manager over a claim: a normal exit releases it, an exception abandons it."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the claim up, keeping what was written."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Give the claim up after a failure, removing what the claim created."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abandon()


class DirClaim(_Claimed):
    """An exclusive claim on an output directory, held from before the compute until the results are written.

    :meth:`acquire` creates the directory when needed and, inside it, the claim file ``.obliviate-claim``
    exclusively (``O_CREAT | O_EXCL``), locked (``flock``) for as long as the claim is held and holding the
    claimant's pid, host and start time. Only then are the files it guards checked, so two processes
    writing into the same directory cannot both pass. :meth:`release` removes the claim file;
    :meth:`abandon` also removes the directory when this claim created it and it is empty again. A
    claim file left by a process that died (its lock is free) is reported as an unfinished run.

    Use it as a context manager: an exception inside the block abandons the claim, a normal exit
    releases it.

    Args:
        path: The claimed directory.
        fd: The open, locked claim file.
        created: Whether :meth:`acquire` created the directory.
    """

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self.created = created

    def __repr__(self) -> str:
        return f"DirClaim({str(self.path)!r}, held={self.held})"

    @property
    def held(self) -> bool:
        """Whether the claim is still held."""
        return self._fd is not None

    @classmethod
    def acquire(
        cls,
        path: str | os.PathLike[str],
        *,
        flag: str | None = None,
        occupied: Sequence[str] = (),
        protected: Sequence[str] = (),
        force_flag: str | None = None,
        force: bool = False,
    ) -> DirClaim:
        """Claim ``path`` (created with its parents when missing) for writing.

        Args:
            path: The directory.
            flag: The command-line flag that named it (``--out``), for the messages.
            occupied: Files whose presence means the directory already holds a finished run (never
                overwritten).
            protected: Files an earlier run left that writing here would overwrite: refused unless
                ``force``.
            force_flag: How the user allows overwriting ``protected`` files (``--force``), for the message.
            force: Overwrite ``protected`` files.

        Raises:
            InvalidConfigError: ``path`` is a file, cannot be created, is being written by another
                process, holds an unfinished (crashed) run, holds one of ``occupied``, or, without
                ``force``, one of ``protected``.
        """
        p = Path(path)
        where = _where(path, flag)
        if p.exists() and not p.is_dir():
            raise InvalidConfigError(f"{where} is a file, not a directory.")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidConfigError(f"Cannot create {where}: {e}") from None
        while True:  # again when the directory vanishes in between (another claim that created it gave up)
            created = False
            try:
                p.mkdir()
                created = True
            except FileExistsError:
                if not p.is_dir():
                    raise InvalidConfigError(f"{where} is a file, not a directory.") from None
            except OSError as e:
                raise InvalidConfigError(f"Cannot create {where}: {e}") from None
            claim = cls._create(p, flag, created)
            if claim is not None:
                break
        try:
            claim._check_files(where, flag, occupied, protected, force_flag, force)
        except BaseException:
            claim.abandon()
            raise
        return claim

    @classmethod
    def _create(cls, p: Path, flag: str | None, created: bool) -> DirClaim | None:
        """The claim file created, locked and filled in; None when the directory vanished meanwhile."""
        while True:
            try:
                fd = os.open(p / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                refusal = _existing_claim(p, flag)
                if refusal is None:
                    continue
                raise refusal from None
            except FileNotFoundError:
                if p.exists():
                    raise InvalidConfigError(f"Cannot write into {_where(p, flag)}.") from None
                return None
            except OSError as e:
                if created:
                    with contextlib.suppress(OSError):
                        p.rmdir()
                raise InvalidConfigError(f"Cannot write into {_where(p, flag)}: {e}") from None
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now}
                os.write(fd, json.dumps(info).encode())
            except BaseException:
                os.close(fd)
                raise
            return cls(p, fd, created)

    def _check_files(
        self,
        where: str,
        flag: str | None,
        occupied: Sequence[str],
        protected: Sequence[str],
        force_flag: str | None,
        force: bool,
    ) -> None:
        other = f"another {flag}" if flag else "another directory"
        if any((self.path / name).exists() for name in occupied):
            raise InvalidConfigError(f"Run directory {str(self.path)!r} already holds a run; choose {other} or remove it first.")
        for name in protected:
            if (self.path / name).exists() and not force:
                fix = f"pass {force_flag} to overwrite it, " if force_flag else ""
                raise InvalidConfigError(
                    f"{where} already holds {name} from an earlier run, which writing here would overwrite; "
                    f"{fix}choose {other} or remove the file."
                )

    def staging(self) -> Path:
        """A fresh hidden directory inside the claimed one, to write files into before :meth:`publish`."""
        stage = self.path / f"{_STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        stage.mkdir()
        return stage

    def publish(self, stage: Path, last: Sequence[str] = ()) -> None:
        """Move every file of ``stage`` into the claimed directory (``os.replace``; ``last`` ones last), remove ``stage``."""
        names = sorted(p.name for p in stage.iterdir())
        for name in [n for n in names if n not in last] + [n for n in last if n in names]:
            os.replace(stage / name, self.path / name)
        stage.rmdir()

    def release(self) -> None:
        """Give the claim up (the claim file is removed while still locked); a no-op once released."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / CLAIM_FILE)
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """Release the claim, drop any staging directory, and remove the directory if this claim created it."""
        if self._fd is None:
            return
        for stage in self.path.glob(f"{_STAGING_PREFIX}{os.getpid()}-*"):
            shutil.rmtree(stage, ignore_errors=True)
        self.release()
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty: nothing of anyone else's is removed


def _run_files() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(files that make a directory a run, other files a run writes)."""
    from .pruning import MASKS_FILE
    from .recording import RECORDING_FILE, RECORDING_META

    return (RUN_FILE, MODEL_FILE), (SCENARIO_FILE, MASKS_FILE, RECORDING_FILE, RECORDING_META)


# ---------------------------------------------------------------------------- the run-record schema
_SEED = "an int in [0, 2**63)"


def _is_seed(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _is_fraction(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1


def _is_name(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _is_dict(v: Any) -> bool:
    return isinstance(v, dict)


def _is_options(v: Any) -> bool:
    return isinstance(v, dict) and not ({"seed", "name", "dataset"} & set(v))


def _is_training_set(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and _is_name(v.get("dataset"))
        and isinstance(v.get("size"), int)
        and not isinstance(v.get("size"), bool)
        and v["size"] >= 0
        and isinstance(v.get("hash"), str)
    )


# field -> (required, check, what it must be); nested objects are checked by _NESTED.
_Spec = dict[str, tuple[bool, Callable[[Any], bool], str]]
_RECORD_FIELDS: _Spec = {
    "origin": (True, _is_dict, "an object with 'dataset', 'model', 'val_fraction' and 'val_seed'"),
    "seed": (False, _is_seed, _SEED),
    "kind": (False, _opt(_is_name), "a string"),
    "method": (False, _opt(_is_name), "a method name or null"),
    "preset": (False, _opt(_is_name), "a preset name or null"),
    "parent": (False, _opt(_is_name), "the parent run's path or null"),
    "parent_model_sha256": (False, _opt(_is_name), "a SHA-256 hex digest or null"),
    "status": (False, _is_name, "a status string"),
    "error": (False, _opt(lambda v: isinstance(v, str)), "a string or null"),
    "params": (False, _is_dict, "an object"),
    "metrics": (False, _is_dict, "an object"),
    "timings": (False, _is_dict, "an object"),
    "diagnostics": (False, _is_dict, "an object"),
    "versions": (False, _is_dict, "an object"),
    "scenario": (False, _opt(_is_dict), "an object or null"),
    "train_set": (False, _opt(_is_training_set), "an object with 'dataset', 'size' and 'hash', or null"),
    "evaluations": (False, lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
}
_ORIGIN_FIELDS: _Spec = {
    "dataset": (True, _is_dict, "an object with 'name' (and 'root')"),
    "model": (True, _is_dict, "an object with 'name', 'options' and 'seed'"),
    "val_fraction": (True, _is_fraction, "a number in [0, 1)"),
    "val_seed": (True, _is_seed, _SEED),
    "recipe": (False, _is_dict, "an object (the training recipe)"),
    "recording": (False, _is_dict, "an object"),
}
_NESTED: dict[str, _Spec] = {
    "origin": _ORIGIN_FIELDS,
    "origin.dataset": {
        "name": (True, _is_name, "a registered dataset name"),
        "root": (False, _opt(lambda v: isinstance(v, str)), "a directory or null"),
    },
    "origin.model": {
        "name": (True, _is_name, "a registered model name"),
        "options": (
            False,
            _is_options,
            "an object of architecture options other than 'seed', 'name' and 'dataset' (the seed is origin.model.seed)",
        ),
        "seed": (False, _is_seed, _SEED),
    },
}


def _short(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_run_record(record: Any, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check a run record (``run.json``) against the run-record schema; returns it unchanged.

    Required: an ``origin`` object with ``dataset`` (``name``, optional ``root``), ``model`` (``name``,
    optional ``options`` without ``seed``, optional ``seed``), ``val_fraction`` in [0, 1) and
    ``val_seed``; seeds are ints in [0, 2**63). Optional fields of the record (``seed``, ``method``,
    ``params``, ``metrics``, ``timings``, ``scenario``, ``train_set``, ``evaluations``, ...) are
    checked for their types when present; unknown fields are allowed.

    Args:
        record: The parsed JSON.
        path: The file it was read from (named in the error).

    Raises:
        InvalidConfigError: the first field that is missing or of the wrong type, with the file and
            the field's dotted name.
    """
    file = repr(str(path))
    if not isinstance(record, dict):
        raise InvalidConfigError(
            f"{file} is not an obliviate run record: expected a JSON object, got {type(record).__name__}; "
            "recreate the run with 'obliviate train' or 'obliviate unlearn'."
        )

    def walk(obj: dict[str, Any], spec: _Spec, prefix: str) -> None:
        for name, (required, check, what) in spec.items():
            field = f"{prefix}{name}"
            if name not in obj:
                if required:
                    raise InvalidConfigError(
                        f"{file} is not a valid obliviate run record: field {field!r} is missing (it must be {what})."
                    )
                continue
            if not check(obj[name]):
                raise InvalidConfigError(
                    f"{file} is not a valid obliviate run record: field {field!r} must be {what}; got {_short(obj[name])}."
                )
            if field in _NESTED:
                walk(obj[name], _NESTED[field], f"{field}.")

    walk(record, _RECORD_FIELDS, "")
    return record


def default_recipe(dataset: DatasetSplits) -> dict[str, Any]:
    """The training recipe ``obliviate train`` uses for ``dataset`` unless told otherwise.

    The embedded digits data (``digits``, ``digits_coarse``) get :data:`DIGITS_RECIPE`; any other
    dataset gets :class:`~obliviate.training.TrainConfig`'s defaults, with augmentation when the
    dataset declares it.
    """
    from .training import TrainConfig

    if dataset.name in ("digits", "digits_coarse"):
        return dict(DIGITS_RECIPE)
    return TrainConfig(augment=dataset.augment).to_dict()


def make_origin(
    dataset: DatasetSplits,
    model: str,
    *,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    val_seed: int = 0,
    recipe: dict[str, Any] | None = None,
    root: str | None = None,
) -> dict[str, Any]:
    """The ``origin`` block of a run record: what rebuilds the model and its scenarios.

    Args:
        dataset: The dataset the model was trained on.
        model: Registered model name.
        options: Architecture options passed to :func:`~obliviate.models.build_model`.
        seed: The model's initialisation seed.
        val_fraction: Share of each class held out as the validation split.
        val_seed: Seed of the validation split.
        recipe: The training recipe (``TrainConfig.to_dict()``).
        root: Directory of the dataset files (torchvision datasets).
    """
    return {
        "dataset": {"name": dataset.name, "root": root},
        "model": {"name": model, "options": dict(options or {}), "seed": seed},
        "val_fraction": val_fraction,
        "val_seed": val_seed,
        "recipe": dict(recipe or {}),
    }


@dataclass
class Run:
    """A run directory read back by :func:`load_run` (or :meth:`RunDir.load`).

    Attributes:
        path: The directory.
        record: Its ``run.json``.
        dataset: The dataset named by the record's origin.
        model: The model, rebuilt and loaded from ``model.safetensors``, in eval mode.
        training_set: The rows the model was trained on (see :func:`run_training_set`).
    """

    path: Path
    record: dict[str, Any]
    dataset: DatasetSplits
    model: nn.Module
    training_set: TrainingSet | None


class RunDir(_Claimed):
    """One run directory: its model, record, origin, scenario, masks and training recording.

    Reading is lazy and cached: ``RunDir(path)`` touches no file; :attr:`record` reads ``run.json``,
    :meth:`dataset` loads the dataset named by the origin, :meth:`load_model` rebuilds the
    architecture and loads the weights. See the module docstring for an example.

    Args:
        path: The directory.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._record: dict[str, Any] | None = None
        self._dataset: DatasetSplits | None = None
        self._claim: DirClaim | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ creating
    @staticmethod
    def check_new(path: str | os.PathLike[str], *, flag: str | None = None) -> Path:
        """Refuse a path that cannot take a new run (nothing is created or claimed).

        A quick check before a long computation; :meth:`create` claims the directory and checks
        again, atomically.

        Args:
            path: The directory to create.
            flag: The command-line flag that named it (``--out``), for the messages.

        Raises:
            InvalidConfigError: ``path`` is a file, holds a run (``run.json`` / ``model.safetensors``),
                holds another run's file (``scenario.json``, masks, a recording), is being written by
                another process, or holds an unfinished (crashed) run.
        """
        p = Path(path)
        where = _where(path, flag)
        if p.exists() and not p.is_dir():
            raise InvalidConfigError(f"{where} is a file, not a directory.")
        occupied, protected = _run_files()
        other = f"another {flag}" if flag else "another directory"
        if any((p / name).exists() for name in occupied):
            raise InvalidConfigError(f"Run directory {str(path)!r} already holds a run; choose {other} or remove it first.")
        if (p / CLAIM_FILE).exists():
            refusal = _existing_claim(p, flag)
            if refusal is not None:
                raise refusal
        for name in protected:
            if (p / name).exists():
                raise InvalidConfigError(
                    f"{where} already holds {name} from an earlier run, which writing here would overwrite; "
                    f"choose {other} or remove the file."
                )
        return p

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, flag: str | None = None) -> RunDir:
        """Create and claim a run directory (parents included) for the run about to be computed.

        The claim (see :class:`DirClaim`) is taken atomically before anything is computed and held
        until :meth:`save` has written the files; another process claiming the same directory
        meanwhile is refused. Use the result as a context manager so that a failed computation
        gives the claim up (and removes the directory it created)::

            with RunDir.create("runs/new", flag="--out") as out:
                result = ...                      # the long computation
                out.save(result.model, record)    # writes the files, then releases the claim

        Raises:
            InvalidConfigError: the directory is a file, holds a run or another run's files, is
                being written by another process, holds an unfinished (crashed) run, or cannot be
                created.
        """
        occupied, protected = _run_files()
        run = cls(path)
        run._claim = DirClaim.acquire(path, flag=flag, occupied=occupied, protected=protected)
        return run

    def release(self) -> None:
        """Give up the claim taken by :meth:`create` without saving (the directory stays)."""
        if self._claim is not None:
            self._claim.release()
            self._claim = None

    def abandon(self) -> None:
        """Give up the claim and remove the directory if :meth:`create` made it (and it is empty)."""
        if self._claim is not None:
            self._claim.abandon()
            self._claim = None

    def save(
        self,
        model: nn.Module,
        record: dict[str, Any],
        *,
        scenario: Scenario | None = None,
        masks: dict[str, torch.Tensor] | None = None,
        recording: Recording | None = None,
        metadata: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> RunDir:
        """Write the model, and beside it the masks, the recording, the scenario and ``run.json`` (last).

        The files are written into a hidden staging directory first and then moved in with
        ``os.replace``, ``run.json`` last, so the directory never shows a half-written file and is a
        run only once everything is in place. The claim of :meth:`create` is released afterwards; a
        ``RunDir`` that holds no claim claims its directory first (refusing one that holds a run).

        Args:
            model: The model whose state dict becomes ``model.safetensors``.
            record: The run record (with its ``origin`` block) written as ``run.json``.
            scenario: For an unlearning run, its scenario (``scenario.json``).
            masks: A pruned model's masks (``masks.safetensors``).
            recording: A training recording (``recording.safetensors`` + ``recording.json``).
            metadata: String metadata stored in the safetensors header.
            extra: More JSON files to write beside the run, ``{file name: object}`` (e.g. ``tune.json``),
                moved in with the others.

        Raises:
            InvalidConfigError: ``record`` is not a valid run record, an ``extra`` name is not a plain
                file name or is one of the run's own files, or the directory cannot be claimed.
        """
        from .pruning import MASKS_FILE

        check_run_record(record, self.path / RUN_FILE)
        own = set(_run_files()[0] + _run_files()[1])
        for name in extra or {}:
            if Path(name).name != name or name.startswith(".") or name in own:
                raise InvalidConfigError(
                    f"RunDir.save: extra file name {name!r} must be a plain file name other than {sorted(own)}."
                )
        if self._claim is None:
            occupied, protected = _run_files()
            self._claim = DirClaim.acquire(self.path, occupied=occupied, protected=protected)
        claim = self._claim
        try:
            stage = claim.staging()
            save_model(model, stage / MODEL_FILE, metadata)
            if masks is not None:
                save_masks(masks, stage / MASKS_FILE)
            if recording is not None:
                recording.save(stage)
            if scenario is not None:
                scenario.save(stage / SCENARIO_FILE)
            for name, obj in (extra or {}).items():
                write_json(stage / name, obj)
            write_json(stage / RUN_FILE, record)
            claim.publish(stage, last=(RUN_FILE,))
        except BaseException:
            self.abandon()
            raise
        self.release()
        self._record = None
        return self

    def write_record(self, record: dict[str, Any]) -> None:
        """(Re)write ``run.json`` atomically (NaN/inf become null), after checking it against the schema."""
        check_run_record(record, self.path / RUN_FILE)
        _replace_json(self.path / RUN_FILE, record)
        self._record = None

    def add_evaluation(self, evaluation: dict[str, Any]) -> int:
        """Append one evaluation to the record's ``evaluations`` list; the run's own metrics stay as written.

        The list only grows: earlier entries are never changed. ``run.json`` is re-read, extended and
        replaced atomically under an exclusive lock on the directory, so concurrent evaluations are
        all kept.

        Args:
            evaluation: What :func:`obliviate.cli.evaluate` records: the reference (path and model
                digest), the scenario hash, the metrics, the timings.

        Returns:
            The entry's position in the list.

        Raises:
            InvalidConfigError: the record cannot be read back or written (a read-only directory).
        """
        try:
            with _dir_lock(self.path):
                self._record = None
                record = dict(self.record)
                entries = [*record.get("evaluations", []), evaluation]
                record["evaluations"] = entries
                self.write_record(record)
        except OSError as e:  # a read-only run directory, a full disk
            raise InvalidConfigError(
                f"Cannot record the evaluation in {str(self.path / RUN_FILE)!r} ({e.strerror or e}); "
                "the run directory must be writable."
            ) from None
        return len(entries) - 1

    # ------------------------------------------------------------------ reading
    @property
    def is_run(self) -> bool:
        """Whether the directory holds a ``run.json``."""
        return (self.path / RUN_FILE).is_file()

    @property
    def record(self) -> dict[str, Any]:
        """``run.json``, checked against the run-record schema (see :func:`check_run_record`).

        Raises:
            InvalidConfigError: not a run directory (or one still being written, or left unfinished),
                or its record does not fit the schema (the file and the field are named).
        """
        if self._record is None:
            if not self.is_run:
                if (self.path / CLAIM_FILE).exists():
                    refusal = _existing_claim(self.path, None)
                    if refusal is not None:
                        raise InvalidConfigError(f"{str(self.path)!r} is not a run directory yet: {refusal}")
                raise InvalidConfigError(
                    f"{str(self.path)!r} is not a run directory (no {RUN_FILE}); create one with 'obliviate train'."
                )
            self._record = check_run_record(read_json(self.path / RUN_FILE), self.path / RUN_FILE)
        return self._record

    @property
    def origin(self) -> dict[str, Any]:
        """The record's ``origin`` block (see :func:`make_origin`)."""
        return self.record["origin"]

    @property
    def recipe(self) -> dict[str, Any]:
        """The original model's training recipe (empty when the record has none)."""
        return dict(self.origin.get("recipe") or {})

    def dataset(self) -> DatasetSplits:
        """The dataset named by the origin (loaded once)."""
        if self._dataset is None:
            spec = self.origin["dataset"]
            self._dataset = load_dataset(spec["name"], root=spec.get("root"))
        return self._dataset

    def load_model(self) -> nn.Module:
        """A fresh model: the recorded architecture, the weights of ``model.safetensors``, eval mode.

        Raises:
            IncompatibleModelError: the checkpoint does not fit the recorded architecture.
        """
        from .models import build_model

        spec = self.origin["model"]
        model = build_model(spec["name"], self.dataset(), seed=int(spec.get("seed", 0)), **spec.get("options", {}))
        load_weights(model, self.path / MODEL_FILE)
        model.eval()
        return model

    @property
    def training_set(self) -> TrainingSet:
        """The rows the model was trained on (see :func:`run_training_set`)."""
        return run_training_set(self.path, self.record, self.dataset())

    @property
    def has_scenario(self) -> bool:
        """Whether the run holds ``scenario.json`` (an unlearning run)."""
        return (self.path / SCENARIO_FILE).is_file()

    def scenario(self) -> Scenario:
        """The scenario the run was unlearned on (``scenario.json``).

        Raises:
            MissingDataError: the run has no ``scenario.json`` (a trained model): use :meth:`make_scenario`.
        """
        if not self.has_scenario:
            raise MissingDataError(f"{str(self.path)!r} has no {SCENARIO_FILE}; build one with RunDir.make_scenario(spec).")
        return Scenario.load(self.path / SCENARIO_FILE, self.dataset())

    def scenario_hash(self) -> str | None:
        """The hash stored in ``scenario.json`` (None without one), read without loading the dataset."""
        if not self.has_scenario:
            return None
        data = read_json(self.path / SCENARIO_FILE)
        digest = data.get("hash") if isinstance(data, dict) else None
        if not isinstance(digest, str):
            raise InvalidConfigError(f"{str(self.path / SCENARIO_FILE)!r} is not an obliviate scenario file (no 'hash').")
        return digest

    def make_scenario(self, spec: str, *, seed: int | None = None) -> Scenario:
        """A scenario over the run's own validation split (so it splits the model's training set).

        Args:
            spec: Short name, e.g. ``class:3``, ``random:0.1`` (see :func:`~obliviate.data.parse_scenario`).
            seed: Seed of the forget draw (default: the record's seed).
        """
        origin = self.origin
        return parse_scenario(
            spec,
            self.dataset(),
            seed=int(self.record.get("seed", 0)) if seed is None else seed,
            val_fraction=origin["val_fraction"],
            val_seed=origin["val_seed"],
        )

    def masks(self, model: nn.Module | None = None) -> dict[str, torch.Tensor] | None:
        """The masks beside the checkpoint (``masks.safetensors``, see :mod:`obliviate.pruning`), or None.

        Args:
            model: When given, the masks' names and shapes are checked against it.

        Raises:
            IncompatibleModelError: the masks do not fit ``model``.
        """
        from .pruning import MASKS_FILE
        from .training import resolve_masks

        path = self.path / MASKS_FILE
        if not path.is_file():
            return None
        masks = load_masks(path)
        if model is not None:
            resolve_masks(model, masks)
        return masks

    @property
    def has_recording(self) -> bool:
        """Whether the run holds a training recording (``obliviate train --record``)."""
        from .recording import RECORDING_META

        return (self.path / RECORDING_META).is_file()

    def recording(self) -> Recording:
        """The training recording (for sgu, amnesiac and the verification error).

        Raises:
            MissingDataError: the run has none.
        """
        from .recording import Recording

        if not self.has_recording:
            raise MissingDataError(f"{str(self.path)!r} has no training recording; train with record=True.")
        return Recording.load(self.path)

    def load(self) -> Run:
        """Rebuild the model and what it was trained on (a :class:`Run`).

        Raises:
            InvalidConfigError: not a run directory, or its record does not fit the run-record schema.
            IncompatibleModelError: the checkpoint does not fit the recorded architecture.
        """
        record = self.record
        model = self.load_model()
        return Run(path=self.path, record=record, dataset=self.dataset(), model=model, training_set=self.training_set)


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Rebuild the model of a run directory and what it was trained on (``RunDir(run_dir).load()``).

    Raises:
        InvalidConfigError: not a run directory, or its record does not fit the run-record schema.
        IncompatibleModelError: the checkpoint does not fit the recorded architecture.
    """
    return RunDir(run_dir).load()


def run_training_set(path: Path, record: dict[str, Any], dataset: DatasetSplits) -> TrainingSet:
    """The rows a run's model was trained on.

    The record's ``train_set`` when present; for older records, derived: a ``train`` run saw the
    train split minus its validation split (``origin.val_fraction``/``val_seed``), an ``unlearn``
    run is trained, in effect, on the retain set of the ``scenario.json`` beside it.
    """
    if isinstance(record.get("train_set"), dict):
        return TrainingSet.from_json(record["train_set"])
    if record.get("kind") == "unlearn" and (path / SCENARIO_FILE).is_file():
        return Scenario.load(path / SCENARIO_FILE, dataset).retain_set
    origin = record["origin"]
    val = validation_split(dataset, fraction=float(origin["val_fraction"]), seed=int(origin["val_seed"]))
    return TrainingSet.of(dataset.name, np.setdiff1d(np.arange(len(dataset.train)), val))  # type: ignore[arg-type]


def _bad_model(owner: str, model: Any, detail: str = "") -> InvalidConfigError:
    return InvalidConfigError(
        f"The 'model' argument of {owner} must be a torch.nn.Module, a TrainResult, an UnlearningResult or a run "
        f"directory; got {type(model).__name__}{detail}."
    )


def resolve_model(model: Any, owner: str) -> tuple[nn.Module, TrainingSet | None]:
    """``(module, its training set or None)`` of a model given as a module, a ``TrainResult``, an
    ``UnlearningResult``, a run directory (path or :class:`RunDir`) or a loaded :class:`Run`.

    A result is recognised by what it holds (a ``model`` module and a ``training_set``), so this
    module needs neither :mod:`obliviate.training` nor :mod:`obliviate.methods` (which import it).

    Raises:
        InvalidConfigError: ``model`` is none of these.
    """
    if isinstance(model, RunDir):
        run = model.load()
        return run.model, run.training_set
    if isinstance(model, (str, os.PathLike)):
        if not (Path(model) / RUN_FILE).is_file():
            raise _bad_model(owner, model, f" {str(model)!r}, which is not a run directory (no {RUN_FILE})")
        run = load_run(model)
        return run.model, run.training_set
    if isinstance(model, nn.Module):
        return model, None
    inner, known = getattr(model, "model", None), getattr(model, "training_set", False)
    if isinstance(inner, nn.Module) and (known is None or isinstance(known, TrainingSet)):
        return inner, known
    raise _bad_model(owner, model)


def _check_takes_inputs(model: nn.Module, scenario: Scenario, owner: str) -> None:
    """Refuse a model that cannot run on the scenario's inputs (a scenario built on another dataset).

    One forward pass on one training sample, in eval mode and without gradients; called for models
    whose training set is unknown (a bare ``nn.Module``), where nothing else says which dataset they
    were built for.

    Raises:
        InvalidConfigError: the forward pass fails.
    """
    import torch

    from ._utils import eval_mode, model_device
    from .data.base import iterate_batches

    data = scenario.dataset.train
    if len(data) == 0:  # type: ignore[arg-type]
        return
    x, _ = next(iter(iterate_batches(torch.utils.data.Subset(data, [0]), 1, device=model_device(model))))
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        reason = (str(e).strip().splitlines() or [""])[0]
        raise InvalidConfigError(
            f"{owner}: the model cannot take the inputs of scenario {scenario.name!r}, which is built on dataset "
            f"{scenario.dataset.name!r} (one sample has shape {tuple(x.shape[1:])}; {type(e).__name__}: {reason}). "
            "Build the scenario on the dataset the model was built for."
        ) from None


def check_training_set(model: Any, scenario: Scenario, owner: str, *, unlearned_ok: bool = False) -> nn.Module:
    """Resolve ``model`` (see :func:`resolve_model`) and check ``scenario`` splits its training set.

    Args:
        model: A module, ``TrainResult``, ``UnlearningResult`` or run directory.
        scenario: The scenario it is used with.
        owner: Caller name for messages.
        unlearned_ok: Also accept a model whose training set is the scenario's retain set (a
            model already unlearned on it, as ``evaluate`` sees it).

    Returns:
        The module.

    Raises:
        TrainingSetMismatchError: the model's training set is known and differs.
    """
    net, known = resolve_model(model, owner)
    if known is None:
        _check_takes_inputs(net, scenario, owner)
        what = "a bare nn.Module" if isinstance(model, nn.Module) else "a model trained on data of unknown origin"
        warnings.warn(
            f"{owner} got {what}, so whether scenario {scenario.name!r} splits its training set could not be "
            "checked; pass the TrainResult of "
            "ob.train(model, scenario.train), the UnlearningResult or the run directory instead.",
            UncheckedTrainingSetWarning,
            stacklevel=3,
        )
        return net
    expected = scenario.training_set
    if known == expected or (unlearned_ok and known == scenario.retain_set):
        return net
    raise TrainingSetMismatchError(
        f"{owner}: scenario {scenario.name!r} does not split the data the model was trained on: "
        f"{known.explain(expected, scenario)}. Build the scenario with the val_fraction/val_seed the model was trained "
        "with (Scenario.*(..., val_seed=...)), or, for a model already unlearned, with scenario.then(...)."
    )
