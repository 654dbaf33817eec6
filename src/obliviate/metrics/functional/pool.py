"""Pool-based per-example unlearning metrics: the challenge ε-score, U-LiRA, KLOM, Tug-of-War, relearn time.

A *pool* is N independently produced models of one kind: the **unlearned** pool ``u`` (an
unlearning method applied to N originals) and the **retrained** pool ``r`` (N models trained
from scratch on the retain set, the "oracle"). Each metric here reads, for every example, the
N values of the *logit-scaled confidence*

    φ = ln p_y − ln(1 − p_y) = z_y − ln Σ_{j≠y} e^{z_j}

across a pool, given as an ``(N, n_examples)`` array (pool member x example): see
:func:`logit_confidence` and :func:`logit_confidence_from_probs`.

Exact definitions, quirks of the authors' code and reference cases: ``spec/metrics.md``, appendix
"pool-based per-example unlearning metrics" (sections 1-5). Everything is NumPy in float64 and
vectorised over examples (in chunks that bound memory); only :func:`relearn_steps` trains a model
(with torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logsumexp

from ...errors import InvalidConfigError, MissingDataError
from ._common import as_array

__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "TOW_METRICS",
    "anamnesis_index",
    "chance_floor",
    "epsilon_score",
    "example_epsilons",
    "klom",
    "klom_summary",
    "lira_log_ratio",
    "logit_confidence",
    "logit_confidence_from_probs",
    "relearn_steps",
    "tug_of_war",
    "ulira",
]

DELTA = 1e-5
"""The δ of the per-example (ε, δ) estimate (the challenge's value)."""

EPSILON_CAP = 50.0
"""ε is clipped to [0, EPSILON_CAP]; a perfectly separating rule or a peaky pool gives the cap."""

THRESHOLDS_PER_UNIT = 100
"""Single thresholds: ⌈100 · (pooled range)⌉ evenly spaced points (at least 1)."""

DOUBLE_THRESHOLDS = 400
"""Double thresholds: 400 right edges, 400 left edges for each."""

DOUBLE_BUFFER = 2.0
"""The buffer b of the double-threshold family."""

PEAKY_RATIO = 0.01
"""Peakiness shortcut: ε = EPSILON_CAP when min(range) / max(range) of the two pools is below this."""

TOW_METRICS: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc")
"""The accuracies Tug-of-War multiplies over (forget, retain, test)."""

_CHUNK_ELEMENTS = 1 << 19
"""Elements of the largest temporary array (chunk x 400 x pooled models) of the double-threshold rules:
about 4 MB each in float64, so the temporaries stay in cache and far below 500 MB."""


# ----------------------------------------------------------------------------------- inputs
def logit_confidence(logits: Any, labels: Any) -> np.ndarray:
    """Logit-scaled confidence φ = z_y − logsumexp_{j≠y} z_j, computed stably in float64.

    Args:
        logits: ``(..., C)`` logits (C ≥ 2), e.g. ``(n, C)`` or a pool's ``(N, n, C)``.
        labels: Integer labels, broadcastable to ``logits.shape[:-1]`` (``(n,)`` for a pool).

    Returns:
        φ of shape ``logits.shape[:-1]`` (a pool's ``(N, n)``).

    Raises:
        InvalidConfigError: fewer than 2 classes, non-integer labels or labels out of range.

    Example:
        >>> float(logit_confidence([[2.0, 0.0]], [0])[0])  # ln(p/(1-p)) of a 2-class softmax is the logit gap
        2.0
    """
    z = as_array(logits, "logits", np.float64)
    y = _labels(labels, z)
    zy = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, y[..., None], -np.inf, axis=-1)
    return zy - logsumexp(others, axis=-1)


def logit_confidence_from_probs(probs: Any, labels: Any) -> np.ndarray:
    """φ from probabilities as the challenge computes it: ln(p_y + 1e-45) − ln(Σ_{k≠y} p_k + 1e-45).

    The 1e-45 bounds |φ| by about 103.6 (a probability of exactly 0 or 1). The sum over the other
    classes is a sum (not 1 − p_y), so it keeps its precision when p_y is close to 1.

    Args:
        probs: ``(..., C)`` probabilities.
        labels: Integer labels, broadcastable to ``probs.shape[:-1]``.

    Example:
        >>> round(float(logit_confidence_from_probs([[0.75, 0.25]], [0])[0]), 6)  # ln 3
        1.098612
    """
    p = as_array(probs, "probs", np.float64)
    y = _labels(labels, p)
    py = np.take_along_axis(p, y[..., None], axis=-1)[..., 0]
    rest = p.copy()
    np.put_along_axis(rest, y[..., None], 0.0, axis=-1)
    return np.log(py + 1e-45) - np.log(rest.sum(axis=-1) + 1e-45)


def _labels(labels: Any, scores: np.ndarray) -> np.ndarray:
    if scores.ndim < 1 or scores.shape[-1] < 2:
        raise InvalidConfigError(f"The class scores must be a (..., C) array with C >= 2 classes; got shape {scores.shape}.")
    y = as_array(labels, "labels")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise InvalidConfigError(f"The 'labels' argument must hold integers; got dtype {y.dtype}.")
    try:
        y = np.broadcast_to(y.astype(np.int64), scores.shape[:-1])
    except ValueError as e:
        raise InvalidConfigError(f"The labels of shape {y.shape} do not match the scores of shape {scores.shape}.") from e
    if y.size and (y.min() < 0 or y.max() >= scores.shape[-1]):
        raise InvalidConfigError(f"The labels must lie in [0, {scores.shape[-1] - 1}]; got {y.min()}..{y.max()}.")
    return y


