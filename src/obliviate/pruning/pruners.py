"""Mask producers: one-shot magnitude (OMP), random and SynFlow pruning, and :func:`prune`.

All pruners are *global* over the chosen scope (one threshold across every layer, as
``torch.nn.utils.prune.global_unstructured`` in Unlearn-Sparse), select exactly
``round(sparsity * size)`` pruned coordinates (ties broken by position, so results are
deterministic), never change the model they are given, and accept earlier masks: coordinates
already masked out stay masked out and count towards the target sparsity.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._utils import eval_mode
from .._validation import check_choice, check_interval, check_seed
from ..errors import IncompatibleModelError
from ..models.adapter import logits_of
from .masks import apply_masks, prunable_parameters, sparsity

__all__ = ["PRUNERS", "PruneResult", "select_masks", "magnitude_masks", "random_masks", "synflow_masks", "prune", "run_masks"]

PRUNERS = ("omp", "random", "synflow")


@dataclass
class PruneResult:
    """A pruned copy of a model and its masks.

    Attributes:
        model: The pruned model (pruned weights exactly zero), in eval mode.
        masks: ``{parameter name: bool tensor}``, True = kept; pass them to ``ob.train`` and
            ``ob.unlearn`` and save them with :func:`obliviate.io.save_masks`.
        sparsity: Fraction of pruned coordinates among the masked parameters.
        kind: The pruner ("omp", "random", "synflow", "imp").
        history: Training history per round (IMP only).
    """

    model: nn.Module
    masks: dict[str, torch.Tensor]
    sparsity: float
    kind: str
    history: list[dict[str, float]] = field(default_factory=list)


def select_masks(
    scores: Mapping[str, torch.Tensor],
    target: float,
    masks: Mapping[str, torch.Tensor] | None = None,
    protect: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Global selection: prune the lowest-scored coordinates until ``target`` sparsity.

    Args:
        scores: Parameter name -> score tensor (higher = more worth keeping).
        target: Sparsity over all scored coordinates, in [0, 1].
        masks: Earlier masks; their False coordinates stay pruned and count towards ``target``.
        protect: Coordinates (True) that must never be pruned, e.g. frozen non-zero weights;
            they count as kept, so ``target`` may then be out of reach.

    Returns:
        Parameter name -> bool mask (True = kept).
    """
    target = check_interval("select_masks", "target", target, low=0.0, high=1.0)
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).double().cpu() for n in names])
    keep_before = torch.cat(
        [
            (masks[n].reshape(-1).cpu() if masks is not None and n in masks else torch.ones(scores[n].numel(), dtype=torch.bool))
            for n in names
        ]
    )
    guarded = torch.cat(
        [
            (
                protect[n].reshape(-1).cpu()
                if protect is not None and n in protect
                else torch.zeros(scores[n].numel(), dtype=torch.bool)
            )
            for n in names
        ]
    )
    total = flat.numel()
    to_prune = int(round(target * total)) - int((~keep_before).sum())
    keep = keep_before.clone()
    if to_prune > 0:
        candidates = torch.nonzero(keep_before & ~guarded).reshape(-1)
        order = torch.sort(flat[candidates], stable=True).indices
        keep[candidates[order[:to_prune]]] = False
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[start : start + size].reshape(scores[n].shape).to(scores[n].device)
        start += size
    return out


