"""The lazy bundle that :func:`obliviate.evaluate` hands to every metric's ``compute``.

:class:`MetricContext` computes what a metric reads on first use and keeps it: each split's
softmax outputs are one inference pass however many metrics read them, the attack features of
each membership-inference feature are computed once, and a metric that builds on another
(``avg_gap`` on the accuracies, ``mia_efficacy`` on ``mia_efficacy_confidence``) reads its value
through :meth:`MetricContext.metric`. Each read of an input named in
:data:`~obliviate.metrics.base.INPUTS` is recorded in :attr:`MetricContext.touched`, so the
contract suite (:func:`obliviate.testing.check_metric`) can compare what a metric reads with
what it declares.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import model_device, resolve_device
from ..data.scenario import Scenario
from ..errors import MissingDataError
from ..training import predict
from . import functional as MF
from .base import INPUTS, METRICS

__all__ = ["MetricContext", "ReferenceOutputs", "SplitOutputs", "available_inputs", "missing_message", "resolve_metrics"]

SPLITS: tuple[str, ...] = ("forget", "retain", "test_retain", "val", "test_forget")


class SplitOutputs(NamedTuple):
    """The model's float64 softmax outputs ``(N, C)`` and the labels ``(N,)`` on one split
    (``(0, 0)`` and ``(0,)`` for an empty split).
    """

    probs: np.ndarray
    labels: np.ndarray


def split_outputs(model: nn.Module, data: Dataset | None, batch_size: int, device: torch.device) -> SplitOutputs:
    """Softmax outputs (in float64) and labels of ``model`` on ``data``, in eval mode."""
    if data is None or len(data) == 0:  # type: ignore[arg-type]
        return SplitOutputs(np.zeros((0, 0)), np.zeros(0, np.int64))
    logits, labels = predict(model, data, batch_size=batch_size, device=device)
    return SplitOutputs(torch.softmax(logits.double(), dim=1).numpy(), labels.numpy())


def available_inputs(
    scenario: Scenario, *, reference: bool, recording: bool, risk_scorer: bool, weights: bool = True
) -> frozenset[str]:
    """The inputs of :data:`~obliviate.metrics.base.INPUTS` that an ``evaluate`` call can provide
    (``weights``: whether the model's parameters match the reference's and the recording's).
    """
    out = set(INPUTS) | {"weights"}  # "weights": not an input but a condition (Metric.compares_weights)
    for name, present in (
        ("weights", weights),
        ("reference", reference),
        ("recording", recording),
        ("risk_scorer", risk_scorer),
        ("test_forget", scenario.test_forget is not None),
        ("corruption", scenario.corruption is not None),
        ("trigger", scenario.test_triggered is not None),
    ):
        if not present:
            out.discard(name)
    return frozenset(out)


def missing_message(metric: str, needed: str, scenario: Scenario) -> str:
    """Why ``metric`` cannot be computed without the input ``needed``, and the fix."""
    if needed == "reference":
        return f"Metric {metric!r} needs the retrained model: pass reference=... to evaluate."
    if needed == "weights":
        return (
            f"Metric {metric!r} compares weights, but the model's parameters differ in names or shapes from the "
            "reference's or the recording's (an ensemble such as sisa's against a single model)."
        )
    if needed == "test_forget":
        return f"Metric {metric!r} needs a class-wise or sub-class scenario; {scenario.name!r} has no forgotten class."
    if needed == "corruption":
        return f"Metric {metric!r} needs a corrective scenario (Scenario.corrupted); {scenario.name!r} has no corrupted rows."
    if needed == "trigger":
        return f"Metric {metric!r} needs a backdoor scenario (kind='backdoor'); {scenario.name!r} is not one."
    if needed == "recording":
        return (
            f"Metric {metric!r} needs the recording of the original training: "
            "evaluate(..., recording=ob.train(..., record=True).recording)."
        )
    if needed == "risk_scorer":
        return (
            f"Metric {metric!r} needs shadow models: evaluate(..., "
            "risk_scorer=obliviate.metrics.privacy_risk.PrivacyRiskScorer.fit(model, scenario, recipe=...))."
        )
    return f"Metric {metric!r} needs {needed!r}, which this evaluation cannot provide."


def resolve_metrics(names: Iterable[str] | str | None, available: frozenset[str], scenario: Scenario) -> list[str]:
    """The metric names an ``evaluate`` call computes, from its declarations.

    Args:
        names: The requested names, one name, or None for the default: every metric that is
            not opt-in and whose inputs are all available.
        available: What the call provides (:func:`available_inputs`).
        scenario: The scenario (named in error messages).

    Returns:
        The names, each named metric followed by its companions.

    Raises:
        UnknownNameError: an unknown name (the message lists the valid ones).
        MissingDataError: a named metric needs an input the call does not provide.
    """

    def needs(cls: Any) -> tuple[str, ...]:
        return (*cls.requires, "weights") if cls.compares_weights else tuple(cls.requires)

    if names is None:
        return [n for n, cls in METRICS.items() if not cls.opt_in and set(needs(cls)) <= available]
    if isinstance(names, str):
        names = [names]
    chosen: list[str] = []
    for n in names:
        cls = METRICS.get(n)
        for needed in needs(cls):
            if needed not in available:
                raise MissingDataError(missing_message(n, needed, scenario))
        chosen.append(n)
    for n in list(chosen):
        for companion in METRICS.get(n).companions:
            if companion not in chosen:
                chosen.append(companion)
    return chosen


class ReferenceOutputs:
    """What metrics read of the retrained reference: its model, its outputs on D_f, its metrics.

    Built from a model (evaluated lazily in a :class:`MetricContext` of its own, with the same
    scenario, seed and device) or from a stored evaluation (anything with ``model``,
    ``forget_probs`` and ``metrics``, e.g. an :class:`obliviate.Evaluation`), reused as is.
    """

    def __init__(self, reference: Any, parent: MetricContext) -> None:
        self._stored = None if isinstance(reference, nn.Module) else reference
        self.model: nn.Module = reference if self._stored is None else self._stored.model
        self._ctx = (
            MetricContext(
                reference,
                parent.scenario,
                batch_size=parent.batch_size,
                device=parent.device,
                seed=parent.seed,
                mia_max_samples=parent.mia_max_samples,
            )
            if self._stored is None
            else None
        )

    @property
    def forget_probs(self) -> np.ndarray:
        """The reference's softmax outputs on D_f."""
        if self._ctx is not None:
            return self._ctx.forget.probs
        return np.asarray(self._stored.forget_probs)  # type: ignore[union-attr]

    def metrics(self, names: Iterable[str], needed_for: str) -> dict[str, float]:
        """The reference's values of ``names``.

        Raises:
            MissingDataError: a stored evaluation lacks some of them.
        """
        names = list(names)
        if self._ctx is not None:
            return {n: self._ctx.metric(n) for n in names}
        stored = self._stored.metrics  # type: ignore[union-attr]
        missing = [m for m in names if m not in stored]
        if missing:
            raise MissingDataError(f"The reference Evaluation lacks {missing}, needed for {needed_for}.")
        return {n: stored[n] for n in names}


class MetricContext:
    """Everything an evaluation can give its metrics, computed on first use and kept.

    Args:
        model: The evaluated model (never modified; run in eval mode, its modes restored).
        scenario: Its scenario.
        reference: The retrained oracle: a model or a stored evaluation (see
            :class:`ReferenceOutputs`), or None.
        recording: The training recording, or None.
        risk_scorer: A fitted privacy-risk scorer, or None.
        batch_size: Inference batch size.
        device: Where to run (default: the model's device).
        seed: Seed of the metrics' random draws.
        mia_max_samples: Cap on each side of the SVC attacks' training sets (None: no cap).
        requested: The names the caller asked for explicitly (a metric may be stricter then,
            e.g. ``zrf`` raises instead of giving NaN).

    Attributes:
        touched: The inputs read so far (names of :data:`~obliviate.metrics.base.INPUTS`).
    """

    def __init__(
        self,
        model: nn.Module,
        scenario: Scenario,
        *,
        reference: Any = None,
        recording: Any = None,
        risk_scorer: Any = None,
        batch_size: int = 512,
        device: str | torch.device | None = None,
        seed: int = 0,
        mia_max_samples: int | None = None,
        requested: Iterable[str] = (),
    ) -> None:
        self.scenario = scenario
        self.batch_size = batch_size
        self.device = model_device(model) if device is None else resolve_device(device)
        self.seed = seed
        self.mia_max_samples = mia_max_samples
        self.requested = frozenset(requested)
        self.touched: set[str] = set()
        self._model = model
        self._reference = reference
        self._recording = recording
        self._risk_scorer = risk_scorer
        self._memo: dict[Any, Any] = {}

    # ------------------------------------------------------------------ plumbing
    def memo(self, key: Any, fn: Callable[[], Any]) -> Any:
        """``fn()``, computed once per context and key."""
        if key not in self._memo:
            self._memo[key] = fn()
        return self._memo[key]

    def computed_outputs(self) -> dict[str, SplitOutputs]:
        """The splits whose outputs this context has computed so far, by name."""
        return {k[1]: v for k, v in self._memo.items() if isinstance(k, tuple) and k[0] == "outputs"}

    def metric(self, name: str) -> float:
        """The value of the registered metric ``name`` on this context (computed once)."""
        return self.memo(("metric", name), lambda: METRICS.get(name)().compute(self))

    def _network(self) -> nn.Module:
        """The model on ``device`` (a copy when it lives elsewhere)."""

        def build() -> nn.Module:
            m = self._model
            return m if model_device(m) == self.device else copy.deepcopy(m).to(self.device)

        return self.memo("network", build)

    # ------------------------------------------------------------------ inputs
    def outputs(self, split: str) -> SplitOutputs:
        """The model's outputs on ``split`` (one of forget, retain, test_retain, val, test_forget).

        Raises:
            MissingDataError: the scenario has no such split (``test_forget`` of a random one).
        """
        if split not in SPLITS:
            raise KeyError(split)
        self.touched.add(split)

        def compute() -> SplitOutputs:
            data = getattr(self.scenario, split)
            if data is None:
                raise MissingDataError(f"Scenario {self.scenario.name!r} has no {split!r} split.")
            return split_outputs(self._network(), data, self.batch_size, self.device)

        return self.memo(("outputs", split), compute)

    @property
    def forget(self) -> SplitOutputs:
        """Outputs on the forget set D_f."""
        return self.outputs("forget")

    @property
    def retain(self) -> SplitOutputs:
        """Outputs on the retain set D_r."""
        return self.outputs("retain")

    @property
    def test_retain(self) -> SplitOutputs:
        """Outputs on the test split without the forgotten (sub-)class (all of it when random)."""
        return self.outputs("test_retain")

    @property
    def val(self) -> SplitOutputs:
        """Outputs on the validation split."""
        return self.outputs("val")

    @property
    def test_forget(self) -> SplitOutputs:
        """Outputs on the test samples of the forgotten (sub-)class."""
        return self.outputs("test_forget")

    @property
    def model(self) -> nn.Module:
        """The evaluated network, on ``device``."""
        self.touched.add("model")
        return self._network()

    @property
    def reference(self) -> ReferenceOutputs:
        """The retrained reference.

        Raises:
            MissingDataError: none was given.
        """
        self.touched.add("reference")
        if self._reference is None:
            raise MissingDataError("This evaluation has no reference: pass reference=... to evaluate.")
        return self.memo("reference", lambda: ReferenceOutputs(self._reference, self))

    @property
    def recording(self) -> Any:
        """The recording of the original training.

        Raises:
            MissingDataError: none was given.
        """
        self.touched.add("recording")
        if self._recording is None:
            raise MissingDataError("This evaluation has no recording: pass recording=... to evaluate.")
        return self._recording

    @property
    def risk_scorer(self) -> Any:
        """The fitted privacy-risk scorer.

        Raises:
            MissingDataError: none was given.
        """
        self.touched.add("risk_scorer")
        if self._risk_scorer is None:
            raise MissingDataError("This evaluation has no risk scorer: pass risk_scorer=... to evaluate.")
        return self._risk_scorer

    @property
    def corruption(self) -> Any:
        """The scenario's :class:`~obliviate.data.corrupt.Corruption`.

        Raises:
            MissingDataError: the scenario is not a corrective one.
        """
        self.touched.add("corruption")
        if self.scenario.corruption is None:
            raise MissingDataError(f"Scenario {self.scenario.name!r} has no corrupted rows (build one with Scenario.corrupted).")
        return self.scenario.corruption

    @property
    def trigger(self) -> Any:
        """The backdoor's :class:`~obliviate.data.corrupt.Corruption` (its trigger and target).

        Raises:
            MissingDataError: the scenario is not a backdoor one.
        """
        self.touched.add("trigger")
        c = self.scenario.corruption
        if c is None or c.kind != "backdoor":
            raise MissingDataError(
                f"Scenario {self.scenario.name!r} is not a backdoor scenario (Scenario.corrupted(..., kind='backdoor'))."
            )
        return c

    # ------------------------------------------------------------------ derived
    def attack_features(self, feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One membership-inference feature on D_r (members), D_t (non-members) and D_f (targets).

        Raises:
            MissingDataError: the retain or the test set is empty.
        """
        r, t, f = self.retain, self.test_retain, self.forget

        def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if len(r.labels) == 0 or len(t.labels) == 0:
                raise MissingDataError("Membership-inference metrics need non-empty retain and test sets.")
            return tuple(MF.mia_feature(s.probs, s.labels, feature) for s in (r, t, f))  # type: ignore[return-value]

        return self.memo(("features", feature), compute)
