"""The numerical core: fused Hessian-vector products, the preconditioner, PCG, Newton."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit

from obliviate.certified import _solver
from obliviate.certified._losses import LOSSES


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    n, p = 700, 12  # several row blocks of the fused product (block rows >= 32)
    x = rng.standard_normal((n, p))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.where(x @ rng.standard_normal(p) + 0.3 * rng.standard_normal(n) > 0, 1.0, -1.0)
    return x, y


def dense_hessian(x, d, shift):
    return x.T @ (x * d[:, None]) + shift * np.eye(x.shape[1])


def test_fused_hvp_equals_the_dense_product(problem, monkeypatch):
    x, _ = problem
    rng = np.random.default_rng(1)
    dm = rng.random((x.shape[0], 3))
    v = rng.standard_normal((x.shape[1], 3))
    shifts = np.array([0.5, 1.0, 2.0])
    monkeypatch.setattr(_solver, "_BLOCK_BYTES", 8 * x.shape[1] * 50)  # 50-row blocks, so several
    hv, xv = _solver.hvp(x, dm, shifts, v)
    for k in range(3):
        np.testing.assert_allclose(hv[:, k], dense_hessian(x, dm[:, k], shifts[k]) @ v[:, k], rtol=1e-12)
    np.testing.assert_allclose(xv, x @ v, rtol=1e-12)


def test_sparse_rows_take_the_csr_path_with_the_same_products(problem):
    x, _ = problem
    rng = np.random.default_rng(2)
    sparse_x = x * (rng.random(x.shape) < 0.1)
    op = _solver.operator_matrix(sparse_x)
    assert sp.issparse(op) and not sp.issparse(_solver.operator_matrix(x))  # dense rows stay dense
    dm, v, shifts = rng.random((x.shape[0], 2)), rng.standard_normal((x.shape[1], 2)), np.array([0.5, 2.0])
    hv, xv = _solver.hvp(op, dm, shifts, v)
    assert isinstance(hv, np.ndarray) and isinstance(xv, np.ndarray)
    for k in range(2):
        np.testing.assert_allclose(hv[:, k], dense_hessian(sparse_x, dm[:, k], shifts[k]) @ v[:, k], rtol=1e-12)
    np.testing.assert_allclose(xv, sparse_x @ v, rtol=1e-12, atol=1e-15)


def test_weighted_gram_is_the_lower_triangle_of_x_d_x(problem):
    x, _ = problem
    d = np.random.default_rng(2).random(x.shape[0])
    d[::3] = 0.0
    g = _solver.weighted_gram(x, d, 0.7)
    np.testing.assert_allclose(np.tril(g), np.tril(dense_hessian(x, d, 0.7)), rtol=1e-12, atol=1e-12)


def test_preconditioner_woodbury_neumann_and_fold(problem):
    x, _ = problem
    rng = np.random.default_rng(3)
    d0 = rng.random(x.shape[0]) * 0.25
    shift = 0.1 * x.shape[0]
    prec = _solver.Preconditioner(_solver.weighted_gram(x, d0, shift), d0, shift)
    rows = np.array([5, 17, 300])
    state = prec.with_removed(x[rows], rows)
    keep = np.ones(x.shape[0], bool)
    keep[rows] = False
    downdated = dense_hessian(x[keep], d0[keep], shift)
    v = rng.standard_normal(x.shape[1])
    # same shift: exactly (P - U U^T)^-1
    np.testing.assert_allclose(prec.operator(state, shift)(v), np.linalg.solve(downdated, v), rtol=1e-10)
    # smaller shift: the first-order Neumann series, error of order (c / shift)^2 against c / shift uncorrected
    c = 0.01 * shift
    exact = np.linalg.solve(downdated - c * np.eye(x.shape[1]), v)
    approx = prec.operator(state, shift - c)(v)
    plain = np.linalg.solve(downdated, v)
    assert np.linalg.norm(approx - exact) < 0.02 * np.linalg.norm(plain - exact)
    half = np.linalg.solve(downdated - 0.5 * c * np.eye(x.shape[1]), v)  # halving c quarters the error
    err_half = np.linalg.norm(prec.operator(state, shift - 0.5 * c)(v) - half)
    assert 0.2 < err_half / np.linalg.norm(approx - exact) < 0.3
    # folding gives the same operator with the new shift exact
    prec.commit(state, shift - c)
    prec.fold(shift - c)
    assert prec.rows == 0 and prec.shift == shift - c
    np.testing.assert_allclose(prec.operator(prec.with_removed(x[:0], rows[:0]), shift - c)(v), exact, rtol=1e-10)


def test_pcg_reaches_the_tolerance_and_reports_the_true_residual(problem):
    x, y = problem
    rng = np.random.default_rng(4)
    loss = LOSSES["logistic"]
    w = rng.standard_normal(x.shape[1]) * 0.5
    d = loss.d2(x @ w, y)
    shift = 0.01 * x.shape[0]
    d_stale = loss.d2(x @ (w + 0.3 * rng.standard_normal(x.shape[1])), y)  # a stale reference
    prec = _solver.Preconditioner(_solver.weighted_gram(x, d_stale, shift), d_stale, shift)
    op = prec.operator(prec.with_removed(x[:0], np.arange(0)), shift)
    rhs = rng.standard_normal((x.shape[1], 1))
    sol = _solver.pcg(x, d[:, None], np.array([shift]), rhs, [op], tolerance=lambda s, xs: np.zeros(1), max_iter=50)
    h = dense_hessian(x, d, shift)
    true_res = np.linalg.norm(rhs[:, 0] - h @ sol.step[:, 0])
    assert sol.residual[0] == pytest.approx(true_res, abs=1e-13)
    assert true_res <= 1e-12 * np.linalg.norm(rhs) * 1.0001
    np.testing.assert_allclose(sol.x_step, x @ sol.step, rtol=1e-10, atol=1e-14)
    assert 1 < sol.iterations[0] <= 12 and sol.converged
    # a loose tolerance stops after one iteration, having applied the preconditioner once (no
    # direction is prepared for an iteration that does not run)
    calls = []

    def counted(v):
        calls.append(1)
        return op(v)

    loose = _solver.pcg(x, d[:, None], np.array([shift]), rhs, [counted], tolerance=lambda s, xs: np.full(1, 1e9), max_iter=50)
    assert loose.iterations[0] == 1 and len(calls) == 1


def test_single_thread_is_reentrant_and_restores_the_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with _solver.single_thread():
        inside = blas_threads()
        with _solver.single_thread():
            assert blas_threads() == inside
        assert blas_threads() == inside
    assert all(t == 1 for t in inside) and blas_threads() == before


def test_newton_reaches_the_tolerance_from_zero_and_reads_the_gram(problem):
    x, y = problem
    b = np.random.default_rng(5).standard_normal(x.shape[1])
    a = np.ones(x.shape[0])
    res = _solver.newton(x, y, a, b, lam=1e-3, loss=LOSSES["logistic"], tol=1e-10, max_iter=100)
    assert res.converged and res.grad_norm <= 1e-10 and res.iterations < 30
    g = x.T @ ((expit(y * (x @ res.w)) - 1) * y) + 1e-3 * x.shape[0] * res.w + b
    assert np.linalg.norm(g) <= 1e-10
    np.testing.assert_allclose(np.tril(res.gram_at_zero), np.tril(x.T @ x), rtol=1e-10, atol=1e-10)
