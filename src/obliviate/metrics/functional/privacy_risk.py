"""Song & Mittal's privacy risk score (USENIX Security'21, arXiv:2003.10595), as pure functions.

The privacy risk score of a sample with label y and attack score s (modified entropy by
default; small means "looks like a member") is the posterior probability that it is a member
given s, estimated from a shadow model's scores on its own members and non-members, class by
class, with a prior of 1/2: ``r = P_in,y(bin(s)) / (P_in,y(bin(s)) + P_out,y(bin(s)))``.

Reference algorithm (Song & Mittal's ``calculate_risk_score``, the default here):

* per class, scores are clamped to >= 1e-10 (for log bins) and ``num_bins`` (5) bins are laid
  over the union of member and non-member scores, log-spaced by default
  (``logspace(log10 min, log10 max, num_bins + 1)``), **shared** by both sets;
* each set's histogram is normalised to a probability mass over those bins;
* a score falls in bin j when ``bins[j] <= s < bins[j + 1]`` (clipped to the first and last
  bins);
* when both masses of that bin are 0, the nearest non-empty bin is used (j-1, j+1, j-2, ...).

``legacy_unrolling_sgd=True`` reproduces the unrolling-SGD code instead (whose bugs the
default avoids): modified entropy computed on **raw logits** (no softmax; values outside
[0, 1] hit the log clamp), **separate** 10-bin linear grids for members and non-members (each
between its own min and max; a score's bin is the first interior edge above it, else the last
bin), and no fallback (0/0 gives NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InvalidConfigError
from ._common import as_array

__all__ = ["privacy_risk_score", "legacy_modified_entropy", "risk_calibration", "risk_bins"]

_SMALL = 1e-10


def legacy_modified_entropy(outputs: Any, labels: Any) -> np.ndarray:
    """The unrolling-SGD code's ``Mentr``, applied to whatever it is given (there: raw logits).

    ``-(1 - o_y) log(o_y) - sum_{c != y} o_c log(1 - o_c)`` with ``log(max(., 1e-30))``.
    On softmax probabilities it equals the modified entropy; on logits it is not a statistic
    of the published attack.
    """
    o = as_array(outputs, "outputs", np.float64)
    y = as_array(labels, "labels").astype(np.int64)
    if o.ndim != 2 or len(o) != len(y):
        raise InvalidConfigError(f"legacy_modified_entropy needs (N, C) outputs and N labels; got {o.shape} and {y.shape}.")

    def safe_log(v: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(v, 1e-30))

    rows = np.arange(len(y))
    o_y = o[rows, y]
    others = o * safe_log(1.0 - o)
    total = others.sum(axis=1) - others[rows, y]
    return -(1.0 - o_y) * safe_log(o_y) - total


def risk_bins(
    member: np.ndarray, nonmember: np.ndarray, num_bins: int = 5, log_bins: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shared bins over one class's member and non-member scores and both probability masses.

    Returns:
        (bin edges ``(num_bins + 1,)``, member mass, non-member mass).
    """
    tr, te = np.asarray(member, np.float64), np.asarray(nonmember, np.float64)
    if log_bins:
        tr, te = np.maximum(tr, _SMALL), np.maximum(te, _SMALL)
    both = np.concatenate([tr, te])
    lo, hi = float(both.min()), float(both.max())
    bins = np.logspace(np.log10(lo), np.log10(hi), num_bins + 1) if log_bins else np.linspace(lo, hi, num_bins + 1)
    h_in = np.histogram(tr, bins=bins, weights=np.full(len(tr), 1.0 / len(tr)))[0]
    h_out = np.histogram(te, bins=bins, weights=np.full(len(te), 1.0 / len(te)))[0]
    return bins, h_in, h_out


def _bin_risks(h_in: np.ndarray, h_out: np.ndarray) -> np.ndarray:
    """The risk of each bin, empty bins taking the nearest non-empty bin's (lower bin first)."""
    total = h_in + h_out
    filled = np.flatnonzero(total != 0)
    out = np.full(len(h_in), np.nan)
    if not len(filled):
        return out
    for j in range(len(h_in)):
        if total[j] != 0:
            out[j] = h_in[j] / total[j]
            continue
        dist = np.abs(filled - j)
        nearest = filled[dist == dist.min()].min()  # on a tie the reference looks below first
        out[j] = h_in[nearest] / total[nearest]
    return out


