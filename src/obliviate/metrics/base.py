"""The :class:`Metric` base class and the metric registry.

A metric is a small class registered with :func:`register_metric`. It declares what it needs
(``requires``: the model outputs on each split, the model itself, the retrained reference, the
training recording, a privacy-risk scorer), how to read it (``goal``, ``fraction``, ``bounds``),
whether :func:`obliviate.evaluate` computes it by default (``opt_in``), and computes its value
from a lazy :class:`~obliviate.metrics.context.MetricContext` by calling its pure twin in
:mod:`obliviate.metrics.functional`:

>>> import obliviate as ob
>>> from obliviate.metrics import Metric, register_metric
>>> @register_metric("forget_error_demo")
... class ForgetError(Metric):
...     '''1 - accuracy on D_f.'''
...
...     description = "error rate on the forget set D_f"
...     goal = "oracle"
...     requires = ("forget",)
...
...     def compute(self, ctx):
...         return 1.0 - ob.metrics.functional.accuracy(ctx.forget.probs, ctx.forget.labels)
>>> ob.METRICS.get("forget_error_demo").needs_reference
False
>>> _ = ob.METRICS.unregister("forget_error_demo")
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from ..errors import InvalidConfigError
from ..registry import Registry

__all__ = ["INPUTS", "METRICS", "Metric", "MetricRegistry", "register_metric"]

INPUTS: tuple[str, ...] = (
    "forget",
    "retain",
    "test_retain",
    "val",
    "test_forget",
    "model",
    "reference",
    "recording",
    "risk_scorer",
    "corruption",
    "trigger",
)
"""What a metric may declare in ``requires``.

* ``forget``, ``retain``, ``test_retain``, ``val``, ``test_forget``: the model's softmax outputs
  and the labels on that split (``test_forget`` exists only in class-wise and sub-class scenarios);
* ``model``: the evaluated network itself (its weights, or outputs on other data);
* ``reference``: the retrained oracle (its weights, its outputs on D_f, its metrics);
* ``recording``: ``evaluate(recording=...)``, the recording of the original training;
* ``risk_scorer``: ``evaluate(risk_scorer=...)``, a fitted privacy-risk scorer;
* ``corruption``: the corrupted rows of a corrective scenario (:meth:`~obliviate.data.Scenario.corrupted`),
  with their true inputs and labels;
* ``trigger``: the trigger and target class of a backdoor scenario.
"""


class Metric(abc.ABC):
    """Base class of every quality metric of :func:`obliviate.evaluate`.

    Subclasses set the class variables below and implement :meth:`compute`; registering one
    (:func:`register_metric`) fills ``name`` and ``needs_reference``.

    Attributes:
        name: Registry name, as stored in results.
        description: One line.
        goal: "higher" or "lower" is better, or "oracle" (closest to the retrained model).
        requires: The inputs it reads, among :data:`INPUTS`. A metric whose input cannot be had
            (no ``reference=`` given, no forgotten class) is left out of the default list and
            raises :class:`~obliviate.errors.MissingDataError` when named.
        fraction: Stored as a fraction in [0, 1] (printed as a percentage).
        bounds: Closed interval its finite values lie in (default [0, 1] for a fraction, else
            [0, inf)). NaN is allowed (an empty split, an architecture that cannot be reset).
        opt_in: Computed only when named in ``evaluate(metrics=...)`` (it needs an extra
            argument of ``evaluate``, e.g. the training recording, or costs training runs).
        companions: Metrics always reported beside this one when it is named.
        compares_weights: It compares the model's parameters, name by name, with the reference's or
            the recording's; left out (named: refused) when they differ in names or shapes, as an
            ensemble's (``sisa``) do against a single model.
        needs_reference: ``"reference" in requires`` (set on registration).
        reference_test: ``"path::function"`` of the test that checks its value against an
            independent implementation (scikit-learn, SciPy, a direct computation);
            :func:`obliviate.testing.check_metric` verifies that it exists.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    goal: ClassVar[Literal["higher", "lower", "oracle"]] = "oracle"
    compares_weights: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ()
    fraction: ClassVar[bool] = True
    bounds: ClassVar[tuple[float, float] | None] = None
    opt_in: ClassVar[bool] = False
    companions: ClassVar[tuple[str, ...]] = ()
    needs_reference: ClassVar[bool] = False
    reference_test: ClassVar[str] = ""

    @abc.abstractmethod
    def compute(self, ctx: Any) -> float:
        """The metric's value for the model of ``ctx`` (read only what ``requires`` declares).

        Args:
            ctx: The lazy bundle of model outputs and arguments built by ``evaluate`` (a
                :class:`~obliviate.metrics.context.MetricContext`; not imported here, because the
                context module builds on this one).

        Returns:
            The value (NaN when a split it reads is empty).
        """

    @classmethod
    def value_bounds(cls) -> tuple[float, float]:
        """``bounds``, or its default: [0, 1] for a fraction, [0, inf) otherwise."""
        if cls.bounds is not None:
            return cls.bounds
        return (0.0, 1.0) if cls.fraction else (0.0, math.inf)


class MetricRegistry(Registry[type[Metric]]):
    """The registry of :class:`Metric` classes (``METRICS.get(name)`` returns the class)."""

    def unregister(self, name: str) -> type[Metric]:
        """Remove and return a registered metric (for tests and interactive experiments)."""
        self.get(name)
        return self._items.pop(name)


METRICS: MetricRegistry = MetricRegistry("metric")


def register_metric(name: str, *, force: bool = False) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator registering a :class:`Metric` subclass under ``name``.

    Args:
        name: Lower-case snake-case registry name.
        force: Replace a metric already registered under that name.

    Raises:
        InvalidConfigError: not a Metric subclass, an unknown input in ``requires``, an invalid
            ``goal``, or the name is taken.
    """

    def add(cls: type[Metric]) -> type[Metric]:
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise InvalidConfigError(f"@register_metric({name!r}) decorates Metric subclasses; got {cls!r}.")
        unknown = [r for r in cls.requires if r not in INPUTS]
        if unknown:
            raise InvalidConfigError(f"Metric {name!r} requires unknown inputs {unknown}; valid inputs: {', '.join(INPUTS)}.")
        if cls.goal not in ("higher", "lower", "oracle"):
            raise InvalidConfigError(f"Metric {name!r}: goal must be 'higher', 'lower' or 'oracle'; got {cls.goal!r}.")
        cls.name = name
        cls.needs_reference = "reference" in cls.requires
        METRICS.register(name, cls, force=force)
        return cls

    return add
