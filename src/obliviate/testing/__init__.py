"""Shipped test helpers: a toy dataset, scenario and model, and the method and metric contract suites.

:func:`check_metric` runs the checks every registered metric must pass (declarations, declared
inputs only, determinism, range, missing inputs, an existing reference test).

:func:`check_method` runs the checks every registered method must pass (and third-party methods
can run on themselves), in the manner of scikit-learn's ``check_estimator``:

1. default-constructible; every field has a default, a constraint and an ``Args:`` entry;
2. invalid values generated from the constraints raise ``InvalidConfigError``;
3. ``to_dict``/``from_dict`` and pickle round trips; unknown keys rejected; instances frozen;
4. the input model is unchanged (weights, ``requires_grad``, train/eval mode, no leftover hooks);
5. the output has the same state-dict keys and shapes and only finite values;
6. the same seed on the CPU gives bit-identical weights;
7. ``MissingDataError`` for each required split that is empty;
8. ``MissingDataError`` for an empty forget set (the one decided behaviour);
9. a sanity effect: an exact method is bit-identical to an independent :func:`~obliviate.train`
   on the retain set from the toy model's initialisation (``build_model`` with the run's seed),
   with the method's recipe (:meth:`~obliviate.methods.UnlearningMethod.recipe`) and the run's
   seed; the others do not raise forget accuracy by more than 5 points;
10. runs on a model with BatchNorm and Dropout, with batch size 1 where the method has one;
11. masked-out coordinates stay exactly as they were; an exact method (it starts from scratch)
    gets pruning masks (masked-out coordinates zero) and must refuse any other mask with
    ``InvalidConfigError``;
12. a method that needs the training recording (``needs_recording``) gets :func:`toy_recording`
    in every run, and raises ``MissingDataError`` without it.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import pickle
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DatasetSplits, Scenario, from_arrays, load_dataset
from ..errors import InvalidConfigError, MissingDataError
from ..methods import METHODS, UnlearningMethod
from ..metrics import Metric
from ..models import build_model
from ..training import accuracy, train

__all__ = [
    "toy_dataset",
    "toy_scenario",
    "toy_model",
    "toy_recording",
    "check_method",
    "check_metric",
    "run_cli",
    "one_error_line",
]


def _fail(method: str, check: str, detail: str) -> AssertionError:
    return AssertionError(f"check_method({method!r}) failed [{check}]: {detail}")


@lru_cache(maxsize=1)
def toy_dataset() -> DatasetSplits:
    """250 train / 100 test samples of the embedded digits (all 10 classes), for fast checks."""
    ds = load_dataset("digits")
    xtr, ytr = ds.train.inputs[:250], ds.train.targets[:250]  # type: ignore[attr-defined]
    xte, yte = ds.test.inputs[:100], ds.test.targets[:100]  # type: ignore[attr-defined]
    return from_arrays(xtr, ytr, xte, yte, name="toy_digits", num_classes=10)


def toy_scenario(kind: str = "classwise", seed: int = 0) -> Scenario:
    """Class-wise (class 3), random (10 %) or corrective (10 % backdoored to class 0) forgetting on :func:`toy_dataset`."""
    ds = toy_dataset()
    if kind == "classwise":
        return Scenario.classwise(ds, forget_class=3, seed=seed)
    if kind == "random":
        return Scenario.random(ds, fraction=0.1, seed=seed)
    if kind == "backdoor":
        return Scenario.corrupted(ds, 0.1, "backdoor", seed=seed)
    raise InvalidConfigError(f"toy_scenario kind must be 'classwise', 'random' or 'backdoor'; got {kind!r}.")


def _toy_init(seed: int) -> nn.Module:
    """The untrained toy CNN (BatchNorm and Dropout) initialised from ``seed``."""
    return build_model("cnn", toy_dataset(), seed=seed, width=8, dropout=0.2)


@lru_cache(maxsize=4)
def _trained_run(kind: str, seed: int) -> Any:
    sc = toy_scenario(kind, seed)
    model = _toy_init(seed)
    # recording does not change the trained weights; it lets methods that unroll the run be checked
    return train(
        model,
        sc.train,
        epochs=15,
        lr=0.05,
        batch_size=32,
        schedule="cosine",
        seed=seed,
        device="cpu",
        progress=False,
        record=True,
        record_updates=True,
    )


def _trained(kind: str, seed: int) -> nn.Module:
    return _trained_run(kind, seed).model


def toy_model(kind: str = "classwise", seed: int = 0) -> nn.Module:
    """A small CNN with BatchNorm and Dropout trained on :func:`toy_scenario` (a fresh copy)."""
    return copy.deepcopy(_trained(kind, seed))


def toy_recording(kind: str = "classwise", seed: int = 0) -> Any:
    """The :class:`~obliviate.recording.Recording` (with every step's update) of :func:`toy_model`'s
    training; shared between calls, so read it, never change it.
    """
    return _trained_run(kind, seed).recording


def _hooks(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_state_dict_hooks",
            "_load_state_dict_pre_hooks",
        ):
            total += len(getattr(m, attr, {}) or {})
    return total


def _snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
        "hooks": _hooks(model),
    }


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _empty_split(sc: Scenario, split: str) -> Scenario:
    fields = {"forget_idx": sc.forget_idx, "retain_idx": sc.retain_idx, "val_idx": sc.val_idx, "test_idx": sc.test_idx}
    if split == "train":
        fields["forget_idx"] = fields["retain_idx"] = np.zeros(0, np.int64)
    elif split == "retain":  # move the retain set into validation so the forget set stays as it is
        fields["val_idx"] = np.union1d(sc.val_idx, sc.retain_idx)
        fields["retain_idx"] = np.zeros(0, np.int64)
    else:
        fields[f"{split}_idx"] = np.zeros(0, np.int64)
    return Scenario(
        dataset=sc.dataset,
        kind=sc.kind,
        name=f"{sc.name}:no-{split}",
        seed=sc.seed,
        val_seed=sc.val_seed,
        params=sc.params,
        **fields,
    )


def _documented_args(cls: type) -> set[str]:
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, flags=re.MULTILINE)
    if not match:
        return set()
    return set(re.findall(r"^    (\w+):", match.group(1), flags=re.MULTILINE))


def check_method(method: str | type[UnlearningMethod], *, preset: str | None = "digits") -> dict[str, str]:
    """Run the contract suite on a method; raise ``AssertionError`` naming the first failed check.

    Args:
        method: A registered name or an :class:`~obliviate.methods.UnlearningMethod` subclass.
        preset: Preset used for the runs when the method has it (short runs on toy data).

    Returns:
        Check name -> "ok" for every check that ran.
    """
    cls = METHODS.get(method) if isinstance(method, str) else method
    name = getattr(cls, "name", "") or cls.__name__
    report: dict[str, str] = {}

    # 1. construction, constraints, documentation
    try:
        default = cls()
    except Exception as e:
        raise _fail(name, "defaults", f"cannot build with defaults: {e}") from e
    fields = cls.field_names()
    constraints = cls.constraints()
    documented = _documented_args(cls)
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise _fail(name, "defaults", f"field {f.name!r} has no default")
        if f.name not in constraints:
            raise _fail(name, "constraints", f"field {f.name!r} has no constraint (declare it with param())")
        if f.name not in documented:
            raise _fail(name, "docstring", f"field {f.name!r} is not documented under Args:")
    report["defaults"] = "ok"

    # 2. invalid values
    for field_name, constraint in constraints.items():
        for bad in constraint.invalid_examples():
            try:
                cls(**{field_name: bad})
            except InvalidConfigError:
                continue
            except Exception as e:
                raise _fail(name, "validation", f"{field_name}={bad!r} raised {type(e).__name__}, not InvalidConfigError") from e
            raise _fail(name, "validation", f"{field_name}={bad!r} was accepted")
    report["validation"] = "ok"

    # 3. round trips, unknown keys, frozen
    if cls.from_dict(default.to_dict()) != default:
        raise _fail(name, "round_trip", "from_dict(to_dict()) differs")
    if pickle.loads(pickle.dumps(default)) != default:
        raise _fail(name, "round_trip", "pickle round trip differs")
    try:
        cls.from_dict({**default.to_dict(), "no_such_parameter": 1})
        raise _fail(name, "round_trip", "an unknown key was accepted")
    except InvalidConfigError:
        pass
    if fields:
        try:
            setattr(default, fields[0], getattr(default, fields[0]))
            raise _fail(name, "frozen", "instances can be modified")
        except dataclasses.FrozenInstanceError:
            pass
    report["round_trip"] = "ok"

    instance = cls.from_preset(preset) if preset is not None and preset in cls.presets else default
    sc = toy_scenario("classwise")
    model = toy_model("classwise")
    before = _snapshot(model)

    # 4-6. input untouched, output well-formed, deterministic
    run: dict[str, Any] = {"recording": toy_recording("classwise")} if getattr(cls, "needs_recording", False) else {}
    out = instance.unlearn(model, sc, seed=0, device="cpu", progress=False, **run)
    after = _snapshot(model)
    if not _same_state(before["state"], after["state"]):
        raise _fail(name, "input_unchanged", "the input model's weights or buffers changed")
    if before["grad"] != after["grad"] or before["modes"] != after["modes"]:
        raise _fail(name, "input_unchanged", "the input model's requires_grad flags or train/eval modes changed")
    if before["hooks"] != after["hooks"] or _hooks(out.model) != before["hooks"]:
        raise _fail(name, "hooks", "hooks were left on the input or output model")
    report["input_unchanged"] = "ok"
    out_state = out.model.state_dict()
    if getattr(cls, "ensemble", False):  # an ensemble of the input's architecture: check what it predicts
        x = torch.stack([sc.val[i][0] for i in range(min(8, len(sc.val)))])
        with torch.no_grad():
            logits = out.model.eval()(x)
        if logits.shape != (x.shape[0], sc.dataset.num_classes):
            raise _fail(name, "output", f"the ensemble's output has shape {tuple(logits.shape)}")
    elif out_state.keys() != before["state"].keys() or any(out_state[k].shape != before["state"][k].shape for k in out_state):
        raise _fail(name, "output", "the output state dict has other keys or shapes")
    if not all(torch.isfinite(v.float()).all() for v in out_state.values()):
        raise _fail(name, "output", "the output has non-finite values")
    if out.seconds < 0 or out.config != instance.to_dict() or out.method != name:
        raise _fail(name, "output", "seconds, config or method name of the result are wrong")
    report["output"] = "ok"
    again = instance.unlearn(model, sc, seed=0, device="cpu", progress=False, **run)
    if not _same_state(out_state, again.model.state_dict()):
        raise _fail(name, "deterministic", "two runs with seed 0 on the CPU differ")
    report["deterministic"] = "ok"

    # 7-8. missing data
    for split in sorted(cls.requires | {"forget"}):
        try:
            instance.unlearn(model, _empty_split(sc, split), seed=0, device="cpu", progress=False, **run)
        except MissingDataError:
            continue
        raise _fail(name, "missing_data", f"an empty {split!r} split did not raise MissingDataError")
    if run:
        try:
            instance.unlearn(model, sc, seed=0, device="cpu", progress=False)
            raise _fail(name, "missing_data", "a method that needs a recording ran without one")
        except MissingDataError:
            pass
    report["missing_data"] = "ok"

    # 9. sanity effect
    if cls.exact and hasattr(cls, "exact_reference"):
        # what the method states it is exact with respect to, rebuilt by the class without its unlearning code
        if not _same_state(out_state, cls.exact_reference(out.model, sc, 0)):
            raise _fail(name, "exact", "an exact method's result differs from its stated reference (exact_reference)")
    elif cls.exact:
        # independent of every method: the training loop alone, from scratch, on D_r
        oracle = train(_toy_init(0), sc.retain, instance.recipe(), seed=0, device="cpu", progress=False)
        if not _same_state(out_state, oracle.model.state_dict()):
            raise _fail(name, "exact", "an exact method's result differs from ob.train on the retain set from scratch")
    else:
        before_acc, after_acc = accuracy(model, sc.forget), accuracy(out.model, sc.forget)
        if after_acc > before_acc + 0.05:
            raise _fail(name, "sanity", f"forget accuracy rose from {before_acc:.3f} to {after_acc:.3f}")
    report["sanity"] = "ok"

    # 10. batch size 1 on the BatchNorm + Dropout model
    if "batch_size" in fields:
        tiny = dataclasses.replace(instance, batch_size=1, **({"epochs": 1} if "epochs" in fields else {}))
        res = tiny.unlearn(model, sc, seed=0, device="cpu", progress=False, **run)
        if not all(torch.isfinite(v.float()).all() for v in res.model.state_dict().values()):
            raise _fail(name, "batch_size_1", "batch size 1 gave non-finite weights")
        report["batch_size_1"] = "ok"

    # 11. masks
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters()}
    if getattr(cls, "ensemble", False):  # its shards train from scratch: any mask is refused
        try:
            instance.unlearn(model, sc, seed=0, device="cpu", masks=masks, progress=False, **run)
        except InvalidConfigError:
            report["masks"] = "ok"
            return report
        raise _fail(name, "masks", "an ensemble method accepted masks")
    if cls.exact:  # it retrains from scratch, so a mask can only mean "pruned": refuse trained frozen values
        try:
            instance.unlearn(model, sc, seed=0, device="cpu", masks=masks, progress=False, **run)
            raise _fail(name, "masks", "an exact method accepted masks whose frozen coordinates hold trained values")
        except InvalidConfigError:
            pass
        model = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.masked_fill_(~masks[n], 0.0)
    masked = instance.unlearn(model, sc, seed=0, device="cpu", masks=masks, progress=False, **run).model
    params_in, params_out = dict(model.named_parameters()), dict(masked.named_parameters())
    for n, m in masks.items():
        if not torch.equal(params_out[n].detach()[~m], params_in[n].detach()[~m]):
            raise _fail(name, "masks", f"frozen coordinates of {n!r} moved")
    report["masks"] = "ok"
    return report


# --------------------------------------------------------------------------------------------- metrics
_OPTIONAL_INPUTS: tuple[str, ...] = ("reference", "recording", "risk_scorer")


def _metric_fail(metric: str, check: str, detail: str) -> AssertionError:
    return AssertionError(f"check_metric({metric!r}) failed [{check}]: {detail}")


@lru_cache(maxsize=2)
def _metric_run(seed: int) -> Any:
    """A small recorded MLP run on the class-wise toy scenario (the model the metric checks rate)."""
    sc = toy_scenario("classwise", seed)
    model = build_model("mlp", sc.dataset, seed=seed, hidden=(16,))
    return train(model, sc.train, epochs=2, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False, record=True)


@lru_cache(maxsize=2)
def _metric_reference(seed: int) -> nn.Module:
    """An MLP trained on the toy scenario's retain set only (the reference of the metric checks)."""
    sc = toy_scenario("classwise", seed)
    model = build_model("mlp", sc.dataset, seed=seed + 1, hidden=(16,))
    return train(model, sc.retain, epochs=2, lr=0.1, batch_size=32, seed=seed + 1, device="cpu", progress=False).model


@lru_cache(maxsize=2)
def _metric_risk_scorer(seed: int) -> Any:
    from ..metrics.privacy_risk import PrivacyRiskScorer
    from ..training import TrainConfig

    sc = toy_scenario("classwise", seed)
    init = build_model("mlp", sc.dataset, seed=seed, hidden=(16,))
    recipe = TrainConfig(epochs=2, lr=0.1, batch_size=32)
    return PrivacyRiskScorer.fit(init, sc, recipe=recipe, shadow_models=1, device="cpu")


def _metric_inputs(requires: tuple[str, ...], seed: int) -> dict[str, Any]:
    """The optional ``evaluate`` arguments a metric declares (only those: reading another one fails)."""
    out: dict[str, Any] = {}
    if "reference" in requires:
        out["reference"] = _metric_reference(seed)
    if "recording" in requires:
        out["recording"] = _metric_run(seed).recording
    if "risk_scorer" in requires:
        out["risk_scorer"] = _metric_risk_scorer(seed)
    return out


def _test_defined(tests_dir: Path, spec: str) -> str | None:
    """Why ``"path::function"`` does not name a test function under ``tests_dir`` (None when it does)."""
    import ast

    path, sep, func = spec.partition("::")
    if not sep or not path.startswith("tests/") or not func.startswith("test_"):
        return f"reference_test {spec!r} is not of the form 'tests/<file>.py::test_<name>'"
    file = tests_dir.parent / path
    if not file.is_file():
        return f"reference_test file {path!r} does not exist"
    tree = ast.parse(file.read_text(), filename=str(file))
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if func not in names:
        return f"reference_test function {func!r} is not defined in {path!r}"
    return None


def check_metric(metric: str | type[Metric], *, tests_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> dict[str, str]:
    """Run the contract suite on a registered metric; raise ``AssertionError`` naming the first failed check.

    The metric is computed on a small recorded MLP of the class-wise :func:`toy_scenario` (the
    backdoor one for a metric that reads ``corruption`` or ``trigger``, same data) through a
    :class:`~obliviate.metrics.context.MetricContext` that holds exactly the optional inputs
    (reference, recording, risk scorer) the metric declares:

    1. ``declarations``: a registered :class:`~obliviate.metrics.Metric` subclass with a
       description, a valid goal, inputs among :data:`~obliviate.metrics.INPUTS`, registered
       companions and a ``reference_test`` of the form ``tests/<file>.py::test_<name>``;
    2. ``inputs``: the inputs it reads are exactly those it declares in ``requires``;
    3. ``deterministic``: two fresh contexts with the same seed give the same value;
    4. ``range``: the value is a number; unless NaN, it lies in the metric's bounds (a fraction in
       [0, 1]);
    5. ``missing_data``: without a declared optional input, ``evaluate`` leaves it out of the
       default list and raises :class:`~obliviate.errors.MissingDataError` when it is named;
    6. ``reference_test`` (only with ``tests_dir``): the named test function exists.

    Args:
        metric: A registered name or a registered :class:`~obliviate.metrics.Metric` subclass.
        tests_dir: The project's ``tests/`` directory, to check that the reference test exists.
        seed: Seed of the toy run and of the evaluation.

    Returns:
        Check name -> "ok".
    """
    from ..evaluation import evaluate
    from ..metrics import INPUTS, METRICS
    from ..metrics.context import MetricContext

    name = metric if isinstance(metric, str) else getattr(metric, "name", "")
    cls = METRICS.get(name)
    if not isinstance(metric, str) and cls is not metric:
        raise _metric_fail(name or repr(metric), "declarations", "the class is not the one registered under its name")
    report: dict[str, str] = {}

    # 1. declarations
    if not cls.description:
        raise _metric_fail(name, "declarations", "no description")
    if cls.goal not in ("higher", "lower", "oracle") or not set(cls.requires) <= set(INPUTS):
        raise _metric_fail(name, "declarations", f"goal {cls.goal!r} or requires {cls.requires} is invalid")
    for companion in cls.companions:
        if companion not in METRICS:
            raise _metric_fail(name, "declarations", f"companion {companion!r} is not registered")
    if cls.needs_reference != ("reference" in cls.requires):
        raise _metric_fail(name, "declarations", "needs_reference disagrees with requires")
    low, high = cls.value_bounds()
    if cls.fraction and (low < 0.0 or high > 1.0):
        raise _metric_fail(name, "declarations", f"a fraction with bounds {(low, high)} outside [0, 1]")
    report["declarations"] = "ok"

    run = _metric_run(seed)
    # a metric of corrective scenarios reads a backdoor one (same toy data, so the same model applies)
    sc = toy_scenario("backdoor" if {"corruption", "trigger"} & set(cls.requires) else "classwise", seed)
    inputs = _metric_inputs(cls.requires, seed)

    def compute() -> tuple[float, set[str]]:
        ctx = MetricContext(copy.deepcopy(run.model), sc, device="cpu", seed=seed, requested={name}, **inputs)
        try:
            value = cls().compute(ctx)
        except MissingDataError as err:
            undeclared = ctx.touched - set(cls.requires)
            if undeclared:
                raise _metric_fail(name, "inputs", f"reads {sorted(undeclared)} without declaring them") from err
            raise
        return value, ctx.touched

    # 2. declared inputs
    value, touched = compute()
    if touched != set(cls.requires):
        extra, unused = sorted(touched - set(cls.requires)), sorted(set(cls.requires) - touched)
        raise _metric_fail(name, "inputs", f"reads undeclared inputs {extra} / declares inputs it never reads {unused}")
    report["inputs"] = "ok"

    # 3. determinism
    again, _ = compute()
    if not (again == value or (isinstance(value, float) and np.isnan(value) and np.isnan(again))):
        raise _metric_fail(name, "deterministic", f"two runs with seed {seed} gave {value!r} and {again!r}")
    report["deterministic"] = "ok"

    # 4. range
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise _metric_fail(name, "range", f"the value {value!r} is not a number")
    if not np.isnan(value) and not low <= float(value) <= high:
        raise _metric_fail(name, "range", f"the value {value!r} lies outside [{low}, {high}]")
    report["range"] = "ok"

    # 5. missing optional inputs
    for needed in _OPTIONAL_INPUTS:
        if needed not in cls.requires:
            continue
        others = {k: v for k, v in inputs.items() if k != needed}
        default = evaluate(run, sc, **others, metrics=None, seed=seed) if not cls.opt_in and needed == "reference" else None
        if default is not None and name in default.metrics:
            raise _metric_fail(name, "missing_data", f"computed by default without {needed!r}")
        try:
            evaluate(run, sc, **others, metrics=[name], seed=seed)
        except MissingDataError:
            continue
        raise _metric_fail(name, "missing_data", f"named without {needed!r}, it did not raise MissingDataError")
    report["missing_data"] = "ok"

    # 6. reference test
    if tests_dir is not None:
        problem = _test_defined(Path(tests_dir), cls.reference_test)
        if problem:
            raise _metric_fail(name, "reference_test", problem)
        report["reference_test"] = "ok"
    return report


def run_cli(capsys: Any, *args: object) -> tuple[int, str, str]:
    """Run ``obliviate ARGS`` in-process under pytest: (exit status, stdout, stderr).

    Args:
        capsys: pytest's ``capsys`` fixture (what the command printed is read from it).
        *args: The command line after ``obliviate`` (paths and numbers are turned into strings).

    Returns:
        The exit status (argparse's ``SystemExit`` becomes the status) and what was printed.
    """
    from ..cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors and --help
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The single stderr line of a refused command, ``obliviate: error: ...``; fails on anything else.

    Raises:
        AssertionError: ``err`` is not exactly one such line, or holds a traceback.
    """
    lines = err.strip().splitlines()
    if len(lines) != 1:  # raised, not asserted: the check holds under python -O too
        raise AssertionError(f"expected one line on stderr, got {len(lines)}:\n{err}")
    if not lines[0].startswith("obliviate: error: ") or "Traceback" in err:
        raise AssertionError(f"not a one-line obliviate error: {err}")
    return lines[0]