def _legacy_grid(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = float(values.min()), float(values.max())
    divisions = lo + np.arange(1, n_bins) * (hi - lo) / n_bins
    index = np.searchsorted(divisions, values, side="right")  # first division above the score
    return divisions, np.bincount(index, minlength=n_bins) / len(values)


def privacy_risk_score(
    member_scores: Any,
    member_labels: Any,
    nonmember_scores: Any,
    nonmember_labels: Any,
    scores: Any,
    labels: Any,
    *,
    num_classes: int | None = None,
    num_bins: int | None = None,
    log_bins: bool = True,
    legacy_unrolling_sgd: bool = False,
) -> np.ndarray:
    """Per-sample privacy risk scores from a shadow model's member / non-member scores.

    Args:
        member_scores: Attack scores (e.g. modified entropy) of the shadow model's members.
        member_labels: Their labels.
        nonmember_scores: Scores of the shadow model's non-members.
        nonmember_labels: Their labels.
        scores: Scores of the samples to rate, under the target model.
        labels: Their labels.
        num_classes: Number of classes (default: 1 + the largest label seen).
        num_bins: Bins per class; default 5 (10 in legacy mode).
        log_bins: Log-spaced bins (reference default) or linear ones.
        legacy_unrolling_sgd: Reproduce the unrolling-SGD code's binning (see the module
            docstring); the caller computes the scores (with :func:`legacy_modified_entropy`
            on logits, to reproduce it fully).

    Returns:
        Float64 risks in [0, 1]; NaN for a class with no member or no non-member score (and, in
        legacy mode, where both masses are 0).

    Example:
        >>> import numpy as np
        >>> r = privacy_risk_score([0.01, 0.02], [0, 0], [1.0, 2.0], [0, 0], [0.015, 1.5], [0, 0])
        >>> r.tolist()
        [1.0, 0.0]
    """
    arrays = [
        as_array(v, n).reshape(-1)
        for v, n in (
            (member_scores, "member_scores"),
            (member_labels, "member_labels"),
            (nonmember_scores, "nonmember_scores"),
            (nonmember_labels, "nonmember_labels"),
            (scores, "scores"),
            (labels, "labels"),
        )
    ]
    tr_v, tr_y, te_v, te_y, v, y = arrays
    for vals, labs, what in ((tr_v, tr_y, "member"), (te_v, te_y, "nonmember"), (v, y, "target")):
        if len(vals) != len(labs):
            raise InvalidConfigError(f"privacy_risk_score got {len(vals)} {what} scores for {len(labs)} labels.")
        if len(vals) and not np.all(np.isfinite(vals.astype(np.float64))):
            raise InvalidConfigError(f"The {what} scores must be finite.")
    tr_v, te_v, v = tr_v.astype(np.float64), te_v.astype(np.float64), v.astype(np.float64)
    tr_y, te_y, y = tr_y.astype(np.int64), te_y.astype(np.int64), y.astype(np.int64)
    if num_bins is None:
        num_bins = 10 if legacy_unrolling_sgd else 5
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise InvalidConfigError(f"The 'num_bins' argument must be an int >= 1; got {num_bins!r}.")
    seen = [a.max() for a in (tr_y, te_y, y) if len(a)]
    k = int(num_classes) if num_classes is not None else (int(max(seen)) + 1 if seen else 0)
    out = np.full(len(v), np.nan)
    for c in range(k):
        tr, te, target = tr_v[tr_y == c], te_v[te_y == c], y == c
        if not len(tr) or not len(te) or not target.any():
            continue
        if legacy_unrolling_sgd:
            div_in, p_in = _legacy_grid(tr, num_bins)
            div_out, p_out = _legacy_grid(te, num_bins)
            a = p_in[np.searchsorted(div_in, v[target], side="right")]
            b = p_out[np.searchsorted(div_out, v[target], side="right")]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[target] = a / (a + b)
            continue
        bins, h_in, h_out = risk_bins(tr, te, num_bins, log_bins)
        index = np.clip(np.searchsorted(bins, v[target], side="right") - 1, 0, num_bins - 1)
        out[target] = _bin_risks(h_in, h_out)[index]
    return out


def risk_calibration(member_risks: Any, nonmember_risks: Any, num_bins: int = 10) -> dict[str, np.ndarray]:
    """Song & Mittal's calibration check: bin risks into ``[0, 0.1), [0.1, 0.2) ... [0.9, 1]``
    and count members and non-members per bin; ``fraction`` (members / both, NaN for an empty
    bin) should be close to the bin's risk when the scores are well calibrated.
    """
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    m = as_array(member_risks, "member_risks", np.float64).reshape(-1)
    n = as_array(nonmember_risks, "nonmember_risks", np.float64).reshape(-1)
    m, n = m[np.isfinite(m)], n[np.isfinite(n)]
    cm = np.histogram(m, bins=edges)[0]
    cn = np.histogram(n, bins=edges)[0]
    with np.errstate(invalid="ignore"):
        fraction = cm / (cm + cn)
    return {"edges": edges, "member_counts": cm, "nonmember_counts": cn, "fraction": fraction}
