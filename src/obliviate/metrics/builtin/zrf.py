"""Zero Retrain Forgetting against a seeded random initialisation of the model's architecture."""

from __future__ import annotations

import copy

import numpy as np

from ...errors import IncompatibleModelError
from ...models.zoo import reinitialize
from .. import functional as MF
from ..base import Metric, register_metric
from ..context import MetricContext, split_outputs

__all__ = ["ZRF"]


@register_metric("zrf")
class ZRF(Metric):
    """:func:`~obliviate.metrics.functional.zrf` of the model against a copy re-initialised from
    ``seed`` (eval mode); NaN when the architecture cannot be re-initialised and the metric was
    not asked for by name (then :class:`~obliviate.errors.IncompatibleModelError`).
    """

    description = "1 - mean JS(model, random init of its architecture) on D_f (1: answers like an untrained model)"
    goal = "oracle"
    requires = ("forget", "model")
    fraction = False
    bounds = (1.0 - float(np.log(2.0)), 1.0)
    reference_test = (
        "tests/reference/test_zrf_and_entropy_mia.py::"
        "test_evaluate_zrf_equals_a_direct_computation_with_a_seeded_random_model_in_eval_mode"
    )

    def compute(self, ctx: MetricContext) -> float:
        """ZRF of ``ctx.model`` on D_f."""
        p_f = ctx.forget.probs
        random_model = copy.deepcopy(ctx.model)
        try:
            reinitialize(random_model, ctx.seed)
        except IncompatibleModelError:
            if self.name in ctx.requested:
                raise
            return float("nan")
        p_rand = split_outputs(random_model, ctx.scenario.forget, ctx.batch_size, ctx.device).probs
        return MF.zrf(p_f, p_rand)
