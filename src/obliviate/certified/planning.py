"""Planning λ and σ of certified removal for a target (ε, δ) and an expected number of removals.

Guo et al. (arXiv:1911.03030) leave λ (the L2 regularisation per sample) and σ (the noise of the
objective perturbation) to the user; they control the trade-off between accuracy and the number of
removals the budget ``sigma epsilon / c`` (``c = sqrt(2 ln(1.5 / delta))``) supports before a
retrain. Fixed defaults cannot fit every data set: the paper's MNIST values (λ 1e-3, σ 10), on
the embedded digits data (about a tenth as many rows), give a model far below the same model
without noise, which retrains within a few removals. :func:`plan` chooses them from the data instead.

**The planning rule.** For ``K`` expected single-row removals:

1. *Expected charge per removal.* For a candidate λ, fit the model on all training rows and
   evaluate the data-dependent bound of Corollary 1,
   ``gamma ||X||_2 ||H^-1 Delta_r|| ||X H^-1 Delta_r||`` (Euclidean norm over the one-vs-rest
   models, times ``1 + cg_tol`` for the conjugate-gradient residual that is charged with it), for
   ``ESTIMATE_ROWS`` rows ``r`` drawn at random; its mean is the expected charge of one removal.
   The charges of a noisy model are larger than those of the unperturbed optimum when the noise
   is strong, so ``q(λ)`` is the larger of two means: at the unperturbed optimum (``b = 0``), and
   over the optima with ``DRAWS`` planning draws of the noise at the σ of step 2 (σ and ``q`` are
   refined together, at most ``CHARGE_ROUNDS`` times, until ``q`` settles within ``CHARGE_RTOL``).
2. *σ for the budget.* The budget must hold ``K`` such removals with a safety factor ``SAFETY``
   (the charges vary between rows, and the noisy model's charges differ from the unperturbed
   one's), plus twice the training tolerance (the residual a fit or retrain leaves):
   ``sigma(λ) = c (SAFETY K q(λ) + 2 tol) / epsilon``.
3. *λ for accuracy.* Over the grid :data:`LAM_GRID` (descending), hold out ``HOLDOUT`` of the
   rows, fit the model with noise of scale ``sigma(λ)`` (scaled by the held-in share, so that
   noise and regulariser keep their ratio) on the rest, and score it on the held-out rows, for
   ``DRAWS`` planning draws of the noise; pick the λ with the best mean held-out accuracy (the
   grid walk stops once it has fallen well below the best). The noise of these fits is drawn
   from a fixed public stream and discarded: it is independent of the model's secret ``b``.

With λ given, only σ is planned (step 2). With σ given, λ is chosen among the grid values whose
``SAFETY K q(λ)`` fits the budget (the largest λ, with a warning, if none does). The chosen
values, ``q`` and every candidate's numbers are kept in the model's ``plan_``.

**What the certificate covers.** λ and σ are chosen from the training data, like any
hyper-parameter tuned on it; the guarantee is that of the learning algorithm with these values
held fixed (removals and retrainings never re-plan), as for the paper's hand-tuned values. The
planning draws only the held-out split and its own noise; the secret ``b`` is drawn afterwards.

Cost: per grid value, one unperturbed Newton fit, ``DRAWS`` to ``CHARGE_ROUNDS * DRAWS`` noisy ones, and
``1 + DRAWS`` warm-started fits on the held-in rows, plus ``ESTIMATE_ROWS`` solves with a
Hessian's Cholesky factor per charge estimate. Measured planning
and accuracy numbers: ``benchmarks/results/certified_removal.json``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla

from ..errors import UnlearningWarning
from . import _solver
from ._losses import Loss
from .bounds import c_from_delta, gram_upper_eigenvalue

__all__ = [
    "DRAWS",
    "ESTIMATE_ROWS",
    "HOLDOUT",
    "LAM_GRID",
    "SAFETY",
    "Candidate",
    "Plan",
    "PlanningWarning",
    "expected_charges",
    "plan",
]

LAM_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
SAFETY = 2.0
HOLDOUT = 0.2
DRAWS = 2
ESTIMATE_ROWS = 64
CHARGE_ROUNDS = 3  # at most this many noisy fits per lam to settle q(lam)
CHARGE_RTOL = 0.1
STOP_BELOW_BEST = 0.05  # the grid walk stops once the held-out accuracy is this far below the best
PLAN_SEED = 0x706C616E  # the public stream of the planning draws (never the secret b's)
_PLAN_TOL = 1e-7  # Newton tolerance of the planning fits (accuracy and charges need no more)


class PlanningWarning(UnlearningWarning):
    """The requested number of removals does not fit the budget at any λ of the grid (σ given)."""


@dataclass(frozen=True)
class Candidate:
    """One grid value of a plan: ``lam``, its ``sigma``, the expected charge ``charge`` of one removal,
    whether ``K`` removals fit (``feasible``) and the held-out accuracies (None where not evaluated).
    """

    lam: float
    sigma: float
    charge: float
    feasible: bool
    holdout_acc_unperturbed: float | None = None
    holdout_acc_certified: float | None = None


@dataclass(frozen=True)
class Plan:
    """The planned ``lam`` and ``sigma`` and how they were chosen (see the module docstring)."""

    lam: float
    sigma: float
    removals: int
    charge: float
    budget: float
    rule: str
    safety: float = SAFETY
    holdout: float = HOLDOUT
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (saved with the model; it holds nothing secret)."""
        out = asdict(self)
        out["expected_charge_per_removal"] = out.pop("charge")
        return out


