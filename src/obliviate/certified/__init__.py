"""Certified removal for linear models (Guo et al., ICML 2020, arXiv:1911.03030).

- :class:`CertifiedLogisticRegression` (and :class:`CertifiedRidgeClassifier`, whose Newton
  removal is exact): scikit-learn-style ``fit`` / ``predict`` / ``predict_proba`` / ``score`` plus
  ``remove(indices)``, with an accumulated gradient-residual bound, the (ε, δ) it certifies, a
  removal budget and automatic retraining with fresh noise.
- :mod:`~obliviate.certified.bounds`: the data-dependent and worst-case bounds, certified
  spectral norms, the true residual, (ε, δ) <-> c.
- :mod:`~obliviate.certified.features`: raw features, frozen torch modules, and a feature
  extractor trained with DP-SGD (Opacus) with its privacy spent.
- :mod:`~obliviate.certified.planning`: λ and σ planned for a target (ε, δ) and an expected
  number of removals (what ``lam="auto"``, ``sigma="auto"``, the defaults, do).
- :mod:`~obliviate.certified.run`: a run directory with a deletion ledger (what the
  ``obliviate certified`` command uses).
"""

from .bounds import (
    c_from_delta,
    certified_epsilon,
    data_dependent_bound,
    delta_from_c,
    gradient_residual,
    spectral_norm_bound,
    worst_case_bound,
)
from .features import DPFeatureExtractor, RawFeatures, TorchFeatures, dp_epsilon, group_privacy, train_dp_extractor
from .model import (
    CertifiedLinearClassifier,
    CertifiedLogisticRegression,
    CertifiedRidgeClassifier,
    RemovalReport,
    SeededNoiseWarning,
)
from .planning import PlanningWarning
from .run import CertifiedRun, fit_run

__all__ = [
    "CertifiedLinearClassifier",
    "CertifiedRun",
    "DPFeatureExtractor",
    "RawFeatures",
    "TorchFeatures",
    "dp_epsilon",
    "fit_run",
    "group_privacy",
    "train_dp_extractor",
    "CertifiedLogisticRegression",
    "CertifiedRidgeClassifier",
    "PlanningWarning",
    "RemovalReport",
    "SeededNoiseWarning",
    "c_from_delta",
    "certified_epsilon",
    "data_dependent_bound",
    "delta_from_c",
    "gradient_residual",
    "spectral_norm_bound",
    "worst_case_bound",
]
