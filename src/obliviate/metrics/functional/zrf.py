"""Zero Retrain Forgetting (ZRF), Chundawat et al. (AAAI'23, arXiv:2205.08096).

``ZRF = 1 − mean over D_f of JS(p_model(x), p_rand(x))``, with JS the Jensen-Shannon divergence
in nats (bounded by ln 2, so ZRF lies in [1 − ln 2, 1]) and p_rand the output of a randomly
initialised model of the same architecture in eval mode. 1 means the model answers on D_f like
an untrained one. The SSD system's code computed ``½ KL(m ‖ p) + ½ KL(m ‖ q)`` with the
``mean`` reduction (so divided by the number of classes, and with the KL arguments reversed)
and left the random model in training mode (batch statistics, batch-dependent results); this
is the definition of the project's metric spec instead.
"""

from __future__ import annotations

from typing import Any

from .divergence import js_divergence

__all__ = ["zrf"]


def zrf(p_model: Any, p_random: Any) -> float:
    """``1 − mean JS(p_model, p_random)`` over samples (natural log).

    Args:
        p_model: Softmax outputs of the evaluated model on D_f, ``(N, C)``.
        p_random: Softmax outputs of a randomly initialised model of the same architecture
            (eval mode) on the same samples.

    Returns:
        ZRF in [1 − ln 2, 1] (NaN for no samples).

    Example:
        >>> round(zrf([[0.5, 0.5]], [[0.5, 0.5]]), 4)
        1.0
        >>> round(zrf([[1.0, 0.0]], [[0.0, 1.0]]), 4)  # 1 - ln 2
        0.3069
    """
    return 1.0 - js_divergence(p_model, p_random)