def magnitude_masks(
    model: nn.Module,
    target: float,
    *,
    scope: str = "conv",
    exclude: Iterable[str] = (),
    masks: Mapping[str, torch.Tensor] | None = None,
    protect: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One-shot global magnitude pruning (OMP): remove the smallest ``|θ|`` in ``scope``.

    Args:
        model: Usually a trained model (not changed).
        target: Overall sparsity of the scope after pruning.
        scope: "conv", "linear" or "conv_linear" (see :func:`prunable_parameters`).
        exclude: Parameter names or module prefixes to keep dense.
        masks: Earlier masks (their pruned coordinates stay pruned).
        protect: Coordinates never to prune (see :func:`select_masks`).
    """
    params = prunable_parameters(model, scope, exclude)
    scores = {n: p.detach().abs() for n, p in params.items()}
    return select_masks(scores, target, _restrict(masks, params), _restrict(protect, params))


def random_masks(
    model: nn.Module,
    target: float,
    *,
    generator: torch.Generator,
    scope: str = "conv",
    exclude: Iterable[str] = (),
    masks: Mapping[str, torch.Tensor] | None = None,
    protect: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Random pruning (Unlearn-Sparse's ``pruning_model_random``): uniform scores from ``generator``."""
    params = prunable_parameters(model, scope, exclude)
    scores = {n: torch.rand(p.shape, generator=generator) for n, p in params.items()}
    return select_masks(scores, target, _restrict(masks, params), _restrict(protect, params))


def synflow_masks(
    model: nn.Module,
    target: float,
    *,
    input_shape: tuple[int, ...],
    iterations: int = 100,
    scope: str = "conv",
    exclude: Iterable[str] = (),
    masks: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """SynFlow (Tanaka et al., NeurIPS'20, arXiv:2006.05467): data-free iterative pruning.

    On a float64 copy in eval mode with every parameter and buffer replaced by its absolute
    value, the all-ones input of ``input_shape`` gives ``R = Σ f(1)``; the score of a weight is
    ``|θ ⊙ ∂R/∂θ|`` (its "synaptic flow"), computed on the currently masked weights. Over
    ``iterations`` rounds the sparsity grows exponentially, ``1 - (1 - target)^(k/iterations)``,
    re-scoring after each round, which avoids the layer collapse of one-shot pruning at init.

    Args:
        model: Usually a freshly initialised model (not changed).
        target: Final sparsity of the scope.
        input_shape: Shape of one input, e.g. ``(3, 32, 32)``.
        iterations: Pruning rounds. Default 100 (the paper and Unlearn-Sparse).
        scope: "conv", "linear" or "conv_linear".
        exclude: Parameter names or module prefixes to keep dense.
        masks: Earlier masks.
    """
    target = check_interval("synflow_masks", "target", target, low=0.0, high=1.0)
    iterations = check_interval("synflow_masks", "iterations", iterations, kind=int, low=1)
    net = copy.deepcopy(model).double()
    names = list(prunable_parameters(net, scope, exclude))
    current = {n: m.clone() for n, m in _restrict(masks, dict.fromkeys(names)).items()}
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    original = {n: p.detach().clone() for n, p in net.named_parameters() if n in names}
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=next(net.parameters()).device)
    params = dict(net.named_parameters())
    with eval_mode(net):
        for k in range(1, iterations + 1):
            with torch.no_grad():
                for n in names:
                    params[n].copy_(original[n] * current[n] if n in current else original[n])
            net.zero_grad(set_to_none=True)
            logits_of(net(ones)).sum().backward()
            scores = {}
            for n in names:
                grad = params[n].grad
                if grad is None:
                    raise IncompatibleModelError(f"SynFlow: {n!r} gets no gradient from the model's output.")
                scores[n] = (grad * params[n]).detach().abs()
            current = select_masks(scores, 1.0 - (1.0 - target) ** (k / iterations), current)
    device = next(model.parameters()).device
    return {n: m.to(device) for n, m in current.items()}


def _restrict(masks: Mapping[str, torch.Tensor] | None, params: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {n: m.bool() for n, m in (masks or {}).items() if n in params}


def prune(
    model: nn.Module,
    sparsity_target: float,
    *,
    kind: str = "omp",
    scope: str = "conv",
    exclude: Iterable[str] = (),
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    iterations: int = 100,
) -> PruneResult:
    """Prune a copy of ``model`` to ``sparsity_target`` with one of the mask-only pruners.

    Args:
        model: The model (not changed).
        sparsity_target: Overall sparsity of the scope, in [0, 1].
        kind: "omp" (one-shot global magnitude pruning, for a trained model), "random", or
            "synflow" (data-free, usually at initialisation; needs ``input_shape``). For
            iterative magnitude pruning with rewinding (IMP, and Unlearn-Sparse's
            train-prune-rewind OMP pipeline) use :func:`obliviate.pruning.imp`.
        scope: "conv", "linear" or "conv_linear".
        exclude: Parameter names or module prefixes to keep dense.
        masks: Earlier masks (pruned coordinates stay pruned).
        seed: Seed of the random pruner.
        input_shape: Input shape for SynFlow.
        iterations: SynFlow rounds.

    Returns:
        A :class:`PruneResult` (the copy has its pruned weights set to exactly zero).

    Example:
        >>> import obliviate as ob
        >>> from obliviate.pruning import prune
        >>> m = ob.build_model("cnn", input_shape=(1, 8, 8), num_classes=10)
        >>> res = prune(m, 0.5)
        >>> round(res.sparsity, 3), sorted(res.masks)
        (0.5, ['body.0.weight', 'body.4.weight'])
    """
    kind = check_choice("prune", "kind", kind, PRUNERS)
    sparsity_target = check_interval("prune", "sparsity_target", sparsity_target, low=0.0, high=1.0)
    if kind == "omp":
        new = magnitude_masks(model, sparsity_target, scope=scope, exclude=exclude, masks=masks)
    elif kind == "random":
        gen = torch.Generator().manual_seed(check_seed("prune", seed))
        new = random_masks(model, sparsity_target, generator=gen, scope=scope, exclude=exclude, masks=masks)
    else:
        if input_shape is None:
            raise IncompatibleModelError("prune(kind='synflow') needs input_shape, e.g. dataset.input_shape.")
        new = synflow_masks(
            model,
            sparsity_target,
            input_shape=tuple(input_shape),
            iterations=iterations,
            scope=scope,
            exclude=exclude,
            masks=masks,
        )
    pruned = apply_masks(copy.deepcopy(model), new)
    pruned.eval()
    return PruneResult(model=pruned, masks=new, sparsity=sparsity(new), kind=kind)


def run_masks(
    params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a run's masks (False = frozen) into already-pruned and protected coordinates.

    A frozen coordinate whose weight is exactly zero counts as pruned; a frozen non-zero one
    must never be pruned (its value may not change). Returns ``(kept_before, protect)`` for the
    ``masks`` and ``protect`` arguments of the mask producers.
    """
    kept, protect = {}, {}
    for n, p in params.items():
        frozen = ~masks[n] if n in masks else torch.zeros_like(p, dtype=torch.bool)
        zero = p.detach() == 0
        kept[n] = ~(frozen & zero)
        protect[n] = frozen & ~zero
    return kept, protect
