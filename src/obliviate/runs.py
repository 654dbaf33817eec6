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
it. Example::

    import obliviate as ob
    from obliviate.runs import RunDir, default_recipe, make_origin

    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    recipe = default_recipe(ds)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, **recipe)
    run = RunDir.create("runs/cnn")                       # refuses a directory that holds a run
    run.save(base.model, {"kind": "train", "train_set": base.training_set.to_json(),
                          "origin": make_origin(ds, "cnn", seed=0, recipe=base.config.to_dict())})

    run = RunDir("runs/cnn")
    model = run.load_model()                              # rebuilt from the origin, weights loaded
    sc = run.make_scenario("class:3", seed=0)             # over the run's own validation split
    oracle = ob.unlearn(run, sc, method="retrain", **run.method_params("retrain", {}))

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

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from .data import DatasetSplits, Scenario, TrainingSet, load_dataset, parse_scenario, validation_split
from .errors import InvalidConfigError, MissingDataError, TrainingSetMismatchError, UncheckedTrainingSetWarning
from .io import MODEL_FILE, RUN_FILE, SCENARIO_FILE, load_masks, load_weights, read_json, save_masks, save_model, write_json

if TYPE_CHECKING:
    import torch

    from .recording import Recording

__all__ = [
    "RunDir",
    "Run",
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

_ORIGIN_KEYS = {"dataset", "model", "val_fraction", "val_seed"}


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


class RunDir:
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

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ creating
    @staticmethod
    def check_new(path: str | os.PathLike[str], *, flag: str | None = None) -> Path:
        """Refuse a path that is a file or already holds a run (nothing is created).

        Args:
            path: The directory to create.
            flag: The command-line flag that named it (``--out``), for the messages.

        Raises:
            InvalidConfigError: ``path`` is a file or holds ``run.json`` / ``model.safetensors``.
        """
        p = Path(path)
        where = f"{flag} {str(path)!r}" if flag else repr(str(path))
        if p.exists() and not p.is_dir():
            raise InvalidConfigError(f"{where} is a file, not a directory.")
        if (p / RUN_FILE).exists() or (p / MODEL_FILE).exists():
            other = f"another {flag}" if flag else "another directory"
            raise InvalidConfigError(f"Run directory {str(path)!r} already holds a run; choose {other} or remove it first.")
        return p

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, flag: str | None = None) -> RunDir:
        """Create an empty run directory (parents included), refusing one that holds a run.

        Raises:
            InvalidConfigError: see :meth:`check_new`, or the directory cannot be created.
        """
        p = cls.check_new(path, flag=flag)
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InvalidConfigError(f"Cannot create run directory {str(path)!r}: {e}") from None
        return cls(p)

    def save(
        self,
        model: nn.Module,
        record: dict[str, Any],
        *,
        scenario: Scenario | None = None,
        masks: dict[str, torch.Tensor] | None = None,
        recording: Recording | None = None,
        metadata: dict[str, str] | None = None,
    ) -> RunDir:
        """Write the model, and beside it the masks, the recording, the scenario and ``run.json`` (last).

        Args:
            model: The model whose state dict becomes ``model.safetensors``.
            record: The run record (with its ``origin`` block) written as ``run.json``.
            scenario: For an unlearning run, its scenario (``scenario.json``).
            masks: A pruned model's masks (``masks.safetensors``).
            recording: A training recording (``recording.safetensors`` + ``recording.json``).
            metadata: String metadata stored in the safetensors header.
        """
        from .pruning import MASKS_FILE

        self.path.mkdir(parents=True, exist_ok=True)
        save_model(model, self.path / MODEL_FILE, metadata)
        if masks is not None:
            save_masks(masks, self.path / MASKS_FILE)
        if recording is not None:
            recording.save(self.path)
        if scenario is not None:
            scenario.save(self.path / SCENARIO_FILE)
        self.write_record(record)
        return self

    def write_record(self, record: dict[str, Any]) -> None:
        """(Re)write ``run.json`` (NaN/inf become null)."""
        write_json(self.path / RUN_FILE, record)
        self._record = read_json(self.path / RUN_FILE)

    # ------------------------------------------------------------------ reading
    @property
    def is_run(self) -> bool:
        """Whether the directory holds a ``run.json``."""
        return (self.path / RUN_FILE).is_file()

    @property
    def record(self) -> dict[str, Any]:
        """``run.json``, checked to be an obliviate run record with an ``origin`` block.

        Raises:
            InvalidConfigError: not a run directory, or its record has no ``origin`` block.
        """
        if self._record is None:
            if not self.is_run:
                raise InvalidConfigError(
                    f"{str(self.path)!r} is not a run directory (no {RUN_FILE}); create one with 'obliviate train'."
                )
            record = read_json(self.path / RUN_FILE)
            origin = record.get("origin") if isinstance(record, dict) else None
            if not isinstance(origin, dict) or not _ORIGIN_KEYS <= set(origin):
                raise InvalidConfigError(f"{str(self.path / RUN_FILE)!r} is not an obliviate run record (no 'origin' block).")
            self._record = record
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
        return read_json(self.path / SCENARIO_FILE).get("hash") if self.has_scenario else None

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

    def method_params(self, method: str, params: dict[str, Any], *, preset: str | None = None) -> dict[str, Any]:
        """Hyperparameters for running ``method`` on this run's model.

        The retrain oracle inherits the original recipe (``origin.recipe``) unless a preset is named:
        explicit ``params`` override it. Every other method gets ``params`` unchanged.
        """
        if method == "retrain" and preset is None:
            return {**self.recipe, **params}
        return dict(params)

    def load(self) -> Run:
        """Rebuild the model and what it was trained on (a :class:`Run`).

        Raises:
            InvalidConfigError: not a run directory, or its record has no ``origin`` block.
            IncompatibleModelError: the checkpoint does not fit the recorded architecture.
        """
        record = self.record
        model = self.load_model()
        return Run(path=self.path, record=record, dataset=self.dataset(), model=model, training_set=self.training_set)


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Rebuild the model of a run directory and what it was trained on (``RunDir(run_dir).load()``).

    Raises:
        InvalidConfigError: not a run directory, or its record has no ``origin`` block.
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
