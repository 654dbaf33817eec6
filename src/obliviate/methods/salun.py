"""SalUn: a gradient-saliency weight mask, then random-label training restricted to it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .._utils import eval_mode
from .._validation import Interval, IntRange, Linear, Log, param
from ..data.base import Concat, Relabeled, iterate_batches
from ..data.scenario import Scenario
from ..models.adapter import logits_of
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method
from .random_label import random_wrong_labels

__all__ = ["SalUn", "saliency", "saliency_mask"]


def saliency(
    model: nn.Module, data: Dataset, *, batch_size: int, device: torch.device, counter: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """``|∇_θ ℓ_f(θ)|``: the magnitude of the gradient of the mean cross-entropy over ``data``.

    The gradient of the loss over the whole set (summed over mini-batches, each weighted by its
    size), taken in eval mode, so it does not depend on the batch size; its magnitude is SalUn's
    weight saliency (the sign of the loss is irrelevant).

    Returns:
        Parameter name -> saliency tensor, for every parameter that requires a gradient.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names, tensors = list(params), list(params.values())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    n = len(data)  # type: ignore[arg-type]
    with eval_mode(model):
        for x, y in iterate_batches(data, batch_size, device=device):
            loss = F.cross_entropy(logits_of(model(x)), y, reduction="sum") / n
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for name, g in zip(names, grads, strict=True):
                if g is not None:
                    total[name] += g
            if counter is not None:
                counter["samples"] = counter.get("samples", 0) + x.shape[0]
    return {name: g.abs() for name, g in total.items()}


def saliency_mask(
    scores: dict[str, torch.Tensor], ratio: float, allowed: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The top ``ratio`` of coordinates by saliency, ranked globally over all parameters.

    Args:
        scores: Parameter name -> saliency.
        ratio: Share of the eligible coordinates marked True (rounded up).
        allowed: Optional masks (True = may move); only their True coordinates are eligible,
            and the result is their logical AND with the saliency mask.

    Returns:
        Parameter name -> boolean mask (True = updated by SalUn).
    """
    names = list(scores)
    flat = []
    for name in names:
        s = scores[name].detach().flatten().float()
        if allowed and name in allowed:
            s = torch.where(allowed[name].flatten(), s, torch.full_like(s, -1.0))
        flat.append(s)
    values = torch.cat(flat)
    eligible = int((values >= 0).sum())
    k = min(eligible, math.ceil(ratio * eligible))
    chosen = torch.zeros_like(values, dtype=torch.bool)
    if k:
        chosen[torch.topk(values, k, sorted=False).indices] = True
    out, start = {}, 0
    for name in names:
        size = scores[name].numel()
        out[name] = chosen[start : start + size].view_as(scores[name])
        start += size
    return out


@register_method("salun")
@dataclass(frozen=True, kw_only=True)
class SalUn(UnlearningMethod, FineTuneRecipe):
    """SalUn: saliency unlearning (Fan et al., ICLR'24, arXiv:2310.12508).

    (1) Weight saliency: the magnitude of the gradient of the forget loss,
    ``|∇_θ CE(θ; D_f)|`` (:func:`saliency`); the top ``mask_ratio`` of all weights, ranked
    globally, form the saliency mask (the paper's hard threshold γ, expressed as the share of
    weights kept, as in its released masks ``with_0.5`` ...). (2) Random labelling restricted
    to the mask: fine-tune on D_f with random wrong labels (see ``random_label``) together with
    D_r, updating only the salient weights. Masked weights are frozen through the shared
    mask-safe optimiser, so weight decay and momentum cannot move them (the SalUn code's bug,
    its issue #32, fixed there in 2026). A mask given to ``ob.unlearn`` is combined with the
    saliency mask by logical AND, and the ranking runs over the coordinates it leaves free.

    Data needs: forget, retain. Cost: one backward pass over D_f for the saliency, then
    ``epochs`` passes over D_f ∪ D_r.

    Args:
        epochs: Epochs over D_f ∪ D_r. Default 10 (paper's CIFAR-10 setting).
        lr: Learning rate. Default 0.013 (the SalUn README's CIFAR-10 example);
            with a known SGD recipe, 0.13 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay (never reaches frozen weights). Default 5e-4.
        batch_size: Batch size (also of the saliency pass). Default 256.
        schedule: "constant" or "cosine". Default "constant".
        mask_ratio: Share of the weights updated, those of largest saliency. Default 0.5
            (the paper's CIFAR-10 choice).

    Presets:
        digits: 4 epochs at lr 0.02 (cosine), batch 64, half of the weights: the
            ``random_label`` digits preset restricted to the salient half.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 4, "lr": 0.02, "batch_size": 64, "schedule": "cosine", "mask_ratio": 0.5},
    }

    epochs: int = param(10, Interval(int, 1), search=IntRange(1, 10))
    lr: float = param(0.013, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.1))
    mask_ratio: float = param(0.5, Interval(float, 0.0, 1.0, closed="right"), search=Linear(0.1, 1.0))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        forget = scenario.forget
        scores = saliency(model, forget, batch_size=self.batch_size, device=ctx.device, counter=ctx.counter)
        mask = saliency_mask(scores, self.mask_ratio, ctx.masks)
        combined = {**ctx.masks, **mask}
        wrong = random_wrong_labels(forget.targets, scenario.dataset.num_classes, ctx.generator)
        data = Concat([Relabeled(forget, wrong), scenario.retain])
        dataclasses.replace(ctx, masks=combined).fit(model, data, self.recipe(), desc="salun")
        total = sum(m.numel() for m in mask.values())
        ctx.diagnostics["mask_fraction"] = sum(int(m.sum()) for m in mask.values()) / max(total, 1)
        return model
