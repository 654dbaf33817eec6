"""Numerical core of certified removal, in float64: Newton training and the removal solve.

Training is Newton's method with a Cholesky solve and a backtracking line search, stopped on the
gradient norm (the certificate assumes an exact minimiser; what is left is charged to it).

A removal needs ``s = H^-1 Delta`` with ``H`` the exact Hessian at the current weights on the
remaining rows. Building ``H`` costs ``n p^2`` (the seed code rebuilt and inverted it per
removal). Instead, preconditioned conjugate gradients run on exact Hessian-vector products
(each one fused, cache-blocked pass over ``X``), with a preconditioner built from a *reference*
Hessian ``P = X^T diag(a d0) X + lam n0 I`` (curvatures ``d0`` at some earlier weights):

- ``P`` is kept as its explicit inverse (from its Cholesky factor), applied by one ``gemv``;
- rows removed since the reference are taken out exactly by a Woodbury downdate
  (``(P - U U^T)^-1``, ``U`` = the removed rows scaled by ``sqrt(d0)``); after ``FOLD_ROWS`` rows,
  or when the shift moved by more than ``FOLD_SHIFT``, they are folded into ``P`` and it is
  inverted again (``p^3``, no pass over ``X``);
- the shift ``lam n`` of the remaining data is smaller than ``lam n0``: the first-order Neumann
  series ``P^-1 + c P^-2`` (``c = lam (n0 - n)``, at most ``FOLD_SHIFT lam n``) corrects for it, to a
  relative error ``(c / lam n)^2 <= 1e-4``, below what stale curvatures leave (a refresh is only
  triggered at ``REFRESH_CONTRACTION = 1e-2``), so a higher order would cost a ``p^2`` product per
  application for nothing;
- when the weights have drifted, CG needs more than one iteration (one pass over ``X`` each). The
  reference is rebuilt at the current weights (one ``n p^2 / 2`` Gram, about ``p / 16``
  Hessian-vector products' worth of time) once the extra iterations since the last rebuild have
  cost that much (the ski-rental rule: never more than twice the best policy in hindsight), or at
  once when the first iteration contracted the residual by less than ``REFRESH_CONTRACTION``.

The preconditioner only changes how fast CG converges, never what it converges to; the residual
``Delta - H s`` left at the stated tolerance is returned so that the caller adds it to the
certificate. The tolerance is relative to the step's own residual bound (solving more exactly
than the bound is loose buys nothing); with ``gamma = 0`` (ridge) it is ``1e-12 ||Delta||``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.blas import dsyrk

from ..errors import ConvergenceWarning, DivergenceError
from ._losses import Loss

SPARSE_DENSITY = 0.25  # below this share of non-zero features, Hessian-vector products use a CSR copy of X
FOLD_ROWS = 64
FOLD_SHIFT = 1e-2
REFRESH_CONTRACTION = 1e-2
FLOOR = 1e-12
_EPS = float(np.finfo(np.float64).eps)
_BLOCK_BYTES = 3 << 19  # rows per block of the fused Hessian-vector product: ~1.5 MB, cache-sized


def _block_rows(p: int) -> int:
    return max(32, _BLOCK_BYTES // (8 * max(p, 1)))


SMALL_GRAM = 5e7  # n p^2 below which a Gram matrix is formed on one thread (threading costs more than it gains)


def weighted_gram(x: np.ndarray, d: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """``X^T diag(d) X + shift I`` (``d >= 0``), lower triangle only (``dsyrk``: half a ``gemm``).

    Small products (``n p^2 < SMALL_GRAM``, e.g. the embedded digits data) run on one BLAS thread:
    there, threading costs more than it gains, many times more when the cores are shared.
    """
    rows = d > 0
    xs = x[rows] * np.sqrt(d[rows])[:, None]
    if not xs.shape[0]:
        g = np.zeros((x.shape[1], x.shape[1]))
    elif xs.shape[0] * x.shape[1] ** 2 < SMALL_GRAM:
        with single_thread():
            g = dsyrk(1.0, np.asfortranarray(xs.T), trans=0, lower=1)
    else:
        g = dsyrk(1.0, np.asfortranarray(xs.T), trans=0, lower=1)
    g = np.asarray(g)
    g[np.diag_indices_from(g)] += shift
    return g


_CONTROLLER = None
_SINGLE_DEPTH = 0  # > 0 inside single_thread(): nested blocks do not query threadpoolctl again


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Limit BLAS/LAPACK to one thread for a block (re-entrant: an inner block costs nothing).

    Used around the small dense factorisations and solves (``p`` up to a few thousand): OpenBLAS'
    threaded ``potrf``/``potri``/``trsm`` gain little there and, when the cores are shared with
    other processes, spin so badly that a small inverse takes orders of magnitude longer. Large
    products (large Gram matrices, Hessian-vector products) keep the caller's thread settings.
    """
    global _CONTROLLER, _SINGLE_DEPTH
    if _SINGLE_DEPTH:
        yield
        return
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        limiter: Any = _CONTROLLER.limit(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing or failing: run as is
        limiter = contextlib.nullcontext()
    _SINGLE_DEPTH += 1
    try:
        with limiter:
            yield
    finally:
        _SINGLE_DEPTH -= 1


def _cholesky(h_lower: np.ndarray) -> tuple[np.ndarray, bool]:
    try:
        with single_thread():
            return sla.cho_factor(h_lower, lower=True, check_finite=False)
    except np.linalg.LinAlgError as e:  # cannot happen for lam > 0 unless the data hold NaN/inf
        raise DivergenceError(f"The Hessian is not positive definite ({e}); check the features for NaN or inf.") from None


@dataclass
class NewtonResult:
    w: np.ndarray
    grad_norm: float
    iterations: int
    converged: bool
    hessian: np.ndarray  # lower triangle, at the weights `w_ref`, shift included
    d_ref: np.ndarray  # l'' at w_ref for every row (unweighted)
    gram_at_zero: np.ndarray | None  # X^T diag(a) X, read off the Hessian at w = 0


def newton(
    x: np.ndarray,
    y: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    lam: float,
    loss: Loss,
    w0: np.ndarray | None = None,
    tol: float,
    max_iter: int,
) -> NewtonResult:
    """Minimise ``sum_i a_i l(x_i^T w, y_i) + (lam n_a / 2) ||w||^2 + b^T w`` (one column)."""
    p = x.shape[1]
    n_a = float(a.sum())
    shift = lam * n_a
    w = np.zeros(p) if w0 is None else np.array(w0, dtype=np.float64)

    def objective(z: np.ndarray, w: np.ndarray) -> float:
        return float(a @ loss.value(z, y) + 0.5 * shift * (w @ w) + b @ w)

    z = x @ w
    f = objective(z, w)
    hessian: np.ndarray | None = None
    d_ref = loss.d2(z, y)
    gram0 = None
    it = 0
    g = x.T @ (a * loss.d1(z, y)) + shift * w + b
    gnorm = float(np.linalg.norm(g))
    while gnorm > tol and it < max_iter:
        d = loss.d2(z, y)
        hessian = weighted_gram(x, a * d, shift)
        d_ref = d
        if gram0 is None and not np.any(w):  # l''(0) is the same constant for every row
            gram0 = (hessian - np.diag(np.full(p, shift))) / loss.curvature_at_zero
        factor = _cholesky(hessian)
        with single_thread():
            step = sla.cho_solve(factor, g, check_finite=False)
        slope = float(g @ step)
        t = 1.0
        while True:  # Armijo backtracking on the objective ...
            w_new = w - t * step
            z_new = x @ w_new
            f_new = objective(z_new, w_new)
            g_new = None
            if f_new <= f - 1e-4 * t * slope:
                break
            if f_new <= f + 16 * _EPS * (abs(f) + 1.0):
                # ... unless the decrease is below the rounding of f (near the optimum): then the
                # gradient norm decides, so that Newton's quadratic convergence is not stalled
                g_new = x.T @ (a * loss.d1(z_new, y)) + shift * w_new + b
                if np.linalg.norm(g_new) < gnorm:
                    break
            t *= 0.5
            if t < 1e-12:
                break
        w, z, f = w_new, z_new, f_new
        if not math.isfinite(f):
            raise DivergenceError("Newton's method produced non-finite weights; check the features for NaN or inf.")
        g = x.T @ (a * loss.d1(z, y)) + shift * w + b if g_new is None else g_new
        gnorm = float(np.linalg.norm(g))
        it += 1
    if hessian is None:  # already optimal: the reference Hessian is built at w
        hessian = weighted_gram(x, a * d_ref, shift)
    return NewtonResult(w, gnorm, it, gnorm <= tol, hessian, d_ref, gram0)


def _inverse(h_lower: np.ndarray) -> np.ndarray:
    """Explicit inverse of an SPD matrix from its Cholesky factor (``potri``), both triangles filled.

    Applying it is one ``gemv``, faster than two triangular solves (which run at a fraction of
    ``gemv``'s memory bandwidth).
    """
    with single_thread():  # one thread-limit block for the factorisation and the inversion
        factor, _ = _cholesky(h_lower)
        inv, info = sla.lapack.dpotri(factor, lower=1)
    if info != 0:  # pragma: no cover - potri fails only for a singular factor, excluded above
        raise DivergenceError(f"Inverting the Hessian failed (LAPACK info {info}).")
    lower = np.tril(inv)
    inv = lower + lower.T
    inv[np.diag_indices_from(inv)] *= 0.5
    return np.asfortranarray(inv)


class Preconditioner:
    """Approximate inverse Hessian of one class model: reference inverse + Woodbury downdates.

    Args:
        hessian: Lower triangle of the reference ``P = X^T diag(a d0) X + shift I``.
        d_ref: ``d0``, the curvatures ``l''`` at the reference weights, one per row.
        shift: The reference shift ``lam n0``.
    """

    def __init__(self, hessian: np.ndarray, d_ref: np.ndarray, shift: float) -> None:
        self.p_ref = hessian
        self.inv = _inverse(hessian)
        self.d_ref = d_ref
        self.shift = shift
        p = hessian.shape[0]
        self.u = np.empty((p, 0))
        self.y = np.empty((p, 0))
        self.cinv = np.empty((0, 0))
        self.stale = False
        self.extra_iterations = 0  # CG iterations beyond the first, summed since this reference was built

    def record(self, iterations: int, contraction: float) -> None:
        """Note a solve's cost; mark the reference stale when rebuilding it has become cheaper."""
        self.extra_iterations += max(iterations - 1, 0)
        if self.extra_iterations >= max(4, self.p_ref.shape[0] // 16) or contraction > REFRESH_CONTRACTION:
            self.stale = True

    @property
    def rows(self) -> int:
        """Number of removed rows held as Woodbury columns."""
        return self.u.shape[1]

    def with_removed(self, x_rows: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Woodbury state with ``rows`` (features ``x_rows``) also taken out; nothing is stored.

        Returns ``(U, Y, C^-1)`` with ``Y = P^-1 U`` and the capacitance ``C = I - U^T Y``, so
        that ``(P - U U^T)^-1 v = P^-1 v + Y (C^-1 (Y^T v))``: three ``gemv`` per application
        (``C`` is at most ``FOLD_ROWS``-square, so its explicit inverse costs next to nothing).
        """
        if len(rows) == 0:
            return self.u, self.y, self.cinv
        u_new = (x_rows * np.sqrt(self.d_ref[rows])[:, None]).T
        y_new = self.inv @ u_new
        u = np.hstack([self.u, u_new])
        y = np.hstack([self.y, y_new])
        cap = np.eye(u.shape[1]) - u.T @ y
        return u, y, _inverse(0.5 * (cap + cap.T))

    def operator(self, state: tuple[np.ndarray, np.ndarray, np.ndarray], shift_now: float) -> Callable[[np.ndarray], np.ndarray]:
        """``v -> Q v + c Q^2 v`` with ``Q = (P - U U^T)^-1`` and ``c = shift - shift_now >= 0``:
        the Neumann series of ``(P - U U^T - c I)^-1`` to first order (relative error ``(c / lam n)^2``).
        """
        _u, y, cinv = state
        c = max(self.shift - shift_now, 0.0)
        inv = self.inv
        woodbury = y.shape[1] > 0

        def base(v: np.ndarray) -> np.ndarray:
            out = inv @ v
            if woodbury:
                out += y @ (cinv @ (y.T @ v))
            return out

        def apply(v: np.ndarray) -> np.ndarray:
            first = base(v)
            if c <= 0:
                return first
            return first + c * base(first)

        return apply

    def commit(self, state: tuple[np.ndarray, np.ndarray, np.ndarray], shift_now: float) -> None:
        """Keep the downdates; fold them into the reference when they are many or the shift moved."""
        self.u, self.y, self.cinv = state
        if self.rows >= FOLD_ROWS or self.shift - shift_now > FOLD_SHIFT * shift_now:
            self.fold(shift_now)

    def fold(self, shift_now: float) -> None:
        """``P <- P - U U^T - (shift - shift_now) I`` and invert again (``p^3``, no pass over the data)."""
        p_new = self.p_ref
        if self.rows:
            p_new = np.asarray(dsyrk(-1.0, self.u, beta=1.0, c=self.p_ref, trans=0, lower=1))
        p_new[np.diag_indices_from(p_new)] -= self.shift - shift_now
        self.p_ref = p_new
        self.inv = _inverse(p_new)
        self.shift = shift_now
        self.u = np.empty((p_new.shape[0], 0))
        self.y = np.empty((p_new.shape[0], 0))
        self.cinv = np.empty((0, 0))


def operator_matrix(x: np.ndarray) -> Any:
    """What the Hessian-vector products read: ``x`` itself, or a CSR copy when fewer than
    ``SPARSE_DENSITY`` of its entries are non-zero (sparse rows, e.g. pixels of digits on a blank
    background). A pass over ``X`` is memory-bound, so reading only the non-zeros (values and
    column indices) is what makes it faster; the products are the same up to rounding.
    """
    if x.size and np.count_nonzero(x) < SPARSE_DENSITY * x.size:
        return sp.csr_matrix(x)
    return x


def hvp(x: Any, dm: np.ndarray, shifts: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact Hessian-vector products for several class models in one pass over ``X``.

    Returns ``(H_k v_k)_k`` (``p x K``) and ``X V`` (``n x K``). ``dm`` holds ``a_ik l''_ik``.
    Each row block is read once for both products while it sits in cache, which halves the
    memory traffic of ``X^T (D (X v))`` done as two passes. ``x`` may also be a SciPy CSR
    matrix (see :func:`operator_matrix`): then the two products are sparse passes.
    """
    if sp.issparse(x):
        xv = np.asarray(x @ v)
        return v * shifts + np.asarray(x.T @ (dm * xv)), xv
    n = x.shape[0]
    rows = _block_rows(x.shape[1])
    out = v * shifts
    xv = np.empty((n, v.shape[1]))
    for s in range(0, n, rows):
        xb = x[s : s + rows]
        tb = xb @ v
        xv[s : s + rows] = tb
        out += xb.T @ (dm[s : s + rows] * tb)
    return out, xv


@dataclass
class SolveResult:
    step: np.ndarray  # p x K
    x_step: np.ndarray  # n x K, X s
    residual: np.ndarray  # per class ||Delta - H s||
    iterations: np.ndarray  # per class
    contraction: np.ndarray  # per class ||r_1|| / ||r_0|| (nan if no iteration)
    converged: bool
    seconds_hvp: float = 0.0  # in the Hessian-vector products (passes over X)
    seconds_preconditioner: float = 0.0  # in applying the preconditioners


def pcg(
    x: Any,
    dm: np.ndarray,
    shifts: np.ndarray,
    rhs: np.ndarray,
    preconditioners: list[Callable[[np.ndarray], np.ndarray]],
    *,
    tolerance: Callable[[np.ndarray, np.ndarray], np.ndarray],
    max_iter: int,
) -> SolveResult:
    """Preconditioned conjugate gradients for ``H_k s_k = rhs_k``, all classes in lockstep.

    A class stops once ``||rhs_k - H_k s_k|| <= max(tolerance(S, XS)_k, FLOOR ||rhs_k||)``, where
    ``tolerance`` maps the current steps ``S`` (``p x K``) and ``X S`` (``n x K``) to absolute
    tolerances (the caller's: a fraction of each step's own residual bound) and ``FLOOR`` is
    ``1e-12``. At least one iteration always runs. The residual is ``rhs - sum_i alpha_i H p_i``
    with the products actually computed, i.e. the residual of the returned step up to rounding.
    """
    p, k = rhs.shape
    n = x.shape[0]
    s = np.zeros((p, k))
    hs = np.zeros((p, k))
    xs = np.zeros((n, k))
    r = rhs.copy()
    rhs_norm = np.linalg.norm(rhs, axis=0)
    t_prec = time.perf_counter()
    z = np.column_stack([preconditioners[j](r[:, j]) for j in range(k)]) if k else np.zeros((p, 0))
    t_prec = time.perf_counter() - t_prec
    t_hvp = 0.0
    d = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    iters = np.zeros(k, dtype=int)
    contraction = np.full(k, np.nan)
    floor = FLOOR * rhs_norm
    limit = floor.copy()
    res = rhs_norm.copy()
    for it in range(max_iter):
        active = np.flatnonzero(res > limit)
        if active.size == 0:
            break
        if it:  # the next direction, only for the classes still above their tolerance
            t0 = time.perf_counter()
            for j in active:
                z[:, j] = preconditioners[j](r[:, j])
            t_prec += time.perf_counter() - t0
            rz_new = np.einsum("ij,ij->j", r[:, active], z[:, active])
            d[:, active] = z[:, active] + (rz_new / rz[active]) * d[:, active]
            rz[active] = rz_new
        t0 = time.perf_counter()
        hd, xd = hvp(x, dm[:, active], shifts[active], d[:, active])
        t_hvp += time.perf_counter() - t0
        alpha = rz[active] / np.einsum("ij,ij->j", d[:, active], hd)
        s[:, active] += alpha * d[:, active]
        hs[:, active] += alpha * hd
        xs[:, active] += alpha * xd
        r[:, active] = rhs[:, active] - hs[:, active]
        res[active] = np.linalg.norm(r[:, active], axis=0)
        iters[active] += 1
        first = active[iters[active] == 1]
        contraction[first] = res[first] / rhs_norm[first]
        limit = np.maximum(tolerance(s, xs), floor)
    converged = bool(np.all(res <= limit))
    if not converged:
        warnings.warn(
            f"Conjugate gradients stopped after {max_iter} iterations with residual {float(np.max(res)):.3g} above its "
            f"tolerance {float(np.max(limit)):.3g}; the residual is charged to the certificate.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return SolveResult(s, xs, res, iters, contraction, converged, t_hvp, t_prec)
