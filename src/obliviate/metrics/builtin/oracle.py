"""Gaps and distances to the retrained oracle (they need ``evaluate(..., reference=...)``)."""

from __future__ import annotations

import numpy as np

from ...errors import MissingDataError
from .. import functional as MF
from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["ActivationDistance", "AvgGap", "JSDivergence", "KLDivergence", "TugOfWar", "WeightDistance"]

_REFERENCE = "tests/reference/test_metrics_reference.py::"


def forget_outputs_pair(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    """The model's and the reference's softmax outputs on D_f.

    Raises:
        MissingDataError: the reference's outputs are missing or of another shape.
    """
    p_f, ref_probs = ctx.forget.probs, ctx.reference.forget_probs
    if ref_probs.shape != p_f.shape:
        raise MissingDataError("The reference's forget-set outputs are missing or of another shape.")
    return p_f, ref_probs


@register_metric("avg_gap")
class AvgGap(Metric):
    """SalUn's Avg. Gap over :data:`~obliviate.metrics.functional.GAP_METRICS`."""

    description = "mean |gap| to the oracle over forget, retain, test accuracy and MIA-efficacy"
    goal = "lower"
    requires = ("forget", "retain", "test_retain", "reference")
    reference_test = (
        "tests/unit/metrics/test_evaluate.py::test_avg_gap_is_mean_absolute_gap_over_forget_retain_test_and_mia_efficacy"
    )

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.avg_gap` of the model's and the reference's values."""
        oracle = ctx.reference.metrics(MF.GAP_METRICS, needed_for="avg_gap")
        return MF.avg_gap({n: ctx.metric(n) for n in MF.GAP_METRICS}, oracle)


@register_metric("tow")
class TugOfWar(Metric):
    """RUM's Tug-of-War: the product over forget, retain and test accuracy of (1 - |gap to the oracle|).

    :func:`~obliviate.metrics.functional.tug_of_war` of :data:`~obliviate.metrics.functional.TOW_METRICS`
    (accuracies as fractions, so no division by 100); 1 means the retrained model's accuracies.
    """

    description = "Tug-of-War: product of (1 - |gap to the oracle|) over forget, retain and test accuracy"
    goal = "higher"
    requires = ("forget", "retain", "test_retain", "reference")
    fraction = False
    bounds = (0.0, 1.0)
    reference_test = (
        "tests/unit/metrics/test_pool_metrics.py::test_tow_metric_is_the_product_of_one_minus_accuracy_gaps_to_the_reference"
    )

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.tug_of_war` of the model's and the reference's accuracies."""
        oracle = ctx.reference.metrics(MF.TOW_METRICS, needed_for="tow")
        return MF.tug_of_war({n: ctx.metric(n) for n in MF.TOW_METRICS}, oracle)


@register_metric("weight_distance")
class WeightDistance(Metric):
    """L2 distance of all parameters to the reference's."""

    description = "L2 distance of all parameters to the oracle"
    goal = "lower"
    requires = ("model", "reference")
    compares_weights = True
    fraction = False
    reference_test = "tests/unit/metrics/test_functional.py::test_weight_distance_equals_norm_of_flattened_parameter_difference"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.weight_distance` to the reference model."""
        return MF.weight_distance(ctx.model, ctx.reference.model)


@register_metric("js_divergence")
class JSDivergence(Metric):
    """Mean Jensen-Shannon divergence to the reference's outputs on D_f."""

    description = "mean Jensen-Shannon divergence to the oracle's outputs on D_f (nats)"
    goal = "lower"
    requires = ("forget", "reference")
    fraction = False
    bounds = (0.0, float(np.log(2.0)))
    reference_test = _REFERENCE + "test_js_divergence_equals_squared_scipy_jensenshannon_natural_log"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.js_divergence` of the two output sets."""
        return MF.js_divergence(*forget_outputs_pair(ctx))


@register_metric("kl_divergence")
class KLDivergence(Metric):
    """Mean KL(reference || model) on D_f."""

    description = "mean KL(oracle || model) on D_f (nats)"
    goal = "lower"
    requires = ("forget", "reference")
    fraction = False
    reference_test = _REFERENCE + "test_kl_divergence_equals_scipy_entropy_of_p_and_q_averaged"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.kl_divergence` with the reference first."""
        p_f, ref_probs = forget_outputs_pair(ctx)
        return MF.kl_divergence(ref_probs, p_f)


@register_metric("activation_distance")
class ActivationDistance(Metric):
    """Mean L2 distance of output probabilities to the reference's on D_f."""

    description = "mean L2 distance of output probabilities to the oracle's on D_f"
    goal = "lower"
    requires = ("forget", "reference")
    fraction = False
    bounds = (0.0, float(np.sqrt(2.0)))
    reference_test = _REFERENCE + "test_activation_distance_equals_mean_numpy_l2_norm"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.activation_distance` of the two output sets."""
        return MF.activation_distance(*forget_outputs_pair(ctx))
