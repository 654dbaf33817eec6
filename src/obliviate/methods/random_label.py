"""Random labelling (RL): fine-tune on wrongly relabelled forget samples plus the retain set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..data.base import Concat, Relabeled
from ..data.scenario import Scenario
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method
from .lora import LoraFields

__all__ = ["RandomLabel", "random_wrong_labels"]


def random_wrong_labels(labels: np.ndarray, num_classes: int, generator: torch.Generator) -> np.ndarray:
    """For each label y, a label drawn uniformly from the other ``num_classes - 1`` classes."""
    shift = torch.randint(1, num_classes, (len(labels),), generator=generator).numpy()
    return (np.asarray(labels, dtype=np.int64) + shift) % num_classes


@register_method("random_label")
@dataclass(frozen=True, kw_only=True)
class RandomLabel(UnlearningMethod, FineTuneRecipe, LoraFields):
    """Fine-tune on the forget set relabelled at random, together with the retain set (RL).

    Golatkar et al. (2020) / Hayase et al. as used in SalUn (Fan et al., ICLR'24,
    arXiv:2310.12508): every forget sample gets a label drawn uniformly from the classes other
    than its own (for a sub-class scenario, the other super-classes), once per run from the
    run's generator; the relabelled forget set and the retain set (true labels) are shuffled
    together and trained on with cross-entropy. SalUn's own code draws uniformly over *all*
    classes, so a sample can keep its label; here it never does.

    The SSD system's "amnesiac" baseline is exactly this method with 3 epochs of Adam at 1e-4,
    batch 128: the ``amnesiac`` preset. (Graves et al.'s amnesiac unlearning, which subtracts
    recorded updates, is a different method.)

    Data needs: forget, retain. Cost: ``epochs`` passes over D_f ∪ D_r.

    Args:
        epochs: Epochs over D_f ∪ D_r. Default 10 (SalUn's example).
        lr: Learning rate. Default 0.01 (SalUn's example uses 0.013);
            with a known SGD recipe, 0.1 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: "constant" or "cosine". Default "constant".
        use_lora: Train LoRA adapters on every Linear/Conv2d layer (the head in full) and merge
            them back, instead of all weights (vlgiitr's LoRA fine-tuning; needs peft).
            Default False.
        lora_rank: LoRA rank r. Default 8.
        lora_alpha: LoRA scale α_lora (update ``α_lora/r · B A``). Default 16.
        lora_dropout: Dropout on the adapter input. Default 0.1.

    Presets:
        digits: 4 epochs at lr 0.02 (cosine), batch 64.
        amnesiac: the SSD system's relabelling baseline (3 epochs, Adam 1e-4, batch 128).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 4, "lr": 0.02, "batch_size": 64, "schedule": "cosine"},
        "amnesiac": {"epochs": 3, "lr": 1e-4, "optimizer": "adam", "batch_size": 128, "weight_decay": 0.0},
    }

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        forget = scenario.forget
        wrong = random_wrong_labels(forget.targets, scenario.dataset.num_classes, ctx.generator)
        data = Concat([Relabeled(forget, wrong), scenario.retain])
        return self.fit_maybe_lora(model, data, self.recipe(), ctx, desc="random label")
