"""Bad input of every kind gives a clear obliviate error, through the API and through the CLI.

Each case names the API call that must raise (the error class from :mod:`obliviate.errors` and
words the message must contain: the parameter, the value, the fix or a suggestion) and, where
the command line can express it, the ``obliviate`` command that must exit 2 printing exactly
one line, ``obliviate: error: ...``, while writing no run and changing no existing file.
"""

from __future__ import annotations

import builtins
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import obliviate as ob
from obliviate.cli import main
from obliviate.data import parse_scenario, validation_split
from obliviate.errors import (
    DatasetNotFoundError,
    IncompatibleModelError,
    InvalidConfigError,
    MissingDataError,
    UnknownNameError,
    UnlearningError,
)
from obliviate.io import load_weights, save_model
from obliviate.testing import run_cli

RUN_FILES = ("model.safetensors", "run.json", "scenario.json")


# --------------------------------------------------------------------------- helpers


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


class _OpenOnUnpickle:
    """Unpickling this object creates a marker file: proof that a checkpoint was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return builtins.open, (str(self.marker), "w")


@dataclass
class Ctx:
    """What a case needs: data, an untrained model, a scenario, the trained run, a scratch dir."""

    ds: ob.DatasetSplits
    sc: ob.Scenario
    run_dir: Path
    tmp: Path
    file: Path  # an existing plain file
    recorded: Path  # a trained mlp run holding its recording (sgu)

    @property
    def out(self) -> Path:
        """The --out of every failing command: it must not receive a run."""
        return self.tmp / "out"

    @property
    def marker(self) -> Path:
        return self.tmp / "UNPICKLED"

    def model(self, **options: Any) -> torch.nn.Module:
        return ob.build_model("cnn", self.ds, seed=0, **options)

    def train_args(self, *extra: object) -> list[object]:
        return ["train", "--dataset", "digits", "--epochs", "1", *extra, "--out", self.out]

    def unlearn_args(
        self, *extra: object, scenario: str = "class:3", method: str = "ssd", run_dir: Path | None = None
    ) -> list[object]:
        return ["unlearn", run_dir or self.run_dir, "--scenario", scenario, "--method", method, *extra, "--out", self.out]

    # Broken checkpoints, as files and as copies of the trained run directory holding them.
    def pickle_file(self) -> Path:
        path = self.tmp / "pickled.safetensors"
        state = dict(self.model().state_dict())
        state["payload"] = _OpenOnUnpickle(self.marker)
        torch.save(state, path)  # a pickle, whatever its name says
        return path

    def narrow_file(self) -> Path:
        path = self.tmp / "width8.safetensors"
        save_model(self.model(width=8), path)  # a cnn of width 8; the run's model has width 16
        return path

    def missing_key_file(self) -> Path:
        path = self.tmp / "missing_key.safetensors"
        state = {k: v.contiguous() for k, v in self.model().state_dict().items() if k != "head.bias"}
        save_file(state, str(path))
        return path

    def nan_file(self) -> Path:
        path = self.tmp / "nan.safetensors"
        state = {k: v.clone().contiguous() for k, v in self.model().state_dict().items()}
        state["head.weight"][0, 0] = float("nan")
        save_file(state, str(path))
        return path

    def int32_file(self) -> Path:
        path = self.tmp / "int32.safetensors"
        state = {k: (v * 100).to(torch.int32).contiguous() for k, v in self.model().state_dict().items()}
        save_file(state, str(path))
        return path

    def run_with_record(self, field: str, value: Any) -> Path:
        """A copy of the trained run whose run.json has ``field`` (dotted) set to ``value``."""
        copy = self.tmp / "edited_run"
        shutil.copytree(self.run_dir, copy)
        record = json.loads((copy / "run.json").read_text())
        *parents, last = field.split(".")
        node = record
        for key in parents:
            node = node[key]
        node[last] = value
        (copy / "run.json").write_text(json.dumps(record))
        return copy

    def out_holding(self, name: str, text: str) -> Path:
        """The --out directory, created and holding a file ``name`` of another run."""
        self.out.mkdir()
        (self.out / name).write_text(text)
        return self.out

    def recording_edited(self, edit: Callable[[dict[str, Any]], None]) -> Path:
        """A copy of the recorded run whose recording.json is edited in place by ``edit``."""
        copy = Path(shutil.copytree(self.recorded, self.tmp / "edited_recording"))
        meta = json.loads((copy / "recording.json").read_text())
        edit(meta)
        (copy / "recording.json").write_text(json.dumps(meta))
        return copy

    def run_with(self, checkpoint: Callable[[], Path] | None) -> Path:
        """A copy of the trained run whose model.safetensors is replaced (None: removed)."""
        copy = self.tmp / "broken_run"
        shutil.copytree(self.run_dir, copy)
        if checkpoint is None:
            (copy / "model.safetensors").unlink()
        else:
            shutil.copyfile(checkpoint(), copy / "model.safetensors")
        return copy


@dataclass
class Case:
    """One kind of bad input.

    Attributes:
        id: Test id.
        error: The obliviate error class the API raises.
        api: The API call (None: the CLI alone can express it).
        words: Substrings of the API error message.
        cli: The command's arguments (None: the CLI cannot express it).
        cli_words: Substrings of the CLI's one line (default: ``words``).
        usage: The CLI rejects it while parsing arguments (argparse).
        exit_code: The CLI's exit status: 2 for bad input, 1 for a run that fails at run time.
    """

    id: str
    error: type[UnlearningError]
    api: Callable[[Ctx], Any] | None
    words: tuple[str, ...]
    cli: Callable[[Ctx], list[object]] | None = None
    cli_words: tuple[str, ...] | None = None
    usage: bool = False
    exit_code: int = 2


def empty_retain(ctx: Ctx) -> ob.Scenario:
    sc = ctx.sc
    return ob.Scenario(
        dataset=ctx.ds,
        forget_idx=sc.forget_idx,
        retain_idx=[],
        val_idx=sc.val_idx,
        test_idx=sc.test_idx,
        kind="custom",
        name="no-retain",
    )


def free_index(ctx: Ctx) -> int:
    """A train index outside the validation split (a valid forget index)."""
    val = validation_split(ctx.ds, fraction=0.1, seed=0)
    return int(np.setdiff1d(np.arange(len(ctx.ds.train)), val)[0])


CASES: list[Case] = [
    # ---- unknown names: the message suggests the closest valid name
    Case(
        "unknown-dataset",
        UnknownNameError,
        lambda c: ob.load_dataset("digts"),
        ("'digts'", "Did you mean 'digits'"),
        lambda c: ["train", "--dataset", "digts", "--out", c.out],
    ),
    Case(
        "unknown-model",
        UnknownNameError,
        lambda c: ob.build_model("cnnn", c.ds),
        ("'cnnn'", "Did you mean 'cnn'"),
        lambda c: c.train_args("--model", "cnnn"),
    ),
    Case(
        "unknown-method",
        UnknownNameError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssdd"),
        ("'ssdd'", "Did you mean 'ssd'"),
        lambda c: c.unlearn_args(method="ssdd"),
    ),
    Case(
        "unknown-hyperparameter",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", alhpa=1),
        ("'alhpa'", "Did you mean 'alpha'"),
        lambda c: c.unlearn_args("--set", "alhpa=1"),
    ),
    Case(
        "unknown-model-option",
        InvalidConfigError,
        lambda c: ob.build_model("cnn", c.ds, widht=3),
        ("'widht'", "Did you mean 'width'"),
        lambda c: c.train_args("--model-option", "widht=3"),
    ),
    Case(
        "unknown-preset",
        UnknownNameError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", preset="digitz"),
        ("'digitz'", "Did you mean 'digits'"),
        lambda c: c.unlearn_args("--preset", "digitz"),
    ),
    Case(
        "unknown-scenario-kind",
        InvalidConfigError,
        lambda c: parse_scenario("klass:3", c.ds),
        ("'klass:3'", "Did you mean 'class'"),
        lambda c: c.unlearn_args(scenario="klass:3"),
    ),
    # ---- wrong types and ranges of method hyperparameters and run arguments
    Case(
        "alpha-negative",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", alpha=-1),
        ("'alpha'", "(0, inf)", "got -1"),
        lambda c: c.unlearn_args("--set", "alpha=-1"),
    ),
    Case(
        "alpha-string",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", alpha="x"),
        ("'alpha'", "a float", "got 'x'"),
        lambda c: c.unlearn_args("--set", "alpha=x"),
    ),
    Case(
        "alpha-bool",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", alpha=True),
        ("'alpha'", "a float", "got True"),
        lambda c: c.unlearn_args("--set", "alpha=true"),
    ),
    Case(
        "epochs-zero",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", epochs=0),
        ("'epochs'", "[1, inf)", "got 0"),
        lambda c: c.unlearn_args("--set", "epochs=0", method="finetune"),
    ),
    Case(
        "epochs-fractional",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", epochs=1.5),
        ("'epochs'", "an int", "got 1.5"),
        lambda c: c.unlearn_args("--set", "epochs=1.5", method="finetune"),
    ),
    Case(
        "lr-zero",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", lr=0),
        ("'lr'", "(0, inf)", "got 0"),
        lambda c: c.unlearn_args("--set", "lr=0", method="finetune"),
    ),
    # "(0, inf)" excludes inf: an infinite step is bad input (exit 2), not a divergence found by training (exit 1).
    Case(
        "lr-infinite",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", lr=float("inf"), epochs=1),
        ("'lr'", "(0, inf)", "inf"),
        lambda c: c.unlearn_args("--set", "lr=Infinity", "--set", "epochs=1", method="finetune"),
    ),
    Case(
        "seed-negative",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", seed=-1),
        ("'seed'", "[0, 2**63)", "got -1"),
        lambda c: c.unlearn_args("--seed", "-1"),
    ),
    Case(
        "batch-size-zero",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", batch_size=0),
        ("'batch_size'", "[1, inf)", "got 0"),
        lambda c: c.unlearn_args("--set", "batch_size=0"),
    ),
    Case(
        "options-wrong-string",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", schedule="cosin"),
        ("'schedule'", "got 'cosin'", "Did you mean 'cosine'"),
        lambda c: c.unlearn_args("--set", "schedule=cosin", method="finetune"),
    ),
    Case(
        "set-without-value",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "alpha"),
        cli_words=("--set expects key=value", "'alpha'"),
    ),
    # ---- the training recipe
    Case(
        "train-unknown-field",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epoch=3),
        ("'epoch'", "Did you mean 'epochs'"),
        lambda c: c.train_args("--set", "epoch=3"),
    ),
    Case(
        "train-epochs-zero",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=0),
        ("'epochs'", "got 0"),
        lambda c: ["train", "--dataset", "digits", "--epochs", "0", "--out", c.out],
    ),
    Case(
        "train-epochs-fractional",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1.5),
        ("'epochs'", "got 1.5"),
        lambda c: ["train", "--dataset", "digits", "--epochs", "1.5", "--out", c.out],
        cli_words=("--epochs", "'1.5'"),
        usage=True,
    ),
    Case(
        "train-lr-zero",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1, lr=0),
        ("'lr'", "got 0"),
        lambda c: c.train_args("--lr", "0"),
    ),
    Case(
        "seed-too-large",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "ssd", seed=2**70),
        ("'seed'", "[0, 2**63)", f"got {2**70}"),
        lambda c: c.unlearn_args("--seed", "99999999999999999999"),
        cli_words=("'seed'", "[0, 2**63)", "got 99999999999999999999"),
    ),
    Case(
        "train-seed-too-large",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1, seed=2**63),
        ("'seed'", "[0, 2**63)", f"got {2**63}"),
        lambda c: c.train_args("--seed", "99999999999999999999"),
        cli_words=("'seed'", "[0, 2**63)", "got 99999999999999999999"),
    ),
    Case(
        "train-seed-negative",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1, seed=-1),
        ("'seed'", "got -1"),
        lambda c: c.train_args("--seed", "-1"),
    ),
    Case(
        "train-batch-size-zero",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1, batch_size=0),
        ("'batch_size'", "got 0"),
        lambda c: c.train_args("--batch-size", "0"),
    ),
    Case(
        "train-options-wrong-string",
        InvalidConfigError,
        lambda c: ob.train(c.model(), c.sc.train, epochs=1, optimizer="sgdd"),
        ("'optimizer'", "got 'sgdd'", "Did you mean 'sgd'"),
        lambda c: c.train_args("--set", "optimizer=sgdd"),
    ),
    # ---- arguments of the wrong kind
    Case(
        "unlearn-model-not-a-module",
        InvalidConfigError,
        lambda c: ob.unlearn("model.pt", c.sc, "ssd"),
        ("'model'", "nn.Module", "str"),
    ),
    Case(
        "train-model-not-a-module",
        InvalidConfigError,
        lambda c: ob.train("model.pt", c.sc.train, epochs=1),
        ("'model'", "nn.Module", "str"),
    ),
    Case("evaluate-model-not-a-module", InvalidConfigError, lambda c: ob.evaluate({"w": 1}, c.sc), ("'model'", "dict")),
    Case("train-data-not-a-dataset", InvalidConfigError, lambda c: ob.train(c.model(), "digits", epochs=1), ("'data'", "str")),
    Case(
        "unlearn-scenario-not-a-scenario",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc.forget, "ssd"),
        ("'scenario'", "Scenario", "Subset"),
    ),
    Case(
        "evaluate-scenario-not-a-scenario",
        InvalidConfigError,
        lambda c: ob.evaluate(c.model(), "class:3"),
        ("'scenario'", "Scenario", "str"),
    ),
    # ---- what to forget
    Case(
        "forget-class-not-in-dataset",
        InvalidConfigError,
        lambda c: ob.Scenario.classwise(c.ds, forget_class=10),
        ("'forget_class'", "[0, 10)", "got 10"),
        lambda c: c.unlearn_args(scenario="class:10"),
    ),
    Case("forget-indices-empty", InvalidConfigError, lambda c: ob.Scenario.from_indices(c.ds, []), ("'forget_indices'", "empty")),
    Case(
        "forget-indices-out-of-range",
        InvalidConfigError,
        lambda c: ob.Scenario.from_indices(c.ds, [free_index(c), len(c.ds.train)]),
        ("'forget_indices'", "[0, 1437)", "got 1437"),
    ),
    Case(
        "forget-indices-duplicated",
        InvalidConfigError,
        lambda c: ob.Scenario.from_indices(c.ds, [free_index(c)] * 2),
        ("'forget_indices'", "duplicates"),
    ),
    Case(
        "fraction-above-one",
        InvalidConfigError,
        lambda c: ob.Scenario.random(c.ds, fraction=1.5),
        ("'fraction'", "(0, 1)", "got 1.5"),
        lambda c: c.unlearn_args(scenario="random:1.5"),
    ),
    Case(
        "fraction-zero",
        InvalidConfigError,
        lambda c: ob.Scenario.random(c.ds, fraction=0),
        ("'fraction'", "(0, 1)", "got 0"),
        lambda c: c.unlearn_args(scenario="random:0"),
    ),
    Case(
        "fraction-negative",
        InvalidConfigError,
        lambda c: ob.Scenario.random(c.ds, fraction=-0.1),
        ("'fraction'", "(0, 1)", "got -0.1"),
        lambda c: c.unlearn_args(scenario="random:-0.1"),
    ),
    # ---- missing data
    Case(
        "dataset-root-missing",
        DatasetNotFoundError,
        lambda c: ob.load_dataset("cifar10", root=c.tmp / "nope"),
        ("'cifar10'", "nope", "download=True"),
        lambda c: ["train", "--dataset", "cifar10", "--root", c.tmp / "nope", "--out", c.out],
        cli_words=("'cifar10'", "nope", "--download"),
    ),
    Case(
        "required-split-empty",
        MissingDataError,
        lambda c: ob.unlearn(c.model(), empty_retain(c), "finetune"),
        ("Finetune", "'retain'", "no-retain"),
    ),
    Case(
        "evaluate-without-scenario",
        MissingDataError,
        None,
        (),
        lambda c: ["evaluate", c.run_dir],
        cli_words=("scenario.json", "--scenario"),
    ),
    # ---- checkpoints
    Case(
        "checkpoint-pickle",
        IncompatibleModelError,
        lambda c: load_weights(c.model(), c.pickle_file()),
        ("not a safetensors file", "never unpickles"),
        lambda c: ["evaluate", c.run_with(c.pickle_file), "--scenario", "class:3"],
    ),
    Case(
        "checkpoint-pickle-unlearn",
        IncompatibleModelError,
        None,
        (),
        lambda c: c.unlearn_args(run_dir=c.run_with(c.pickle_file)),
        cli_words=("not a safetensors file",),
    ),
    Case(
        "checkpoint-other-width",
        IncompatibleModelError,
        lambda c: load_weights(c.model(), c.narrow_file()),
        ("does not match", "shape of 'body.0.weight'", "(8, 1, 3, 3)", "(16, 1, 3, 3)"),
        lambda c: ["evaluate", c.run_with(c.narrow_file), "--scenario", "class:3"],
    ),
    Case(
        "checkpoint-missing-key",
        IncompatibleModelError,
        lambda c: load_weights(c.model(), c.missing_key_file()),
        ("does not match", "missing", "'head.bias'"),
        lambda c: c.unlearn_args(run_dir=c.run_with(c.missing_key_file)),
    ),
    Case(
        "checkpoint-absent",
        InvalidConfigError,
        lambda c: load_weights(c.model(), c.tmp / "none.safetensors"),
        ("none.safetensors", "does not exist"),
        lambda c: ["evaluate", c.run_with(None), "--scenario", "class:3"],
        cli_words=("model.safetensors", "does not exist"),
    ),
    Case(
        "not-a-run-directory",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.tmp / "nowhere"],
        cli_words=("nowhere", "not a run directory"),
    ),
    # ---- more run arguments, scenarios and devices (CLI only)
    Case(
        "val-fraction-above-one",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--val-fraction", "1.5"),
        cli_words=("'fraction'", "[0, 1)", "1.5"),
    ),
    Case(
        "val-fraction-nan",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--val-fraction", "nan"),
        cli_words=("'fraction'", "nan"),
    ),
    Case(
        "val-seed-negative",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--val-seed", "-3"),
        cli_words=("'seed'", "[0, 2**63)", "-3"),
    ),
    Case("train-lr-nan", InvalidConfigError, None, (), lambda c: c.train_args("--lr", "nan"), cli_words=("'lr'", "nan")),
    Case(
        "train-epochs-not-a-number",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--epochs", "nan"),
        cli_words=("--epochs", "'nan'"),
        usage=True,
    ),
    Case(
        "train-batch-size-negative",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--batch-size", "-1"),
        cli_words=("'batch_size'", "-1"),
    ),
    Case(
        "train-width-zero",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--model-option", "width=0"),
        cli_words=("'width'", "got 0"),
    ),
    Case(
        "train-schedule-unknown",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--set", "schedule=sideways"),
        cli_words=("'schedule'", "'cosine'", "'sideways'"),
    ),
    Case(
        "train-device-cuda-absent",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--device", "cuda"),
        cli_words=("CUDA", "'cpu'"),
    ),
    Case(
        "train-device-unknown",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--device", "toaster"),
        cli_words=("'device'", "'toaster'"),
    ),
    Case(
        "unlearn-device-cuda-index",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args("--device", "cuda:3"),
        cli_words=("CUDA",),
    ),
    Case(
        "scenario-fraction-not-a-number",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="random:abc"),
        cli_words=("'abc'", "not a fraction"),
    ),
    Case(
        "scenario-class-not-a-class",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="class:abc"),
        cli_words=("'forget_class'", "'abc'"),
    ),
    Case(
        "scenario-class-negative",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="class:-1"),
        cli_words=("'forget_class'", "'-1'"),
    ),
    Case(
        "scenario-count-zero",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="random:n=0"),
        cli_words=("'count'", "got 0"),
    ),
    Case(
        "scenario-count-above-train",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="random:n=100000"),
        cli_words=("'count'", "100000"),
    ),
    Case(
        "scenario-class-count-zero",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="class:3:n=0"),
        cli_words=("'count'", "got 0"),
    ),
    Case(
        "scenario-subclass-without-fine-labels",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(scenario="subclass:nope"),
        cli_words=("sub-class", "'digits'"),
    ),
    Case(
        "evaluate-class-out-of-range",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.run_dir, "--scenario", "class:99"],
        cli_words=("'forget_class'", "99"),
    ),
    Case(
        "finetune-optimizer-unknown",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "optimizer=rmsprop", method="finetune"),
        cli_words=("'optimizer'", "'rmsprop'"),
    ),
    Case("set-empty-value", InvalidConfigError, None, (), lambda c: c.unlearn_args("--set", "alpha="), cli_words=("'alpha'",)),
    Case(
        "methods-show-unknown",
        UnknownNameError,
        None,
        (),
        lambda c: ["methods", "show", "nope"],
        cli_words=("'nope'", "Valid methods"),
    ),
    Case("study-unknown", InvalidConfigError, None, (), lambda c: ["study", "nope"], cli_words=("'nope'",), usage=True),
    Case(
        "demo-method-unknown",
        UnknownNameError,
        None,
        (),
        lambda c: ["demo", "--methods", "nope", "--out", c.out],
        cli_words=("'nope'",),
    ),
    Case(
        "demo-seeds-zero",
        InvalidConfigError,
        None,
        (),
        lambda c: ["demo", "--methods", "ssd", "--seeds", "0", "--out", c.out],
        cli_words=("'seeds'", "got 0"),
    ),
    Case(
        "evaluate-reference-not-a-run",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.run_dir, "--scenario", "class:3", "--reference", c.tmp / "nowhere"],
        cli_words=("nowhere", "not a run directory"),
    ),
    # ---- run records that do not follow the schema (issue 13 item 9), run directories (items 5-7)
    Case(
        "record-origin-dataset-a-string",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(run_dir=c.run_with_record("origin.dataset", "digits")),
        cli_words=("run.json", "'origin.dataset'"),
    ),
    Case(
        "record-model-a-string",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.run_with_record("origin.model", "mlp"), "--scenario", "class:3"],
        cli_words=("run.json", "'origin.model'"),
    ),
    Case(
        "record-model-options-seed",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(run_dir=c.run_with_record("origin.model.options", {"seed": 3})),
        cli_words=("'origin.model.options'", "'seed'"),
    ),
    Case(
        "record-model-options-a-list",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.run_with_record("origin.model.options", [1, 2]), "--scenario", "class:3"],
        cli_words=("'origin.model.options'",),
    ),
    Case(
        "record-seed-not-a-number",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(run_dir=c.run_with_record("seed", "zz")),
        cli_words=("'seed'", "[0, 2**63)"),
    ),
    Case(
        "train-model-option-seed",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--model-option", "seed=3"),
        cli_words=("seed=3", "architecture option"),
    ),
    Case(
        "evaluate-reference-is-the-run",
        InvalidConfigError,
        None,
        (),
        lambda c: ["evaluate", c.run_dir, "--scenario", "class:3", "--reference", c.run_dir],
        cli_words=("is the evaluated run itself",),
    ),
    Case(
        "out-holds-a-scenario",
        InvalidConfigError,
        None,
        (),
        lambda c: c.unlearn_args(run_dir=c.run_dir) if c.out_holding("scenario.json", "{}") else [],
        cli_words=("scenario.json",),
    ),
    Case(
        "out-holds-a-crashed-claim",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args() if c.out_holding(".obliviate-claim", json.dumps({"pid": 4242, "host": "elsewhere"})) else [],
        cli_words=("unfinished run", "remove the directory"),
    ),
    # ---- training that blows up: exit 1, no run written (issue 13 item 4)
    Case(
        "diverge-l1-sparse",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "lr=1e5", "--set", "epochs=1", method="l1_sparse"),
        cli_words=("diverged",),
        exit_code=1,
    ),
    Case(
        "diverge-gradient-ascent",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "lr=1e4", method="gradient_ascent"),
        cli_words=("diverged",),
        exit_code=1,
    ),
    Case(
        "diverge-ga-l1",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "lr=1e4", method="ga_l1"),
        cli_words=("diverged",),
        exit_code=1,
    ),
    Case(
        "diverge-finetune-adam",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args("--set", "optimizer=adam", "--set", "lr=1e3", method="finetune"),
        cli_words=("diverged",),
        exit_code=1,
    ),
    Case(
        "diverge-train", UnlearningError, None, (), lambda c: c.train_args("--lr", "1e4"), cli_words=("norm grew",), exit_code=1
    ),
    # ---- recordings edited after the run (issue 13 item 13)
    Case(
        "recording-param-names-cut",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args(
            run_dir=c.recording_edited(lambda m: m.update(param_names=m["param_names"][:1])), scenario="random:0.1", method="sgu"
        ),
        cli_words=("recording.json", "edited"),
    ),
    Case(
        "recording-digest-forged",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args(
            run_dir=c.recording_edited(lambda m: m.update(digest="sha256:00")), scenario="random:0.1", method="sgu"
        ),
        cli_words=("recording.json", "edited"),
    ),
    Case(
        "recording-seed-changed",
        UnlearningError,
        None,
        (),
        lambda c: c.unlearn_args(
            run_dir=c.recording_edited(lambda m: m.update(seed=m.get("seed", 0) + 1)), scenario="random:0.1", method="sgu"
        ),
        cli_words=("edited",),
    ),
    # ---- checkpoints that are not what the model needs (issue 13 item 11)
    Case(
        "checkpoint-nan",
        IncompatibleModelError,
        lambda c: load_weights(c.model(), c.nan_file()),
        ("nan.safetensors", "'head.weight'", "non-finite"),
        lambda c: c.unlearn_args(run_dir=c.run_with(c.nan_file)),
        cli_words=("model.safetensors", "non-finite"),
    ),
    Case(
        "checkpoint-nan-evaluate",
        IncompatibleModelError,
        None,
        (),
        lambda c: ["evaluate", c.run_with(c.nan_file), "--scenario", "class:3"],
        cli_words=("model.safetensors", "non-finite"),
    ),
    Case(
        "checkpoint-int32",
        IncompatibleModelError,
        lambda c: load_weights(c.model(), c.int32_file()),
        ("int32.safetensors", "int32"),
        lambda c: c.unlearn_args(run_dir=c.run_with(c.int32_file)),
        cli_words=("model.safetensors", "int32"),
    ),
    # ---- masks (API only)
    Case(
        "mask-unknown-parameter",
        IncompatibleModelError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", masks={"nope.weight": torch.ones(3, dtype=torch.bool)}),
        ("'nope.weight'", "not a parameter"),
    ),
    Case(
        "mask-wrong-shape",
        IncompatibleModelError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", masks={"head.weight": torch.ones(2, 2, dtype=torch.bool)}),
        ("'head.weight'", "shape", "(2, 2)"),
    ),
    Case(
        "mask-not-bool",
        InvalidConfigError,
        lambda c: ob.unlearn(c.model(), c.sc, "finetune", masks={"head.weight": torch.ones_like(c.model().head.weight)}),
        ("'head.weight'", "torch.bool", "float32"),
    ),
    # ---- argument parsing (one line, exit 2, "(see --help)")
    Case("no-command", InvalidConfigError, None, (), lambda c: [], cli_words=("COMMAND",), usage=True),
    Case("unknown-command", InvalidConfigError, None, (), lambda c: ["trian"], cli_words=("'trian'",), usage=True),
    Case(
        "missing-required-option",
        InvalidConfigError,
        None,
        (),
        lambda c: ["unlearn", c.run_dir, "--method", "ssd", "--out", c.out],
        cli_words=("--scenario",),
        usage=True,
    ),
    Case(
        "unknown-option",
        InvalidConfigError,
        None,
        (),
        lambda c: c.train_args("--epohcs", "2"),
        cli_words=("--epohcs",),
        usage=True,
    ),
    # ---- the output directory
    Case(
        "out-is-a-file-train",
        InvalidConfigError,
        None,
        (),
        lambda c: ["train", "--dataset", "digits", "--epochs", "1", "--out", c.file],
        cli_words=("a_file",),
    ),
    Case(
        "out-is-a-file-unlearn",
        InvalidConfigError,
        None,
        (),
        lambda c: ["unlearn", c.run_dir, "--scenario", "class:3", "--method", "ssd", "--out", c.file],
        cli_words=("a_file",),
    ),
]
API_CASES = [c for c in CASES if c.api is not None]
CLI_CASES = [c for c in CASES if c.cli is not None]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits() -> ob.DatasetSplits:
    return ob.load_dataset("digits")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    run_dir = tmp_path_factory.mktemp("bad_input") / "trained"
    code = main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(run_dir)])
    assert code == 0
    return run_dir, snapshot(run_dir)


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("bad_input_recorded") / "recorded"
    args = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--record", "--out", str(run_dir)]
    assert main(args) == 0
    return run_dir


@pytest.fixture
def ctx(digits: ob.DatasetSplits, trained_run: tuple[Path, dict[str, bytes]], recorded_run: Path, tmp_path: Path) -> Ctx:
    file = tmp_path / "a_file"
    file.write_text("not a directory\n")
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    return Ctx(ds=digits, sc=sc, run_dir=trained_run[0], tmp=tmp_path, file=file, recorded=recorded_run)


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_raises_a_clear_error(case: Case, ctx: Ctx) -> None:
    with pytest.raises(case.error) as info:
        case.api(ctx)  # type: ignore[misc]
    message = str(info.value)
    for word in case.words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not ctx.marker.exists(), "a checkpoint was unpickled"


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_refuses_with_one_line(
    case: Case, ctx: Ctx, trained_run: tuple[Path, dict[str, bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    args = case.cli(ctx)  # type: ignore[misc]
    file_before = ctx.file.read_bytes()
    out_before = snapshot(ctx.out) if ctx.out.is_dir() else {}
    code, out, err = run_cli(capsys, *args)
    assert code == case.exit_code, f"exit {code}; stderr:\n{err}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    if case.usage:
        # usage errors name the command whose --help to read: "(see 'obliviate train --help')"
        assert re.match(r"^obliviate: error: .+ \(see 'obliviate(?: [a-z]+)? --help'\)$", line), line
    else:
        assert line.startswith("obliviate: error: "), line
    for word in case.words if case.cli_words is None else case.cli_words:
        assert word in line, f"{word!r} not in {line!r}"
    assert out == ""
    # Bad input writes no run and changes nothing that was there.
    out_after = snapshot(ctx.out) if ctx.out.is_dir() else {}
    assert {n: b for n, b in out_after.items() if n in RUN_FILES} == {n: b for n, b in out_before.items() if n in RUN_FILES}
    assert snapshot(trained_run[0]) == trained_run[1]
    assert ctx.file.read_bytes() == file_before
    assert not (ctx.tmp / "nope").exists()  # nothing was downloaded or created for a missing dataset
    assert not ctx.marker.exists(), "a checkpoint was unpickled"


# --------------------------------------------------------------------------- certified runs
CERTIFIED_FIT = ("certified", "fit", "--dataset", "digits", "--classes", "3,8", "--lam", "0.01", "--sigma", "10", "--seed", "0")


@dataclass
class CertifiedCase:
    """A bad ``obliviate certified`` command: its arguments, exit status and words of its one line."""

    id: str
    args: Callable[[Path, Path], list[object]]  # (certified run, scratch dir) -> arguments
    words: tuple[str, ...]
    exit_code: int = 2
    absent: tuple[str, ...] = ()  # what the line must not contain (e.g. a file's content)


def _every_three(run: Path) -> list[str]:
    """Every sample id of class 3 in a --classes 3,8 run (its sample ids are train-split indices)."""
    return [str(i) for i in np.flatnonzero(ob.load_dataset("digits").train_targets == 3)]


def _tampered_copy(run: Path, tmp: Path) -> Path:
    import sqlite3

    copy = Path(shutil.copytree(run, tmp / "tampered"))
    with sqlite3.connect(copy / "ledger.sqlite") as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")]
        for name in names:
            db.execute(f"DROP TRIGGER {name}")
        db.execute("DELETE FROM meta WHERE rowid = (SELECT max(rowid) FROM meta)")
    return copy


CERTIFIED_CASES = [
    CertifiedCase("fit-lam-negative", lambda r, t: [*CERTIFIED_FIT[:6], "--lam", "-1", "--out", t / "out"], ("'lam'", "-1")),
    CertifiedCase("fit-sigma-zero", lambda r, t: [*CERTIFIED_FIT[:6], "--sigma", "0", "--out", t / "out"], ("'sigma'", "0.0")),
    CertifiedCase(
        "fit-epsilon-negative", lambda r, t: [*CERTIFIED_FIT[:6], "--epsilon", "-1", "--out", t / "out"], ("'epsilon'",)
    ),
    CertifiedCase(
        "fit-delta-above-one", lambda r, t: [*CERTIFIED_FIT[:6], "--delta", "2", "--out", t / "out"], ("'delta'", "(0, 1)")
    ),
    CertifiedCase(
        "fit-one-class",
        lambda r, t: ["certified", "fit", "--dataset", "digits", "--classes", "3", "--out", t / "out"],
        ("two distinct classes",),
    ),
    CertifiedCase(
        "fit-class-not-in-dataset",
        lambda r, t: ["certified", "fit", "--dataset", "digits", "--classes", "3,99", "--out", t / "out"],
        ("[99]", "0..9"),
    ),
    CertifiedCase("fit-into-a-run", lambda r, t: [*CERTIFIED_FIT, "--out", r], ("already holds",)),
    CertifiedCase("remove-ids-not-integers", lambda r, t: ["certified", "remove", r, "--ids", "abc"], ("integers", "'abc'")),
    CertifiedCase("remove-id-out-of-range", lambda r, t: ["certified", "remove", r, "--ids", "999999"], ("[999999]", "not in")),
    CertifiedCase("remove-id-negative", lambda r, t: ["certified", "remove", r, "--ids", "-1"], ("[-1]", "not in")),
    CertifiedCase("remove-no-ids", lambda r, t: ["certified", "remove", r], ("--ids",)),
    CertifiedCase(
        "remove-ids-file-etc-passwd",
        lambda r, t: ["certified", "remove", r, "--ids-file", "/etc/passwd"],
        ("line 1", "not a list of integer sample ids"),
        absent=("root",),
    ),
    CertifiedCase("remove-ids-file-directory", lambda r, t: ["certified", "remove", r, "--ids-file", t], ("is a directory",)),
    CertifiedCase(
        "remove-ids-file-missing", lambda r, t: ["certified", "remove", r, "--ids-file", t / "none.txt"], ("does not exist",)
    ),
    CertifiedCase(
        "remove-a-whole-class-of-a-binary-model",
        lambda r, t: ["certified", "remove", r, "--ids", ",".join(_every_three(r))],
        ("--allow-single-class",),
    ),
    CertifiedCase(
        "remove-tampered-ledger",
        lambda r, t: ["certified", "remove", _tampered_copy(r, t), "--ids", "3"],
        ("cannot be trusted",),
        1,
    ),
    CertifiedCase("status-not-a-run", lambda r, t: ["certified", "status", t], ("not a certified run directory",)),
]


def _certified_snapshot(directory: Path) -> dict[str, bytes]:
    """The run's files, less SQLite's shared-memory and write-ahead side files."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and not p.name.endswith(("-shm", "-wal"))}


@pytest.fixture(scope="module")
def certified_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_certified") / "run"
    assert main([*CERTIFIED_FIT, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("case", CERTIFIED_CASES, ids=[c.id for c in CERTIFIED_CASES])
def test_certified_cli_refuses_with_one_line(
    case: CertifiedCase, certified_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _certified_snapshot(certified_run)
    code, out, err = run_cli(capsys, *case.args(certified_run, tmp_path))
    assert code == case.exit_code, f"exit {code}; stderr:\n{err}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith("obliviate: error: "), lines[0]
    for word in case.words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    for word in case.absent:
        assert word not in lines[0], f"{word!r} leaked into {lines[0]!r}"
    assert out == ""
    assert _certified_snapshot(certified_run) == before
    assert not (tmp_path / "out").exists()
