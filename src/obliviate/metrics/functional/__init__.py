"""Pure metric functions over arrays and tensors; all metric logic lives here."""

from .accuracy import accuracy
from .adversarial import mia_adversarial
from .divergence import activation_distance, js_divergence, kl_divergence, weight_distance
from .gap import GAP_METRICS, avg_gap
from .mia import FEATURES, balanced_subsample, member_score, mia_auc, mia_efficacy, mia_entropy_lr, mia_feature
from .pool import (
    DELTA,
    EPSILON_CAP,
    TOW_METRICS,
    anamnesis_index,
    chance_floor,
    epsilon_score,
    example_epsilons,
    klom,
    klom_summary,
    lira_log_ratio,
    logit_confidence,
    logit_confidence_from_probs,
    relearn_steps,
    tug_of_war,
    ulira,
)
from .privacy_risk import legacy_modified_entropy, privacy_risk_score, risk_calibration
from .unrolling import unlearning_error
from .zrf import zrf

__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "TOW_METRICS",
    "anamnesis_index",
    "chance_floor",
    "epsilon_score",
    "example_epsilons",
    "klom",
    "klom_summary",
    "lira_log_ratio",
    "logit_confidence",
    "logit_confidence_from_probs",
    "relearn_steps",
    "tug_of_war",
    "ulira",
    "FEATURES",
    "GAP_METRICS",
    "accuracy",
    "activation_distance",
    "avg_gap",
    "balanced_subsample",
    "js_divergence",
    "kl_divergence",
    "legacy_modified_entropy",
    "member_score",
    "mia_adversarial",
    "mia_auc",
    "mia_efficacy",
    "mia_entropy_lr",
    "mia_feature",
    "privacy_risk_score",
    "risk_calibration",
    "unlearning_error",
    "weight_distance",
    "zrf",
]
