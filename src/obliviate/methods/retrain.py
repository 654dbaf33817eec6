"""Exact unlearning by retraining from scratch on the retain set (the oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from .._validation import Interval, IntSequence, param
from ..data.scenario import Scenario
from ..models.zoo import reinitialize
from ..training import TrainConfig
from .base import RunContext, UnlearningMethod, register_method

__all__ = ["Retrain"]


@register_method("retrain")
@dataclass(frozen=True, kw_only=True)
class Retrain(UnlearningMethod, TrainConfig):
    """Retrain from scratch on the retain set: the exact-unlearning oracle.

    Every parameter of a copy of the model is re-initialised from the run's seed
    (each submodule's ``reset_parameters``, so any ``nn.Module`` works, BatchNorm statistics
    included), then trained on D_r with the one training loop. With ``seed`` equal to the
    original model's ``build_model`` seed, retraining starts from the same initial weights.
    Used as the oracle, it takes the original model's recipe
    (``ob.unlearn(model, sc, "retrain", **train_result.config.to_dict())``). With masks, pruned
    coordinates keep their (zero) values, as Unlearn-Sparse retrains sparse models.

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
    presets: ClassVar[dict] = {
        "digits": {"epochs": 30, "lr": 0.05, "batch_size": 64, "schedule": "cosine", "milestones": None},
    }

    # The fields are TrainConfig's; only the defaults that differ are re-declared.
    epochs: int = param(160, Interval(int, 1))
    milestones: tuple[int, ...] | None = param((91, 136), IntSequence(allow_none=True))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        reinitialize(model, ctx.seed)
        ctx.restore_frozen(model)  # pruned coordinates stay pruned
        ctx.fit(model, scenario.retain, self.recipe(), desc="retrain")
        return model
