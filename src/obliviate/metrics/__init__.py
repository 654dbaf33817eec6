"""Metric registry: every quality metric obliviate reports, with its metadata.

The logic lives in :mod:`obliviate.metrics.functional` (pure functions, tested against
scikit-learn and SciPy); :func:`obliviate.evaluate` gathers model outputs once and computes the
requested metrics. Definitions: the project's metric spec, one definition per name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..registry import Registry
from . import functional
from .functional.mia import FEATURES

__all__ = ["METRICS", "MetricInfo", "functional"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means.

    Attributes:
        name: Registry name, as stored in results.
        description: One line.
        goal: "higher" or "lower" is better, or "oracle" (closest to the retrained model).
        needs_reference: Needs the retrained (oracle) model.
        fraction: Stored as a fraction in [0, 1] (printed as a percentage).
        opt_in: Computed only when named in ``evaluate(metrics=...)`` (it needs an extra
            argument of ``evaluate``, e.g. the training recording, or costs training runs).
    """

    name: str
    description: str
    goal: Literal["higher", "lower", "oracle"]
    needs_reference: bool = False
    fraction: bool = True
    opt_in: bool = False


METRICS: Registry[MetricInfo] = Registry("metric")


def _add(
    name: str,
    description: str,
    goal: Literal["higher", "lower", "oracle"],
    needs_reference: bool = False,
    fraction: bool = True,
    opt_in: bool = False,
) -> None:
    METRICS.register(name, MetricInfo(name, description, goal, needs_reference, fraction, opt_in))


_add("forget_acc", "accuracy on the forget set D_f", "oracle")
_add("retain_acc", "accuracy on the retain set D_r", "higher")
_add("test_acc", "accuracy on the test set (without the forgotten (sub-)class)", "higher")
_add("test_forget_acc", "accuracy on the test samples of the forgotten (sub-)class", "oracle")
_add("val_acc", "accuracy on the held-out validation split", "higher")
_add("mia_efficacy", "= mia_efficacy_confidence (Unlearn-Sparse's MIA-Efficacy)", "oracle")
for _f in FEATURES:
    _add(f"mia_efficacy_{_f}", f"share of D_f an SVC on {_f} (D_r vs D_t) calls non-member", "oracle")
    _add(f"mia_auc_{_f}", f"ROC AUC of the {_f} member score, D_f vs D_t (0.5: unseen)", "oracle")
_add("mia_entropy_lr", "share of D_f a logistic regression on entropy (D_r vs D_t) calls member", "oracle")
_add("avg_gap", "mean |gap| to the oracle over forget, retain, test accuracy and MIA-efficacy", "lower", True)
_add("weight_distance", "L2 distance of all parameters to the oracle", "lower", True, fraction=False)
_add("js_divergence", "mean Jensen-Shannon divergence to the oracle's outputs on D_f (nats)", "lower", True, fraction=False)
_add("kl_divergence", "mean KL(oracle || model) on D_f (nats)", "lower", True, fraction=False)
_add("activation_distance", "mean L2 distance of output probabilities to the oracle's on D_f", "lower", True, fraction=False)
_add(
    "zrf",
    "1 - mean JS(model, random init of its architecture) on D_f (1: answers like an untrained model)",
    "oracle",
    fraction=False,
)
# opt-in (issue 6): they need evaluate(recording=...) or evaluate(risk_scorer=...)
_add("verification_error", "L2 distance to the naive retrain (the recorded run minus D_f)", "lower", fraction=False, opt_in=True)
_add("verification_error_noop", "verification_error of the original model (doing nothing)", "lower", fraction=False, opt_in=True)
_add("unlearning_error", "unrolling proxy (lr^2/2) t |w_t - w_0| sigma of the recorded run", "lower", fraction=False, opt_in=True)
_add("privacy_risk", "mean Song & Mittal privacy risk score of D_f (shadow models)", "oracle", opt_in=True)
# opt-in (issue 5): trains an attacker network at every evaluation (quick on a CPU for the digits demo)
_add("mia_adversarial", "accuracy of a trained attacker, D_f vs held-out test data like it (0.5: unseen)", "oracle", opt_in=True)
