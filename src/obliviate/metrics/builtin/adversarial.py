"""The learned membership attack of Discriminative Adversarial Unlearning, as a metric; opt-in."""

from __future__ import annotations

from ..attacks.membership import membership_attack_accuracy
from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["MiaAdversarial"]


@register_metric("mia_adversarial")
class MiaAdversarial(Metric):
    """Accuracy of a freshly trained attacker, D_f against held-out test samples like it.

    It trains an attacker network at every evaluation (quick on a CPU for the digits demo),
    hence opt-in.
    """

    description = "accuracy of a trained attacker, D_f vs held-out test data like it (0.5: unseen)"
    goal = "oracle"
    requires = ("model",)
    opt_in = True
    reference_test = "tests/unit/methods/test_adversarial.py::test_mia_adversarial_on_easy_and_on_identical_distributions"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.attacks.membership.membership_attack_accuracy` of the model (seeded by ``ctx.seed``)."""
        return membership_attack_accuracy(ctx.model, ctx.scenario, seed=ctx.seed, batch_size=ctx.batch_size, device=ctx.device)
