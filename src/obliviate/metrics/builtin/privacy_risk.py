"""Song & Mittal's privacy risk of D_f, from a fitted scorer (:mod:`obliviate.metrics.privacy_risk`); opt-in."""

from __future__ import annotations

from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["PrivacyRisk"]


@register_metric("privacy_risk")
class PrivacyRisk(Metric):
    """Mean privacy risk score of D_f under the model (``evaluate(risk_scorer=...)``)."""

    description = "mean Song & Mittal privacy risk score of D_f (shadow models)"
    goal = "oracle"
    requires = ("model", "risk_scorer")
    opt_in = True
    reference_test = "tests/reference/test_privacy_risk_reference.py::test_matches_the_reference_algorithm_on_synthetic_scores"

    def compute(self, ctx: MetricContext) -> float:
        """``risk_scorer.mean_risk`` of the model on D_f."""
        return ctx.risk_scorer.mean_risk(ctx.model, ctx.scenario.forget, device=ctx.device)
