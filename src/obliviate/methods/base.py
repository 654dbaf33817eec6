"""The base class every unlearning method derives from, and ``ob.unlearn``.

A method is a frozen keyword-only dataclass whose fields are its hyperparameters, each declared
with :func:`~obliviate._validation.param` (default + constraint). Registering it with
``@register_method("key")`` makes it reachable by name from ``ob.unlearn``, the CLI, the demo
and the contract tests. A method author writes only :meth:`UnlearningMethod._unlearn`; the base
class validates the request, works on a private copy of the model, seeds every random draw,
times ``_unlearn`` alone, keeps masked coordinates frozen, checks the result is finite, and
returns an :class:`UnlearningResult`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .._utils import Timer, resolve_device, seeded, warning_notes
from .._validation import Config, Interval, IntRange, Log, Options, check_interval, check_output_width, check_seed, param
from ..data.scenario import SCENARIO_KINDS, SPLITS, Scenario, TrainingSet
from ..errors import DivergenceError, IncompatibleModelError, InvalidConfigError, MissingDataError, UnlearningWarning
from ..registry import Registry
from ..runs import check_training_set
from ..training import TrainConfig, TrainResult, accuracy, check_weight_norm, fit, parameter_norm, resolve_masks

EPOCH_REPORT: ContextVar[Callable[[int, nn.Module], None] | None] = ContextVar("obliviate_epoch_report", default=None)
"""A hook ``report(epoch, model)`` that :meth:`RunContext.fit` calls after every epoch of a run started
while it is set (``ob.tune(..., prune=True)`` uses it to report intermediate values to Optuna's pruner)."""

COLLAPSE_DROP = 10.0
"""Default ``collapse_drop``: a result whose retained-class validation accuracy fell by more points is collapsed."""


def _replay(caught: list[warnings.WarningMessage]) -> list[str]:
    """Issue the recorded warnings again (same category and origin); return them as notes, each once."""
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    notes = warning_notes(caught)
    return notes


__all__ = [
    "METHODS",
    "FromRecipe",
    "UNLEARN_SPARSE_LR",
    "recipe_of",
    "resolve_recipe",
    "register_method",
    "UnlearningMethod",
    "UnlearningResult",
    "RunContext",
    "FineTuneRecipe",
    "unlearn",
    "get_method",
    "make_method",
    "make_context",
]

METHODS: Registry[type[UnlearningMethod]] = Registry("method")


@dataclass(frozen=True)
class FromRecipe:
    """How a hyperparameter's default follows the original model's training recipe.

    A method lists these in its ``from_recipe`` class variable, for the hyperparameters its paper
    states relative to the original training. When the recipe is known (``ob.unlearn`` given a
    ``TrainResult``, a run directory or ``recipe=``), each such field that neither the caller nor
    the chosen preset sets takes ``factor`` times the recipe's ``field`` instead of its fixed
    default; a field set explicitly is never changed.

    Attributes:
        field: The :class:`~obliviate.training.TrainConfig` field it follows.
        factor: Numbers are multiplied by it (ints rounded, at least 1); with 1.0 any value
            (an optimiser name, milestones) is copied as is.
        reference: Instead of ``factor``: the recipe value the field's own default was set for;
            the factor is then ``default / reference`` (the ratio, not the number, carries over).
        same_optimizer: Apply only when the recipe's optimiser is the method's (a learning-rate
            ratio between SGD and Adam means nothing).
        source: Where the relation comes from (shown by ``obliviate methods show``).
    """

    field: str
    factor: float = 1.0
    reference: float | None = None
    same_optimizer: bool = False
    source: str = ""

    def ratio(self, default: Any = None) -> float:
        """The factor applied: ``factor``, or ``default / reference`` for a rule with a reference."""
        if self.reference is None:
            return self.factor
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise InvalidConfigError(f"FromRecipe({self.field!r}, reference=...) needs a numeric field default; got {default!r}.")
        return default / self.reference

    def value(self, recipe: Mapping[str, Any], optimizer: str | None, default: Any = None) -> Any:
        """The default this rule gives under ``recipe`` (which may be None, e.g. ``milestones``), or
        ``dataclasses.MISSING`` when it does not apply. ``default`` is the field's own default.
        """
        if self.field not in recipe:
            return dataclasses.MISSING
        if self.same_optimizer and recipe.get("optimizer", TrainConfig().optimizer) != optimizer:
            return dataclasses.MISSING
        value, factor = recipe[self.field], self.ratio(default)
        if factor == 1.0 or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        if isinstance(value, int):
            return max(1, round(value * factor))
        return float(value * factor)

    def describe(self, default: Any = None) -> str:
        """``0.1 x the recipe's lr, when it trains with the same optimiser (...)``."""
        factor = self.ratio(default) if self.reference is None or default is not None else None
        if factor is None:
            what = f"(default / {self.reference:g}) x the recipe's {self.field}"
        else:
            what = f"the recipe's {self.field}" if factor == 1.0 else f"{factor:g} x the recipe's {self.field}"
        when = ", when it trains with the same optimiser" if self.same_optimizer else ""
        return what + when + (f" ({self.source})" if self.source else "")


UNLEARN_SPARSE_LR: dict[str, FromRecipe] = {
    "lr": FromRecipe(
        "lr", reference=0.1, same_optimizer=True, source="its default was set for a model trained at lr 0.1 (Unlearn-Sparse)"
    )
}
"""The ``from_recipe`` of the methods whose defaults were set for Unlearn-Sparse's CIFAR recipe (SGD, lr 0.1).

Unlearn-Sparse runs every iterative method with the optimiser of its pre-training (one driver: SGD,
momentum 0.9, weight decay 5e-4) at a learning rate stated for a model trained at lr 0.1; the
ratio of the method's default lr to 0.1 carries over to another SGD recipe.
"""


def resolve_recipe(recipe: Any, model: Any, owner: str) -> dict[str, Any] | None:
    """The recipe a call scales defaults from: ``recipe`` itself, the one ``model`` carries (None,
    see :func:`recipe_of`), or none (False).
    """
    if recipe is None:
        return recipe_of(model)
    if recipe is False:
        return None
    if recipe is True:
        raise InvalidConfigError(f"The 'recipe' argument of {owner} takes a TrainConfig, a mapping, None or False; got True.")
    return check_recipe(recipe, owner)


def recipe_of(model: Any) -> dict[str, Any] | None:
    """The training recipe a model argument of ``ob.unlearn`` carries: a ``TrainResult``'s config,
    a run directory's or :class:`~obliviate.runs.Run`'s ``origin.recipe``; None for anything else.
    """
    if isinstance(model, TrainResult):
        return model.config.to_dict()
    record = getattr(model, "record", None)
    if isinstance(record, Mapping) and hasattr(model, "training_set"):  # a loaded runs.Run
        return dict((record.get("origin") or {}).get("recipe") or {}) or None
    if isinstance(model, (str, os.PathLike)):
        from ..runs import RunDir

        try:
            return RunDir(model).recipe or None
        except (OSError, InvalidConfigError):  # not a run directory: unlearn() says so with its own message
            return None
    return None


def check_recipe(recipe: Any, owner: str = "unlearn") -> dict[str, Any]:
    """Validate a training recipe (a :class:`TrainConfig` or a mapping of its fields); returns the given fields."""
    if isinstance(recipe, TrainConfig):
        return recipe.to_dict()
    if not isinstance(recipe, Mapping):
        raise InvalidConfigError(
            f"The 'recipe' argument of {owner} must be a TrainConfig or a mapping of its fields (epochs, lr, ...); "
            f"got {type(recipe).__name__}."
        )
    checked = TrainConfig.from_dict(recipe).to_dict()  # unknown keys and bad values are errors
    return {k: checked[k] for k in recipe}


def register_method(name: str) -> Callable[[type[UnlearningMethod]], type[UnlearningMethod]]:
    """Class decorator: register an :class:`UnlearningMethod` subclass under ``name``."""

    def decorate(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
        if not (isinstance(cls, type) and issubclass(cls, UnlearningMethod)):
            raise InvalidConfigError(f"@register_method({name!r}) must decorate an UnlearningMethod subclass.")
        bad = set(cls.requires) - set(SPLITS)
        if bad:
            raise InvalidConfigError(f"{cls.__name__}.requires names unknown splits {sorted(bad)}; valid: {', '.join(SPLITS)}.")
        odd = set(cls.kinds) - set(SCENARIO_KINDS)
        if odd or not cls.kinds:
            raise InvalidConfigError(
                f"{cls.__name__}.kinds must be a non-empty subset of {', '.join(SCENARIO_KINDS)}; got {sorted(cls.kinds)}."
            )
        cls.name = name
        METHODS.register(name, cls)
        return cls

    return decorate


def get_method(name: str) -> type[UnlearningMethod]:
    """The method class registered under ``name``."""
    return METHODS.get(name)


@dataclass
class RunContext:
    """Run arguments handed to ``_unlearn`` (never method fields).

    Attributes:
        device: Device the model copy lives on.
        generator: CPU generator for every random draw of the method (shuffling, labels).
        seed: The run's seed.
        masks: ``{parameter name: bool tensor}`` on ``device``; False coordinates must not move.
        progress: Show progress bars (None: only on a terminal).
        diagnostics: Numbers the method wants reported (losses, stop epoch ...).
        counter: ``counter["samples"]`` counts samples back-propagated, for the ``passes`` cost.
        recording: The original model's training recording (``ob.train(..., record=True)``),
            for methods with ``needs_recording``; else None.
        report: Called as ``report(epoch, model)`` after each epoch of :meth:`fit` (from
            :data:`EPOCH_REPORT`); it may raise to stop the run (a pruned tuning trial).
        prepared: What :meth:`UnlearningMethod._prepare` returned (None for most methods).
    """

    device: torch.device
    generator: torch.Generator
    seed: int
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    progress: bool | None = None
    diagnostics: dict[str, float] = field(default_factory=dict)
    counter: dict[str, int] = field(default_factory=lambda: {"samples": 0})
    frozen: dict[str, torch.Tensor] = field(default_factory=dict)
    recording: Any = None
    report: Callable[[int, nn.Module], None] | None = None
    prepared: Any = None

    def fit(self, model: nn.Module, data: Any, config: TrainConfig, **kwargs: Any) -> list[dict[str, float]]:
        """The shared training loop with this run's generator, device, masks and counters."""
        kwargs.setdefault("progress", self.progress)
        if self.report is not None:
            inner, report = kwargs.get("epoch_end"), self.report

            def epoch_end(epoch: int, net: nn.Module) -> bool:
                stop = bool(inner(epoch, net)) if inner is not None else False
                report(epoch, net)
                return stop

            kwargs["epoch_end"] = epoch_end
        return fit(
            model,
            data,
            config=config,
            generator=self.generator,
            device=self.device,
            masks=self.masks,
            counter=self.counter,
            **kwargs,
        )

    def restore_frozen(self, model: nn.Module) -> None:
        """Put every masked-out coordinate back to its value in the input model."""
        if not self.frozen:
            return
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.frozen.items():
                p = params.get(name)
                if p is not None and p.shape == value.shape:
                    p.copy_(torch.where(self.masks[name], p, value))


def make_context(
    net: nn.Module,
    device: torch.device,
    *,
    seed: int,
    masks: Mapping[str, torch.Tensor] | None,
    progress: bool | None,
    recording: Any,
) -> RunContext:
    """The :class:`RunContext` that :meth:`UnlearningMethod.unlearn` hands to ``_unlearn`` for ``net``
    (the private copy already on ``device``): the seeded generator, the checked masks and a copy of
    the frozen coordinates.
    """
    resolved = resolve_masks(net, masks)
    params = dict(net.named_parameters())
    return RunContext(
        device=device,
        generator=torch.Generator().manual_seed(seed),
        seed=seed,
        masks=resolved,
        progress=progress,
        frozen={n: params[n].detach().clone() for n, m in resolved.items() if not bool(m.all())},
        recording=recording,
        report=EPOCH_REPORT.get(),
    )


@dataclass
class UnlearningResult:
    """What :meth:`UnlearningMethod.unlearn` returns.

    Attributes:
        model: The unlearned model (a new object, in eval mode).
        seconds: Wall time of ``_unlearn`` alone (copying and evaluation excluded).
        config: The method's resolved hyperparameters.
        diagnostics: Method-specific numbers, plus ``passes`` (samples back-propagated divided
            by the size of the original training set).
        method: Registry name of the method.
        training_set: What the unlearned model is, in effect, trained on: the scenario's retain
            set. A later request on this model (``scenario.then(...)``) is checked against it.
        status: The health check's verdict: ``"ok"``; ``"collapsed"`` when the accuracy on the
            retained classes' validation split (``scenario.val_retain``) fell by more than
            ``collapse_drop`` points against the input model (``diagnostics["val_acc_drop"]``);
            ``"unchecked"`` when that split is empty. Non-finite weights are not a status but a
            :class:`~obliviate.errors.DivergenceError` (run records then say ``"diverged"``).
        notes: The warnings raised during the run (``"Category: message"``, each once), so that
            tables can show them beside the row instead of in the middle of a progress bar.
        from_recipe: The hyperparameters whose defaults came from the original training recipe
            (``{field: value}``, see :class:`FromRecipe`); empty when none did.
    """

    model: nn.Module
    seconds: float
    config: dict[str, Any]
    diagnostics: dict[str, float]
    method: str
    training_set: TrainingSet | None = None
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    from_recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UnlearningMethod(Config):
    """Base class of unlearning methods.

    Class variables a subclass sets:
        requires: The scenario splits ``_unlearn`` reads ("forget", "retain", "val", "train",
            "test"); each must be non-empty.
        kinds: The scenario kinds the method's paper supports ("random", "classwise",
            "subclass", "custom", "corrupted"); others are refused with a clear error. A method
            that supports "random" also runs on "corrupted" scenarios (see :meth:`supports`).
        exact: True when the result equals retraining from scratch on D_r; the class docstring
            states what it is exact with respect to under "Exact with respect to:", and the
            contract suite checks exactly that against an independent ``ob.train``.
        needs_recording: True when ``_unlearn`` needs the recording of the original training
            (``ctx.recording``); ``unlearn`` without ``recording=`` then raises MissingDataError.
        ensemble: True when the result is an ensemble of models of the input's architecture
            (``sisa``) rather than the input's architecture: the contract suite then checks its
            predictions instead of its state-dict keys, and such a method refuses masks.
        presets: Named field overrides, e.g. ``{"digits": {...}}`` for the embedded demo.
        from_recipe: ``{field: FromRecipe}`` for the hyperparameters whose paper states them
            relative to the original training (see :class:`FromRecipe`).
    """

    name: ClassVar[str] = ""
    from_recipe: ClassVar[dict[str, FromRecipe]] = {}
    requires: ClassVar[frozenset[str]] = frozenset({"forget"})
    kinds: ClassVar[frozenset[str]] = frozenset(SCENARIO_KINDS)
    exact: ClassVar[bool] = False
    needs_recording: ClassVar[bool] = False
    ensemble: ClassVar[bool] = False

    @classmethod
    def supports(cls, kind: str) -> bool:
        """Whether the method runs on scenarios of ``kind``: the one rule every kind check uses.

        A kind in :attr:`kinds`, and ``"corrupted"`` wherever ``"random"`` is: a corrective
        scenario's forget set is a random draw of training rows (corrupted ones), so a method
        that forgets random rows applies to it.
        """
        return kind in cls.kinds or (kind == "corrupted" and "random" in cls.kinds)

    def load_dependencies(self) -> None:
        """Import the optional packages this configuration needs; ``unlearn`` calls it before the timer.

        The base class needs none. A method with an optional dependency overrides it (LoRA
        imports peft, whose first import is a one-off cost of the process, not of the method) and
        raises :class:`~obliviate.errors.MissingDependencyError` when it is absent. The call is
        cooperative: a mixin after ``UnlearningMethod`` in the bases (``LoraFields``) is reached
        through ``super()``. A subclass that still defines the former hook ``_load_dependencies``
        is honoured, with a :class:`DeprecationWarning`.
        """
        mixin = getattr(super(), "load_dependencies", None)
        if mixin is not None:
            mixin()
        legacy = type(self)._load_dependencies
        if legacy is not UnlearningMethod._load_dependencies:
            warnings.warn(
                f"{type(self).__name__}._load_dependencies is deprecated; override load_dependencies instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            legacy(self)

    def _load_dependencies(self) -> None:
        """Deprecated name of :meth:`load_dependencies` (kept for callers of the former hook)."""
        self.load_dependencies()

    def unlearn(
        self,
        model: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str],
        scenario: Scenario,
        *,
        seed: int = 0,
        device: str | torch.device = "auto",
        masks: Mapping[str, torch.Tensor] | None = None,
        progress: bool | None = None,
        recording: Any = None,
        collapse_drop: float = COLLAPSE_DROP,
    ) -> UnlearningResult:
        """Unlearn ``scenario.forget`` from a copy of ``model``.

        Every result is health-checked: the accuracy of the input and of the unlearned model on
        ``scenario.val_retain`` (one forward pass each, timed apart from ``seconds``) gives
        ``diagnostics["val_acc_drop"]`` (points) and ``status`` ("ok", or "collapsed" with an
        :class:`~obliviate.errors.UnlearningWarning` naming the fix).

        Args:
            model: The trained model; never modified. Pass the ``TrainResult`` of
                ``ob.train(model, scenario.train)``, an ``UnlearningResult`` (for a follow-up
                request, ``scenario.then(...)``) or a run directory, and the scenario is checked
                against the rows the model was trained on; a bare ``nn.Module`` is accepted with an
                :class:`~obliviate.errors.UncheckedTrainingSetWarning`.
            scenario: What to forget and what to keep.
            seed: Seed of every random draw (0 is a seed).
            device: "auto", "cpu", "cuda", ...
            masks: ``{parameter name: bool tensor}``; False coordinates stay exactly as they are.
            progress: Show progress bars (None: only on a terminal).
            recording: ``ob.train(..., record=True).recording`` of the model's training, for
                methods that unroll it (``sgu``, ``amnesiac``); ignored by the others.
            collapse_drop: Retained-class validation accuracy drop, in points, above which the
                result is ``"collapsed"`` (default :data:`COLLAPSE_DROP`).

        Returns:
            The unlearned model with its timing, resolved configuration, diagnostics and status.

        Raises:
            InvalidConfigError: wrong argument types or values.
            TrainingSetMismatchError: the scenario's training set (forget ∪ retain) is not the
                model's.
            MissingDataError: a split the method needs is empty.
            IncompatibleModelError: masks that do not fit the model.
            DivergenceError: the method produced NaN/inf weights or losses.
        """
        if not isinstance(scenario, Scenario):
            raise InvalidConfigError(
                f"The 'scenario' argument of {type(self).__name__}.unlearn must be an obliviate Scenario; "
                f"got {type(scenario).__name__}."
            )
        seed = check_seed(f"{type(self).__name__}.unlearn", seed)
        model = check_training_set(model, scenario, f"{type(self).__name__}.unlearn")
        check_output_width(f"{type(self).__name__}.unlearn", model, scenario.dataset.train, scenario.dataset.num_classes)
        if not self.supports(scenario.kind):
            raise InvalidConfigError(
                f"{type(self).__name__} supports {', '.join(sorted(self.kinds))} scenarios; {scenario.name!r} is "
                f"{scenario.kind!r}. Choose another method for this scenario."
            )
        for split in sorted(self.requires | {"forget"}):
            if len(scenario.split(split)) == 0:  # type: ignore[arg-type]
                raise MissingDataError(
                    f"{type(self).__name__} needs a non-empty {split!r} split, but scenario {scenario.name!r} has none."
                )
        if recording is not None:
            from ..recording import Recording

            if not isinstance(recording, Recording):
                raise InvalidConfigError(
                    f"The 'recording' argument of {type(self).__name__}.unlearn must be a Recording "
                    f"(ob.train(..., record=True).recording); got {type(recording).__name__}."
                )
        elif self.needs_recording:
            raise MissingDataError(
                f"{type(self).__name__} needs the recording of the model's training: train it with "
                "ob.train(..., record=True) (amnesiac: also record_updates=True) and pass "
                "recording=result.recording to unlearn."
            )
        self.load_dependencies()  # optional packages (e.g. peft for LoRA) are imported before the timed run
        dev = resolve_device(device)
        net = copy.deepcopy(model).to(dev)
        ctx = make_context(net, dev, seed=seed, masks=masks, progress=progress, recording=recording)
        start_norm = parameter_norm(net.parameters())
        if not math.isfinite(start_norm):
            raise IncompatibleModelError(
                f"The model given to {type(self).__name__}.unlearn holds NaN or inf weights; use a model with finite weights."
            )
        fix = "lower its learning rate" if "lr" in self.field_names() else "change its hyperparameters"
        collapse_drop = check_interval(
            f"{type(self).__name__}.unlearn", "collapse_drop", collapse_drop, float, low=0.0, high=100.0
        )
        health_timer = Timer(dev)
        with health_timer:  # the input model's accuracy on the retained classes, timed apart from the method
            before = accuracy(net, scenario.val_retain, device=dev) if len(scenario.val_retain) else math.nan
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("default")
                with seeded(seed, dev), Timer(dev) as prepare_timer:
                    ctx.prepared = self._prepare(net, scenario, ctx)
                if ctx.prepared is not None:
                    ctx.diagnostics["prepare_seconds"] = prepare_timer.seconds
                with seeded(seed, dev), Timer(dev) as timer:
                    out = self._unlearn(net, scenario, ctx)
            ctx.restore_frozen(out)
            bad = [n for n, p in out.named_parameters() if not torch.isfinite(p).all()]
            if bad:
                raise DivergenceError(f"The weights became non-finite (NaN or inf) in {bad[:3]}; {fix}.")
            check_weight_norm(parameter_norm(out.parameters()), start_norm, "over the run", fix)
        except DivergenceError as err:
            raise DivergenceError(f"Method {self.name or type(self).__name__!r} diverged: {err}") from err
        finally:
            notes = _replay(caught)
        out.eval()
        diagnostics = {k: float(v) for k, v in ctx.diagnostics.items()}
        diagnostics["passes"] = ctx.counter["samples"] / max(1, len(scenario.train))
        status = "unchecked"
        with health_timer:
            after = accuracy(out, scenario.val_retain, device=dev) if len(scenario.val_retain) else math.nan
        if math.isfinite(before) and math.isfinite(after):
            drop = 100.0 * (before - after)
            diagnostics["val_acc_before"], diagnostics["val_acc_after"], diagnostics["val_acc_drop"] = before, after, drop
            status = "collapsed" if drop > collapse_drop else "ok"
        diagnostics["health_seconds"] = health_timer.seconds
        if status == "collapsed":
            message = self._collapse_message(before, after, collapse_drop)
            warnings.warn(message, UnlearningWarning, stacklevel=3)
            notes.append(f"{UnlearningWarning.__name__}: {message}")
        return UnlearningResult(
            model=out,
            seconds=timer.seconds,
            config=self.to_dict(),
            diagnostics=diagnostics,
            method=self.name,
            training_set=scenario.retain_set,
            status=status,
            notes=notes,
            from_recipe=dict(getattr(self, "_from_recipe", {})),
        )

    def _collapse_message(self, before: float, after: float, collapse_drop: float) -> str:
        """What a collapsed result's warning says: the drop, and the fixes."""
        name = self.name or type(self).__name__
        config = self.to_dict()
        used = [p for p, values in self.presets.items() if all(config.get(k) == v for k, v in values.items())]
        others = sorted(set(self.presets) - set(used))
        fixes = [f"a preset ({', '.join(others)}; --preset NAME)"] if others else []
        fixes.append("tuning it for this model (ob.tune, or obliviate unlearn ... --tune 60s)")
        return (
            f"{name} collapsed the model: accuracy on the retained classes' validation split fell from "
            f"{100 * before:.1f} % to {100 * after:.1f} % (more than {collapse_drop:g} points). "
            + (f"Its {', '.join(used)} preset does" if used else "Its hyperparameters do")
            + f" not suit this model; try {' or '.join(fixes)}."
        )

    def _prepare(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> Any:
        """Work the method's protocol does at training time, not per request; None (the default) for none.

        It runs before the timer, with the run's seed; its result is ``ctx.prepared`` and its time
        ``diagnostics["prepare_seconds"]``, never part of ``seconds``. ``sisa`` trains its sharded
        ensemble here when given a single model (what a SISA deployment did when it trained).
        """
        return None

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        """Change ``model`` (a private copy on ``ctx.device``) and return it."""
        raise NotImplementedError  # abstract: every registered method implements it

    def recipe(self, **fixed: Any) -> TrainConfig:
        """A :class:`TrainConfig` from this method's fields of the same names, plus ``fixed``.

        Training-based methods keep their optimiser settings as fields named like
        :class:`TrainConfig`'s (``epochs``, ``lr``, ``batch_size`` ...); what they do not expose
        is given in ``fixed`` (e.g. ``schedule="constant"``).
        """
        shared = {n: getattr(self, n) for n in TrainConfig.field_names() if n in self.field_names()}
        return TrainConfig.from_dict({**fixed, **shared})

    @classmethod
    def describe_rule(cls, name: str) -> str:
        """How the default of ``name`` follows the recipe (its :class:`FromRecipe`, with the field's default)."""
        default = {f.name: f.default for f in dataclasses.fields(cls)}.get(name)
        return cls.from_recipe[name].describe(default)

    @classmethod
    def recipe_defaults(cls, recipe: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults ``recipe`` gives to the fields of :attr:`from_recipe` that ``given`` (the
        caller's values and the preset's) leaves unset.
        """
        if not recipe:
            return {}
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        optimizer = given.get("optimizer", defaults.get("optimizer"))
        out = {}
        for name, rule in cls.from_recipe.items():
            if name in given:
                continue
            value = rule.value(recipe, optimizer, defaults.get(name))
            if value is not dataclasses.MISSING:
                out[name] = value
        return out

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """Metadata for ``obliviate methods`` and the docs matrix."""
        doc = (cls.__doc__ or "").strip()
        return {
            "name": cls.name,
            "class": cls.__name__,
            "summary": doc.splitlines()[0] if doc else "",
            "requires": sorted(cls.requires),
            "kinds": sorted(k for k in SCENARIO_KINDS if cls.supports(k)),
            "exact": cls.exact,
            "ensemble": cls.ensemble,
            "needs_recording": cls.needs_recording,
            "presets": sorted(cls.presets),
            "defaults": cls().to_dict(),
            "search": {name: space.describe() for name, space in cls.search_space().items()},
            "from_recipe": {name: cls.describe_rule(name) for name in cls.from_recipe},
        }


@dataclass(frozen=True, kw_only=True)
class FineTuneRecipe(Config):
    """Optimiser fields shared by the methods that train with the one loop (FT, RL, GA, ...).

    A method inherits them next to :class:`UnlearningMethod`, re-declares the ones whose
    default differs, and documents all of them in its own ``Args:``; :meth:`UnlearningMethod.recipe`
    turns them into a :class:`~obliviate.training.TrainConfig`. Defaults: Unlearn-Sparse's FT.
    """

    epochs: int = param(10, Interval(int, 1), search=IntRange(1, 10))
    lr: float = param(0.01, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.3))
    optimizer: str = param("sgd", Options("sgd", "adam", "adamw"))
    momentum: float = param(0.9, Interval(float, 0.0, 1.0, closed="left"))
    weight_decay: float = param(5e-4, Interval(float, 0.0))
    batch_size: int = param(256, Interval(int, 1))
    schedule: str = param("constant", Options("constant", "cosine"))


def unlearn(
    model: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str],
    scenario: Scenario,
    method: str | UnlearningMethod,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    masks: Mapping[str, torch.Tensor] | None = None,
    progress: bool | None = None,
    preset: str | None = None,
    recording: Any = None,
    collapse_drop: float | None = None,
    recipe: TrainConfig | Mapping[str, Any] | bool | None = None,
    **hyperparameters: Any,
) -> UnlearningResult:
    """Unlearn ``scenario.forget`` from a copy of ``model`` with a registered method.

    Args:
        model: The trained model; never modified. A ``TrainResult``, ``UnlearningResult`` or run
            directory lets the scenario be checked against the model's training set (see
            :meth:`UnlearningMethod.unlearn`); a bare ``nn.Module`` is accepted with a warning.
        scenario: What to forget and what to keep.
        method: A registry name ("ssd", "finetune", ...) or a method instance.
        seed: Seed of every random draw.
        device: "auto", "cpu", "cuda", ...
        masks: ``{parameter name: bool tensor}``; False coordinates stay frozen.
        progress: Show progress bars (None: only on a terminal).
        preset: Start from a named preset of the method (e.g. "digits").
        recording: ``ob.train(..., record=True).recording`` of the model's training; needed by
            ``sgu`` and ``amnesiac``, ignored by the other methods.
        collapse_drop: Drop of the retained classes' validation accuracy, in points, above which
            the result's ``status`` is ``"collapsed"`` (None: :data:`COLLAPSE_DROP`, 10 points).
        recipe: The original model's training recipe (a ``TrainConfig`` or its fields). The
            hyperparameters a method states relative to it (its ``from_recipe``: ``retrain`` takes
            the whole recipe; the Unlearn-Sparse family scales its learning rate) default to the
            scaled values, unless given here or by the preset (``result.from_recipe`` lists them).
            None: the recipe of a ``TrainResult`` or run directory ``model``; False: none.
        **hyperparameters: Fields of the method; unknown names are errors.

    Returns:
        An :class:`UnlearningResult`.

    Example:
        >>> import obliviate as ob
        >>> ds = ob.load_dataset("digits")
        >>> sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
        >>> base = ob.train(ob.build_model("cnn", ds), sc.train, epochs=3, lr=0.05, batch_size=64, progress=False)
        >>> out = ob.unlearn(base, sc, "ssd", alpha=10.0, dampening=1.0)
        >>> out.method, out.config["alpha"]
        ('ssd', 10.0)
    """
    instance = make_method(method, preset=preset, recipe=resolve_recipe(recipe, model, "unlearn"), **hyperparameters)
    return instance.unlearn(
        model,
        scenario,
        seed=seed,
        device=device,
        masks=masks,
        progress=progress,
        recording=recording,
        collapse_drop=COLLAPSE_DROP if collapse_drop is None else collapse_drop,
    )


def make_method(
    method: str | UnlearningMethod,
    *,
    preset: str | None = None,
    recipe: TrainConfig | Mapping[str, Any] | None = None,
    **hyperparameters: Any,
) -> UnlearningMethod:
    """A validated method instance from a name (optionally a preset) or an instance, plus overrides.

    With ``recipe`` (the original training's), the fields of the method's ``from_recipe`` that
    neither ``hyperparameters`` nor the preset sets are scaled from it (:class:`FromRecipe`); an
    instance's values were chosen by its maker, so ``recipe`` leaves them alone.

    Raises:
        UnknownNameError: unknown method or preset.
        InvalidConfigError: unknown or invalid hyperparameters, or an invalid recipe.
    """
    if isinstance(method, str):
        cls = METHODS.get(method)
        scaled: dict[str, Any] = {}
        if recipe is not None:
            recipe = check_recipe(recipe, "make_method")
            cls.check_keys(list(hyperparameters))
            given = {**(cls.presets.get(preset) or {} if preset is not None else {}), **hyperparameters}
            scaled = cls.recipe_defaults(recipe, given)
        values = {**scaled, **hyperparameters}
        instance = cls.from_preset(preset, **values) if preset is not None else cls.from_dict(values)
        object.__setattr__(instance, "_from_recipe", {k: getattr(instance, k) for k in scaled})
        return instance
    if isinstance(method, UnlearningMethod):
        if preset is not None:
            raise InvalidConfigError("Pass 'preset' with a method name, not with a method instance.")
        type(method).check_keys(list(hyperparameters))
        if not hyperparameters:
            return method
        out = dataclasses.replace(method, **hyperparameters)
        kept = {k: v for k, v in getattr(method, "_from_recipe", {}).items() if k not in hyperparameters}
        object.__setattr__(out, "_from_recipe", kept)
        return out
    raise InvalidConfigError(f"The 'method' argument of unlearn must be a method name or instance; got {type(method).__name__}.")
