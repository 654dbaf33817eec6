"""Margin losses of certified removal: value, first and second derivative in the score ``z``.

Labels are ``y in {-1, +1}``; ``z = w^T x`` is the score. ``gamma`` is a Lipschitz constant of
the second derivative (what the residual bounds need) and ``lipschitz`` a bound on ``|l'|``
(the gradient bound ``C`` of Theorem 1 when ``||x|| <= 1``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

__all__ = ["Loss", "LOSSES", "GAMMA_PAPER", "GAMMA_TIGHT"]

GAMMA_PAPER = 0.25
"""The Lipschitz constant of the logistic ``l''`` used in the paper (valid, loose by 2.6x)."""

GAMMA_TIGHT = 1.0 / (6.0 * math.sqrt(3.0))
"""``max |l'''|`` of the logistic loss: ``s(1-s)(1-2s)`` peaks at ``1 / (6 sqrt 3) ~ 0.0962``."""


class Loss:
    """A twice-differentiable margin loss ``l(z, y)``.

    Attributes:
        name: "logistic" or "squared".
        gammas: The ``gamma`` options: name -> Lipschitz constant of ``l''``.
        lipschitz: ``sup |l'|`` (``C`` in Theorem 1), ``inf`` when unbounded.
        curvature_at_zero: ``l''(0, y)``, constant for both losses (used to read the Gram matrix
            off the first Newton Hessian).
    """

    name: str = ""
    gammas: dict[str, float] = {}
    lipschitz: float = math.inf
    curvature_at_zero: float = 1.0

    def value(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract

    def d1(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract

    def d2(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract


class Logistic(Loss):
    """``l(z, y) = log(1 + exp(-y z))``; ``l' = (s(yz) - 1) y``; ``l'' = s(yz)(1 - s(yz))``."""

    name = "logistic"
    gammas = {"paper": GAMMA_PAPER, "tight": GAMMA_TIGHT}
    lipschitz = 1.0
    curvature_at_zero = 0.25

    def value(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.logaddexp(0.0, -y * z)

    def d1(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return -y * expit(-y * z)

    def d2(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        s = expit(y * z)
        return s * (1.0 - s)


class Squared(Loss):
    """``l(z, y) = (z - y)^2 / 2``: ridge regression on ``+-1`` targets. ``l'' = 1``, so ``gamma = 0``:
    the Newton removal step is exact and the data-dependent bound is zero.
    """

    name = "squared"
    gammas = {"paper": 0.0, "tight": 0.0}
    lipschitz = math.inf
    curvature_at_zero = 1.0

    def value(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 0.5 * (z - y) ** 2

    def d1(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return z - y

    def d2(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.ones_like(z)


LOSSES: dict[str, Loss] = {"logistic": Logistic(), "squared": Squared()}