def _cholesky_solver(h_lower: np.ndarray) -> Any:
    with _solver.single_thread():
        factor = sla.cho_factor(h_lower, lower=True, check_finite=False)
    return factor


def expected_charges(
    x: np.ndarray,
    y: np.ndarray,
    active: np.ndarray,
    w: np.ndarray,
    solve: list[Any],
    *,
    lam: float,
    loss: Loss,
    gamma: float,
    bound: str = "data",
    sq_norm: np.ndarray,
    rows: np.ndarray,
    cg_tol: float,
) -> np.ndarray:
    """Corollary 1's bound for removing each of ``rows`` alone from the model ``w`` (one per row).

    ``gamma ||X_k||_2 ||s_k|| ||X_k s_k||`` with ``s_k = H_k^-1 Delta_k`` per class model ``k``
    (``H_k`` the Hessian at ``w_k``, applied by ``solve[k]``, a matrix or a Cholesky factor),
    combined as the Euclidean norm over the class models and scaled by ``1 + cg_tol`` (the
    conjugate-gradient residual charged with it). The Hessian includes the row itself, which
    changes the value by ``O(1/n)``: an estimate, for planning, not a certificate.

    Args:
        x: Prepared features ``(n, p)``.
        y: ``+-1`` labels ``(n, K)``.
        active: Row weights ``(n, K)``.
        w: Weights ``(p, K)``.
        solve: Per class, the explicit inverse Hessian or its ``cho_factor``.
        lam: λ.
        loss: The loss.
        gamma: Lipschitz constant of ``l''``.
        bound: "data" (Corollary 1) or "worst" (Theorem 1 with the actual ``||w||``, as the model
            charges it: ``gamma (C + lam ||w_k||)^2 / (lam^2 (n_k - 1))``).
        sq_norm: Per class, an upper bound of ``||X_k||_2^2``.
        rows: The rows to evaluate.
        cg_tol: The model's conjugate-gradient tolerance.
    """
    small = x.shape[0] * x.shape[1] * len(rows) < _solver.SMALL_GRAM
    with _solver.single_thread() if small else contextlib.nullcontext():
        total = np.zeros(len(rows))
        xr = x[rows]
        for k in range(w.shape[1]):
            a = active[rows, k]
            if not np.any(a):
                continue
            if bound == "worst":
                c_grad = loss.lipschitz + lam * float(np.linalg.norm(w[:, k]))
                n_new = max(float(active[:, k].sum()) - 1.0, 1.0)
                total += a * (gamma * c_grad * c_grad / (lam * lam * n_new)) ** 2
                continue
            g = a * loss.d1(xr @ w[:, k], y[rows, k])
            delta = xr.T * g + lam * np.outer(w[:, k], a)  # p x S
            if isinstance(solve[k], np.ndarray):
                step = solve[k] @ delta
            else:
                with _solver.single_thread():
                    step = sla.cho_solve(solve[k], delta, check_finite=False)
            xs = (x @ step) * active[:, k : k + 1]
            corollary = gamma * math.sqrt(sq_norm[k]) * np.linalg.norm(step, axis=0) * np.linalg.norm(xs, axis=0)
            total += corollary * corollary
        return np.sqrt(total) * (1.0 + cg_tol)


