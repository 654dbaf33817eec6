"""Declarative parameter constraints and the frozen-dataclass configuration base.

Every hyperparameter of a method (and of the training recipe) is declared with :func:`param`,
which attaches a :class:`Constraint`. The base class :class:`Config` checks all fields after
construction, so a method author writes no validation code, and
:func:`obliviate.testing.check_method` can generate invalid values from the constraints.
Messages follow one template::

    The 'alpha' parameter of SelectiveSynapticDampening must be a float in (0, inf); got -1.0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

from .errors import InvalidConfigError, UnknownNameError
from .registry import suggest

__all__ = [
    "Constraint",
    "Interval",
    "Options",
    "Boolean",
    "IntSequence",
    "SearchSpace",
    "Log",
    "Linear",
    "IntRange",
    "Choice",
    "Range",
    "param",
    "Config",
    "check_interval",
    "check_choice",
]


def _owner_name(owner: Any) -> str:
    if isinstance(owner, str):
        return owner
    return owner.__name__ if isinstance(owner, type) else type(owner).__name__


def _fail(owner: Any, name: str, constraint: str, value: Any, fix: str = "") -> InvalidConfigError:
    msg = f"The {name!r} parameter of {_owner_name(owner)} must be {constraint}; got {value!r}."
    return InvalidConfigError(msg + (" " + fix if fix else ""))


class Constraint:
    """What values a parameter accepts. Subclasses implement ``coerce`` and ``describe``."""

    allow_none: bool = False

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        """Return the value in canonical form, or raise :class:`InvalidConfigError`."""
        raise NotImplementedError  # abstract

    def describe(self) -> str:
        """Human-readable form of the constraint, used in messages and ``methods show``."""
        raise NotImplementedError  # abstract

    def invalid_examples(self) -> list[Any]:
        """Values that must be rejected (used by the contract tests)."""
        raise NotImplementedError  # abstract

    def _none_ok(self, value: Any) -> bool:
        return value is None and self.allow_none


class Interval(Constraint):
    """A real or integer number in an interval.

    Args:
        kind: ``int`` or ``float``. Integers are accepted for float parameters (and stored as
            floats); booleans are never numbers here.
        low: Lower bound, or None for -inf.
        high: Upper bound, or None for +inf.
        closed: Which ends are included: "both", "left", "right" or "neither".
        allow_none: Whether None is a valid value (meaning "off" or "automatic").
    """

    def __init__(
        self,
        kind: type,
        low: float | None = None,
        high: float | None = None,
        *,
        closed: str = "both",
        allow_none: bool = False,
    ) -> None:
        self.kind, self.low, self.high, self.closed, self.allow_none = kind, low, high, closed, allow_none

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        text = f"{'an int' if self.kind is int else 'a float'} in {left}{lo}, {hi}{right}"
        return text + (" or None" if self.allow_none else "")

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        if self._none_ok(value):
            return None
        ok_types = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            # numpy scalars are fine
            try:
                import numpy as np

                if isinstance(value, np.integer) or (self.kind is float and isinstance(value, np.floating)):
                    value = value.item()
                else:
                    raise TypeError
            except TypeError:
                raise _fail(owner, name, self.describe(), value) from None
        if self.kind is float:
            value = float(value)
            if not math.isfinite(value):
                raise _fail(owner, name, self.describe(), value)
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        if not (lo_ok and hi_ok):
            raise _fail(owner, name, self.describe(), value)
        return value

    def invalid_examples(self) -> list[Any]:
        bad: list[Any] = ["text", True]
        if self.low is not None:
            bad.append(self.low - 1 if self.kind is int else self.low - abs(self.low) - 1.0)
            if self.closed in ("right", "neither"):
                bad.append(self.kind(self.low))
        if self.high is not None:
            bad.append(self.high + 1 if self.kind is int else self.high + abs(self.high) + 1.0)
        if self.kind is int:
            bad.append(1.5)
        else:
            bad.append(float("inf"))
        if not self.allow_none:
            bad.append(None)
        return bad


class Options(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, *values: str, allow_none: bool = False) -> None:
        self.values, self.allow_none = tuple(values), allow_none

    def describe(self) -> str:
        text = "one of " + ", ".join(repr(v) for v in self.values)
        return text + (" or None" if self.allow_none else "")

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        if self._none_ok(value):
            return None
        if not isinstance(value, str) or value not in self.values:
            hint = suggest(str(value), list(self.values)).strip() if isinstance(value, str) else ""
            raise _fail(owner, name, self.describe(), value, hint)
        return value

    def invalid_examples(self) -> list[Any]:
        return ["not_an_option", 3] + ([] if self.allow_none else [None])


class Boolean(Constraint):
    """True or False (not 0/1)."""

    def describe(self) -> str:
        return "a bool"

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise _fail(owner, name, self.describe(), value)
        return value

    def invalid_examples(self) -> list[Any]:
        return [1, "yes", None]


class IntSequence(Constraint):
    """A strictly increasing sequence of non-negative integers, stored as a tuple."""

    def __init__(self, *, allow_none: bool = False) -> None:
        self.allow_none = allow_none

    def describe(self) -> str:
        return "a strictly increasing list of non-negative ints" + (" or None" if self.allow_none else "")

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        if self._none_ok(value):
            return None
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise _fail(owner, name, self.describe(), value)
        items = tuple(value)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
            raise _fail(owner, name, self.describe(), value)
        if any(b <= a for a, b in zip(items, items[1:], strict=False)):
            raise _fail(owner, name, self.describe(), value)
        return items

    def invalid_examples(self) -> list[Any]:
        return ["10,20", [20, 10], [-1], [1.5]]


class SearchSpace:
    """The range a hyperparameter is searched over by :func:`obliviate.tune` (declared with ``param(search=...)``).

    Subclasses: :class:`Log`, :class:`Linear`, :class:`IntRange`, :class:`Choice`. Every point of a
    declared range must pass the field's constraint; the contract suite checks :meth:`points`.
    """

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw a value for ``name`` from an Optuna trial."""
        raise NotImplementedError  # abstract

    def points(self) -> list[Any]:
        """Representative values (the ends and interior points) for the contract checks."""
        raise NotImplementedError  # abstract

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the range."""
        raise NotImplementedError  # abstract

    def describe(self) -> str:
        """Human-readable form, used in messages and ``methods show``."""
        raise NotImplementedError  # abstract

    def __repr__(self) -> str:
        return self.describe()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.describe()))


def _number(owner: str, name: str, value: Any, kind: type) -> Any:
    ok = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok) or (kind is float and not math.isfinite(value)):
        what = "an int" if kind is int else "a finite float"
        raise InvalidConfigError(f"The {name!r} of {owner} must be {what}; got {value!r}.")
    return kind(value)


class _Bounded(SearchSpace):
    kind: type = float
    log: bool = False

    def __init__(self, low: float, high: float) -> None:
        owner = type(self).__name__
        self.low, self.high = _number(owner, "low", low, self.kind), _number(owner, "high", high, self.kind)
        if not self.low < self.high:
            raise InvalidConfigError(f"{owner} needs low < high; got low={low!r}, high={high!r}.")
        if self.log and self.low <= 0:
            raise InvalidConfigError(f"{owner} is a log range and needs low > 0; got low={low!r}.")

    def contains(self, value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float)) and self.low <= value <= self.high

    def points(self) -> list[Any]:
        lo, hi = self.low, self.high
        if self.log:
            inner = [math.exp(math.log(lo) + f * (math.log(hi) - math.log(lo))) for f in (0.25, 0.5, 0.75)]
        else:
            inner = [lo + f * (hi - lo) for f in (0.25, 0.5, 0.75)]
        if self.kind is int:
            inner = [min(hi, max(lo, round(v))) for v in inner]
        else:
            inner = [min(hi, max(lo, v)) for v in inner]  # rounding of exp/log stays inside the ends
        return sorted(set([lo, *inner, hi]))

    def describe(self) -> str:
        return f"{type(self).__name__}({self.low:g}, {self.high:g})"


class Log(_Bounded):
    """A float searched uniformly in log scale over ``[low, high]`` (``0 < low < high``): learning rates, α, λ."""

    log = True

    def suggest(self, trial: Any, name: str) -> float:
        return float(trial.suggest_float(name, self.low, self.high, log=True))


class Linear(_Bounded):
    """A float searched uniformly over ``[low, high]``: fractions, ratios, momenta."""

    def suggest(self, trial: Any, name: str) -> float:
        return float(trial.suggest_float(name, self.low, self.high))


class IntRange(_Bounded):
    """An int searched over ``low..high`` (both included), in log scale with ``log=True``: epochs, steps, ranks."""

    kind = int

    def __init__(self, low: int, high: int, *, log: bool = False) -> None:
        self.log = bool(log)
        super().__init__(low, high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and super().contains(value)

    def suggest(self, trial: Any, name: str) -> int:
        return int(trial.suggest_int(name, self.low, self.high, log=self.log))

    def describe(self) -> str:
        return f"IntRange({self.low}, {self.high}{', log=True' if self.log else ''})"


class Choice(SearchSpace):
    """One of a few values (str, int, float, bool or None), searched as a categorical."""

    def __init__(self, *values: Any) -> None:
        if not values:
            raise InvalidConfigError("Choice needs at least one value.")
        bad = [v for v in values if v is not None and not isinstance(v, (str, int, float, bool))]
        if bad:
            raise InvalidConfigError(f"Choice values must be str, int, float, bool or None; got {bad[0]!r}.")
        if len(set(values)) != len(values):
            raise InvalidConfigError(f"Choice values must differ; got {values!r}.")
        self.values = tuple(values)

    def contains(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def points(self) -> list[Any]:
        return list(self.values)

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, self.values)

    def describe(self) -> str:
        return f"Choice({', '.join(repr(v) for v in self.values)})"


Range = Log | Linear | IntRange | Choice
"""The search ranges ``param(search=...)`` accepts."""


def param(default: Any, constraint: Constraint, *, search: SearchSpace | None = None) -> Any:
    """Declare a configuration field with its default, its :class:`Constraint` and, when it is worth
    tuning, the range :func:`obliviate.tune` searches (``search=Log(1e-4, 1e-1)``, :class:`Linear`,
    :class:`IntRange`, :class:`Choice`).

    Raises:
        InvalidConfigError: ``search`` is not a :class:`SearchSpace`, or one of its points fails
            ``constraint``.
    """
    metadata: dict[str, Any] = {"constraint": constraint}
    if search is not None:
        if not isinstance(search, SearchSpace):
            raise InvalidConfigError(f"param(search=...) takes Log, Linear, IntRange or Choice; got {type(search).__name__}.")
        for point in search.points():
            try:
                constraint.coerce("param", "search", point)
            except InvalidConfigError:
                raise InvalidConfigError(
                    f"param(search={search.describe()}): its point {point!r} is not {constraint.describe()}, what the field "
                    "accepts; every point of a search range must be a valid value."
                ) from None
        metadata["search"] = search
    return dataclasses.field(default=default, metadata=metadata)


def check_interval(owner: Any, name: str, value: Any, kind: type = float, **kw: Any) -> Any:
    """Validate a single value outside a :class:`Config` (functions' keyword arguments)."""
    return Interval(kind, **kw).coerce(owner, name, value)


def check_choice(owner: Any, name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """Validate that ``value`` is one of ``choices``."""
    return Options(*choices).coerce(owner, name, value)


class Config:
    """Base of frozen keyword-only dataclasses whose fields are validated parameters.

    Subclasses are declared ``@dataclass(frozen=True, kw_only=True)`` and define every field
    with :func:`param`. ``presets`` maps a preset name to field overrides (e.g. the embedded
    ``digits`` demo settings), documented in the class docstring.
    """

    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            constraint = f.metadata.get("constraint")
            if constraint is None:
                continue
            value = constraint.coerce(self, f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Cross-field checks; override when a constraint involves two fields."""

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of the configuration fields, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def constraints(cls) -> dict[str, Constraint]:
        """Field name -> constraint."""
        return {f.name: f.metadata["constraint"] for f in dataclasses.fields(cls) if "constraint" in f.metadata}  # type: ignore[arg-type]

    @classmethod
    def search_space(cls) -> dict[str, SearchSpace]:
        """Field name -> the range :func:`obliviate.tune` searches, for the fields declared with ``search=``."""
        return {f.name: f.metadata["search"] for f in dataclasses.fields(cls) if "search" in f.metadata}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The resolved fields as JSON-friendly values (tuples become lists)."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def check_keys(cls, keys: Mapping[str, Any] | list[str]) -> None:
        """Raise :class:`InvalidConfigError` for any key that is not a field."""
        names = cls.field_names()
        unknown = [k for k in keys if k not in names]
        if unknown:
            key = unknown[0]
            raise InvalidConfigError(
                f"{cls.__name__} has no parameter {key!r}.{suggest(key, names)} Valid parameters: {', '.join(names) or '(none)'}."
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):  # noqa: ANN206 - returns cls
        """Build from a mapping; unknown keys are errors, not silently dropped."""
        if not isinstance(values, Mapping):
            raise InvalidConfigError(f"{cls.__name__}.from_dict expects a mapping; got {type(values).__name__}.")
        cls.check_keys(list(values))
        return cls(**dict(values))

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any):  # noqa: ANN206 - returns cls
        """Build from a named preset, then apply ``overrides``."""
        if preset not in cls.presets:
            names = sorted(cls.presets)
            raise UnknownNameError(
                f"{cls.__name__} has no preset {preset!r}.{suggest(preset, names)} Valid presets: {', '.join(names) or '(none)'}."
            )
        values = {**cls.presets[preset], **overrides}
        return cls.from_dict(values)


SEED_LIMIT = 2**63


def check_seed(owner: Any, seed: Any, *, allow_none: bool = False) -> Any:
    """Validate a seed: an int in ``[0, 2**63)`` (what torch and numpy generators accept), or None if allowed."""
    try:
        return check_interval(owner, "seed", seed, kind=int, low=0, high=SEED_LIMIT, closed="left", allow_none=allow_none)
    except InvalidConfigError:
        raise _fail(owner, "seed", "an int in [0, 2**63)" + (" or None" if allow_none else ""), seed) from None


def check_output_width(owner: str, model: Any, data: Any, num_classes: int | None = None) -> None:
    """Refuse a model with fewer outputs than the classes of ``data`` (one forward on one sample).

    ``num_classes`` defaults to ``max(data.targets) + 1`` when ``data`` has integer targets; with
    neither, or an empty dataset, nothing is checked.

    Raises:
        IncompatibleModelError: the model cannot take the data's inputs, or its output width is
            below the number of classes.
    """
    import numpy as np
    import torch

    from ._utils import eval_mode, model_device
    from .data.base import iterate_batches
    from .errors import IncompatibleModelError

    if not hasattr(data, "__len__") or len(data) == 0:
        return
    if num_classes is None:
        targets = getattr(data, "targets", None)
        if targets is None or len(targets) == 0:
            return
        num_classes = int(np.asarray(targets).max()) + 1
    device = model_device(model)
    one = torch.utils.data.Subset(data, [0])
    x, _ = next(iter(iterate_batches(one, 1, device=device)))
    with torch.no_grad(), eval_mode(model):
        try:
            out = model(x)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:  # e.g. a scenario of another dataset
            raise IncompatibleModelError(
                f"The model given to {owner} cannot take the inputs of the data (one sample has shape "
                f"{tuple(x.shape[1:])}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
    out = getattr(out, "logits", out)  # adapters of hub models return an output object
    if not isinstance(out, torch.Tensor) or out.dim() < 1:
        return
    width = int(out.shape[-1])
    if width < num_classes:
        raise IncompatibleModelError(
            f"The model given to {owner} has {width} outputs, but the dataset has {num_classes} classes; "
            f"build the model with num_classes={num_classes} (e.g. ob.build_model(name, dataset))."
        )
