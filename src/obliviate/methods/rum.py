"""RUM: split the forget set by memorisation, then unlearn its subsets in sequence (Zhao et al.)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .._validation import Constraint, Interval, IntRange, Options, param
from ..data.scenario import SCENARIO_KINDS, Scenario
from ..errors import InvalidConfigError, MissingDataError
from ..registry import suggest
from ..training import predict
from .base import METHODS, RunContext, UnlearningMethod, make_method, register_method

__all__ = ["RUM", "confidence_memorisation", "memorisation_subsets"]


class _MethodNames(Constraint):
    """A non-empty sequence of registered method names (not ``rum`` itself), stored as a tuple."""

    def describe(self) -> str:
        return "a non-empty list of registered method names"

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        who = owner if isinstance(owner, str) else type(owner).__name__
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise InvalidConfigError(
                f"The {name!r} parameter of {who} must be {self.describe()} (a tuple, e.g. ('neggrad_plus',)); got {value!r}."
            )
        items = tuple(value)
        if not items or not all(isinstance(v, str) for v in items):
            raise InvalidConfigError(f"The {name!r} parameter of {who} must be {self.describe()}; got {value!r}.")
        valid = ", ".join(n for n in METHODS.names() if n != "rum")
        for item in items:
            if item not in METHODS:
                raise InvalidConfigError(
                    f"The {name!r} parameter of {who} names {item!r}, which is not a registered method."
                    f"{suggest(item, METHODS.names())} Valid methods: {valid}."
                )
            if item == "rum":
                raise InvalidConfigError(f"The {name!r} parameter of {who} cannot name 'rum' itself; name a base method.")
        return items

    def invalid_examples(self) -> list[Any]:
        return ["neggrad_plus", [], [3], ["no_such_method"], ["rum"], None]


class _Name(Constraint):
    """A non-empty string, or None."""

    allow_none = True

    def describe(self) -> str:
        return "a non-empty string or None"

    def coerce(self, owner: Any, name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value):
            return value
        who = owner if isinstance(owner, str) else type(owner).__name__
        raise InvalidConfigError(f"The {name!r} parameter of {who} must be {self.describe()}; got {value!r}.")

    def invalid_examples(self) -> list[Any]:
        return ["", 3, ["digits"]]


def confidence_memorisation(model: nn.Module, data: Any, device: torch.device | None = None) -> np.ndarray:
    """A memorisation proxy of each sample of ``data``: ``1 − p(y | x)``, the model's softmax
    probability of the sample's own label taken from 1 (eval mode, one forward pass).

    Low confidence in a training sample's label marks an atypical sample the model had to
    memorise; RUM's C-proxy (Zhao et al.) is this confidence averaged over the training epochs,
    here it is read from the trained model alone.
    """
    logits, labels = predict(model, data, device=device)
    if len(labels) == 0:
        return np.zeros(0)
    p = torch.softmax(logits.double(), dim=1).gather(1, labels.long()[:, None])[:, 0]
    return (1.0 - p).numpy()


def memorisation_subsets(indices: np.ndarray, scores: np.ndarray, n_subsets: int, order: str) -> list[np.ndarray]:
    """Split ``indices`` into ``n_subsets`` contiguous groups of the score ranking (sizes differ by
    at most one), lowest scores first (``order="increasing"``) or highest first; each group sorted.
    """
    ranking = np.argsort(scores if order == "increasing" else -scores, kind="stable")
    return [np.sort(chunk) for chunk in np.array_split(np.asarray(indices)[ranking], n_subsets)]


@register_method("rum")
@dataclass(frozen=True, kw_only=True)
class RUM(UnlearningMethod):
    """RUM: refine D_f into homogeneous subsets by memorisation, then unlearn them one after another.

    Zhao, Kurmanji, Bărbulescu, Triantafillou & Triantafillou, "What Makes Unlearning Hard and What
    to Do About It", NeurIPS 2024, arXiv:2406.01257. The paper finds that unlearning is harder the
    more the forget samples are memorised (Feldman's memorisation,
    ``mem(x_i) = P_{f~A(S)}[f(x_i) = y_i] − P_{f~A(S∖i)}[f(x_i) = y_i]``) and the more D_f and D_r
    are entangled, and proposes the Refined-Unlearning Meta-algorithm: (1) *refinement*: split D_f
    into K homogeneous subsets by (a proxy of) memorisation; (2) *meta-unlearning*: apply an
    unlearning algorithm A_i to subset i, in sequence, the model of each step being the input of the
    next. (The paper's text was not reachable here; equation numbers are therefore not given.)

    Here: the memorisation proxy is :func:`confidence_memorisation` of the input model, ``1 − p(y|x)``
    on each forget sample (one forward pass over D_f). The paper's proxies need more than the model:
    its C-proxy averages the confidence over the training epochs (a recording of the run), its
    holdout-retraining proxy trains extra models; the final-checkpoint confidence is the cheapest
    one that any trained model allows. D_f is ranked by it and cut into ``n_subsets`` groups of
    equal size (low, medium, high for 3), unlearned in the order ``order`` (default low → high, the
    authors' RUM script). Each step is an ordinary deletion request: a scenario with the subset as
    its forget set, the same validation and test splits, the same kind and parameters (a class-wise
    request stays class-wise), and as retain set D_r (``step_retain="retain"``) or the training set
    minus the subsets forgotten so far (``"remaining"``). The base method ``base_methods[i]`` (any
    registered method, with preset ``base_preset``) runs its ``_unlearn`` on that scenario with the
    *same* run context: one seed, generator, device, masks (restored after every step), sample
    counter (``passes`` adds up the steps) and diagnostics (each step's under ``step<i>_``); calling
    each base method's public ``unlearn`` instead would copy the model, time and health-check every
    step. ``ob.unlearn`` copies, times and checks the whole sequence once.

    Scenario kinds: all that its base methods support. The paper's forget sets are random draws
    and sets chosen by memorisation (``random`` and ``custom`` here); a class-wise or sub-class
    request is split the same way, and a corrupted one keeps each step's rows corrupted.

    Data needs: forget, retain, and whatever the base methods need. Cost: one forward pass over D_f,
    plus each base method's cost on its subset.

    Args:
        base_methods: Registered method names: one per subset in unlearning order, or one name used
            for every subset. Default ("neggrad_plus",) (the authors' RUM script: NegGrad+ on each
            of the three subsets).
        n_subsets: Number K of memorisation groups. Default 3 (the paper's low / medium / high).
        order: "increasing" (least memorised subset first, the authors' order) or "decreasing".
            Default "increasing".
        base_preset: Preset of every base method (e.g. "digits"), or None for their defaults.
            Each base method must have it. Default None.
        step_retain: The retain set of each step: "retain" (D_r at every step: rows of later
            subsets are never trained on) or "remaining" (the training set minus the subsets
            forgotten so far, as in the authors' sequential runs; not for corrupted scenarios).
            Default "retain".

    Presets:
        digits: every base method with its own ``digits`` preset (NegGrad+'s by default).
            Results: ``benchmarks/results/recent_methods.json``.

    Differences from the authors' code (``kairanzhao/RUM``, ``main_forget.py``,
    ``main_rum_proxy.py``): there the forget set is *built* from the proxy (the most, least and
    median-scored samples of the whole training set), each step is a separate process with its own
    hyperparameters (NegGrad+ with α 0.99, 0.97, 0.97; 5, 5, 10 epochs; lr 0.01, 0.01, 0.001), and
    their confidence proxy is read from the learning events of training. Here the forget set is the
    scenario's and is split at its score terciles, every step takes the same preset, and the proxy
    is the final model's confidence. Their sequential steps retain the training set minus the
    subsets forgotten so far (``step_retain="remaining"``); the default here keeps later subsets
    out of the earlier steps' retain sets.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    kinds: ClassVar[frozenset[str]] = frozenset(SCENARIO_KINDS)
    presets: ClassVar[dict] = {"digits": {"base_preset": "digits"}}

    base_methods: tuple[str, ...] = param(("neggrad_plus",), _MethodNames())
    n_subsets: int = param(3, Interval(int, 1), search=IntRange(2, 5))
    order: str = param("increasing", Options("increasing", "decreasing"))
    base_preset: str | None = param(None, _Name())
    step_retain: str = param("retain", Options("retain", "remaining"))

    def _check(self) -> None:
        if len(self.base_methods) not in (1, self.n_subsets):
            raise InvalidConfigError(
                f"The 'base_methods' parameter of RUM must name one method or n_subsets={self.n_subsets} methods; "
                f"got {len(self.base_methods)} ({', '.join(self.base_methods)})."
            )
        for name in dict.fromkeys(self.base_methods):
            cls = METHODS.get(name)
            if cls.needs_recording:
                raise InvalidConfigError(
                    f"RUM cannot run {name!r}: it unrolls the recording of the original training, which no longer "
                    "describes the model after the first step. Choose a base method without needs_recording."
                )
            if cls.ensemble or cls._prepare is not UnlearningMethod._prepare:
                raise InvalidConfigError(
                    f"RUM cannot run {name!r}: it prepares its own model before unlearning (sisa trains a sharded "
                    "ensemble), which a step of RUM does not do. Choose a base method that changes the model it is given."
                )
            if self.base_preset is not None and self.base_preset not in cls.presets:
                raise InvalidConfigError(
                    f"The 'base_preset' parameter of RUM is {self.base_preset!r}, which base method {name!r} does not "
                    f"have (its presets: {', '.join(sorted(cls.presets)) or 'none'}); choose another or None."
                )

    def bases(self) -> list[UnlearningMethod]:
        """The base method instances, one per subset in unlearning order."""
        names = self.base_methods * self.n_subsets if len(self.base_methods) == 1 else self.base_methods
        return [make_method(name, preset=self.base_preset) for name in names]

    def load_dependencies(self) -> None:
        super().load_dependencies()
        for base in self.bases():
            base.load_dependencies()

    def _step_scenario(self, scenario: Scenario, subsets: list[np.ndarray], step: int) -> Scenario:
        """The deletion request of step ``step`` (0-based): its subset, and the retain set ``step_retain`` says."""
        forget = subsets[step]
        retain = scenario.retain_idx
        if self.step_retain == "remaining":
            retain = np.union1d(retain, np.concatenate([np.zeros(0, np.int64), *subsets[step + 1 :]])).astype(np.int64)
        corruption = scenario.corruption
        if corruption is not None:  # the step's rows keep the corruption the model was trained with
            keep = np.isin(corruption.indices, forget)
            corruption = dataclasses.replace(corruption, indices=corruption.indices[keep], labels=corruption.labels[keep])
        return Scenario(
            dataset=scenario.dataset,
            forget_idx=forget,
            retain_idx=retain,
            val_idx=scenario.val_idx,
            test_idx=scenario.test_idx,
            kind=scenario.kind,
            name=f"{scenario.name}|rum {step + 1}/{len(subsets)}",
            seed=scenario.seed,
            val_seed=scenario.val_seed,
            params=dict(scenario.params),
            corruption=corruption,
        )

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        bases = self.bases()
        for base in bases:
            if not base.supports(scenario.kind):
                raise InvalidConfigError(
                    f"RUM's base method {base.name!r} supports {', '.join(sorted(base.kinds))} scenarios; "
                    f"{scenario.name!r} is {scenario.kind!r}. Choose other base methods."
                )
        if self.step_retain == "remaining" and scenario.corruption is not None:
            raise InvalidConfigError(
                "RUM with step_retain='remaining' would retain corrupted rows as clean ones in its early steps; "
                "use step_retain='retain' for a corrupted scenario."
            )
        scores = confidence_memorisation(model, scenario.forget, ctx.device)
        subsets = memorisation_subsets(scenario.forget_idx, scores, self.n_subsets, self.order)
        mode = model.training
        for step, base in enumerate(bases):
            if subsets[step].size == 0:  # fewer forget rows than subsets
                continue
            sub = self._step_scenario(scenario, subsets, step)
            for split in sorted(base.requires | {"forget"}):
                if len(sub.split(split)) == 0:
                    raise MissingDataError(
                        f"RUM's step {step + 1} ({base.name}) needs a non-empty {split!r} split, but its scenario has none."
                    )
            known = set(ctx.diagnostics)
            model.train(mode)  # every step starts in the mode the input model had
            model = base._unlearn(model, sub, ctx)
            ctx.restore_frozen(model)
            tag = f"step{step + 1}_"
            for key in set(ctx.diagnostics) - known:
                ctx.diagnostics[tag + key] = ctx.diagnostics.pop(key)
            ctx.diagnostics[tag + "size"] = float(subsets[step].size)
            ctx.diagnostics[tag + "memorisation"] = float(scores[np.searchsorted(scenario.forget_idx, subsets[step])].mean())
        return model
