"""Exact unlearning by retraining from scratch on the retain set (the oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._validation import Interval, IntRange, IntSequence, param
from ..data.scenario import Scenario
from ..errors import InvalidConfigError
from ..models.zoo import reinitialize
from ..training import TrainConfig
from .base import FromRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["Retrain"]


@register_method("retrain")
@dataclass(frozen=True, kw_only=True)
class Retrain(UnlearningMethod, TrainConfig):
    """Retrain from scratch on the retain set: the exact-unlearning oracle.

    Every parameter of a copy of the model is re-initialised from the run's seed
    (each submodule's ``reset_parameters``, so any ``nn.Module`` works, BatchNorm statistics
    included), then trained on D_r with the one training loop. With ``seed`` equal to the
    original model's ``build_model`` seed, retraining starts from the same initial weights.
    Used as the oracle, it takes the original model's recipe: every field defaults to the
    recipe's when the recipe is known (``ob.unlearn`` given the ``TrainResult`` or a run
    directory, or ``recipe=``); the fixed defaults below apply only without one.

    Masks must be pruning masks, as Unlearn-Sparse retrains sparse models: every False
    coordinate must be zero in the given model, and it is exactly zero in the retrained one.
    Any other mask is refused (``InvalidConfigError``): keeping a trained value would copy
    what the model learnt, the forget set included, into the "from scratch" oracle.

    Exact with respect to: ``ob.train`` of the model's ``build_model`` initialisation (the same
    ``seed``; masked coordinates zeroed, the same masks) on ``scenario.retain`` with this
    recipe (its fields) and ``seed``. On the CPU the weights are bit-identical (the contract
    suite checks it against an independent ``ob.train``).

    Unlike the SSD code's "retrain", which resets only the direct children of the model (the
    final layer of its ResNet), this resets every module recursively.

    Data needs: retain. Cost: ``epochs`` passes over D_r.

    Args:
        epochs: Training epochs. Default 160 (Unlearn-Sparse README).
        lr: Learning rate. Default 0.1.
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: "constant", "cosine" or "step". Default "step".
        milestones: Step-schedule epochs. Default (91, 136) (Unlearn-Sparse).
        gamma: Step-schedule factor. Default 0.1.
        warmup_epochs: Linear warm-up epochs. Default 0.
        augment: "crop_flip", "crop", "flip" or None. Default None (pass the original
            recipe's value; Unlearn-Sparse uses "crop_flip" on CIFAR).
        label_smoothing: Label smoothing. Default 0.
        grad_clip: Gradient-norm clip or None. Default None.
        nesterov: Nesterov momentum. Default False.
        std_reg: Weight λ_SD of the standard-deviation loss (Thudi et al.); pass the original
            recipe's. Default 0.

    Presets:
        digits: the embedded demo's training recipe (30 epochs, lr 0.05, batch 64, cosine).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    exact: ClassVar[bool] = True
    from_recipe: ClassVar[dict[str, FromRecipe]] = {
        name: FromRecipe(name, source="retraining repeats the original training") for name in TrainConfig.field_names()
    }
    presets: ClassVar[dict] = {
        "digits": {"epochs": 30, "lr": 0.05, "batch_size": 64, "schedule": "cosine", "milestones": None},
    }

    # The fields are TrainConfig's; only the defaults that differ are re-declared.
    epochs: int = param(160, Interval(int, 1), search=IntRange(5, 200, log=True))
    milestones: tuple[int, ...] | None = param((91, 136), IntSequence(allow_none=True))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        params = dict(model.named_parameters())
        for name, mask in ctx.masks.items():
            kept = params[name].detach()[~mask]
            nonzero = int(torch.count_nonzero(kept))
            if nonzero:
                raise InvalidConfigError(
                    f"retrain accepts only pruning masks (False = pruned, zero in the model): the mask for {name!r} "
                    f"has {nonzero} of {kept.numel()} masked-out coordinates that are not zero in the given model. "
                    "A retrained model starts from scratch and cannot keep trained values; zero those coordinates "
                    "(prune the model, e.g. obliviate.pruning.prune) or pass masks=None."
                )
        reinitialize(model, ctx.seed)
        with torch.no_grad():
            for name, mask in ctx.masks.items():
                params[name].masked_fill_(~mask, 0.0)  # pruned coordinates are zero from the start
        ctx.fit(model, scenario.retain, self.recipe(), desc="retrain")
        return model
