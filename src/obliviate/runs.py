"""Run directories, and the check that a scenario splits the data a model was trained on.

A run directory (``obliviate train`` / ``obliviate unlearn --out DIR``) holds ``model.safetensors``
and ``run.json``, a run record whose ``origin`` block rebuilds the model (dataset, architecture,
validation split, recipe) and whose ``train_set`` names the rows the model was trained on (for an
unlearned model: its scenario's retain set). :func:`load_run` reads one back.

``ob.unlearn`` and ``ob.evaluate`` accept a model in four forms, and :func:`resolve_model` turns
each into the module plus, where it is known, its :class:`~obliviate.data.TrainingSet`:

- a :class:`~obliviate.training.TrainResult` (``ob.train(model, scenario.train)``),
- an :class:`~obliviate.methods.UnlearningResult` (trained, in effect, on its scenario's retain set),
- a run directory (a path),
- a bare ``nn.Module``: accepted with an :class:`~obliviate.errors.UncheckedTrainingSetWarning`.

A scenario fits a model for *unlearning* when its training set (forget ∪ retain) is exactly the
model's; for *evaluation* also when its retain set is (the model was unlearned on it). Anything
else is a :class:`~obliviate.errors.TrainingSetMismatchError`: the scenario's "retain" rows would
hold samples the model never saw, or its held-out rows samples it trained on.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .data import DatasetSplits, Scenario, TrainingSet, load_dataset, validation_split
from .errors import InvalidConfigError, TrainingSetMismatchError, UncheckedTrainingSetWarning
from .io import MODEL_FILE, RUN_FILE, SCENARIO_FILE, load_weights, read_json

__all__ = ["Run", "load_run", "resolve_model", "check_training_set", "run_training_set"]


@dataclass
class Run:
    """A run directory read back by :func:`load_run`.

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


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Rebuild the model of a run directory and what it was trained on.

    Raises:
        InvalidConfigError: not a run directory, or its record has no ``origin`` block.
        IncompatibleModelError: the checkpoint does not fit the recorded architecture.
    """
    from .models import build_model

    path = Path(run_dir)
    if not (path / RUN_FILE).is_file():
        raise InvalidConfigError(f"{str(run_dir)!r} is not a run directory (no {RUN_FILE}); create one with 'obliviate train'.")
    record = read_json(path / RUN_FILE)
    origin = record.get("origin") if isinstance(record, dict) else None
    if not isinstance(origin, dict) or not {"dataset", "model", "val_fraction", "val_seed"} <= set(origin):
        raise InvalidConfigError(f"{str(path / RUN_FILE)!r} is not an obliviate run record (no 'origin' block).")
    ds = load_dataset(origin["dataset"]["name"], root=origin["dataset"].get("root"))
    spec = origin["model"]
    model = build_model(spec["name"], ds, seed=int(spec.get("seed", 0)), **spec.get("options", {}))
    load_weights(model, path / MODEL_FILE)
    model.eval()
    return Run(path=path, record=record, dataset=ds, model=model, training_set=run_training_set(path, record, ds))


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


def resolve_model(model: Any, owner: str) -> tuple[nn.Module, TrainingSet | None]:
    """``(module, its training set or None)`` of a model given as a module, a ``TrainResult``, an
    ``UnlearningResult``, a run directory or a loaded :class:`Run`.

    Raises:
        InvalidConfigError: ``model`` is none of these.
    """
    from .methods.base import UnlearningResult
    from .training import TrainResult

    if isinstance(model, (TrainResult, UnlearningResult, Run)):
        return model.model, model.training_set
    if isinstance(model, (str, os.PathLike)):
        if not (Path(model) / RUN_FILE).is_file():
            raise InvalidConfigError(
                f"The 'model' argument of {owner} must be a torch.nn.Module, a TrainResult, an UnlearningResult or a run "
                f"directory; got {type(model).__name__} {str(model)!r}, which is not a run directory (no {RUN_FILE})."
            )
        run = load_run(model)
        return run.model, run.training_set
    if isinstance(model, nn.Module):
        return model, None
    raise InvalidConfigError(
        f"The 'model' argument of {owner} must be a torch.nn.Module, a TrainResult, an UnlearningResult or a run "
        f"directory; got {type(model).__name__}."
    )


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
