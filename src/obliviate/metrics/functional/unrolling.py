"""The unrolling paper's unlearning-error proxy (Thudi et al., EuroS&P'22, arXiv:2109.13398).

``UE = (η² / 2) · t · ‖w_t - w_0‖₂ · σ̄``: the learning rate η, the number t of SGD steps taken
after the forget batch was used, the weight drift since the initial weights, and the mean
largest Hessian singular value σ̄ along the run. It bounds the size of the second-order
remainder that single-gradient unlearning leaves (the verification error), up to constants:
a *ranking* proxy, not a calibrated estimate (the spec's softmax-regression check found it
strongly rank-correlated with the verification error but much larger; ``obliviate study
unrolling`` measures both on this code, recorded in ``benchmarks/results/unrolling_study.json``
by ``python benchmarks/unrolling_study.py``). The verification error itself is
:func:`~obliviate.metrics.functional.weight_distance` to the naive retrain.
"""

from __future__ import annotations

import math

from ...errors import InvalidConfigError

__all__ = ["unlearning_error"]


def unlearning_error(lr: float, steps: float, drift: float, sigma: float) -> float:
    """``(lr² / 2) · steps · drift · sigma``.

    Args:
        lr: Learning rate η.
        steps: Steps t taken after the forget batch's step (0: the forget step was the last).
        drift: ``‖w_t - w_0‖₂``.
        sigma: Mean largest Hessian singular value σ̄ (NaN propagates: the paper code's
            ``sqrt(λ)`` convention gives NaN for negative eigenvalues).

    Example:
        >>> round(unlearning_error(0.1, 10, 2.0, 3.0), 6)
        0.3
    """
    for name, value in (("lr", lr), ("steps", steps), ("drift", drift)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise InvalidConfigError(f"The {name!r} argument of unlearning_error must be a finite number >= 0; got {value!r}.")
    return lr * lr / 2.0 * steps * drift * sigma