def _pools(u: Any, r: Any, names: tuple[str, str] = ("u", "r"), min_models: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two ``(N, n)`` float64 pools of the same examples (a 1-D pool is one example)."""
    out = []
    for values, name in zip((u, r), names, strict=True):
        a = as_array(values, name, np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise InvalidConfigError(f"The {name!r} pool must be an (N models, n examples) array; got shape {a.shape}.")
        if a.shape[0] < min_models:
            raise InvalidConfigError(f"The {name!r} pool needs at least {min_models} models; got {a.shape[0]}.")
        if not np.all(np.isfinite(a)):
            raise InvalidConfigError(f"The {name!r} pool holds NaN or infinite values.")
        out.append(a)
    if out[0].shape[1] != out[1].shape[1]:
        raise InvalidConfigError(
            f"The pools {names[0]!r} and {names[1]!r} must cover the same examples; got {out[0].shape[1]} and {out[1].shape[1]}."
        )
    return out[0], out[1]


# ------------------------------------------------------------------------------- ε per example
def _grid_value(i: np.ndarray, start: np.ndarray, step: np.ndarray, stop: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Point ``i`` of ``numpy.linspace(start, stop, num)`` exactly as NumPy computes it (the last one is ``stop``)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf step of a one-point grid, in the branch not taken
        return np.where(i >= num - 1, stop, i * step + start)


def _grid_count(x: np.ndarray, start: np.ndarray, step: np.ndarray, stop: np.ndarray, num: np.ndarray | float) -> np.ndarray:
    """How many points of each grid ``linspace(start, stop, num)`` are <= each ``x`` (exact, ties included).

    ``start``, ``step``, ``stop``, ``num`` broadcast against ``x``; ``step = (stop - start) / (num - 1)``
    (``inf`` and ``stop = start`` for a one-point grid). An estimate from the step is corrected
    against the exact grid values, so that a value equal to a grid point counts that point. The
    counts are returned as float64 (integers, exactly).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        j = np.floor((x - start) / step)
    j += 1.0
    np.clip(j, 0.0, num, out=j)
    up = (j < num) & (_grid_value(j, start, step, stop, num) <= x)
    down = (j > 0) & (_grid_value(j - 1.0, start, step, stop, num) > x)
    fix = np.flatnonzero(up | down)
    if fix.size == 0:
        return j
    # the estimate is off by one at most where rounding puts x next to a grid point: fix those
    # few entries one step at a time, against the exact grid values
    shape = np.broadcast_shapes(x.shape, np.shape(start), np.shape(num))
    xf, jf = np.broadcast_to(x, shape).ravel()[fix], j.ravel()  # j has the full shape: a view
    sf, tf, pf, nf = (np.broadcast_to(a, shape).ravel()[fix] for a in (start, step, stop, num))
    jj = jf[fix]
    for _ in range(64):
        up = (jj < nf) & (_grid_value(jj, sf, tf, pf, nf) <= xf)
        down = (jj > 0) & (_grid_value(jj - 1.0, sf, tf, pf, nf) > xf)
        if not (up.any() or down.any()):
            jf[fix] = jj
            return j
        jj = jj + up - down
    raise RuntimeError("internal error: the threshold-grid count did not converge")  # pragma: no cover


def _epsilon_table(n_pos: int, n_neg: int, delta: float) -> np.ndarray:
    """ε of a rule that predicts ``cp`` of ``n_pos`` positives and ``cn`` of ``n_neg`` negatives positive.

    Entry ``[cp, cn]``: +inf for FPR = FNR = 0, -1 (discarded) for FPR · FNR = 0 and for a rule
    both of whose terms are undefined (FPR = FNR = 1), else max of the defined terms of
    ln(1 − δ − FPR) − ln FNR and ln(1 − δ − FNR) − ln FPR, floored at 0.
    """
    fnr = (n_pos - np.arange(n_pos + 1, dtype=np.float64))[:, None] / n_pos
    fpr = np.arange(n_neg + 1, dtype=np.float64)[None, :] / n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        eps = np.fmax(np.log(1.0 - delta - fpr) - np.log(fnr), np.log(1.0 - delta - fnr) - np.log(fpr))
    eps = np.where(np.isnan(eps), -1.0, np.maximum(eps, 0.0))
    eps = np.where(fpr * fnr == 0.0, -1.0, eps)
    return np.where((fpr == 0.0) & (fnr == 0.0), np.inf, eps)


def example_epsilons(u: Any, r: Any, delta: float = DELTA) -> np.ndarray:
    """Per-example empirical ε of the NeurIPS 2023 unlearning challenge (spec section 1).

    For each example, the N_u values of φ under the unlearned pool and the N_r under the retrained
    pool are told apart by two families of threshold rules; each rule's false positive and false
    negative rates (plain fractions over the pools) bound ε of an (ε, δ) guarantee, and the
    example's ε is the best bound:

    1. *orientation*: A is the pool with the larger median (r if median(r) > median(u), on a tie u),
       B the other;
    2. *peakiness*: if min(R_A, R_B) / max(R_A, R_B) < 0.01 (R = max − min), ε = 50 (two constant
       pools give 0/0 and skip this);
    3. *single thresholds* t = ``linspace(pooled min, pooled max, max(1, ⌈100 · range⌉))``: predict A
       iff φ ≥ t. *Double thresholds*: P is the pool with the smaller range (B when R_A ≥ R_B),
       w its range, b = 2; right edges t_R = ``linspace(min P + w − b, max P + b, 400)``, for each
       left edges t_L = ``linspace(t_R − w − b, t_R − w + b, 400)``; predict P iff t_L ≤ φ ≤ t_R;
    4. per rule: FPR = FNR = 0 gives +∞; otherwise FPR · FNR = 0 discards the rule; otherwise
       ε = max(ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR), a term with a negative log
       argument ignored (a rule with both ignored is discarded), floored at 0;
    5. ε = the largest over the surviving rules (0 when none survives, e.g. two identical constant
       pools), clipped to [0, 50].

    Deviations from the challenge's code (google-deepmind/unlearning_evaluation ``metric.py``),
    none of which changes a result beyond rounding: rates are exact fractions in float64 (the
    code: float32 on CUDA); the code takes ⌈100 · ((max P + b) − (min P + w − b))⌉ right edges,
    which is 400 up to rounding (sometimes 401), where this takes 400; a pooled range of 0 gets one
    single threshold (the code: none); "no rule survives" gives ε = 0 (the code fails an assert).

    Implementation: a rule's rates change only where a threshold passes a pooled value, so the
    rules are evaluated once per distinct outcome. For each pooled value x the number of grid
    points ≤ x is counted exactly (against the grid values ``numpy.linspace`` computes), and a
    rule is kept only if a grid point realises it; counts come from cumulative sums over the
    sorted pooled values and ε from a table over (count of u, count of r). Examples are processed
    in chunks whose temporaries are about 4 MB.

    Args:
        u: ``(N_u, n)`` φ of the unlearned pool on ``n`` examples (a 1-D array is one example).
        r: ``(N_r, n)`` φ of the retrained pool on the same examples.
        delta: δ of the (ε, δ) bound.

    Returns:
        ``(n,)`` float64 ε in [0, 50].

    Raises:
        InvalidConfigError: pools of other examples, empty, NaN or infinite values, δ not in (0, 1).

    Example:
        >>> round(float(example_epsilons([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])[0]), 6)  # ln(2 − 4δ)
        0.693127
    """
    u, r = _pools(u, r)
    if not 0.0 < delta < 1.0:
        raise InvalidConfigError(f"The 'delta' argument must lie in (0, 1); got {delta!r}.")
    n_u, n = u.shape
    n_r = r.shape[0]
    eps = np.zeros(n, dtype=np.float64)
    if n == 0:
        return eps

    range_u, range_r = np.ptp(u, axis=0), np.ptp(r, axis=0)
    a_is_u = ~(np.median(r, axis=0) > np.median(u, axis=0))
    range_a, range_b = np.where(a_is_u, range_u, range_r), np.where(a_is_u, range_r, range_u)
    with np.errstate(invalid="ignore", divide="ignore"):
        peaky = np.minimum(range_a, range_b) / np.maximum(range_a, range_b) < PEAKY_RATIO
    eps[peaky] = EPSILON_CAP
    todo = np.flatnonzero(~peaky)

    table_u = _epsilon_table(n_u, n_r, delta)  # u positive: [count of u, count of r]
    table_r = _epsilon_table(n_r, n_u, delta)  # r positive: [count of r, count of u]
    table = np.concatenate([table_u.ravel(), table_r.ravel()])
    m = n_u + n_r
    chunk = max(1, _CHUNK_ELEMENTS // (DOUBLE_THRESHOLDS * m))
    for lo in range(0, len(todo), chunk):
        idx = todo[lo : lo + chunk]
        a_u = a_is_u[idx]
        p_is_u = np.where(range_a[idx] >= range_b[idx], ~a_u, a_u)  # the double rules' positive pool P
        eps[idx] = _chunk_epsilons(u[:, idx].T, r[:, idx].T, a_u, p_is_u, table, n_u, n_r)
    return np.clip(eps, 0.0, EPSILON_CAP)


def _table_strides(pos_is_u: np.ndarray, n_u: int, n_r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offset and strides into the flat ε table of a rule with ``cu`` unlearned and ``cr`` retrained values positive.

    The table holds ``[cu, cr]`` (the unlearned pool positive) then ``[cr, cu]`` (the retrained one);
    the entry is ``offset + cu * stride_u + cr * stride_r``.
    """
    offset = np.where(pos_is_u, 0, (n_u + 1) * (n_r + 1))
    return offset, np.where(pos_is_u, n_r + 1, 1), np.where(pos_is_u, 1, n_u + 1)


def _chunk_epsilons(
    u: np.ndarray, r: np.ndarray, a_is_u: np.ndarray, p_is_u: np.ndarray, table: np.ndarray, n_u: int, n_r: int
) -> np.ndarray:
    """The largest rule ε of each example (``u``: ``(B, N_u)``, ``r``: ``(B, N_r)``), -1 when no rule survives."""
    b, m = len(u), n_u + n_r
    pooled = np.concatenate([u, r], axis=1)
    order = np.argsort(pooled, axis=1, kind="stable")
    xs = np.take_along_axis(pooled, order, axis=1)  # sorted pooled values
    cum_u = np.cumsum(order < n_u, axis=1)  # unlearned values among the first p + 1 sorted
    cum_r = np.arange(1, m + 1) - cum_u

    # single thresholds t_k, k < K: predict A iff phi >= t_k. The count of values >= t_k changes
    # only at k = j(x), the number of grid points <= x; k = 0 (everything >= min) is always
    # discarded (TPR = FPR = 1), so the rules at k = j(x) < K, one per distinct j, are all rules.
    low, high = xs[:, :1], xs[:, -1:]
    num = np.maximum(1.0, np.ceil((high - low) * THRESHOLDS_PER_UNIT))
    with np.errstate(invalid="ignore", divide="ignore"):
        step = np.where(num > 1, (high - low) / (num - 1), np.inf)
    stop = np.where(num > 1, high, low)
    j = _grid_count(xs, low, step, stop, num)
    keep = np.concatenate([j[:, 1:] != j[:, :-1], np.ones((b, 1), dtype=bool)], axis=1) & (j < num)
    offset, su, sr = _table_strides(a_is_u[:, None], n_u, n_r)
    vals = table[offset + (n_u - cum_u) * su + (n_r - cum_r) * sr]
    best = np.where(keep, vals, -1.0).max(axis=1)

    # double thresholds: for right edge t_R[i] and left edge t_L[i, k], a value x is inside iff
    # x <= t_R[i] and x >= t_L[i, k], i.e. k < jL_i(x) (the number of left edges <= x).
    p_min = np.where(p_is_u, u.min(axis=1), r.min(axis=1))[:, None]
    p_max = np.where(p_is_u, u.max(axis=1), r.max(axis=1))[:, None]
    w = p_max - p_min
    nt = float(DOUBLE_THRESHOLDS)
    i = np.arange(DOUBLE_THRESHOLDS, dtype=np.float64)[None, :]
    r_start, r_stop = (p_min + w) - DOUBLE_BUFFER, p_max + DOUBLE_BUFFER
    t_right = _grid_value(i, r_start, (r_stop - r_start) / (nt - 1), r_stop, nt)  # (B, 400)
    l_start, l_stop = (t_right - w) - DOUBLE_BUFFER, (t_right - w) + DOUBLE_BUFFER
    l_step = (l_stop - l_start) / (nt - 1)
    jl = _grid_count(xs[:, None, :], l_start[..., None], l_step[..., None], l_stop[..., None], nt)  # (B, 400, M)
    below_right = (xs[:, None, :] <= t_right[..., None]).sum(axis=2)  # values <= t_R[i]
    zeros = np.zeros((b, 1), dtype=np.int64)
    cum_u0, cum_r0 = np.concatenate([zeros, cum_u], axis=1), np.concatenate([zeros, cum_r], axis=1)
    u_right = np.take_along_axis(cum_u0, below_right, axis=1)  # (B, 400) values <= t_R[i] per pool
    r_right = np.take_along_axis(cum_r0, below_right, axis=1)
    offset, su, sr = _table_strides(p_is_u[:, None], n_u, n_r)
    # left edge k = 0: inside are the values <= t_R with jL > 0
    first = (jl == 0).sum(axis=2)
    cu0 = np.maximum(u_right - np.take_along_axis(cum_u0, first, axis=1), 0)
    cr0 = np.maximum(r_right - np.take_along_axis(cum_r0, first, axis=1), 0)
    best = np.maximum(best, table[offset + cu0 * su + cr0 * sr].max(axis=1))
    # the other candidate left edges: k = jL(x) < 400 at the last sorted value of each distinct jL
    # (the values with jL <= k lie below t_L[k]); t_L > t_R leaves the interval empty (count 0)
    keep = jl[..., :-1] != jl[..., 1:]
    keep = np.concatenate([keep, np.ones((b, DOUBLE_THRESHOLDS, 1), dtype=bool)], axis=2)
    keep &= jl < nt
    cu = u_right[..., None] - cum_u[:, None, :]
    cr = r_right[..., None] - cum_r[:, None, :]
    np.maximum(cu, 0, out=cu)
    np.maximum(cr, 0, out=cr)
    cu *= su[..., None]
    cr *= sr[..., None]
    cu += cr
    cu += offset[..., None]
    vals = table[cu]
    vals[~keep] = -1.0
    return np.maximum(best, vals.max(axis=(1, 2)))


# ---------------------------------------------------------------------------------- ε-score
def _forget_quality(eps: np.ndarray, n_models: int) -> tuple[float, int]:
    if n_models < 2:
        raise InvalidConfigError(f"The ε-score needs pools of at least 2 models (E_max = ⌈ln(N − 1)⌉); got N = {n_models}.")
    e_max = math.ceil(math.log(n_models - 1))
    s = np.where(eps < e_max, 2.0 ** -np.floor(2.0 * eps), 0.0)
    return (float(s.mean()) if len(s) else float("nan")), e_max


def epsilon_score(u: Any, r: Any, *, ra_u: Any, ra_r: Any, ta_u: Any, ta_r: Any, delta: float = DELTA) -> dict[str, Any]:
    """The NeurIPS 2023 unlearning challenge score (spec section 1).

    Each forget example scores s(ε) = 2^−⌊2ε⌋ if ε < E_max, else 0 (0.5-wide buckets:
    [0, 0.5) → 1, [0.5, 1) → ½, ...), with ε from :func:`example_epsilons` and
    E_max = ⌈ln(N − 1)⌉ the largest ε that N models can resolve (N = the smaller pool; the
    challenge used the unlearned pool's size, its pools being equal). F is the mean of s over the
    examples, and the score is F · (RA_u / RA_r) · (TA_u / TA_r) (ratios unclipped).

    At small N, F has a chance floor: two independent pools of one distribution do not score 1
    (see :func:`chance_floor`), while two identical copies of one pool do. Report the floor at the
    same N beside the score.

    Args:
        u: ``(N_u, n)`` φ of the unlearned pool on the forget examples.
        r: ``(N_r, n)`` φ of the retrained pool.
        ra_u: Retain accuracy of the unlearned pool (a number, or one per model: averaged).
        ra_r: Retain accuracy of the retrained pool (same unit as ``ra_u``).
        ta_u: Test accuracy of the unlearned pool.
        ta_r: Test accuracy of the retrained pool.
        delta: δ of the per-example (ε, δ) estimate.

    Returns:
        ``score``, ``F``, ``epsilons`` (``(n,)``), ``e_max``, ``n`` (the pool size N used for
        E_max) and ``n_examples``.

    Raises:
        InvalidConfigError: a pool of fewer than 2 models, or a retrained accuracy that is not
            positive.

    Example:
        >>> out = epsilon_score([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0], ra_u=0.9, ra_r=1.0, ta_u=0.8, ta_r=0.8)
        >>> out["F"], out["e_max"], round(out["score"], 4)
        (0.5, 2, 0.45)
    """
    u, r = _pools(u, r, min_models=2)
    acc = {}
    for name, value in (("ra_u", ra_u), ("ra_r", ra_r), ("ta_u", ta_u), ("ta_r", ta_r)):
        arr = as_array(value, name, np.float64)
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise InvalidConfigError(f"The {name!r} argument must be one or more finite accuracies; got {value!r}.")
        acc[name] = float(arr.mean())
    for name in ("ra_r", "ta_r"):
        if acc[name] <= 0.0:
            raise InvalidConfigError(f"The {name!r} argument (a retrained pool's accuracy) must be positive; got {acc[name]}.")
    eps = example_epsilons(u, r, delta=delta)
    n_models = min(u.shape[0], r.shape[0])
    f, e_max = _forget_quality(eps, n_models)
    score = f * (acc["ra_u"] / acc["ra_r"]) * (acc["ta_u"] / acc["ta_r"])
    return {"score": score, "F": f, "epsilons": eps, "e_max": e_max, "n": n_models, "n_examples": len(eps)}


def chance_floor(r1: Any, r2: Any, *, delta: float = DELTA) -> float:
    """F of two independent retrained pools: what an unlearning method indistinguishable from retraining scores.

    The per-example ε estimate is positive by chance when two pools of N models are independent
    draws of the same distribution (a threshold rule fits the sample noise), so F < 1 at small N,
    and F of a method is read against this floor, computed at the same N (two identical copies of
    one pool give F = 1, which is not the floor). It is :func:`epsilon_score`'s F with ``r2`` in the
    place of the unlearned pool and ``r1`` as the retrained pool.

    Args:
        r1: ``(N, n)`` φ of a retrained pool on the forget examples.
        r2: ``(N, n)`` φ of a second, independent retrained pool of the same size.
        delta: δ of the per-example (ε, δ) estimate.
    """
    u, r = _pools(r2, r1, names=("r2", "r1"), min_models=2)
    f, _ = _forget_quality(example_epsilons(u, r, delta=delta), min(u.shape[0], r.shape[0]))
    return f


# ------------------------------------------------------------------------------------ U-LiRA
def _gauss_logpdf(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The Gaussian log density ln N(x; mean, std²) + ½ ln 2π (the constant cancels in every log ratio taken here)."""
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std)


def lira_log_ratio(phi: Any, in_samples: Any, out_samples: Any, *, min_std: float = 1e-6) -> np.ndarray:
    """LiRA's log likelihood ratio ln Λ = ln N(φ; μ_in, σ_in²) − ln N(φ; μ_out, σ_out²).

    The Gaussians are fitted to ``in_samples`` and ``out_samples`` along axis 0 (mean and
    population standard deviation, the latter floored at ``min_std`` so that a constant sample
    gives a very narrow Gaussian instead of a division by zero).

    Args:
        phi: φ of the target, broadcastable to ``in_samples.shape[1:]``.
        in_samples: ``(N_in, ...)`` φ of models that trained on (and here: unlearned) the example.
        out_samples: ``(N_out, ...)`` φ of models that never trained on it.
        min_std: Floor of σ.

    Example:
        >>> lira_log_ratio([1.0, 2.0, 3.0], [1.0, 3.0], [-1.0, 1.0]).tolist()
        [0.0, 2.0, 4.0]
    """
    x = as_array(phi, "phi", np.float64)
    s_in, s_out = as_array(in_samples, "in_samples", np.float64), as_array(out_samples, "out_samples", np.float64)
    if s_in.ndim < 1 or s_out.ndim < 1 or len(s_in) == 0 or len(s_out) == 0:
        raise InvalidConfigError("lira_log_ratio needs non-empty in and out samples (models along axis 0).")
    m_in, m_out = s_in.mean(axis=0), s_out.mean(axis=0)
    sd_in, sd_out = np.maximum(s_in.std(axis=0), min_std), np.maximum(s_out.std(axis=0), min_std)
    return _gauss_logpdf(x, m_in, sd_in) - _gauss_logpdf(x, m_out, sd_out)


def _fit_leave_one_out(x: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std (floored) of each example over the pool without model j: ``(N, n)`` each."""
    n = x.shape[0]
    center = x.mean(axis=0)
    d = x - center  # centred, so that the sums do not lose precision
    s1, s2 = d.sum(axis=0), (d * d).sum(axis=0)
    mean_d = (s1 - d) / (n - 1)
    var = np.maximum((s2 - d * d) / (n - 1) - mean_d**2, 0.0)
    return center + mean_d, np.maximum(np.sqrt(var), min_std)


def ulira(
    u: Any,
    r: Any,
    *,
    variant: str = "online",
    fprs: Sequence[float] = (0.01, 0.001),
    min_std: float = 1e-6,
) -> dict[str, Any]:
    """U-LiRA (Hayes et al., arXiv 2403.01218): can a per-example likelihood-ratio test tell unlearned from retrained models?

    The two pools are the shadow models: the unlearned pool ``u`` holds models that trained on
    each forget example and unlearned it (the "in" shadows, S_in), the retrained pool ``r``
    models that never trained on it (the "out" shadows, S_out). Every model of either pool is in
    turn the target, and the Gaussians N(μ_in, σ_in²) and N(μ_out, σ_out²) are fitted per example
    to the two pools without the target (leave-one-out) and without its *partner*, the model of
    the same index in the other pool (index j mod N of that pool): every fit uses N_u − 1
    unlearned and N_r − 1 retrained models, whichever pool the target comes from. Leaving out the
    target alone would fit unlearned targets' in-Gaussian to N_u − 1 models and retrained
    targets' to N_u, a bias toward one label when the pools are alike (strong at small N), and two
    identical copies of one pool would score AUC 0 instead of the spec's 0.5 (Λ ≡ 1). Fits use
    the mean and the population standard deviation, σ floored at ``min_std`` (a constant pool
    gives a very narrow Gaussian instead of a division by zero). The score of (target, example) is

    * ``"online"``: ln Λ = ln pdf_in(φ) − ln pdf_out(φ) (LiRA's two-Gaussian test);
    * ``"offline"``: (φ − μ_out) / σ_out, one-sided: an unlearned model that still remembers the
      example is more confident on it than retrained models (no in-fit).

    All (target, example) scores are pooled, labelled 1 for unlearned targets and 0 for retrained
    ones, and rated by ROC: 0.5 AUC means the unlearning is indistinguishable from retraining
    (per this test). The paper's shadow counts and splits were not verifiable (spec section 2);
    here the pools themselves are the shadows, which needs no extra training.

    Args:
        u: ``(N_u, n)`` φ of the unlearned pool on the forget examples (N_u ≥ 3: a fit keeps N_u − 1).
        r: ``(N_r, n)`` φ of the retrained pool (N_r ≥ 3).
        variant: ``"online"`` or ``"offline"``.
        fprs: False positive rates at which to report the true positive rate.
        min_std: Floor of every fitted σ.

    Returns:
        ``auc`` (``sklearn.metrics.roc_auc_score``), ``tpr_at`` (FPR → the largest TPR of the ROC
        curve at FPR ≤ that value), ``n_pos`` (N_u · n scores), ``n_neg`` (N_r · n), ``variant``.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    if variant not in ("online", "offline"):
        raise InvalidConfigError(f"The 'variant' argument must be 'online' or 'offline'; got {variant!r}.")
    fprs = [float(f) for f in fprs]
    if any(not 0.0 < f < 1.0 for f in fprs):
        raise InvalidConfigError(f"The 'fprs' argument must hold rates in (0, 1); got {fprs}.")
    u, r = _pools(u, r, min_models=3)
    if u.shape[1] == 0:
        raise MissingDataError("U-LiRA got pools of 0 examples.")
    n_u, n_r = u.shape[0], r.shape[0]
    mu_u, sd_u = _fit_leave_one_out(u, min_std)  # row j: the pool without model j
    mu_r, sd_r = _fit_leave_one_out(r, min_std)
    partner_r = np.arange(n_u) % n_r  # the retrained model left out with unlearned target j
    partner_u = np.arange(n_r) % n_u
    if variant == "online":
        pos = _gauss_logpdf(u, mu_u, sd_u) - _gauss_logpdf(u, mu_r[partner_r], sd_r[partner_r])
        neg = _gauss_logpdf(r, mu_u[partner_u], sd_u[partner_u]) - _gauss_logpdf(r, mu_r, sd_r)
    else:
        pos = (u - mu_r[partner_r]) / sd_r[partner_r]
        neg = (r - mu_r) / sd_r
    scores = np.concatenate([pos.ravel(), neg.ravel()])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    tpr_at = {f: float(tpr[fpr <= f].max()) for f in fprs}
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at": tpr_at,
        "n_pos": int(pos.size),
        "n_neg": int(neg.size),
        "variant": variant,
    }


# -------------------------------------------------------------------------------------- KLOM
def klom(
    u: Any,
    o: Any,
    *,
    bins: int = 20,
    clip: float = 100.0,
    floor: float = 1e-5,
    drop_top: bool = False,
    chunk: int = 4096,
) -> np.ndarray:
    """KLOM per example (Georgiev et al., arXiv 2410.23232, App. E.1; spec section 3): KL(unlearned ‖ oracle) in nats.

    For each example: clip both pools' margins (φ) to [−clip, clip]; take ``bins + 1`` evenly spaced
    edges from the pooled minimum to the pooled maximum (maximum = minimum + 1 when they are equal)
    and half-open bins [e_k, e_{k+1}); p and q are the normalised histograms of the unlearned and
    the oracle margins (all zeros when empty); q̃_k = max(q_k, ``floor``) where p_k > 0, not
    renormalised; KLOM = Σ_{p_k > 0} p_k ln(p_k / q̃_k). Identical pools give 0, pools in disjoint
    bins ln(1 / floor) = ln 1e5 ≈ 11.513.

    Two choices differ from the released code, as the spec says: the direction is
    KL(unlearned ‖ oracle) (data-unlearning-bench's ``run.py`` swaps the arguments); and values equal
    to the pooled maximum go into the last bin (the released code drops them, so an unlearned pool
    sitting at the maximum scores 0). ``drop_top=True`` reproduces the dropping, for comparison
    with published numbers only.

    Args:
        u: ``(N_u, n)`` margins of the unlearned pool.
        o: ``(N_o, n)`` margins of the oracle (retrained) pool.
        bins: Number of bins.
        clip: Margins are clipped to [−clip, clip].
        floor: Smoothing floor of the oracle's bin frequencies.
        drop_top: Drop values equal to the pooled maximum (the released code's quirk).
        chunk: Examples per chunk (bounds memory).

    Returns:
        ``(n,)`` float64 KLOM values.

    Example:
        >>> klom([0, 1, 1, 1, 10], [0, 0, 1, 1, 10]).round(6).tolist()
        [0.10465]
    """
    u, o = _pools(u, o, names=("u", "o"))
    if int(bins) != bins or bins < 1 or not clip > 0 or not 0 < floor < 1:
        raise InvalidConfigError(f"klom needs bins >= 1, clip > 0 and floor in (0, 1); got {bins}, {clip}, {floor}.")
    bins = int(bins)
    n = u.shape[1]
    out = np.zeros(n, dtype=np.float64)
    for lo in range(0, n, max(1, int(chunk))):
        cu = np.clip(u[:, lo : lo + chunk], -clip, clip)
        co = np.clip(o[:, lo : lo + chunk], -clip, clip)
        low = np.minimum(cu.min(axis=0), co.min(axis=0))
        high = np.maximum(cu.max(axis=0), co.max(axis=0))
        high = np.where(high == low, low + 1.0, high)
        edges = np.linspace(low, high, bins + 1, axis=-1)  # (m, bins + 1)
        p, q = _histogram(cu, edges, bins, drop_top), _histogram(co, edges, bins, drop_top)
        q_smooth = np.maximum(q, floor)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q_smooth), 0.0)
        out[lo : lo + chunk] = terms.sum(axis=1)
    return out


def _histogram(x: np.ndarray, edges: np.ndarray, bins: int, drop_top: bool) -> np.ndarray:
    """Normalised per-example histograms ``(m, bins)`` of ``x`` ``(N, m)`` over per-example ``edges``."""
    k = (x[..., None] >= edges[None, :, :]).sum(axis=-1) - 1  # bin [e_k, e_{k+1}); the maximum gives `bins`
    if not drop_top:
        k = np.minimum(k, bins - 1)
    counts = (k[..., None] == np.arange(bins)).sum(axis=0).astype(np.float64)  # (m, bins)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def klom_summary(values: Any) -> dict[str, float]:
    """The 50th and 95th percentiles of per-example KLOM values (NumPy's linear interpolation).

    Example:
        >>> klom_summary([0.0, 1.0, 2.0, 3.0, 4.0])
        {'p50': 2.0, 'p95': 3.8}
    """
    v = as_array(values, "values", np.float64).ravel()
    if v.size == 0:
        raise MissingDataError("klom_summary got no values.")
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95))}


