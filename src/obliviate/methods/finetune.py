"""Fine-tuning on the retain set (FT): forgetting by catastrophic forgetting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..data.scenario import Scenario
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method
from .lora import LoraFields

__all__ = ["Finetune"]


@register_method("finetune")
@dataclass(frozen=True, kw_only=True)
class Finetune(UnlearningMethod, FineTuneRecipe, LoraFields):
    """Fine-tune the model on the retain set only (FT).

    Warnecke et al. (2023) and Unlearn-Sparse (Jia et al., NeurIPS'23, arXiv:2304.04934) use it
    as the basic baseline: minimise cross-entropy on D_r with a constant learning rate; the
    forget set is never read, so forgetting comes only from the drift of fine-tuning.

    Data needs: retain. Cost: ``epochs`` passes over D_r.

    Args:
        epochs: Epochs over D_r. Default 10 (Unlearn-Sparse; the SSD system uses 5).
        lr: Learning rate. Default 0.01 (Unlearn-Sparse; SSD: 0.02);
            with a known SGD recipe, 0.1 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: "constant" (the papers') or "cosine". Default "constant".
        use_lora: Train LoRA adapters on every Linear/Conv2d layer (the head in full) and merge
            them back, instead of all weights (vlgiitr's LoRA fine-tuning; needs peft).
            Default False.
        lora_rank: LoRA rank r. Default 8.
        lora_alpha: LoRA scale α_lora (update ``α_lora/r · B A``). Default 16.
        lora_dropout: Dropout on the adapter input. Default 0.1.

    Presets:
        digits: 3 epochs at lr 0.1 (cosine to 0), batch 64: a tenth of the demo's 30
            training epochs, with a step large enough to move the digits CNN off its fit of
            the forget samples (a smaller one leaves it where it was). Even so, a whole
            forgotten class stays mostly recognised (the ``class:3`` rows of
            ``benchmarks/results/demo.json``, ``python benchmarks/demo.py --seeds 3``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 3, "lr": 0.1, "batch_size": 64, "schedule": "cosine"},
    }

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        return self.fit_maybe_lora(model, scenario.retain, self.recipe(), ctx, desc="finetune")
