"""Residual bounds, certified spectral norms, the true residual, the loss constants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from obliviate.certified.bounds import (
    GAMMA_PAPER,
    GAMMA_TIGHT,
    data_dependent_bound,
    gradient_residual,
    gram_upper_eigenvalue,
    spectral_norm_bound,
    worst_case_bound,
)
from obliviate.errors import InvalidConfigError


def test_worst_case_bound_is_theorem_1():
    # 4 gamma m^2 C^2 / (lam^2 (n - m))
    assert worst_case_bound(1001, lam=1e-2) == pytest.approx(4 * 0.25 / (1e-4 * 1000))
    assert worst_case_bound(1001, 3, lam=1e-2, gamma=GAMMA_TIGHT, lipschitz=2.0) == pytest.approx(
        4 * GAMMA_TIGHT * 9 * 4 / (1e-4 * 998)
    )
    with pytest.raises(InvalidConfigError, match="'m'"):
        worst_case_bound(10, 10, lam=1.0)


def test_data_dependent_bound_is_corollary_1():
    s = np.array([3.0, 4.0])
    xs = np.array([1.0, 2.0, 2.0])
    assert data_dependent_bound(2.0, s, xs) == pytest.approx(0.25 * 2.0 * 5.0 * 3.0)


def test_tight_gamma_is_the_maximum_of_the_third_derivative():
    z = np.linspace(-10, 10, 200_001)
    s = expit(z)
    third = s * (1 - s) * (1 - 2 * s)
    assert np.abs(third).max() == pytest.approx(GAMMA_TIGHT, rel=1e-8)
    assert GAMMA_TIGHT < GAMMA_PAPER


def power_iteration_20(x: np.ndarray, seed: int = 0) -> float:
    """The seed code's estimate: 20 plain power iterations on X^T X, sqrt(||K v||) with unit v."""
    k = x.T @ x
    v = np.random.default_rng(seed).standard_normal(k.shape[0])
    for _ in range(20):
        v = k @ v
        v /= np.linalg.norm(v)
    return math.sqrt(np.linalg.norm(k @ v))


def test_spectral_norm_bound_is_an_upper_bound_where_power_iteration_is_not():
    rng = np.random.default_rng(0)
    # two nearly equal top singular values make 20 power iterations converge slowly
    u, _ = np.linalg.qr(rng.standard_normal((300, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    sv = np.concatenate([[10.0, 9.99], np.linspace(5, 0.1, 38)])
    x = (u * sv) @ v.T
    exact = np.linalg.norm(x, 2)
    assert power_iteration_20(x) < exact  # the source's "bound" is below the truth
    ours = spectral_norm_bound(x)
    assert exact <= ours <= exact * (1 + 1e-9)
    # rows with zero weight are left out; removing rows never increases the norm
    w = (rng.random(300) < 0.5).astype(float)
    assert np.linalg.norm(x[w > 0], 2) <= spectral_norm_bound(x, w) <= ours
    assert spectral_norm_bound(np.zeros((0, 3))) == 0.0


def test_gram_upper_eigenvalue_covers_the_exact_value():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 20))
    g = x.T @ x
    top = np.linalg.eigvalsh(g)[-1]
    ub = gram_upper_eigenvalue(np.tril(g), 500)  # only the lower triangle is read
    assert top <= ub <= top * (1 + 1e-10)


def test_gradient_residual_matches_a_hand_computation():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 4))
    y = np.where(rng.random(30) < 0.5, -1.0, 1.0)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    a = (rng.random(30) < 0.8).astype(float)
    lam = 0.1
    grad = sum(a[i] * (expit(y[i] * x[i] @ w) - 1) * y[i] * x[i] for i in range(30)) + lam * a.sum() * w + b
    assert gradient_residual(x, y, w, b, lam=lam, weights=a) == pytest.approx(np.linalg.norm(grad))
    sq = sum(a[i] * (x[i] @ w - y[i]) * x[i] for i in range(30)) + lam * a.sum() * w + b
    assert gradient_residual(x, y, w, b, lam=lam, loss="squared", weights=a) == pytest.approx(np.linalg.norm(sq))
    # several columns: the Euclidean norm over all of them
    y2 = np.stack([y, -y], 1)
    w2, b2 = np.stack([w, w], 1), np.stack([b, b], 1)
    grad2 = sum((expit(-y[i] * x[i] @ w) - 1) * -y[i] * x[i] for i in range(30)) + lam * 30 * w + b
    full = np.linalg.norm(
        np.concatenate([sum((expit(y[i] * x[i] @ w) - 1) * y[i] * x[i] for i in range(30)) + lam * 30 * w + b, grad2])
    )
    assert gradient_residual(x, y2, w2, b2, lam=lam) == pytest.approx(full)


def test_the_charged_data_dependent_bound_equals_corollary_1_computed_independently():
    """Issue 11, item 10: the value a removal reports, against the paper's formula in plain numpy.

    ``gamma ||X'||_2 ||H^-1 Delta|| ||X' H^-1 Delta||`` with ``Delta = sum_r grad l_r(w) + m lam w`` and
    ``H`` the Hessian on the remaining rows at ``w``. On unit-norm rows that are far from orthogonal,
    ``||X'||_2`` is well above 1, so a dropped factor changes the value by that much.
    """
    from obliviate.certified import CertifiedLogisticRegression

    rng = np.random.default_rng(5)
    n, d, lam, gamma = 14, 3, 0.05, 0.25
    raw = rng.normal(size=(n, d)) + 1.0  # a common direction: ||X||_2 close to sqrt(n)
    labels = (raw @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n) > 0).astype(int)
    model = CertifiedLogisticRegression(lam=lam, sigma=10.0, epsilon=1e6, cg_tol=1e-10, random_state=None).fit(raw, labels)
    # the model's view of the data, rebuilt here: intercept column, rows scaled to unit norm, labels +-1
    x = np.hstack([raw, np.ones((n, 1))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(labels == 1, 1.0, -1.0)
    keep = np.ones(n, dtype=bool)
    for rows in ([2], [7, 11]):
        w = np.concatenate([model.coef_[0], model.intercept_])  # the current weights, from the public attributes
        keep[rows] = False
        xr = x[keep]
        delta = sum((expit(y[r] * x[r] @ w) - 1.0) * y[r] * x[r] for r in rows) + len(rows) * lam * w
        s = expit(y[keep] * (xr @ w))
        hessian = xr.T @ (xr * (s * (1 - s))[:, None]) + lam * keep.sum() * np.eye(d + 1)
        step = np.linalg.solve(hessian, delta)
        norm_now, norm_fit = np.linalg.norm(xr, 2), np.linalg.norm(x, 2)
        assert norm_now > 1.5
        paper = gamma * norm_now * np.linalg.norm(step) * np.linalg.norm(xr @ step)
        report = model.remove(rows)
        # the model uses a certified upper bound of ||X'||_2: that of the training data (removing rows never
        # increases it), plus a rounding margin
        assert paper <= report.data_dependent <= paper * (norm_fit / norm_now) * (1 + 1e-7)
        assert report.data_dependent == pytest.approx(paper * norm_fit / norm_now, rel=1e-6)
