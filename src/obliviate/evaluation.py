"""``ob.evaluate``: every quality metric of an unlearned model, computed from one pass of outputs.

``evaluate`` resolves the requested names against the metric registry
(:data:`obliviate.metrics.METRICS`; each metric declares what it requires), builds one lazy
:class:`~obliviate.metrics.context.MetricContext` (the model is run once, in eval mode and
without augmentation, over each split some metric reads; the reference is evaluated on demand)
and loops over the metrics, each computing its value by :mod:`obliviate.metrics.functional`.
Definitions are the project's metric spec. In class-wise and sub-class scenarios the test set
of ``test_acc`` and the non-member set of the attacks is ``test_retain`` (the test split
without the forgotten (sub-)class).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ._validation import check_interval, check_output_width, check_seed
from .data.scenario import Scenario
from .errors import InvalidConfigError, MissingDataError, TrainingSetMismatchError
from .methods.base import UnlearningResult
from .metrics import METRICS
from .metrics.context import MetricContext, available_inputs, resolve_metrics
from .metrics.functional.gap import GAP_METRICS
from .runs import Run, check_training_set, resolve_model
from .training import TrainResult

__all__ = ["Evaluation", "evaluate", "GAP_METRICS"]


@dataclass
class Evaluation:
    """Metrics of one model on one scenario.

    Attributes:
        metrics: Metric name -> value (fractions in [0, 1] or raw numbers; NaN when a split is
            empty).
        scenario: The scenario's name.
        model: The evaluated model (not copied), kept so this evaluation can serve as the
            ``reference`` of others.
        forget_probs: The model's float64 softmax outputs on D_f (the divergence metrics of an
            evaluation that uses this one as its reference read them).
        splits: The model's outputs on every split the metrics read (``"forget"``, ``"val"``,
            ``"test_retain"`` ...), as :class:`~obliviate.metrics.context.SplitOutputs`; the
            bench report's loss histograms and ROC curves are drawn from them without another pass.
    """

    metrics: dict[str, float]
    scenario: str
    model: nn.Module = field(repr=False)
    forget_probs: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    splits: dict[str, Any] = field(repr=False, default_factory=dict)

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def to_dict(self) -> dict[str, float | None]:
        """Metrics as JSON-ready values (NaN becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.metrics.items()}


def _resolve_metrics(
    names: Iterable[str] | str | None,
    has_reference: bool,
    scenario: Scenario,
    *,
    recording: bool = False,
    risk_scorer: bool = False,
    weights: bool = True,
) -> list[str]:
    """The metric names an ``evaluate`` call computes (see :func:`obliviate.metrics.context.resolve_metrics`)."""
    available = available_inputs(scenario, reference=has_reference, recording=recording, risk_scorer=risk_scorer, weights=weights)
    return resolve_metrics(names, available, scenario)


