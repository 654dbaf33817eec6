"""The per-run data of the bench report's plots: loss histograms and the membership-attack ROC curve.

:func:`record_curves` turns one :class:`~obliviate.evaluation.Evaluation` into a small JSON-ready
dict stored in the run record (``record["curves"]``), from which :mod:`obliviate.bench.html` draws
its plots. Everything is on fixed, shared grids so that the curves of different runs (seeds,
methods) can be summed or averaged without the raw outputs:

- ``loss_hist``: per-sample cross-entropy ``-log p[y]`` of the forget and validation splits,
  counted on :data:`LOSS_EDGES` (log10-spaced; losses outside the range fall into the end bins);
- ``mia_roc``: the ROC curve of the loss-threshold membership attack (score ``-loss``) that tells
  the forget set (members) from held-out samples of the same distribution (non-members:
  ``test_forget`` in class-wise and sub-class scenarios, else ``test_retain``), its TPR read on
  :data:`FPR_GRID`, and its AUC (:func:`sklearn.metrics.roc_auc_score`). Left out when either side
  is empty.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["LOSS_EDGES", "FPR_GRID", "sample_losses", "loss_histogram", "roc_on_grid", "record_curves"]

LOSS_EDGES: np.ndarray = np.logspace(-6, 2, 33)
"""Bin edges of the loss histograms: 1e-6 to 1e2, four bins per decade (32 bins)."""

FPR_GRID: np.ndarray = np.concatenate([[0.0], np.linspace(0.0, 1.0, 41)])
"""False-positive rates the ROC curves are read at: ``(0, 0)`` first, then 0, 0.025, ..., 1.

0 appears twice: the curve's start ``(0, 0)`` and the TPR the attack reaches without any false
positive, so that a perfect attack reads ``(0, 0), (0, 1), ..., (1, 1)``.
"""

_P_MIN = 1e-12
_DIGITS = 6  # significant digits kept in the stored floats (the record stays a few KB)


def sample_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy ``-log p[y]`` of softmax outputs ``(N, C)`` and labels ``(N,)`` (p clipped at 1e-12)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(0)
    p = probs[np.arange(labels.size), labels]
    return -np.log(np.clip(p, _P_MIN, 1.0))


def loss_histogram(losses: np.ndarray) -> list[int]:
    """Counts of ``losses`` on :data:`LOSS_EDGES`; values below / above the range are counted in the first / last bin."""
    clipped = np.clip(np.asarray(losses, dtype=np.float64), LOSS_EDGES[0], LOSS_EDGES[-1])
    counts, _ = np.histogram(clipped, bins=LOSS_EDGES)
    return [int(c) for c in counts]


def roc_on_grid(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict[str, Any]:
    """ROC curve (members positive) of a score, its TPR read on :data:`FPR_GRID`, and its AUC.

    The curve of :func:`sklearn.metrics.roc_curve` is read at each grid FPR by linear interpolation
    between its points (at an FPR where the curve rises vertically, the top of the rise); the
    first grid point is the curve's start ``(0, 0)`` and the last ``(1, 1)``. Averaging these TPRs
    over runs is the vertical averaging of ROC curves.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    s = np.concatenate([np.asarray(member_scores, dtype=np.float64), np.asarray(nonmember_scores, dtype=np.float64)])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    tpr_grid = np.empty(len(FPR_GRID))
    for i, x in enumerate(FPR_GRID):
        j = int(np.searchsorted(fpr, x, side="right")) - 1  # the last curve point with fpr <= x
        if j >= len(fpr) - 1:
            tpr_grid[i] = tpr[-1]
        else:  # fpr[j] <= x < fpr[j + 1]
            tpr_grid[i] = tpr[j] + (tpr[j + 1] - tpr[j]) * (x - fpr[j]) / (fpr[j + 1] - fpr[j])
    tpr_grid[0], tpr_grid[-1] = 0.0, 1.0
    return {
        "fpr": [round(float(x), _DIGITS) for x in FPR_GRID],
        "tpr": [float(f"{t:.{_DIGITS}g}") for t in tpr_grid],
        "auc": float(roc_auc_score(y, s)),
    }


def record_curves(evaluation: Any, scenario: Any, *, batch_size: int = 512) -> dict[str, Any]:
    """The plot data of one evaluated run (JSON-ready, a few KB): ``loss_hist`` and, when both sides exist, ``mia_roc``.

    Args:
        evaluation: An :class:`~obliviate.evaluation.Evaluation`; its ``splits`` are used where
            present, a missing split is computed from ``evaluation.model`` (one pass, eval mode).
        scenario: The :class:`~obliviate.data.Scenario` it was evaluated on.
        batch_size: Batch size of a pass over a missing split.

    Returns:
        ``{"loss_hist": {"edges", "forget", "val"}, "mia_roc": {"members", "nonmembers", "fpr",
        "tpr", "auc"}}``.
    """
    from .._utils import model_device
    from ..metrics.context import split_outputs

    splits = dict(getattr(evaluation, "splits", None) or {})

    def losses(name: str) -> np.ndarray:
        if name not in splits:
            splits[name] = split_outputs(
                model=evaluation.model,
                data=getattr(scenario, name),
                batch_size=batch_size,
                device=model_device(evaluation.model),
            )
        out = splits[name]
        return sample_losses(out.probs, out.labels)

    forget = losses("forget")
    curves: dict[str, Any] = {
        "loss_hist": {
            "edges": [float(f"{e:.{_DIGITS}g}") for e in LOSS_EDGES],
            "forget": loss_histogram(forget),
            "val": loss_histogram(losses("val")),
        }
    }
    nonmembers = "test_forget" if getattr(scenario, "test_forget", None) is not None else "test_retain"
    held = losses(nonmembers)
    if forget.size and held.size:
        curves["mia_roc"] = {"members": "forget", "nonmembers": nonmembers, **roc_on_grid(-forget, -held)}
    return curves
