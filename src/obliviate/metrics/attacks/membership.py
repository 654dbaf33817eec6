"""The ``mia_adversarial`` metric of a model: train a fresh attacker, D_f against held-out data.

The model-level side of :func:`obliviate.metrics.functional.mia_adversarial`: it computes the
attack features (:func:`~obliviate.metrics.attacks.attack_features_of`) of the forget set and
of :attr:`Scenario.attack_heldout <obliviate.data.Scenario.attack_heldout>`, then scores them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..._utils import model_device
from ...data.scenario import Scenario
from ...errors import MissingDataError
from ..functional.adversarial import mia_adversarial
from .attacker import attack_features_of

__all__ = ["membership_attack_accuracy"]


def membership_attack_accuracy(
    model: nn.Module,
    scenario: Scenario,
    *,
    seed: int = 0,
    batch_size: int = 512,
    device: torch.device | None = None,
    noise_samples: int = 10,
    noise_std: float = 1e-3,
) -> float:
    """The ``mia_adversarial`` metric of a model: a fresh attacker's accuracy, D_f vs held out.

    Members are the forget set; non-members are
    :attr:`Scenario.attack_heldout <obliviate.data.Scenario.attack_heldout>`: test-split samples
    only (for class-wise and sub-class forgetting those of the forgotten (sub-)class, so
    the one-hot label gives nothing away; for random forgetting those of D_f's classes). The
    test split is disjoint from everything any method sees: training data, and the validation
    split that the ``adversarial`` defender trains against (an earlier version scored against
    validation samples, which flattered that method). Features are :func:`attack_features_of`
    (model in eval mode, noise seeded by ``seed``); the score is
    :func:`obliviate.metrics.functional.mia_adversarial`. The held-out side is small for a
    class-wise scenario (on digits a few dozen test samples of the class), so the value is
    coarse; average it over seeds.

    Args:
        model: The model to attack.
        scenario: Its scenario (forget set, validation split, test split).
        seed: Seed of the noise, the subsample, the split and the attacker. Default 0.
        batch_size: Samples per forward when computing features. Default 512.
        device: Where the model runs; None: the device of its parameters.
        noise_samples: m of the sensitivity feature. Default 10.
        noise_std: σ of the sensitivity feature. Default 1e-3.

    Returns:
        The attacker's accuracy in [0, 1] (0.5: the forget set looks unseen).

    Raises:
        MissingDataError: fewer than 2 held-out samples of the forget set's distribution.
    """
    dev = model_device(model) if device is None else device
    heldout = scenario.attack_heldout
    if len(heldout) < 2:  # type: ignore[arg-type]
        raise MissingDataError(
            f"mia_adversarial needs held-out test samples of the forget set's distribution, but scenario {scenario.name!r} "
            "has fewer than 2 in its test split."
        )
    num_classes = scenario.dataset.num_classes
    generator = torch.Generator(device=dev).manual_seed(seed)
    common = {
        "noise_samples": noise_samples,
        "noise_std": noise_std,
        "generator": generator,
        "batch_size": batch_size,
        "device": dev,
    }
    members = attack_features_of(model, scenario.forget, num_classes, **common)
    nonmembers = attack_features_of(model, heldout, num_classes, **common)
    return mia_adversarial(members, nonmembers, seed=seed)
