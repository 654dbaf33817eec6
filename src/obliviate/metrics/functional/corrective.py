"""Metrics of corrective unlearning (Goel et al., "Corrective Machine Unlearning")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import as_array

__all__ = ["attack_success_rate"]


def attack_success_rate(predictions: Any, target: int) -> float:
    """Fraction of triggered inputs classified as the backdoor's target class (NaN for none).

    Fed with the model's outputs on clean test samples whose true class is not ``target``, each
    with the trigger stamped on it, this is the attack success rate (ASR) of a backdoor: how often
    the trigger alone still flips the prediction to the target. A model that never learnt (or has
    unlearnt) the backdoor scores about its rate of mistaking those samples for the target.

    Args:
        predictions: Logits/probabilities ``(N, C)`` (the arg-max is taken) or predicted labels ``(N,)``.
        target: The backdoor's target class.

    Example:
        >>> attack_success_rate([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], 0)
        0.6666666666666666
    """
    pred = as_array(predictions, "predictions")
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    if len(pred) == 0:
        return float("nan")
    return float(np.mean(pred.astype(np.int64) == int(target)))
