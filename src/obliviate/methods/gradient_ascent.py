"""Gradient ascent on the forget set (GA, also called NegGrad)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Boolean, Interval, IntRange, Log, param
from ..data.scenario import Scenario
from ..errors import MissingDataError
from ..models.adapter import logits_of
from ..training import accuracy
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["GradientAscent"]


@register_method("gradient_ascent")
@dataclass(frozen=True, kw_only=True)
class GradientAscent(UnlearningMethod, FineTuneRecipe):
    """Maximise the cross-entropy on the forget set (GA / NegGrad).

    Thudi et al. (2022) and Unlearn-Sparse (arXiv:2304.04934): each step minimises
    ``-CE(f(x_f), y_f)``. Plain GA has no retain term and diverges easily, so two optional stops
    are offered (off by default, as in the papers): stop once the forget accuracy falls to
    ``target_accuracy``, or to the model's accuracy on the held-out validation split
    (``match_val``: the level a retrained model shows on unseen data, the target of random
    forgetting). Both are checked after every epoch. ``grad_clip`` bounds each step.

    Data needs: forget (and val when ``match_val``). Cost: ``epochs`` passes over D_f.

    Args:
        epochs: Epochs over D_f. Default 5 (Unlearn-Sparse).
        lr: Learning rate. Default 1e-4; with a known SGD recipe, 0.001 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: "constant" or "cosine". Default "constant".
        grad_clip: Gradient-norm clip, or None. Default None.
        target_accuracy: Stop when the forget accuracy is at most this; None disables.
            Default None.
        match_val: Stop when the forget accuracy is at most the starting validation accuracy.
            Default False.

    Presets:
        digits: up to 40 epochs at lr 0.003, batch 16, gradient norm clipped at 1, stopping
            when the forget accuracy reaches the validation accuracy (``match_val``): tuned
            for random forgetting. On class-wise forgetting that stop comes far too early
            (the oracle's forget accuracy is 0, not the validation accuracy); use
            ``target_accuracy=0.0`` there.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 40, "lr": 0.003, "batch_size": 16, "grad_clip": 1.0, "match_val": True},
    }

    epochs: int = param(5, Interval(int, 1), search=IntRange(1, 40, log=True))
    lr: float = param(1e-4, Interval(float, 0.0, closed="neither"), search=Log(1e-5, 1e-2))
    grad_clip: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    target_accuracy: float | None = param(None, Interval(float, 0.0, 1.0, allow_none=True))
    match_val: bool = param(False, Boolean())

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss minimised per batch: minus the cross-entropy (``ga_l1`` adds an l1 term)."""
        return -F.cross_entropy(logits_of(net(x)), y)

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        targets = [] if self.target_accuracy is None else [self.target_accuracy]
        if self.match_val:
            if len(scenario.val) == 0:
                raise MissingDataError("GradientAscent(match_val=True) needs a non-empty 'val' split.")
            targets.append(accuracy(model, scenario.val, device=ctx.device))
        target = min(targets) if targets else None

        def stop(epoch: int, net: nn.Module) -> bool:
            if target is None:
                return False
            acc = accuracy(net, scenario.forget, device=ctx.device)  # restores the training mode
            ctx.diagnostics["stop_epoch"] = epoch + 1
            return acc <= target

        ctx.fit(model, scenario.forget, self.recipe(), loss_fn=self._loss, epoch_end=stop, desc="gradient ascent")
        return model