def _predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    z = x @ w
    return (z[:, 0] > 0).astype(int) if w.shape[1] == 1 else np.argmax(z, axis=1)


def _truth(y: np.ndarray) -> np.ndarray:
    return (y[:, 0] > 0).astype(int) if y.shape[1] == 1 else np.argmax(y, axis=1)


def _fit(
    x: np.ndarray, y: np.ndarray, active: np.ndarray, b: np.ndarray, lam: float, loss: Loss, w0: np.ndarray | None, max_iter: int
) -> tuple[np.ndarray, list[Any]]:
    w = np.zeros_like(b)
    hessians = []
    for k in range(b.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a planning fit that stops early only blurs an estimate
            res = _solver.newton(
                x,
                y[:, k],
                active[:, k],
                b[:, k],
                lam=lam,
                loss=loss,
                w0=None if w0 is None else w0[:, k],
                tol=_PLAN_TOL * max(1.0, float(active[:, k].sum())),
                max_iter=max_iter,
            )
        w[:, k] = res.w
        hessians.append(res.hessian)
    return w, hessians


def plan(
    x: np.ndarray,
    y: np.ndarray,
    member: np.ndarray,
    *,
    lam: float | None,
    sigma: float | None,
    epsilon: float,
    delta: float,
    removals: int,
    loss: Loss,
    gamma: float,
    bound: str = "data",
    tol: float,
    cg_tol: float,
    max_iter: int,
) -> Plan:
    """Choose λ (if ``lam`` is None) and σ (if ``sigma`` is None) by the rule of the module docstring.

    Args:
        x: Prepared features ``(n, p)`` (unit-norm rows, intercept column appended).
        y: ``+-1`` labels ``(n, K)``.
        member: 0/1 membership of each row in each class model ``(n, K)``.
        lam: A fixed λ, or None to plan it.
        sigma: A fixed σ, or None to plan it.
        epsilon: The target ε.
        delta: The target δ.
        removals: ``K``, the expected number of single-row removals between retrains.
        loss: The model's loss.
        gamma: The Lipschitz constant of ``l''``.
        bound: The bound the model charges ("data" or "worst").
        tol: The model's training tolerance (twice it is added to the planned total).
        cg_tol: The model's conjugate-gradient tolerance.
        max_iter: Most Newton iterations per planning fit.
    """
    c = c_from_delta(delta)
    n, k = y.shape
    rng = np.random.default_rng(PLAN_SEED)
    sq_norm = np.array([gram_upper_eigenvalue(_solver.weighted_gram(x, member[:, j]), int(member[:, j].sum())) for j in range(k)])
    est_rows = rng.choice(n, size=min(ESTIMATE_ROWS, n), replace=False)
    n_hold = max(1, round(HOLDOUT * n)) if n >= 5 else 0
    hold = np.zeros(n, dtype=bool)
    hold[rng.choice(n, size=n_hold, replace=False)] = True
    held_in = member * (~hold)[:, None]
    scale = float(held_in.sum()) / float(member.sum())  # sigma on the held-in rows keeps sigma / (lam n)
    noise = [rng.standard_normal((x.shape[1], k)) for _ in range(DRAWS)]
    truth = _truth(y[hold]) if n_hold else None

    def sigma_for(charge: float) -> float:
        return c * (SAFETY * removals * charge + 2.0 * tol) / epsilon

    def charge_at(lam_: float, b: np.ndarray, w0: np.ndarray | None) -> tuple[float, np.ndarray]:
        w, hessians = _fit(x, y, member, b, lam_, loss, w0, max_iter)
        solvers = [_cholesky_solver(h) for h in hessians]
        q = expected_charges(
            x, y, member, w, solvers, lam=lam_, loss=loss, gamma=gamma, bound=bound, sq_norm=sq_norm, rows=est_rows, cg_tol=cg_tol
        )
        return float(q.mean()), w

    def charge_for(lam_: float, w_prev: np.ndarray | None) -> tuple[float, np.ndarray]:
        """``q(λ)``: the mean charge at the unperturbed optimum and at a noisy one (with the planned
        or given σ; refined while planning σ raises it by more than ``1 + CHARGE_RTOL``); the larger.
        """
        q, w0 = charge_at(lam_, np.zeros((x.shape[1], k)), w_prev)
        for _ in range(CHARGE_ROUNDS):
            sig = sigma_for(q) if sigma is None else sigma
            q_noisy = float(np.mean([charge_at(lam_, sig * g, w0)[0] for g in noise]))
            done = q_noisy <= q * (1.0 + CHARGE_RTOL) or sigma is not None
            q = max(q, q_noisy)
            if done:
                break
        return q, w0

    if lam is not None:  # only sigma to plan
        charge, _ = charge_for(lam, None)
        planned = sigma_for(charge) if sigma is None else sigma
        budget = planned * epsilon / c
        feasible = SAFETY * removals * charge + 2.0 * tol <= budget
        rule = "sigma planned for the given lam" if sigma is None else "lam and sigma given"
        return Plan(lam, planned, removals, charge, budget, rule, candidates=[Candidate(lam, planned, charge, feasible)])

    candidates: list[Candidate] = []
    best: Candidate | None = None
    w_prev = None
    for lam_ in LAM_GRID:
        charge, w_full = charge_for(lam_, w_prev)
        w_prev = w_full
        sig = sigma_for(charge) if sigma is None else sigma
        feasible = SAFETY * removals * charge + 2.0 * tol <= sig * epsilon / c
        acc_u = acc_c = None
        if n_hold:
            w_u, _ = _fit(x, y, held_in, np.zeros_like(w_full), lam_, loss, w_full, max_iter)
            acc_u = float(np.mean(_predict(x[hold], w_u) == truth))
            accs = []
            for g in noise:
                w_c, _ = _fit(x, y, held_in, sig * scale * g, lam_, loss, w_u, max_iter)
                accs.append(float(np.mean(_predict(x[hold], w_c) == truth)))
            acc_c = float(np.mean(accs))
        cand = Candidate(lam_, sig, charge, feasible, acc_u, acc_c)
        candidates.append(cand)
        if feasible and (best is None or (acc_c or 0.0) > (best.holdout_acc_certified or 0.0)):
            best = cand
        if best is not None and acc_c is not None and acc_c < (best.holdout_acc_certified or 0.0) - STOP_BELOW_BEST:
            break
    if best is None:  # sigma given and too small for K removals at every lam: the most removals it allows
        best = max(candidates, key=lambda cd: cd.lam)
        warnings.warn(
            f"With sigma={sigma:g}, {removals} removals are not expected to fit the budget at any lam in "
            f"{list(LAM_GRID)}; using lam={best.lam:g} (expected charge {best.charge:.3g} per removal against a budget of "
            f"{sigma * epsilon / c:.3g}), so retraining will come sooner. Use a larger sigma or epsilon, or sigma='auto'.",
            PlanningWarning,
            stacklevel=3,
        )
    rule = "lam and sigma planned" if sigma is None else "lam planned for the given sigma"
    return Plan(best.lam, best.sigma, removals, best.charge, best.sigma * epsilon / c, rule, candidates=candidates)
