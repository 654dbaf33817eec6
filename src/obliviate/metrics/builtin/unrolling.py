"""The unrolling paper's errors of a recorded run (:mod:`obliviate.metrics.unrolling`); opt-in."""

from __future__ import annotations

from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["UnlearningError", "VerificationError", "VerificationErrorNoop"]

_REFERENCE = "tests/unit/metrics/test_unrolling_metrics.py::"


def _verification_errors(ctx: MetricContext) -> dict[str, float]:
    from .. import unrolling

    model, recording = ctx.model, ctx.recording
    return ctx.memo(
        "verification_errors", lambda: unrolling.verification_errors(model, recording, ctx.scenario, device=ctx.device)
    )


@register_metric("verification_error")
class VerificationError(Metric):
    """L2 distance to the naive retrain; ``verification_error_noop`` is always reported beside it."""

    description = "L2 distance to the naive retrain (the recorded run minus D_f)"
    goal = "lower"
    requires = ("model", "recording")
    compares_weights = True
    fraction = False
    opt_in = True
    companions = ("verification_error_noop",)
    reference_test = _REFERENCE + "test_evaluate_reports_the_verification_error_with_the_no_op_baseline"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`obliviate.metrics.unrolling.verification_errors` (the naive retrain is shared)."""
        return _verification_errors(ctx)["verification_error"]


@register_metric("verification_error_noop")
class VerificationErrorNoop(Metric):
    """The verification error of the original model (doing nothing)."""

    description = "verification_error of the original model (doing nothing)"
    goal = "lower"
    requires = ("model", "recording")
    compares_weights = True
    fraction = False
    opt_in = True
    reference_test = VerificationError.reference_test

    def compute(self, ctx: MetricContext) -> float:
        """:func:`obliviate.metrics.unrolling.verification_errors`' no-op term."""
        return _verification_errors(ctx)["verification_error_noop"]


@register_metric("unlearning_error")
class UnlearningError(Metric):
    """The unrolling proxy of the recorded run for the scenario's forget set."""

    description = "unrolling proxy (lr^2/2) t |w_t - w_0| sigma of the recorded run"
    goal = "lower"
    requires = ("model", "recording")
    compares_weights = True
    fraction = False
    opt_in = True
    reference_test = _REFERENCE + "test_unlearning_error_formula"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`obliviate.metrics.unrolling.unlearning_error_terms`' value."""
        from .. import unrolling

        return unrolling.unlearning_error_terms(ctx.model, ctx.recording, ctx.scenario, device=ctx.device)["unlearning_error"]
