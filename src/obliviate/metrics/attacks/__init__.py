"""Membership attacks: the learned attacker, its features and the held-out non-members.

The attack machinery used both by the ``adversarial`` unlearning method and by the
``mia_adversarial`` metric. It depends only on torch and the data, model and ``_utils`` layers,
never on :mod:`obliviate.methods`:

* :mod:`~obliviate.metrics.attacks.attacker`: :class:`Attacker`, :func:`train_attacker`,
  :func:`attack_features`, :func:`attack_features_of` and their building blocks;
* :mod:`~obliviate.metrics.attacks.heldout`: :func:`attack_heldout_split` (test samples, the
  metric's non-members) and :func:`heldout_split` (validation samples, the method's);
* :mod:`~obliviate.metrics.attacks.membership`: :func:`membership_attack_accuracy`, the metric
  of a model (not re-exported here: it imports :mod:`obliviate.metrics.functional`, which
  imports this package).
"""

from .attacker import (
    Attacker,
    BatchCycler,
    attack_features,
    attack_features_of,
    logit_sensitivity,
    membership_labels,
    noisy_copies,
    stack_features,
    train_attacker,
)
from .heldout import attack_heldout_split, heldout_split

__all__ = [
    "Attacker",
    "BatchCycler",
    "attack_features",
    "attack_features_of",
    "attack_heldout_split",
    "heldout_split",
    "logit_sensitivity",
    "membership_labels",
    "noisy_copies",
    "stack_features",
    "train_attacker",
]
