"""Sparsity masks: which weights are prunable, applying masks, and measuring sparsity.

A mask dict maps a parameter name to a ``torch.bool`` tensor of the parameter's shape; True
marks a kept (trainable) coordinate, False a pruned one, whose weight is exactly zero. The same
dict is what ``ob.train(..., masks=...)`` and ``ob.unlearn(..., masks=...)`` take, and what
:func:`obliviate.io.save_masks` writes beside a checkpoint. Masks live outside the model: no
``weight_orig``/``weight_mask`` re-parametrisation, so state-dict keys never change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .._validation import check_choice
from ..errors import IncompatibleModelError, InvalidConfigError

__all__ = ["SCOPES", "prunable_parameters", "apply_masks", "sparsity", "masks_from_zeros", "combine_masks"]

# Which weights a pruner may remove. Unlearn-Sparse prunes the weight of every Conv2d (never
# the Linear head, BatchNorm or biases); ViTs have almost no convolutions, so "linear" prunes
# the weight of every nn.Linear (vlgiitr prunes the HF ViT's "dense" layers).
SCOPES: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.modules.conv._ConvNd,),
    "linear": (nn.Linear,),
    "conv_linear": (nn.modules.conv._ConvNd, nn.Linear),
}


def prunable_parameters(model: nn.Module, scope: str = "conv", exclude: Iterable[str] = ()) -> dict[str, nn.Parameter]:
    """The ``weight`` parameters a pruner may remove, by qualified name.

    Args:
        model: The model.
        scope: "conv" (every convolution's weight: Unlearn-Sparse's choice), "linear" (every
            ``nn.Linear`` weight) or "conv_linear" (both).
        exclude: Parameter names or module-name prefixes to keep dense, e.g. the head's name
            from :class:`~obliviate.models.ModelAdapter` (``adapter.head_name``).

    Raises:
        InvalidConfigError: unknown scope.
        IncompatibleModelError: nothing in the model matches the scope.
    """
    check_choice("prunable_parameters", "scope", scope, tuple(SCOPES))
    if isinstance(exclude, str):
        exclude = [exclude]
    excluded = [e.rstrip(".") for e in exclude]
    out: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, SCOPES[scope]):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter):
            continue
        name = f"{module_name}.weight" if module_name else "weight"
        if any(name == e or name.startswith(e + ".") for e in excluded):
            continue
        out[name] = weight
    if not out:
        raise IncompatibleModelError(
            f"{type(model).__name__} has no {scope!r} weights to prune (after exclusions); choose another scope "
            f"({', '.join(SCOPES)})."
        )
    return out


def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise IncompatibleModelError(f"Mask for {name!r}, which is not a parameter of {type(model).__name__}.")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != params[name].shape:
            raise InvalidConfigError(
                f"The mask for {name!r} must be a torch.bool tensor of shape {tuple(params[name].shape)}; "
                f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}."
            )
    return params


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Set every pruned coordinate (mask False) of ``model`` to exactly zero, in place."""
    params = _check_masks(model, masks)
    for name, mask in masks.items():
        p = params[name]
        p.mul_(mask.to(device=p.device, dtype=p.dtype))
        p.masked_fill_(~mask.to(p.device), 0.0)  # also turns -0.0 and NaN*0 into a clean 0
    return model


def masks_from_zeros(model: nn.Module, scope: str = "conv", exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Masks that keep every non-zero weight in ``scope`` (recover the masks of a pruned model)."""
    return {n: p.detach() != 0 for n, p in prunable_parameters(model, scope, exclude).items()}


def combine_masks(*mask_dicts: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Logical AND of several mask dicts (a coordinate is kept only if every dict keeps it)."""
    out: dict[str, torch.Tensor] = {}
    for masks in mask_dicts:
        for name, mask in (masks or {}).items():
            out[name] = out[name] & mask.to(out[name].device) if name in out else mask.clone()
    return out


def sparsity(
    target: nn.Module | Mapping[str, torch.Tensor],
    *,
    scope: str = "conv",
    exclude: Iterable[str] = (),
    per_parameter: bool = False,
) -> Any:
    """The fraction of pruned coordinates.

    Args:
        target: A mask dict (fraction of False entries over all masked parameters) or a model
            (fraction of exactly-zero weights among the ``scope`` weights, as Unlearn-Sparse's
            ``check_sparsity`` reports them).
        scope: For a model: which weights count (see :func:`prunable_parameters`).
        exclude: For a model: parameter names or module prefixes left out.
        per_parameter: Return ``{name: fraction, ..., "total": fraction}`` instead of a float.

    Returns:
        The sparsity in [0, 1] (or the per-parameter dict).

    Example:
        >>> sparsity({"weight": torch.tensor([True, False, False, True])})
        0.5
    """
    if isinstance(target, nn.Module):
        tensors = {n: p.detach() == 0 for n, p in prunable_parameters(target, scope, exclude).items()}
    elif isinstance(target, Mapping):
        tensors = {n: ~m.bool() for n, m in target.items()}
    else:
        raise InvalidConfigError(f"sparsity() takes a model or a mask dict; got {type(target).__name__}.")
    pruned = sum(int(t.sum()) for t in tensors.values())
    total = sum(t.numel() for t in tensors.values())
    overall = pruned / total if total else 0.0
    if not per_parameter:
        return overall
    out = {n: int(t.sum()) / max(t.numel(), 1) for n, t in tensors.items()}
    out["total"] = overall
    return out
