"""Population membership-inference attacks (:mod:`obliviate.metrics.functional.mia`).

Members are D_r, non-members the test split without the forgotten (sub-)class, targets D_f; one
metric per attack and feature (:data:`~obliviate.metrics.functional.FEATURES`).
"""

from __future__ import annotations

from typing import ClassVar

from .. import functional as MF
from ..base import Metric, register_metric
from ..context import MetricContext

__all__ = ["MiaAuc", "MiaEfficacy", "MiaEfficacyAlias", "MiaEntropyLR"]

_ATTACK_INPUTS = ("forget", "retain", "test_retain")
_REFERENCE = "tests/reference/test_metrics_reference.py::"


class MiaEfficacy(Metric):
    """Share of D_f an RBF SVC on one feature (D_r vs D_t) calls non-member."""

    feature: ClassVar[str] = ""
    goal = "oracle"
    requires = _ATTACK_INPUTS
    reference_test = _REFERENCE + "test_mia_efficacy_equals_direct_sklearn_svc_on_balanced_subsample"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.mia_efficacy` on ``ctx.attack_features(feature)``."""
        fr, ft, ff = ctx.attack_features(self.feature)
        return MF.mia_efficacy(fr, ft, ff, seed=ctx.seed, max_samples=ctx.mia_max_samples)


class MiaAuc(Metric):
    """ROC AUC of one feature's member score, D_f (positives) vs D_t (negatives)."""

    feature: ClassVar[str] = ""
    goal = "oracle"
    requires = _ATTACK_INPUTS
    reference_test = _REFERENCE + "test_mia_auc_on_member_scores_matches_roc_auc_with_spec_orientation"

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.mia_auc` of the oriented feature."""
        _, ft, ff = ctx.attack_features(self.feature)
        return MF.mia_auc(MF.member_score(ff, self.feature), MF.member_score(ft, self.feature))


for _f in MF.FEATURES:
    _name = "".join(part.title() for part in _f.split("_"))
    register_metric(f"mia_efficacy_{_f}")(
        type(
            f"MiaEfficacy{_name}",
            (MiaEfficacy,),
            {
                "__doc__": f"MIA-efficacy of the {_f} feature.",
                "__module__": __name__,
                "feature": _f,
                "description": f"share of D_f an SVC on {_f} (D_r vs D_t) calls non-member",
            },
        )
    )
    register_metric(f"mia_auc_{_f}")(
        type(
            f"MiaAuc{_name}",
            (MiaAuc,),
            {
                "__doc__": f"Membership ROC AUC of the {_f} feature.",
                "__module__": __name__,
                "feature": _f,
                "description": f"ROC AUC of the {_f} member score, D_f vs D_t (0.5: unseen)",
            },
        )
    )


@register_metric("mia_efficacy")
class MiaEfficacyAlias(Metric):
    """Unlearn-Sparse's MIA-Efficacy: ``mia_efficacy_confidence`` under its usual name."""

    description = "= mia_efficacy_confidence (Unlearn-Sparse's MIA-Efficacy)"
    goal = "oracle"
    requires = _ATTACK_INPUTS
    reference_test = MiaEfficacy.reference_test

    def compute(self, ctx: MetricContext) -> float:
        """The value of ``mia_efficacy_confidence`` (computed once)."""
        return ctx.metric("mia_efficacy_confidence")


@register_metric("mia_entropy_lr")
class MiaEntropyLR(Metric):
    """The SSD system's attack: a balanced logistic regression on the entropy; share of D_f called member."""

    description = "share of D_f a logistic regression on entropy (D_r vs D_t) calls member"
    goal = "oracle"
    requires = _ATTACK_INPUTS
    reference_test = (
        "tests/reference/test_zrf_and_entropy_mia.py::"
        "test_evaluate_mia_entropy_lr_equals_direct_scipy_entropy_and_sklearn_logistic_regression"
    )

    def compute(self, ctx: MetricContext) -> float:
        """:func:`~obliviate.metrics.functional.mia_entropy_lr` on the entropy features."""
        return MF.mia_entropy_lr(*ctx.attack_features("entropy"))
