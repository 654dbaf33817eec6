"""Sparsity for unlearning ("prune first, then unlearn", Unlearn-Sparse, arXiv:2304.04934).

Producers of masks — one-shot global magnitude pruning (:func:`prune` with ``kind="omp"``),
random pruning, SynFlow, and iterative magnitude pruning with weight and learning-rate
rewinding (:func:`imp`) — and helpers to apply masks, recover them from a pruned model and
report sparsity. Masks are ``{parameter name: torch.bool tensor}`` with True = kept; pruned
weights are exactly zero. ``ob.train(..., masks=masks)`` and ``ob.unlearn(..., masks=masks)``
keep them exactly zero and frozen under every method (momentum, weight decay and Adam state
included), and :func:`obliviate.io.save_masks` writes them beside a checkpoint
(:data:`MASKS_FILE` in a run directory).

Example:
    >>> import obliviate as ob
    >>> from obliviate import pruning
    >>> ds = ob.load_dataset("digits")
    >>> model = ob.build_model("cnn", ds, seed=0)
    >>> res = pruning.prune(model, 0.9, kind="omp")
    >>> round(pruning.sparsity(res.model), 2)
    0.9
"""

from .imp import fit_from_epoch, imp
from .masks import SCOPES, apply_masks, combine_masks, masks_from_zeros, prunable_parameters, sparsity
from .pruners import PRUNERS, PruneResult, magnitude_masks, prune, random_masks, run_masks, select_masks, synflow_masks

MASKS_FILE = "masks.safetensors"

__all__ = [
    "MASKS_FILE",
    "PRUNERS",
    "SCOPES",
    "PruneResult",
    "apply_masks",
    "combine_masks",
    "fit_from_epoch",
    "imp",
    "magnitude_masks",
    "masks_from_zeros",
    "prunable_parameters",
    "prune",
    "random_masks",
    "run_masks",
    "select_masks",
    "sparsity",
    "synflow_masks",
]
