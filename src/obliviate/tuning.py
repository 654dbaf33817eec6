"""``ob.tune``: search a method's declared hyperparameters with Optuna, with or without a retrained oracle.

Each hyperparameter worth tuning declares its range where it is defined,
``param(0.01, Interval(float, 0.0, closed="neither"), search=Log(1e-4, 1e-1))``
(:class:`~obliviate._validation.Log`, ``Linear``, ``IntRange``, ``Choice``); :func:`tune` searches
those ranges with Optuna's TPE sampler under a wall-clock budget or a number of trials, and
returns the best trial's :class:`~obliviate.methods.UnlearningResult` (kept from the trial, not
run again) with the table of every trial.

Two objectives, both minimised:

* ``"oracle"``: the avg gap (``avg_gap``, SalUn's Avg. Gap) to a retrained ``reference``, as
  researchers tune by hand. The reference is evaluated once per call.
* ``"proxy"`` (the default): what a user has without an oracle; see :func:`proxy_objective` for
  the formula. It costs one inference pass over the validation split and D_f per trial; the
  input model's outputs are computed once (and kept across calls for the same model and
  scenario).

Trials that fail (a :class:`~obliviate.errors.DivergenceError`, a configuration the method refuses,
running out of memory) are recorded with ``status="failed"`` and the search goes on. A study kept
in SQLite (``storage=``) resumes where it stopped. With ``prune=True``, methods that train with the
shared loop report the proxy after each epoch and Optuna's median pruner stops unpromising trials.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._utils import require, resolve_device, state_digest, warning_notes
from ._validation import Choice, IntRange, SearchSpace, check_interval, check_seed
from .data.scenario import Scenario
from .errors import DivergenceError, InvalidConfigError, MissingDataError, UnlearningError, UnlearningWarning
from .evaluation import Evaluation, evaluate
from .methods.base import EPOCH_REPORT, UnlearningMethod, UnlearningResult, make_method, resolve_recipe
from .metrics.functional.gap import GAP_METRICS
from .runs import check_training_set
from .training import TrainResult, predict

__all__ = [
    "tune",
    "TuneResult",
    "proxy_objective",
    "ProxyTerms",
    "KEEP_SLACK",
    "COLLAPSE_WEIGHT",
    "MAX_STARTS",
    "search_space",
    "parse_budget",
]

OBJECTIVES = ("proxy", "oracle")

KEEP_SLACK = 0.03
"""Drop in retained-class validation accuracy (a fraction) the proxy tolerates before its steep penalty."""

COLLAPSE_WEIGHT = 10.0
"""Slope of the proxy's penalty on the drop beyond :data:`KEEP_SLACK` (a 13-point drop outweighs forgetting nothing)."""

SAME_FAILURES = 3
"""A search whose first trials all fail with one and the same error stops after this many (the error is raised)."""

MAX_STARTS = 4
"""Most starting points (the defaults, then the presets) a new study runs before the sampler proposes."""


# What a failed trial may raise; anything else is a bug and stops the search.
_TRIAL_FAILURES: tuple[type[BaseException], ...] = (UnlearningError, RuntimeError, ArithmeticError)