def evaluate(
    model: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str],
    scenario: Scenario,
    reference: nn.Module | TrainResult | UnlearningResult | str | os.PathLike[str] | Evaluation | None = None,
    *,
    metrics: Iterable[str] | None = None,
    batch_size: int = 512,
    device: str | torch.device | None = None,
    seed: int = 0,
    mia_max_samples: int | None = None,
    recording: Any = None,
    risk_scorer: Any = None,
) -> Evaluation:
    """Evaluate a model on a scenario, optionally against the retrained oracle.

    Args:
        model: The model to evaluate (not modified; its train/eval mode is restored). Given as
            a ``TrainResult``, an ``UnlearningResult`` or a run directory, its training set is
            checked: it must be the scenario's training set (the original model, the no-op
            baseline) or its retain set (a model unlearned on this scenario). A bare
            ``nn.Module`` is accepted with an :class:`~obliviate.errors.UncheckedTrainingSetWarning`.
        scenario: The scenario it was unlearned on.
        reference: The oracle (retrained) model, or an :class:`Evaluation` of it (reused
            without recomputation). Enables ``avg_gap`` and the distances. Given as a result or
            run directory, its training set must be the scenario's retain set.
        metrics: Names to compute (default: all that the given arguments allow).
        batch_size: Inference batch size.
        device: Where to run (default: the model's device).
        seed: Seed of the class-balancing subsample of the SVC attacks, and of the random
            initialisation ``zrf`` compares with.
        mia_max_samples: Cap on each side of the SVC training set (None: the spec's full
            balanced sets; set it for CIFAR-scale speed).
        recording: ``ob.train(..., record=True).recording`` of the original model, for the
            opt-in ``verification_error`` (with ``verification_error_noop`` beside it) and
            ``unlearning_error`` (:mod:`obliviate.metrics.unrolling`; the naive retrain they
            need is computed once per scenario and cached on the recording).
        risk_scorer: A :class:`~obliviate.metrics.privacy_risk.PrivacyRiskScorer` (shadow
            models) for the opt-in ``privacy_risk``.

    Returns:
        An :class:`Evaluation`.

    Raises:
        TrainingSetMismatchError: the model's (or the reference's) known training set does not
            fit the scenario.

    Example:
        >>> import obliviate as ob
        >>> ds = ob.load_dataset("digits")
        >>> sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
        >>> model = ob.train(ob.build_model("mlp", ds), sc.train, epochs=3, lr=0.05, batch_size=64, progress=False).model
        >>> ev = ob.evaluate(model, sc, metrics=["forget_acc", "retain_acc"])
        >>> sorted(ev.metrics)
        ['forget_acc', 'retain_acc']
    """
    if not isinstance(scenario, Scenario):
        raise InvalidConfigError(f"The 'scenario' argument of evaluate must be a Scenario; got {type(scenario).__name__}.")
    model = check_training_set(model, scenario, "evaluate", unlearned_ok=True)
    if reference is not None and not isinstance(reference, Evaluation):
        if not isinstance(reference, (nn.Module, TrainResult, UnlearningResult, Run, str, os.PathLike)):
            raise InvalidConfigError(
                f"The 'reference' argument of evaluate must be a model or an Evaluation; got {type(reference).__name__}."
            )
        reference, ref_set = resolve_model(reference, "evaluate")
        if ref_set is not None and ref_set != scenario.retain_set:
            raise TrainingSetMismatchError(
                f"evaluate: the reference must be trained on scenario {scenario.name!r}'s retain set, but "
                f"{ref_set.explain(scenario.retain_set)}."
            )
    return _evaluate(
        model,
        scenario,
        reference,
        metrics=metrics,
        batch_size=batch_size,
        device=device,
        seed=seed,
        mia_max_samples=mia_max_samples,
        recording=recording,
        risk_scorer=risk_scorer,
    )


def _shapes(state: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _comparable_weights(model: nn.Module, reference: Any, recording: Any) -> bool:
    """Whether the model's parameters match the reference's (a module) and the recording's, name by name and shape by shape."""
    mine = {n: tuple(p.shape) for n, p in model.named_parameters()}
    ref = getattr(reference, "model", reference)
    if isinstance(ref, nn.Module) and {n: tuple(p.shape) for n, p in ref.named_parameters()} != mine:
        return False
    initial = getattr(recording, "initial", None)
    if isinstance(initial, dict) and not set(mine) <= set(initial):
        return False
    return True


def _evaluate(
    model: nn.Module,
    scenario: Scenario,
    reference: nn.Module | Evaluation | None,
    *,
    metrics: Iterable[str] | None,
    batch_size: int,
    device: str | torch.device | None,
    seed: int,
    mia_max_samples: int | None,
    recording: Any,
    risk_scorer: Any,
) -> Evaluation:
    """:func:`evaluate` on a module whose training set has been checked."""
    batch_size = check_interval("evaluate", "batch_size", batch_size, kind=int, low=1)
    seed = check_seed("evaluate", seed)
    check_output_width("evaluate", model, scenario.dataset.train, scenario.dataset.num_classes)
    if mia_max_samples is not None:
        mia_max_samples = check_interval("evaluate", "mia_max_samples", mia_max_samples, kind=int, low=2)
    wanted = _resolve_metrics(
        metrics,
        reference is not None,
        scenario,
        recording=recording is not None,
        risk_scorer=risk_scorer is not None,
        weights=_comparable_weights(model, reference, recording),
    )
    if len(scenario.forget) == 0:
        raise MissingDataError(f"Scenario {scenario.name!r} has an empty forget set; there is nothing to evaluate.")
    ctx = MetricContext(
        model,
        scenario,
        reference=reference,
        recording=recording,
        risk_scorer=risk_scorer,
        batch_size=batch_size,
        device=device,
        seed=seed,
        mia_max_samples=mia_max_samples,
        requested=() if metrics is None else wanted,
    )
    chosen = set(wanted)
    out = {n: ctx.metric(n) for n in METRICS.names() if n in chosen}
    return Evaluation(
        metrics=out, scenario=scenario.name, model=model, forget_probs=ctx.forget.probs, splits=ctx.computed_outputs()
    )
