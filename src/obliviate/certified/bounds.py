"""Gradient-residual bounds and certificates of certified removal (Guo et al., arXiv:1911.03030).

Notation (sum form, the paper's): the model minimises
``L_b(w; D) = sum_i l(w^T x_i, y_i) + (lam n / 2) ||w||^2 + b^T w`` with ``||x_i|| <= 1``.
Removing a batch ``R`` of ``m`` points from the current ``w`` takes the Newton step
``s = H^-1 Delta`` with ``Delta = sum_{r in R} grad l_r(w) + m lam w`` and ``H`` the Hessian of
``L_b`` on the remaining data ``D'`` at ``w``. The gradient residual ``||grad L_b(w + s; D')||`` is
then at most:

- data-dependent (Corollary 1): ``gamma ||X'||_2 ||s|| ||X' s||`` (:func:`data_dependent_bound`);
- worst case (Theorem 1): ``4 gamma m^2 C^2 / (lam^2 (n - m))`` (:func:`worst_case_bound`).

``gamma`` is a Lipschitz constant of ``l''`` (1/4 in the paper for the logistic loss) and ``C``
bounds ``|l'|`` (1 for the logistic loss). Sequential removals add their bounds; the sum is
what the budget (:class:`obliviate.ledger.RemovalBudget`) compares with ``sigma epsilon / c``.

``||X'||_2`` must be an upper bound for the certificate to hold. The seed code estimated it with
20 power iterations, which *under*-estimate; :func:`spectral_norm_bound` computes it exactly
(``eigh`` of the Gram matrix) plus a floating-point margin, and removing rows never increases it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg as sla
from scipy.linalg.blas import dsyrk

from .._validation import check_interval
from ..errors import InvalidConfigError
from ..ledger.budget import budget_from, c_from_delta, certified_epsilon, delta_from_c
from ._losses import GAMMA_PAPER, GAMMA_TIGHT, LOSSES

__all__ = [
    "GAMMA_PAPER",
    "GAMMA_TIGHT",
    "budget_from",
    "c_from_delta",
    "certified_epsilon",
    "data_dependent_bound",
    "delta_from_c",
    "gradient_residual",
    "gram_upper_eigenvalue",
    "spectral_norm_bound",
    "worst_case_bound",
]

_EPS = float(np.finfo(np.float64).eps)


def worst_case_bound(n: int, m: int = 1, *, lam: float, gamma: float = GAMMA_PAPER, lipschitz: float = 1.0) -> float:
    """Theorem 1: ``4 gamma m^2 C^2 / (lam^2 (n - m))`` for removing ``m`` of ``n`` points at once.

    Its proof bounds ``||w|| <= C / lam``, true for the minimiser without the noise term;
    :class:`~obliviate.certified.CertifiedLogisticRegression` therefore reports
    ``gamma m^2 (C + lam ||w||)^2 / (lam^2 (n - m))``, the same argument with the actual ``||w||``,
    which equals this value when ``||w|| = C / lam`` and holds whatever ``b`` is.

    Args:
        n: Number of training points before the removal.
        m: Number removed at once.
        lam: L2 regularisation (λ, per sample).
        gamma: Lipschitz constant of ``l''`` (γ).
        lipschitz: Bound ``C`` on the loss gradient.

    Example:
        >>> round(worst_case_bound(101, lam=0.1), 12)
        1.0
    """
    n = check_interval("worst_case_bound", "n", n, int, low=1)
    m = check_interval("worst_case_bound", "m", m, int, low=1, high=n - 1)
    lam = check_interval("worst_case_bound", "lam", lam, low=0.0, closed="neither")
    return 4.0 * gamma * m * m * lipschitz * lipschitz / (lam * lam * (n - m))


def data_dependent_bound(x_norm: float, step: np.ndarray, x_step: np.ndarray, *, gamma: float = GAMMA_PAPER) -> float:
    """Corollary 1: ``gamma ||X'||_2 ||s|| ||X' s||``.

    Args:
        x_norm: An upper bound of the spectral norm of the remaining features ``X'``.
        step: The Newton step ``s``.
        x_step: ``X' s`` (the remaining rows only).
        gamma: Lipschitz constant of ``l''``.
    """
    return float(gamma * x_norm * np.linalg.norm(step) * np.linalg.norm(x_step))


def gram_upper_eigenvalue(gram_lower: np.ndarray, n: int) -> float:
    """A certified upper bound of ``lambda_max`` of a Gram matrix ``X^T X`` computed in float64.

    ``eigh`` gives the top eigenvalue of the computed matrix; a margin of
    ``4 (n + p) eps trace`` covers the rounding of the ``n``-term sums that formed it and the
    backward error of ``eigh`` (both at most ``O((n + p) eps ||X||_F^2)``), so the result is an
    upper bound of the exact value, not an estimate.

    Args:
        gram_lower: The ``p x p`` Gram matrix (only its lower triangle is read).
        n: Number of rows it was summed over.
    """
    from ._solver import single_thread

    p = gram_lower.shape[0]
    with single_thread():
        top = float(sla.eigh(gram_lower, lower=True, eigvals_only=True, subset_by_index=[p - 1, p - 1], check_finite=False)[0])
    trace = float(np.trace(gram_lower))
    return max(top, 0.0) + 4.0 * (n + p) * _EPS * trace


def spectral_norm_bound(x: np.ndarray, weights: np.ndarray | None = None) -> float:
    """A certified upper bound of ``||X||_2`` (rows with weight 0 left out).

    The exact value from the Gram matrix's top eigenvalue plus a rounding margin
    (:func:`gram_upper_eigenvalue`), capped by the Frobenius norm ``sqrt(sum ||x_i||^2)``.
    Unlike power iteration (the seed code's estimate, a lower bound), this never under-estimates.

    Example:
        >>> spectral_norm_bound(np.eye(3)) >= 1.0
        True
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InvalidConfigError(f"spectral_norm_bound expects a 2-D array; got shape {x.shape}.")
    if weights is not None:
        x = x[np.asarray(weights) > 0]
    if x.shape[0] == 0:
        return 0.0
    gram = dsyrk(1.0, np.asfortranarray(x.T), trans=0, lower=1)
    frob = float(np.einsum("ij,ij->", x, x))
    return math.sqrt(min(gram_upper_eigenvalue(gram, x.shape[0]), frob * (1.0 + 4 * x.shape[1] * _EPS)))


def gradient_residual(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    *,
    lam: float,
    loss: str = "logistic",
    weights: np.ndarray | None = None,
) -> float:
    """The true gradient residual ``||sum_i a_i grad l_i(w) + lam n_a w + b||`` of the perturbed
    objective (``n_a = sum a_i``), computed from scratch; for several columns (one-vs-rest) the
    Euclidean norm over all of them. Do not forget ``+ b``: without it the residual looks far
    larger than the bound (the seed repository's issue #1).

    Args:
        x: Features ``(n, p)`` as the model sees them (normalised, intercept column appended).
        y: ``+-1`` labels ``(n,)`` or ``(n, K)``.
        w: Weights ``(p,)`` or ``(p, K)``.
        b: The secret noise, same shape as ``w``.
        lam: λ.
        loss: "logistic" or "squared".
        weights: 0/1 row weights ``(n,)`` or ``(n, K)`` (removed and subsampled-out rows are 0).
    """
    fn = LOSSES[loss]
    w2 = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
    b2 = np.asarray(b, dtype=np.float64).reshape(w2.shape)
    y2 = np.asarray(y, dtype=np.float64).reshape(x.shape[0], -1)
    a = np.ones_like(y2) if weights is None else np.asarray(weights, dtype=np.float64).reshape(y2.shape)
    z = x @ w2
    g = x.T @ (a * fn.d1(z, y2)) + lam * a.sum(axis=0) * w2 + b2
    return float(np.linalg.norm(g))
