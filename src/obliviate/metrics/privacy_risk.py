"""Privacy risk scores from shadow models trained through the one training loop.

Song & Mittal (USENIX Security'21, arXiv:2003.10595): a shadow model of the same architecture
and recipe is trained on a random half of the scenario's training set (D_f ∪ D_r, so every
class is represented) with :func:`obliviate.train`; its own members (that half) and
non-members (the other half) give class-conditional distributions of the attack score
(modified entropy of the softmax output by default), and a target model's sample gets the
posterior probability of membership of its score (:func:`~obliviate.metrics.functional.privacy_risk_score`).
Several shadow models (each on its own random half) pool their scores.

The ``privacy_risk`` metric is the mean risk of D_f under the evaluated model; compare the
original model (high: D_f was trained on), the retrained model (low) and the unlearned one.
It is opt-in in :func:`obliviate.evaluate` because it trains shadow models: build a
:class:`PrivacyRiskScorer` once per scenario and pass it as ``risk_scorer=``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import model_device, resolve_device
from .._validation import check_choice, check_interval, check_seed
from ..data.base import Subset
from ..data.scenario import Scenario
from ..errors import InvalidConfigError, MissingDataError
from ..training import TrainConfig, predict
from .functional.mia import mia_feature
from .functional.privacy_risk import legacy_modified_entropy, privacy_risk_score

__all__ = ["PrivacyRiskScorer", "PRS_FEATURES"]

PRS_FEATURES: tuple[str, ...] = ("modified_entropy", "entropy", "loss")


def _scores(model: nn.Module, data: Dataset, feature: str, legacy: bool, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = predict(model, data, device=device)
    y = labels.numpy()
    if legacy:
        return legacy_modified_entropy(logits.double().numpy(), y), y
    probs = torch.softmax(logits.double(), dim=1).numpy()
    return mia_feature(probs, y, feature), y


@dataclass
class PrivacyRiskScorer:
    """Shadow-model statistics that rate any model's samples (Song & Mittal's privacy risk score).

    Build with :meth:`fit`; then :meth:`risks` gives per-sample scores and :meth:`mean_risk`
    the ``privacy_risk`` metric.

    Attributes:
        member_scores: Pooled attack scores of the shadow models' members.
        member_labels: Their labels.
        nonmember_scores: Pooled scores of their non-members.
        nonmember_labels: Their labels.
        num_classes: Number of classes.
        feature: "modified_entropy", "entropy" or "loss".
        num_bins: Bins per class (None: 5, or 10 in legacy mode).
        log_bins: Log-spaced bins.
        legacy_unrolling_sgd: Reproduce the unrolling-SGD code (logits, separate linear bins,
            no fallback).
        shadow_accuracy: Each shadow model's accuracy on its members and non-members.
    """

    member_scores: np.ndarray
    member_labels: np.ndarray
    nonmember_scores: np.ndarray
    nonmember_labels: np.ndarray
    num_classes: int
    feature: str = "modified_entropy"
    num_bins: int | None = None
    log_bins: bool = True
    legacy_unrolling_sgd: bool = False
    shadow_accuracy: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        scenario: Scenario,
        *,
        recipe: TrainConfig | dict[str, Any] | None = None,
        shadow_models: int = 1,
        seed: int = 0,
        feature: str = "modified_entropy",
        num_bins: int | None = None,
        log_bins: bool = True,
        legacy_unrolling_sgd: bool = False,
        device: str | torch.device = "auto",
    ) -> PrivacyRiskScorer:
        """Train the shadow models and collect their member / non-member scores.

        Args:
            model: A model of the target architecture; each shadow is a copy re-initialised
                from ``seed + k`` (:func:`~obliviate.models.reinitialize`).
            scenario: Its training set (forget ∪ retain) is split in random halves.
            recipe: The shadow training recipe (the target's, e.g. ``train_result.config``).
            shadow_models: How many shadow models (their scores are pooled).
            seed: Seed of the halves, initialisations and training.
            feature: Attack score: "modified_entropy" (default), "entropy" or "loss".
            num_bins: Bins per class (default 5; 10 in legacy mode).
            log_bins: Log-spaced bins (default) or linear.
            legacy_unrolling_sgd: The unrolling-SGD code's variant (modified entropy of raw
                logits, separate linear 10-bin grids, no empty-bin fallback).
            device: "auto", "cpu", "cuda" ...

        Raises:
            MissingDataError: no recipe, or a training set too small to halve.
        """
        from ..models.zoo import reinitialize
        from ..training import accuracy, train

        if recipe is None:
            raise MissingDataError(
                "PrivacyRiskScorer.fit needs the shadow models' training recipe: pass recipe=train_result.config "
                "(the target model's recipe)."
            )
        config = recipe if isinstance(recipe, TrainConfig) else TrainConfig.from_dict(dict(recipe))
        shadow_models = check_interval("PrivacyRiskScorer.fit", "shadow_models", shadow_models, kind=int, low=1)
        seed = check_seed("PrivacyRiskScorer.fit", seed)
        feature = check_choice("PrivacyRiskScorer.fit", "feature", feature, PRS_FEATURES)
        if legacy_unrolling_sgd and feature != "modified_entropy":
            raise InvalidConfigError(
                "legacy_unrolling_sgd=True reproduces the modified-entropy score only; use feature='modified_entropy'."
            )
        pool = scenario.train_idx
        if len(pool) < 4:
            raise MissingDataError(f"The scenario's training set has {len(pool)} samples; shadow models need at least 4.")
        dev = resolve_device(device)
        parts: dict[str, list[np.ndarray]] = {"m": [], "my": [], "n": [], "ny": []}
        accs = []
        for k in range(shadow_models):
            rng = np.random.default_rng([seed, k, 7])
            perm = rng.permutation(pool)
            half = len(perm) // 2
            members, nonmembers = (
                Subset(scenario.dataset.train, np.sort(perm[:half])),
                Subset(scenario.dataset.train, np.sort(perm[half:])),
            )
            shadow = reinitialize(copy.deepcopy(model).cpu(), seed + k)
            result = train(shadow, members, config, seed=seed + k, device=dev, progress=False)
            for data, s_key, y_key in ((members, "m", "my"), (nonmembers, "n", "ny")):
                s, y = _scores(result.model, data, feature, legacy_unrolling_sgd, dev)
                parts[s_key].append(s)
                parts[y_key].append(y)
            accs.append({"members": accuracy(result.model, members), "nonmembers": accuracy(result.model, nonmembers)})
        return cls(
            member_scores=np.concatenate(parts["m"]),
            member_labels=np.concatenate(parts["my"]),
            nonmember_scores=np.concatenate(parts["n"]),
            nonmember_labels=np.concatenate(parts["ny"]),
            num_classes=scenario.dataset.num_classes,
            feature=feature,
            num_bins=num_bins,
            log_bins=log_bins,
            legacy_unrolling_sgd=legacy_unrolling_sgd,
            shadow_accuracy=accs,
        )

    def risks(self, model: nn.Module, data: Dataset, *, device: str | torch.device | None = None) -> np.ndarray:
        """Per-sample privacy risk scores of ``data`` under ``model`` (eval mode; restored)."""
        if len(data) == 0:  # type: ignore[arg-type]
            return np.zeros(0)
        dev = model_device(model) if device is None else resolve_device(device)
        scores, labels = _scores(model, data, self.feature, self.legacy_unrolling_sgd, dev)
        return privacy_risk_score(
            self.member_scores,
            self.member_labels,
            self.nonmember_scores,
            self.nonmember_labels,
            scores,
            labels,
            num_classes=self.num_classes,
            num_bins=self.num_bins,
            log_bins=self.log_bins,
            legacy_unrolling_sgd=self.legacy_unrolling_sgd,
        )

    def mean_risk(self, model: nn.Module, data: Dataset, *, device: str | torch.device | None = None) -> float:
        """Mean privacy risk of ``data`` under ``model`` (NaN-free mean; NaN if none is defined)."""
        r = self.risks(model, data, device=device)
        r = r[np.isfinite(r)]
        return float(r.mean()) if len(r) else float("nan")
