"""Metrics of corrective scenarios (:meth:`obliviate.Scenario.corrupted`): backdoor success, recovery.

Clean test accuracy is ``test_acc`` (the test split of a corrective scenario is clean), and
``forget_acc`` scores the forget set against its CORRUPTED labels (lower after unlearning: the
corruption is no longer fitted). The two metrics here read the corruption itself, so
:func:`obliviate.evaluate` computes them only on corrective scenarios: ``attack_success_rate``
on backdoor ones, ``forget_true_acc`` on both kinds. As every metric, they are compared with the
retrained oracle (trained on the clean retain set only) by evaluating it too.
"""

from __future__ import annotations

from .. import functional as MF
from ..base import Metric, register_metric
from ..context import MetricContext, split_outputs
from ..functional.corrective import attack_success_rate

__all__ = ["AttackSuccessRate", "ForgetTrueAccuracy"]

_TESTS = "tests/unit/metrics/test_corrective.py"


@register_metric("attack_success_rate")
class AttackSuccessRate(Metric):
    """Backdoor attack success rate: the share of triggered clean test samples predicted as the target.

    The samples are the test samples whose true class is not the backdoor's target, each with the
    scenario's trigger stamped (:attr:`obliviate.Scenario.test_triggered`); the value is
    :func:`obliviate.metrics.functional.corrective.attack_success_rate` of the model's outputs.
    """

    description = "backdoor attack success rate: triggered test samples of other classes predicted as the target"
    goal = "lower"
    requires = ("model", "trigger")
    reference_test = f"{_TESTS}::test_attack_success_rate_counts_triggered_predictions_of_the_target"

    def compute(self, ctx: MetricContext) -> float:
        """ASR of ``ctx.model`` on the scenario's triggered test samples."""
        corruption = ctx.trigger
        model = ctx.model
        out = ctx.memo(
            ("corrective", "test_triggered"),
            lambda: split_outputs(model, ctx.scenario.test_triggered, ctx.batch_size, ctx.device),
        )
        return attack_success_rate(out.probs, corruption.target) if len(out.labels) else float("nan")


@register_metric("forget_true_acc")
class ForgetTrueAccuracy(Metric):
    """Accuracy on the forget set's true rows: clean inputs, true labels (recovery from the corruption).

    The rows of :attr:`obliviate.Scenario.forget_clean`. A model that fitted the corruption
    scores low; unlearning it should bring the value up towards the oracle's.
    """

    description = "accuracy on the corrupted rows' clean inputs and true labels (corrective scenarios)"
    goal = "higher"
    requires = ("model", "corruption")
    reference_test = f"{_TESTS}::test_forget_true_acc_scores_clean_inputs_against_true_labels"

    def compute(self, ctx: MetricContext) -> float:
        """Accuracy of ``ctx.model`` on the clean forget rows."""
        _ = ctx.corruption  # the read it declares (MissingDataError on a scenario without corrupted rows)
        model = ctx.model
        out = ctx.memo(
            ("corrective", "forget_clean"),
            lambda: split_outputs(model, ctx.scenario.forget_clean, ctx.batch_size, ctx.device),
        )
        return MF.accuracy(out.probs, out.labels) if len(out.labels) else float("nan")