@dataclass
class TuneResult:
    """What :func:`tune` returns.

    Attributes:
        best_params: The hyperparameters to pass to ``ob.unlearn`` (with the same ``preset``)
            to repeat the best trial: the searched values and the ``fixed`` ones.
        best_result: The best trial's result (the trial's own run, not a rerun); its
            ``seconds`` is that run alone.
        trials: One dict per trial that ran in the study (earlier sessions of a stored study
            included), in order: ``number``, ``params`` (searched values), ``value`` (the objective; None if
            failed), ``true_gap`` (avg gap to ``reference`` when one was given, else None),
            ``gap_seconds`` (the time of measuring ``true_gap``: with the proxy objective, a cost
            of the comparison, not of the search), ``terms`` (the proxy's parts, fractions),
            ``val_acc_drop`` (the health check's drop in points), ``seconds`` (the method's run),
            ``trial_seconds`` (run + evaluation), ``started`` (seconds after its session's search
            began), ``status`` (the result's health status ``ok``/``collapsed``/``unchecked``, or
            ``failed``), ``error``, ``warnings`` (the run's notes and warnings).
        best_value: The best trial's objective value.
        objective: "proxy" or "oracle".
        seconds: Wall time of this call's whole search (every trial with its evaluation, plus
            a rerun of the best trial when it came from an earlier session): the cost of a
            tuned result, to compare with ``best_result.seconds`` and the oracle's.
        study_name: The Optuna study's name.
        method: The method's registry name.
        best_trial: The best trial's number.
        space: The searched ranges, as text.
        comparison_seconds: The part of ``seconds`` spent measuring ``true_gap`` beside the
            proxy objective (0 without a reference or with the oracle objective): the search
            alone costs ``seconds - comparison_seconds``.
    """

    best_params: dict[str, Any]
    best_result: UnlearningResult
    trials: list[dict[str, Any]]
    best_value: float
    objective: str
    seconds: float
    study_name: str
    method: str
    best_trial: int = 0
    space: dict[str, str] = field(default_factory=dict)
    comparison_seconds: float = 0.0

    @property
    def best(self) -> dict[str, Any]:
        """The best trial's row of :attr:`trials`."""
        return next(t for t in self.trials if t["number"] == self.best_trial)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the model, JSON-ready."""
        return {
            "method": self.method,
            "objective": self.objective,
            "study_name": self.study_name,
            "space": dict(self.space),
            "best_trial": self.best_trial,
            "best_params": dict(self.best_params),
            "best_value": self.best_value,
            "seconds": self.seconds,
            "comparison_seconds": self.comparison_seconds,
            "final_run_seconds": self.best_result.seconds,
            "trials": [dict(t) for t in self.trials],
        }


# ---------------------------------------------------------------------------------------------- the proxy
@dataclass(frozen=True)
class ProxyTerms:
    """The parts of the proxy objective of one model (fractions in [0, 1])."""

    value: float
    forget: float
    keep: float
    val_acc_drop: float
    forget_acc: float
    val_acc: float
    retained_val_acc: float
    mia_auc: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _retained_val_mask(scenario: Scenario) -> np.ndarray:
    """Which validation samples belong to the retained classes (all of them for random forgetting)."""
    ds = scenario.dataset
    if scenario.kind == "classwise":
        return ds.train_targets[scenario.val_idx] != scenario.params["forget_class"]
    if scenario.kind == "subclass" and ds.train_fine is not None:
        return ds.train_fine[scenario.val_idx] != scenario.params["fine_class"]
    return np.ones(len(scenario.val_idx), dtype=bool)


def _auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """ROC AUC of separating ``members`` (positive) from ``nonmembers`` by score (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([members, nonmembers]))
    n_pos, n_neg = len(members), len(nonmembers)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _per_sample(model: nn.Module, data: Any, device: torch.device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(correct, loss)`` per sample of ``data`` (one inference pass)."""
    logits, labels = predict(model, data, batch_size=batch_size, device=device)
    if not torch.isfinite(logits).all():
        raise DivergenceError("The model's outputs hold NaN or inf.")
    loss = F.cross_entropy(logits.double(), labels, reduction="none")
    return (logits.argmax(1) == labels).numpy(), loss.numpy()


def proxy_objective(
    model: nn.Module,
    scenario: Scenario,
    *,
    original_retained_val_acc: float,
    device: torch.device | str | None = None,
    batch_size: int = 512,
) -> ProxyTerms:
    """The oracle-free objective of :func:`tune` (smaller is better), from one inference pass over val and D_f.

    With ``a0`` the input model's accuracy on the validation samples of the retained classes and
    ``a`` the unlearned model's, the *keep* term penalises the drop ``d = max(0, a0 - a)``::

        keep = d + COLLAPSE_WEIGHT * max(0, d - KEEP_SLACK)            (10 and 0.03)

    so a drop of a few points costs little and a collapse (13 points) costs more than forgetting
    nothing. The *forget* term says how far D_f is from data the model never learned:

    * class-wise and sub-class scenarios: ``forget = acc(D_f)``. A model that never saw the class
      never predicts it, so its forget accuracy is 0. For a sub-class this overshoots: a model
      retrained without the sub-class may still assign many of its samples their super-class;
      use ``objective="oracle"`` where that matters.
    * random and custom scenarios: D_f should look like held-out data. With ``val`` the whole
      validation split, ``forget = |acc(D_f) - acc(val)| + 2 |AUC - 0.5|``, where AUC is that of
      a loss-threshold membership attack separating D_f (members) from val by per-sample
      cross-entropy (0.5: no better than chance).

    The objective is ``forget + keep``.

    Args:
        model: The unlearned model.
        scenario: Its scenario (its ``val`` split must not be empty).
        original_retained_val_acc: ``a0``: the input model's accuracy on the retained classes'
            validation samples.
        device: Where to run (default: the model's device).
        batch_size: Inference batch size.

    Raises:
        MissingDataError: the scenario's validation split has no retained-class sample.
        DivergenceError: the model's outputs are not finite.
    """
    mask = _retained_val_mask(scenario)
    if not mask.any():
        raise MissingDataError(
            f"The proxy objective needs validation samples of the retained classes; {scenario.name!r} has none."
        )
    dev = None if device is None else resolve_device(device)
    val_ok, val_loss = _per_sample(model, scenario.val, dev, batch_size)
    f_ok, f_loss = _per_sample(model, scenario.forget, dev, batch_size)
    retained = float(val_ok[mask].mean())
    drop = max(0.0, float(original_retained_val_acc) - retained)
    keep = drop + COLLAPSE_WEIGHT * max(0.0, drop - KEEP_SLACK)
    forget_acc, val_acc = float(f_ok.mean()), float(val_ok.mean())
    auc = None
    if scenario.kind in ("classwise", "subclass"):
        forget = forget_acc
    else:
        auc = _auc(-f_loss, -val_loss)  # lower loss = more likely a member
        forget = abs(forget_acc - val_acc) + 2.0 * abs(auc - 0.5)
    return ProxyTerms(
        value=forget + keep,
        forget=forget,
        keep=keep,
        val_acc_drop=drop,
        forget_acc=forget_acc,
        val_acc=val_acc,
        retained_val_acc=retained,
        mia_auc=auc,
    )


# The input model's retained-class validation accuracy, per (weights, scenario, device): a tune call,
# and the next one on the same model (another method, the other objective), computes it once.
_BASELINE_CACHE: OrderedDict[tuple[str, str, str], float] = OrderedDict()
_BASELINE_CACHE_SIZE = 8


def _baseline_accuracy(model: nn.Module, scenario: Scenario, device: torch.device, batch_size: int) -> float:
    key = (state_digest(model), scenario.hash, str(device))
    if key in _BASELINE_CACHE:
        _BASELINE_CACHE.move_to_end(key)
        return _BASELINE_CACHE[key]
    ok, _ = _per_sample(model, scenario.val, device, batch_size)
    value = float(ok[_retained_val_mask(scenario)].mean())
    _BASELINE_CACHE[key] = value
    while len(_BASELINE_CACHE) > _BASELINE_CACHE_SIZE:
        _BASELINE_CACHE.popitem(last=False)
    return value


# ---------------------------------------------------------------------------------------------- search space
def search_space(
    method: str | type[UnlearningMethod] | UnlearningMethod,
    *,
    fixed: Mapping[str, Any] | None = None,
    space: Mapping[str, SearchSpace] | None = None,
) -> dict[str, SearchSpace]:
    """The ranges :func:`tune` searches for ``method``: its fields declared with ``search=``, updated by
    ``space``, minus the ``fixed`` ones.

    Raises:
        InvalidConfigError: ``space`` names an unknown field or holds something that is not a range,
            or nothing is left to search.
    """
    from .methods import METHODS

    cls = METHODS.get(method) if isinstance(method, str) else (method if isinstance(method, type) else type(method))
    out = dict(cls.search_space())
    if space is not None:
        if not isinstance(space, Mapping):
            raise InvalidConfigError(f"The 'space' argument of tune must be a mapping of field name to range; got {space!r}.")
        cls.check_keys(list(space))
        for name, rng in space.items():
            if not isinstance(rng, SearchSpace):
                raise InvalidConfigError(
                    f"The 'space' entry {name!r} of tune must be Log, Linear, IntRange or Choice; got {type(rng).__name__}."
                )
            constraint = cls.constraints()[name]
            for point in rng.points():
                constraint.coerce(cls, name, point)
        out.update(space)
    for name in fixed or {}:
        out.pop(name, None)
    if not out:
        raise InvalidConfigError(
            f"{cls.__name__} has no hyperparameter left to search (declared: {sorted(cls.search_space()) or 'none'}; "
            f"fixed: {sorted(fixed or {}) or 'none'}); pass space={{name: Log(lo, hi), ...}} or fix fewer."
        )
    return out


# ---------------------------------------------------------------------------------------------- progress
class _Progress:
    """A rich bar with an ETA on a terminal, one line per trial elsewhere, or nothing."""

    def __init__(self, enabled: bool | None, title: str, n_trials: int | None, budget_s: float | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self.title, self.n_trials, self.budget_s = title, n_trials, budget_s
        self.start = time.perf_counter()
        self.printed = -math.inf
        self.done = 0
        self.bar = None
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn(f"[bold]{title}[/bold]"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            total = float(n_trials) if n_trials is not None else float(budget_s or 1.0)
            self.task = self.bar.add_task("", total=total, info="")

    def eta(self) -> float:
        elapsed = time.perf_counter() - self.start
        left = []
        if self.n_trials is not None and self.done:
            left.append(elapsed / self.done * (self.n_trials - self.done))
        if self.budget_s is not None:
            left.append(max(0.0, self.budget_s - elapsed))
        return min(left) if left else float("nan")

    def trial(self, row: dict[str, Any], best: float | None) -> None:
        self.done += 1
        if not self.enabled:
            return
        value = (row["status"] if row["status"] == "pruned" else "failed") if row["value"] is None else f"{row['value']:.4f}"
        best_text = "-" if best is None else f"{best:.4f}"
        eta = self.eta()
        eta_text = "?" if math.isnan(eta) else f"{eta:.0f} s"
        of = f"/{self.n_trials}" if self.n_trials is not None else ""
        info = f"trial {self.done}{of}: {value}, best {best_text}, ETA {eta_text}"
        if self.bar is not None:
            if self.n_trials is not None:
                completed = float(self.done)
            else:
                completed = min(time.perf_counter() - self.start, float(self.budget_s or 0.0))
            self.bar.update(self.task, completed=completed, info=info)
            return
        # a line per trial, but at most one a second unless the trial is a new best or the last one
        now = time.perf_counter()
        new_best = best is not None and row["value"] is not None and row["value"] <= best
        if now - self.printed >= 1.0 or new_best or self.done == self.n_trials:
            self.printed = now
            print(f"[{self.title}] {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------- tune
@dataclass
class _Checked:
    """A model whose training set ``tune`` has checked once, handed to every trial's ``unlearn``."""

    model: nn.Module
    training_set: Any


def _storage_url(storage: str | os.PathLike[str] | None) -> str | None:
    if storage is None:
        return None
    text = os.fspath(storage)
    if "://" in text:
        return text
    path = Path(text).expanduser().resolve()
    if not path.parent.is_dir():
        raise InvalidConfigError(f"The 'storage' of tune is {text!r}, whose folder does not exist; create it first.")
    return f"sqlite:///{path}"


def _budget(budget_s: Any, n_trials: Any) -> tuple[float | None, int | None]:
    if budget_s is None and n_trials is None:
        raise InvalidConfigError(
            "tune needs a budget: budget_s (seconds of wall clock, e.g. 60) or n_trials (e.g. 20), or both; got neither."
        )
    if budget_s is not None:
        budget_s = check_interval("tune", "budget_s", budget_s, kind=float, low=0.0, closed="neither")
    if n_trials is not None:
        n_trials = check_interval("tune", "n_trials", n_trials, kind=int, low=1)
    return budget_s, n_trials


def _reference_evaluation(reference: Any, scenario: Scenario, seed: int, device: Any) -> Evaluation:
    if isinstance(reference, Evaluation):
        missing = [m for m in GAP_METRICS if m not in reference.metrics]
        if missing:
            raise MissingDataError(f"The reference Evaluation given to tune lacks {missing}, needed for avg_gap.")
        return reference
    return evaluate(reference, scenario, metrics=list(GAP_METRICS), seed=seed, device=device)


def _in_space(space: Mapping[str, SearchSpace], values: Mapping[str, Any]) -> dict[str, Any]:
    return {n: values[n] for n, rng in space.items() if n in values and rng.contains(values[n])}


def _starting_points(base: UnlearningMethod, space: Mapping[str, SearchSpace], fixed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The first trials of a new study: ``base``'s values that lie in the space (the sampler draws the
    others), then each preset whose searched values all lie in it and whose other values are
    ``base``'s (a trial sets only the searched fields, so any other preset would not be run as
    itself); duplicates dropped.
    """
    cls = type(base)
    out: list[dict[str, Any]] = []
    start = base.to_dict()
    first = _in_space(space, start)
    if first:
        out.append(first)
    for preset in cls.presets:
        try:
            values = cls.from_preset(preset, **fixed).to_dict()
        except UnlearningError:  # a preset that contradicts a fixed value is skipped
            continue
        point = _in_space(space, values)
        same_rest = all(values[n] == start[n] for n in values if n not in space)
        if len(point) == len(space) and same_rest and point not in out:
            out.append(point)
    return out[:MAX_STARTS]


def tune(
    model: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str],
    scenario: Scenario,
    method: str | UnlearningMethod,
    *,
    budget_s: float | None = None,
    n_trials: int | None = None,
    objective: str = "proxy",
    reference: Any = None,
    seed: int = 0,
    storage: str | os.PathLike[str] | None = None,
    prune: bool = False,
    study_name: str | None = None,
    progress: bool | None = True,
    device: str | torch.device = "auto",
    preset: str | None = None,
    space: Mapping[str, SearchSpace] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    recording: Any = None,
    recipe: Any = None,
    **fixed: Any,
) -> TuneResult:
    """Choose a method's hyperparameters for this model and scenario (Optuna TPE), and return the best run.

    The searched hyperparameters are the method's fields declared with ``search=`` (see
    :meth:`~obliviate._validation.Config.search_space`), updated by ``space``, minus ``fixed``.
    A new study first runs the method's defaults (or the ``preset``'s values), then those of its
    other presets that differ from them only in searched fields, within the ranges (at most
    :data:`MAX_STARTS` starting points in all), so the search starts from the settings the
    library ships; then the TPE sampler proposes. Every trial runs
    :func:`obliviate.unlearn` with ``seed`` and is scored by ``objective``:

    * ``"proxy"``: :func:`proxy_objective` (no oracle; one inference pass over val and D_f);
    * ``"oracle"``: the avg gap to ``reference`` (``ob.evaluate(..., reference=...)``'s ``avg_gap``).

    Given ``reference`` with the proxy, each trial also records its true avg gap (``true_gap``),
    to compare the two.

    A trial is deterministic given its parameters and ``seed``, so a point the sampler proposes
    again takes the earlier value without running (``duplicate_of`` in its row), and a space made
    only of choices and integer ranges stops once every point has a value.

    Args:
        model: The trained model (``TrainResult``, ``UnlearningResult``, run directory or module,
            as for :func:`obliviate.unlearn`); never modified.
        scenario: What to forget.
        method: Registry name or instance (its fields are the starting values).
        budget_s: Wall-clock budget of the search in seconds: no trial starts after it (the one
            running finishes). With the proxy objective, the time spent measuring each trial's
            ``true_gap`` against ``reference`` (a comparison, not part of the search) is not counted.
        n_trials: Number of trials in this call. At least one of ``budget_s``/``n_trials``.
        objective: "proxy" (default) or "oracle".
        reference: The retrained model (module, ``TrainResult``, ``UnlearningResult``, run
            directory) or its :class:`~obliviate.Evaluation` (reused); needed by "oracle".
        seed: Seed of the sampler and of every trial's run.
        storage: A SQLite file path (or an Optuna storage URL): the study is stored there and a
            later call with the same ``storage`` and ``study_name`` resumes it.
        prune: Stop unpromising trials early (Optuna's median pruner, after 4 complete trials):
            methods that train with the shared loop report the proxy after every epoch, and a
            trial whose value is worse than the median of earlier trials at that epoch is
            ``"pruned"``. Each report costs one inference pass over val and D_f, so the proxy
            then costs one pass per epoch instead of one per trial. Proxy objective only.
        study_name: Name of the study (default ``obliviate-<method>-<scenario>-<objective>``).
        progress: Show a progress line with the best value and an ETA (None: only on a terminal).
        device: "auto", "cpu", "cuda", ...
        preset: Start from a named preset of the method.
        space: Extra or replacement ranges, ``{field: Log(lo, hi) | Linear | IntRange | Choice}``.
        masks: ``{parameter name: bool tensor}``; False coordinates stay frozen in every trial.
        recording: The training recording, for methods that need it (``sgu``, ``amnesiac``).
        recipe: The original training recipe, as for :func:`obliviate.unlearn`: the defaults a
            method states relative to it start the search and hold the fields not searched (None:
            the recipe of a ``TrainResult`` or run ``model``; False: none).
        **fixed: Hyperparameters held at the given values (not searched).

    Returns:
        A :class:`TuneResult`.

    Raises:
        InvalidConfigError: no budget, an unknown objective or hyperparameter, nothing to search,
            or a stored study made for another method, scenario or objective.
        MissingDataError: ``objective="oracle"`` without ``reference``, or a split the method needs is empty.
        MissingDependencyError: optuna is not installed (``pip install obliviate[tune]``).
        DivergenceError: every trial failed (the trials are in the error's ``trials`` attribute).
        UnlearningError: the first :data:`SAME_FAILURES` trials failed with the same error (of any
            :class:`~obliviate.errors.UnlearningError` type, e.g. ``IncompatibleModelError``): the
            search stops and that error is raised, since no searched value changes it.

    Example:
        >>> import obliviate as ob
        >>> from obliviate.testing import toy_model, toy_scenario
        >>> tr = ob.tune(toy_model(), toy_scenario(), "ssd", n_trials=2, progress=False)  # doctest: +SKIP
        >>> sorted(tr.best_params)  # doctest: +SKIP
        ['alpha', 'dampening']
    """
    if not isinstance(scenario, Scenario):
        raise InvalidConfigError(f"The 'scenario' argument of tune must be an obliviate Scenario; got {type(scenario).__name__}.")
    if objective not in OBJECTIVES:
        raise InvalidConfigError(f"The 'objective' argument of tune must be 'proxy' or 'oracle'; got {objective!r}.")
    if not isinstance(prune, bool):
        raise InvalidConfigError(f"The 'prune' argument of tune must be True or False; got {prune!r}.")
    if prune and objective != "proxy":
        raise InvalidConfigError("tune(prune=True) reports the proxy after each epoch; use it with objective='proxy'.")
    if objective == "oracle" and reference is None:
        raise MissingDataError(
            "tune(objective='oracle') needs reference= (the model retrained on the retain set, e.g. "
            "ob.unlearn(base, scenario, 'retrain', ...)); without one use objective='proxy'."
        )
    budget_s, n_trials = _budget(budget_s, n_trials)
    seed = check_seed("tune", seed)
    optuna = _import_optuna()
    # validates the method, the preset, the recipe and the fixed values
    base = make_method(method, preset=preset, recipe=resolve_recipe(recipe, model, "tune"), **fixed)
    cls = type(base)
    name = cls.name or cls.__name__
    _preflight(base, scenario, recording)
    searched = search_space(cls, fixed=fixed, space=space)
    dev = resolve_device(device)
    net = check_training_set(model, scenario, "tune")
    checked = _Checked(net, scenario.training_set)
    baseline = _baseline_accuracy(net, scenario, dev, 512)
    ref_eval = None if reference is None else _reference_evaluation(reference, scenario, seed, dev)

    study_name = study_name or f"obliviate-{name}-{scenario.name}-{objective}"
    identity = {"method": name, "scenario": scenario.hash, "objective": objective}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=_storage_url(storage),
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=4) if prune else optuna.pruners.NopPruner(),
        )
        stored = {k: study.user_attrs.get(k) for k in identity}
        if any(v is not None for v in stored.values()) and stored != identity:
            raise InvalidConfigError(
                f"The stored study {study_name!r} was made for {stored}, not {identity}; choose another study_name or storage."
            )
        for k, v in identity.items():
            study.set_user_attr(k, v)
        if not study.trials:
            for start in _starting_points(base, searched, fixed):
                study.enqueue_trial(start)

        kept: dict[str, Any] = {"value": math.inf, "number": None, "result": None, "gap_seconds": 0.0}
        bar = _Progress(progress, f"tune {name}", n_trials, budget_s)
        search_start = time.perf_counter()
        # A trial is deterministic given its parameters and the seed: a point the sampler proposes again (TPE
        # does, on small categorical spaces) takes the earlier value instead of running again.
        valued = {_point(t.params, searched): t for t in study.trials if _complete(t)}
        size = _space_size(searched)
        failures: list[BaseException] = []  # the exceptions of failed trials, to tell a hopeless search early

        def run_trial(trial: Any) -> float:
            trial.set_user_attr("started", time.perf_counter() - search_start)
            params = {n: rng.suggest(trial, n) for n, rng in searched.items()}
            prior = valued.get(_point(params, searched))
            if prior is not None:
                for key, val in prior.user_attrs.items():
                    trial.set_user_attr(key, val)
                for key, val in {"duplicate_of": prior.number, "trial_seconds": 0.0, "gap_seconds": 0.0}.items():
                    trial.set_user_attr(key, val)
                return float(prior.value)
            t0 = time.perf_counter()
            row: dict[str, Any] = {"status": "failed", "error": None, "seconds": None, "true_gap": None, "terms": None}
            reports = 0

            def report(_epoch: int, net: nn.Module) -> None:  # the proxy after each epoch: Optuna may prune the trial
                nonlocal reports
                terms = proxy_objective(net, scenario, original_retained_val_acc=baseline, device=dev)
                trial.report(terms.value, reports)
                reports += 1
                if trial.should_prune():
                    raise optuna.TrialPruned(f"proxy {terms.value:.4f} after epoch {reports}")

            token = EPOCH_REPORT.set(report if prune else None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    value, result, row = _score(
                        base, params, checked, scenario, objective, ref_eval, baseline, seed, dev, masks, recording
                    )
                except _TRIAL_FAILURES as err:
                    row["error"] = f"{type(err).__name__}: {err}"
                    failures.append(err)
                    raise
                except optuna.TrialPruned as err:
                    row.update(status="pruned", error=f"pruned: {err}")
                    raise
                finally:
                    EPOCH_REPORT.reset(token)
                    row["trial_seconds"] = time.perf_counter() - t0
                    row["warnings"] = warning_notes(caught, row.pop("notes", []))
                    for key, val in row.items():
                        trial.set_user_attr(key, val)
            if value < kept["value"]:
                kept.update(value=value, number=trial.number, result=result)
            return value

        def after(study_: Any, trial: Any) -> None:
            row = _row(trial)
            if objective == "proxy" and row["gap_seconds"]:
                kept["gap_seconds"] += row["gap_seconds"]
            if _complete(trial):
                valued.setdefault(_point(trial.params, searched), trial)
            best = [t.value for t in study_.trials if _complete(t)]
            bar.trial(row, min(best) if best else None)
            if size is not None and len(valued) >= size:  # every point of a finite space has a value: nothing left to learn
                study_.stop()
            if not valued and _same_failure(failures, SAME_FAILURES):  # no searched value changes it: stop the search
                study_.stop()
            # the budget: no trial starts after it; measuring true_gap beside the proxy does not count
            if budget_s is not None and time.perf_counter() - search_start - kept["gap_seconds"] >= budget_s:
                study_.stop()

        try:
            study.optimize(run_trial, n_trials=n_trials, catch=_TRIAL_FAILURES, callbacks=[after])
        finally:
            bar.close()
        # enqueued starting points the budget never reached stay "waiting" in the study (a resumed search runs them)
        trials = [_row(t) for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
        complete = [t for t in study.trials if _complete(t)]
        if not complete:
            if _same_failure(failures, SAME_FAILURES):
                raise failures[0]  # e.g. a model the method cannot work on: its own error, not a search failure
            first = trials[0]["error"] if trials else "-"
            err = DivergenceError(
                f"Every one of the {len(trials)} trials of tune({name!r}) failed; the first: {first}; "
                "Narrow the search space (space=...) or fix the failing hyperparameters."
            )
            err.trials = trials  # type: ignore[attr-defined]
            raise err
        ran = [t for t in trials if t["duplicate_of"] is None and t["status"] != "waiting"]
        if budget_s is not None and len(ran) < 2 and (n_trials is None or n_trials > 1):
            took = max((t["trial_seconds"] or 0.0) for t in ran) if ran else 0.0
            warnings.warn(
                f"tune({name!r}): only {len(ran)} trial fit in budget_s={budget_s:g} (a run took {took:.1f} s), so the "
                "result is its starting point, not a search; raise the budget.",
                UnlearningWarning,
                stacklevel=2,
            )
        best_trial = study.best_trial
        best_params = {**dict(fixed), **{n: best_trial.params[n] for n in searched if n in best_trial.params}}
        if kept["number"] == best_trial.number:
            best_result = kept["result"]
        else:  # the best trial ran in an earlier session of a stored study: run its parameters once more
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                best_result = make_method(base, **best_params).unlearn(
                    checked, scenario, seed=seed, device=dev, masks=masks, progress=False, recording=recording
                )
        seconds = time.perf_counter() - search_start
    finally:
        optuna.logging.set_verbosity(verbosity)
    return TuneResult(
        best_params=best_params,
        best_result=best_result,
        trials=trials,
        best_value=float(best_trial.value),
        objective=objective,
        seconds=seconds,
        study_name=study_name,
        method=name,
        best_trial=best_trial.number,
        space={n: rng.describe() for n, rng in searched.items()},
        comparison_seconds=kept["gap_seconds"],
    )


def _import_optuna() -> Any:
    """Optuna, or :class:`~obliviate.errors.MissingDependencyError` naming ``pip install obliviate[tune]``."""
    return require("optuna", "tune", "ob.tune")


def _preflight(method: UnlearningMethod, scenario: Scenario, recording: Any) -> None:
    """Refuse before any trial what would fail every trial alike (scenario kind, empty splits, recording)."""
    cls = type(method)
    if not cls.supports(scenario.kind):
        raise InvalidConfigError(
            f"{cls.__name__} supports {', '.join(sorted(cls.kinds))} scenarios; {scenario.name!r} is {scenario.kind!r}. "
            "Choose another method for this scenario."
        )
    for split in sorted(cls.requires | {"forget", "val"}):
        if len(scenario.split(split)) == 0:  # type: ignore[arg-type]
            raise MissingDataError(f"tune needs a non-empty {split!r} split, but scenario {scenario.name!r} has none.")
    if cls.needs_recording and recording is None:
        raise MissingDataError(
            f"{cls.__name__} needs the recording of the model's training: train with ob.train(..., record=True) "
            "and pass recording=result.recording to tune."
        )
    method.load_dependencies()


def _score(
    base: UnlearningMethod,
    params: dict[str, Any],
    checked: _Checked,
    scenario: Scenario,
    objective: str,
    ref_eval: Evaluation | None,
    baseline: float,
    seed: int,
    device: torch.device,
    masks: Any,
    recording: Any,
) -> tuple[float, UnlearningResult, dict[str, Any]]:
    """Run one trial and score it: ``(objective value, result, row fields)``."""
    result = make_method(base, **params).unlearn(
        checked, scenario, seed=seed, device=device, masks=masks, progress=False, recording=recording
    )
    terms = proxy_objective(result.model, scenario, original_retained_val_acc=baseline, device=device)
    gap, gap_seconds = None, 0.0
    if ref_eval is not None:
        start = time.perf_counter()
        gap = float(evaluate(result, scenario, reference=ref_eval, metrics=["avg_gap"], seed=seed, device=device)["avg_gap"])
        gap_seconds = time.perf_counter() - start
    value = terms.value if objective == "proxy" else gap
    if value is None or not math.isfinite(value):
        raise DivergenceError(f"The {objective} objective is not finite ({value}).")
    row = {
        "status": result.status,  # the health check of every result: ok, collapsed or unchecked
        "error": None,
        "seconds": result.seconds,
        "true_gap": gap,
        "gap_seconds": gap_seconds,
        "terms": terms.to_dict(),
        "val_acc_drop": result.diagnostics.get("val_acc_drop"),  # points, as in the result's diagnostics
        "notes": list(result.notes),
    }
    return float(value), result, row


def _same_failure(failures: list[BaseException], n: int) -> bool:
    """Whether at least ``n`` trials failed, all with one and the same :class:`UnlearningError` (type and message)."""
    if len(failures) < n or not isinstance(failures[0], UnlearningError):
        return False
    first = failures[0]
    return all(type(e) is type(first) and str(e) == str(first) for e in failures)


def _complete(trial: Any) -> bool:
    """Whether an Optuna trial ran to the end (a pruned one holds its last intermediate value)."""
    return trial.state.name == "COMPLETE" and trial.value is not None


def _point(params: Mapping[str, Any], searched: Mapping[str, SearchSpace]) -> tuple[tuple[str, str], ...]:
    """A hashable key of a trial's searched values."""
    return tuple((n, repr(params.get(n))) for n in sorted(searched))


def _space_size(searched: Mapping[str, SearchSpace]) -> int | None:
    """The number of points of a space made only of choices and integer ranges, else None (continuous)."""
    size = 1
    for space in searched.values():
        if isinstance(space, Choice):
            size *= len(space.values)
        elif isinstance(space, IntRange):
            size *= space.high - space.low + 1
        else:
            return None
    return size


def _row(trial: Any) -> dict[str, Any]:
    """One row of the trials table from an Optuna trial (its user attributes hold what tune measured)."""
    attrs = dict(trial.user_attrs)
    return {
        "number": trial.number,
        "params": dict(trial.params),
        "value": float(trial.value) if _complete(trial) else None,  # a pruned trial's value is its last report
        "true_gap": attrs.get("true_gap"),
        "gap_seconds": attrs.get("gap_seconds"),
        "terms": attrs.get("terms"),
        "val_acc_drop": attrs.get("val_acc_drop"),
        "seconds": attrs.get("seconds"),
        "trial_seconds": attrs.get("trial_seconds"),
        "started": attrs.get("started"),
        "status": attrs.get("status") or trial.state.name.lower(),  # a trial of a killed session stays "running"
        "error": attrs.get("error"),
        "warnings": attrs.get("warnings", []),
        "duplicate_of": attrs.get("duplicate_of"),
    }


_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0, "h": 3600.0}
_TRIALS = ("t", "trial", "trials")


def parse_budget(text: str, flag: str = "--budget") -> tuple[float | None, int | None]:
    """``(budget_s, n_trials)`` from ``60s``, ``1.5m``, ``90`` (seconds), ``20trials`` or both, comma-separated.

    Raises:
        InvalidConfigError: anything else, or a zero budget.

    Example:
        >>> parse_budget("60s"), parse_budget("20trials"), parse_budget("2m,10trials")
        ((60.0, None), (None, 20), (120.0, 10))
    """
    seconds: float | None = None
    trials: int | None = None
    parts = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    bad = InvalidConfigError(
        f"{flag} expects a time budget (60s, 1.5m), a number of trials (20trials) or both (60s,20trials); got {text!r}."
    )
    if not parts or len(parts) > 2:
        raise bad
    for part in parts:
        m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*([a-z]*)", part)
        if m is None:
            raise bad
        number, unit = m.groups()
        if unit in _TRIALS:
            if trials is not None or "." in number or int(number) < 1:
                raise bad
            trials = int(number)
        elif unit in _UNITS or unit == "":
            if seconds is not None or float(number) <= 0:
                raise bad
            seconds = float(number) * _UNITS.get(unit, 1.0)
        else:
            raise bad
    return seconds, trials