# ------------------------------------------------------------------------ Tug-of-War, relearning
def tug_of_war(acc_u: Mapping[str, float], acc_r: Mapping[str, float], names: Sequence[str] = TOW_METRICS) -> float:
    """RUM's Tug-of-War (Zhao et al., NeurIPS 2024): Π over ``names`` of (1 − |acc_u − acc_r|).

    Accuracies are fractions in [0, 1] (the paper writes them in % and divides by 100). Higher is
    better; 1 means the same forget, retain and test accuracy as the retrained model.

    Args:
        acc_u: The unlearned model's accuracies (``forget_acc``, ``retain_acc``, ``test_acc``).
        acc_r: The retrained model's.
        names: Which accuracies to multiply over.

    Raises:
        InvalidConfigError: a name missing on either side, or an accuracy outside [0, 1].

    Example:
        >>> acc = lambda f, r, t: {"forget_acc": f, "retain_acc": r, "test_acc": t}
        >>> round(tug_of_war(acc(0.95, 0.99, 0.88), acc(0.90, 1.00, 0.90)), 5)
        0.92169
    """
    names = list(names)
    missing = [n for n in names if n not in acc_u or n not in acc_r]
    if not names or missing:
        raise InvalidConfigError(f"tug_of_war needs the accuracies {names} on both sides; missing {missing}.")
    out = 1.0
    for n in names:
        a, b = float(acc_u[n]), float(acc_r[n])
        if (a == a and not 0.0 <= a <= 1.0) or (b == b and not 0.0 <= b <= 1.0):
            raise InvalidConfigError(f"tug_of_war takes accuracies as fractions in [0, 1]; got {n} = {a} and {b}.")
        out *= 1.0 - abs(a - b)
    return out


