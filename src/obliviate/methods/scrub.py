"""SCRUB: max-min teacher-student distillation (implemented from the paper only)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Interval, IntRange, Log, param
from ..data.base import iterate_batches
from ..data.scenario import Scenario
from ..models.adapter import logits_of
from ._helpers import distill_kl, frozen_copy
from .base import FineTuneRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["SCRUB"]


@register_method("scrub")
@dataclass(frozen=True, kw_only=True)
class SCRUB(UnlearningMethod, FineTuneRecipe):
    """SCRUB (Kurmanji, Triantafillou, Hayes & Triantafillou, NeurIPS'23, arXiv:2302.09880).

    The student starts as a copy of the trained model; the teacher is the original model,
    frozen, in eval mode. With ``d(x) = T² · KL(p_teacher(x) ‖ p_student(x))`` at temperature
    T, every epoch first takes, during the first ``max_epochs`` epochs only, a *max-step* pass
    over D_f that minimises ``−d(x_f)`` (move away from the teacher on the forget set), then a
    *min-step* pass over D_r that minimises ``alpha · d(x_r) + gamma · CE(f(x_r), y_r)`` (stay
    with the teacher and the labels on the retain set). One optimiser serves both steps; the
    student trains in training mode. Written from the paper's description (the authors' code
    is under a non-commercial licence and was not used). The rewinding variant SCRUB+R is not
    included.

    Data needs: forget, retain. Cost: ``epochs`` passes over D_r plus ``max_epochs`` passes
    over D_f (each with one extra teacher forward).

    Args:
        epochs: Epochs (each a min-step pass over D_r). Default 3.
        lr: Learning rate. Default 5e-4 (the authors' small-scale CIFAR setting).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Retain (min-step) batch size. Default 128.
        schedule: "constant" or "cosine". Default "constant".
        forget_batch_size: Forget (max-step) batch size. Default 32.
        max_epochs: Epochs that start with a max-step pass over D_f ("msteps"). Default 2.
        alpha: Weight α of the distillation term in the min-step. Default 0.001.
        gamma: Weight γ of the cross-entropy in the min-step. Default 0.99.
        temperature: Distillation temperature T. Default 4.

    Presets:
        digits: 5 epochs (the first 2 with a max-step) at SGD lr 5e-3, retain batch 64,
            forget batch 16, α 1, γ 1, T 1. At lr 5e-4 the demo's CNN barely moves; at 2e-2,
            or with T 4, the unbounded max-step wrecks it (retain accuracy collapses); a third
            max-step epoch also costs retain accuracy. Results over 3 seeds per demo scenario:
            ``benchmarks/results/baselines.json`` (``python benchmarks/baselines.py --seeds 3``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain"})
    presets: ClassVar[dict] = {
        "digits": {
            "epochs": 5,
            "max_epochs": 2,
            "lr": 5e-3,
            "batch_size": 64,
            "forget_batch_size": 16,
            "alpha": 1.0,
            "gamma": 1.0,
            "temperature": 1.0,
        },
    }

    epochs: int = param(3, Interval(int, 1), search=IntRange(1, 10))
    lr: float = param(5e-4, Interval(float, 0.0, closed="neither"), search=Log(1e-4, 0.05))
    batch_size: int = param(128, Interval(int, 1))
    forget_batch_size: int = param(32, Interval(int, 1))
    max_epochs: int = param(2, Interval(int, 0), search=IntRange(0, 5))
    alpha: float = param(0.001, Interval(float, 0.0), search=Log(1e-3, 10.0))
    gamma: float = param(0.99, Interval(float, 0.0))
    temperature: float = param(4.0, Interval(float, 0.0, closed="neither"), search=Log(0.5, 8.0))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        teacher = frozen_copy(model)
        forget, retain = scenario.forget, scenario.retain
        phase = {"max": False}

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            if epoch < self.max_epochs:
                phase["max"] = True
                yield from iterate_batches(
                    forget, self.forget_batch_size, device=ctx.device, shuffle=True, generator=ctx.generator
                )
            phase["max"] = False
            yield from iterate_batches(retain, self.batch_size, device=ctx.device, shuffle=True, generator=ctx.generator)

        def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            student = logits_of(net(x))
            with torch.no_grad():
                target = logits_of(teacher(x))
            d = distill_kl(student, target, self.temperature)
            if phase["max"]:
                return -d
            return self.alpha * d + self.gamma * F.cross_entropy(student, y)

        steps = math.ceil(len(retain) / self.batch_size)  # type: ignore[arg-type]
        if self.max_epochs:
            steps += math.ceil(len(forget) / self.forget_batch_size)  # type: ignore[arg-type]
        ctx.fit(model, batches, self.recipe(), loss_fn=loss, steps_per_epoch=steps, desc="scrub")
        return model
