"""Accuracies on each split of the scenario (:func:`obliviate.metrics.functional.accuracy`)."""

from __future__ import annotations

from typing import ClassVar

from .. import functional as MF
from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["SplitAccuracy"]

_REFERENCE = "tests/reference/test_metrics_reference.py::test_accuracy_equals_sklearn_accuracy_score_on_labels_and_on_logits"


class SplitAccuracy(Metric):
    """Accuracy of the model on the one split it requires (NaN for an empty split)."""

    split: ClassVar[str] = ""
    reference_test = _REFERENCE

    def compute(self, ctx: MetricContext) -> float:
        """Accuracy on ``ctx.outputs(self.split)``."""
        out = ctx.outputs(self.split)
        return MF.accuracy(out.probs, out.labels) if len(out.labels) else float("nan")


@register_metric("forget_acc")
class ForgetAccuracy(SplitAccuracy):
    """Accuracy on the forget set D_f."""

    description = "accuracy on the forget set D_f"
    goal = "oracle"
    split = "forget"
    requires = ("forget",)


@register_metric("retain_acc")
class RetainAccuracy(SplitAccuracy):
    """Accuracy on the retain set D_r."""

    description = "accuracy on the retain set D_r"
    goal = "higher"
    split = "retain"
    requires = ("retain",)


@register_metric("test_acc")
class TestAccuracy(SplitAccuracy):
    """Accuracy on the test split without the forgotten (sub-)class (all of it when random)."""

    description = "accuracy on the test set (without the forgotten (sub-)class)"
    goal = "higher"
    split = "test_retain"
    requires = ("test_retain",)


@register_metric("test_forget_acc")
class TestForgetAccuracy(SplitAccuracy):
    """Accuracy on the test samples of the forgotten (sub-)class (class-wise, sub-class scenarios)."""

    description = "accuracy on the test samples of the forgotten (sub-)class"
    goal = "oracle"
    split = "test_forget"
    requires = ("test_forget",)


@register_metric("val_acc")
class ValAccuracy(SplitAccuracy):
    """Accuracy on the held-out validation split."""

    description = "accuracy on the held-out validation split"
    goal = "higher"
    split = "val"
    requires = ("val",)
