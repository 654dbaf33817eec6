"""DELETE: decoupled (masked) distillation to erase a class, with no retain data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Interval, IntRange, Log, Options, param
from ..data.scenario import Scenario
from ..models.adapter import logits_of
from ._helpers import frozen_copy
from .base import FineTuneRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["DELETE", "masked_distillation"]


def masked_distillation(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """DELETE's loss: ``T² · KL(softmax(Mask_y(z_t) / T) ‖ softmax(z_s / T))`` averaged over the batch.

    ``Mask_y`` sets the teacher's logit of each sample's own class y to -inf, so the target puts
    no mass on y and spreads the rest as the teacher does. With ``s`` the student's probabilities
    and ``ŝ`` / ``q̂`` the student's / teacher's distributions renormalised over the classes other
    than y, the loss splits (at T = 1) into ``-log(1 - s_y)`` (forgetting: the class's probability
    goes to 0) plus ``KL(q̂ ‖ ŝ)`` (retention: the teacher's "dark knowledge" about the other
    classes is kept).

    Args:
        student: ``(n, C)`` student logits.
        teacher: ``(n, C)`` teacher logits (no gradient needed).
        labels: ``(n,)`` the class to erase for each sample.
        temperature: Distillation temperature T.
    """
    masked = teacher.detach().clone()
    masked[torch.arange(masked.shape[0], device=masked.device), labels] = -torch.inf
    target = F.softmax(masked / temperature, dim=1)  # exactly 0 at the erased class
    log_s = F.log_softmax(student / temperature, dim=1)
    return F.kl_div(log_s, target, reduction="batchmean") * temperature**2


@register_method("delete")
@dataclass(frozen=True, kw_only=True)
class DELETE(UnlearningMethod, FineTuneRecipe):
    """DELETE (Zhou, Zheng, Mo, Lu, Lin & Zheng, CVPR'25, arXiv:2503.23751): decoupled distillation to erase.

    The paper writes an unlearning loss on a forget sample (x, y) as a *forgetting* term (the
    probability of y) plus a *retention* term (the distribution over the other classes), and
    shows that relabelling-style methods supervise only the first. DELETE supervises both by
    masked distillation from the original model (the teacher, frozen, in eval mode): the
    student, a copy of the original in training mode, minimises on D_f alone

        ``KL(softmax(Mask_y(z_teacher(x))) ‖ softmax(z_student(x)))``

    where ``Mask_y`` sets the logit of the forgotten class y to -inf before the softmax. This equals
    ``-log(1 - s_y(x)) + KL(q̂(x) ‖ ŝ(x))`` (s the student's probabilities; q̂, ŝ the teacher's and
    the student's distributions renormalised over the classes other than y): the forgetting term
    drives the class's probability to 0, the retention term keeps the teacher's "dark knowledge"
    of how much x resembles each remaining class. No retain sample is read. (The paper's full
    text was not available here, so its equation numbers are not cited; the loss above is the
    masked-distillation objective its abstract describes and its authors' code implements.)

    It is a class-centric method: the paper covers forgetting whole classes (single- and
    multi-class, face identities, backdoor target classes, segmentation classes); a sub-class or a
    random forget set has no class to mask, so only ``classwise`` scenarios are accepted.

    Differences from the authors' code (github.com/shaaaaron/DELETE, ``method/delete.py``, read,
    not copied): the code sets the masked logit to -1e10 (here -inf, the same target), has no
    temperature (T = 1 here by default; other values scale the KL by T²), and feeds its forget
    loader through the training augmentation (random crop and flip on CIFAR); here D_f is used
    without augmentation. Its option to keep the BatchNorm layers in eval mode (off by default)
    is not offered.

    Data needs: forget (inputs and labels). Cost: ``epochs`` passes over D_f (one teacher forward
    and one student forward/backward per sample).

    Args:
        epochs: Epochs over D_f. Default 20 (authors' configs).
        lr: Learning rate. Default 1e-3 (authors' CIFAR-10 ResNet-18 script; their configs use
            5e-5 to 1e-4 for the other models).
        optimizer: "sgd", "adam" or "adamw". Default "sgd" (authors' code).
        momentum: SGD momentum. Default 0.9 (authors' code).
        weight_decay: Weight decay. Default 0 (authors' code).
        batch_size: Batch size. Default 128 (authors' CIFAR configs).
        schedule: "constant" or "cosine". Default "constant" (authors' code).
        temperature: Distillation temperature T. Default 1 (authors' code).

    Presets:
        digits: 10 epochs at the default lr 1e-3 in batches of 32. A forgotten digit is about 130
            images, so the authors' batch of 128 gives two steps per epoch; batches of 32 give
            five, and 10 epochs (half the authors' samples) forget the class while the retained
            classes' accuracy holds (a step of 0.02 instead collapses them: BatchNorm statistics
            and weights drift on batches of one class). Results:
            ``benchmarks/results/recent_methods.json`` (``python benchmarks/recent_methods.py``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget"})
    kinds: ClassVar[frozenset[str]] = frozenset({"classwise"})
    presets: ClassVar[dict] = {"digits": {"epochs": 10, "batch_size": 32}}

    epochs: int = param(20, Interval(int, 1), search=IntRange(1, 30))
    lr: float = param(1e-3, Interval(float, 0.0, closed="neither"), search=Log(1e-5, 0.1))
    optimizer: str = param("sgd", Options("sgd", "adam", "adamw"))
    weight_decay: float = param(0.0, Interval(float, 0.0))
    batch_size: int = param(128, Interval(int, 1))
    temperature: float = param(1.0, Interval(float, 0.0, closed="neither"), search=Log(0.5, 8.0))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        teacher = frozen_copy(model)
        t = self.temperature

        def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                z_t = logits_of(teacher(x))
            return masked_distillation(logits_of(net(x)), z_t, y, t)

        ctx.fit(model, scenario.forget, self.recipe(), loss_fn=loss, desc="delete")
        return model