def anamnesis_index(steps_unlearned: int, steps_retrained: int) -> float:
    """The Anamnesis Index AIN = rt(unlearned) / rt(retrained) (Chundawat et al., IEEE TIFS 2023).

    rt is the number of steps :func:`relearn_steps` needs to bring forget accuracy back to a target
    (0.95 of the original's). Near 1 is ideal; far below 1 means the knowledge was hidden, not
    removed (it comes back quickly).

    Example:
        >>> anamnesis_index(3, 12)
        0.25
    """
    for name, v in (("steps_unlearned", steps_unlearned), ("steps_retrained", steps_retrained)):
        if int(v) != v or v < 1:
            raise InvalidConfigError(f"The {name!r} argument must be a step count >= 1; got {v!r}.")
    return float(steps_unlearned) / float(steps_retrained)


def relearn_steps(
    model: Any,
    data: Any,
    forget: Any,
    target_acc: float,
    *,
    lr: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 10,
    device: Any = "auto",
    seed: int = 0,
) -> int:
    """rt(M): Adam steps on ``data`` until M's accuracy on ``forget`` reaches ``target_acc`` (spec section 5).

    A copy of the model (the caller's is never changed) is trained with cross-entropy and Adam
    (``lr``, mini-batches of ``batch_size`` shuffled from ``seed``) on ``data``, the training set
    (forget ∪ retain), for at most ``max_epochs`` epochs. Forget accuracy (eval mode) is checked
    after every step, so rt ≥ 1; if the target is never reached, rt is the total number of steps.
    The Anamnesis Index uses target 0.95 · Acc_original(forget) and the same settings and seed
    for the unlearned and the retrained model (:func:`anamnesis_index`).

    Args:
        model: The classifier (an ``nn.Module``).
        data: The dataset trained on (items ``(input, label)``).
        forget: The forget set whose accuracy is watched.
        target_acc: The forget accuracy to reach, in [0, 1].
        lr: Adam's learning rate.
        batch_size: Mini-batch size.
        max_epochs: Most epochs over ``data``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        seed: Seed of the shuffling and of any randomness in the model (dropout).

    Returns:
        The step count.

    Raises:
        MissingDataError: ``data`` or ``forget`` is empty.
        InvalidConfigError: an argument out of range.
    """
    import torch

    from ..._utils import eval_mode, resolve_device
    from ...data.base import iterate_batches
    from ...models.adapter import logits_of
    from ...training import StepHook, train

    if not 0.0 <= target_acc <= 1.0:
        raise InvalidConfigError(f"The 'target_acc' argument must lie in [0, 1]; got {target_acc!r}.")
    if not lr > 0 or int(batch_size) != batch_size or batch_size < 1 or int(max_epochs) != max_epochs or max_epochs < 1:
        raise InvalidConfigError(
            f"relearn_steps needs lr > 0, batch_size >= 1 and max_epochs >= 1; got {lr}, {batch_size}, {max_epochs}."
        )
    if len(data) == 0 or len(forget) == 0:
        raise MissingDataError("relearn_steps needs a non-empty training set and forget set.")
    dev = resolve_device(device)
    batches = list(iterate_batches(forget, 1024, device=dev))
    fx, fy = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    class _Reached(Exception):
        pass

    class Watch(StepHook):  # the one training loop (obliviate.train), watched after every step
        steps = 0

        def after_step(self, net: Any, optimizer: Any) -> None:
            self.steps += 1
            with torch.no_grad(), eval_mode(net):
                acc = (logits_of(net(fx)).argmax(dim=1) == fy).double().mean().item()
            if acc >= target_acc:
                raise _Reached

    watch = Watch()
    recipe = {"optimizer": "adam", "lr": lr, "weight_decay": 0.0, "schedule": "constant", "batch_size": int(batch_size)}
    try:  # train() works on a copy: the caller's model is never changed
        train(model, data, epochs=int(max_epochs), seed=int(seed), device=dev, progress=False, record=watch, **recipe)
    except _Reached:
        pass
    return watch.steps
