"""Sparsity-aware unlearning (Unlearn-Sparse): l1-sparse fine-tuning, GA + l1, and pruning during FT."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import Boolean, Interval, Linear, Log, Options, param
from ..data.base import first_input
from ..data.scenario import Scenario
from ..errors import InvalidConfigError
from ..models.adapter import ModelAdapter, logits_of
from ..pruning import fit_from_epoch, magnitude_masks, prunable_parameters, random_masks, run_masks, sparsity
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method
from .gradient_ascent import GradientAscent
from .lora import LoraFields, effective_l1

__all__ = ["L1Sparse", "GradientAscentL1", "FinetunePrune", "l1_weight"]


def l1_weight(alpha: float, epoch: int, epochs: int, no_l1_epochs: int, schedule: str) -> float:
    """γ_e of epoch ``epoch`` (0-based): ``α (1 − e / (E − E_no))`` while ``e < E − E_no``, then 0.

    ``schedule="constant"`` gives α for the first ``E − E_no`` epochs instead.
    """
    active = epochs - no_l1_epochs
    if epoch >= active:
        return 0.0
    return alpha if schedule == "constant" else alpha * (1.0 - epoch / active)


@register_method("l1_sparse")
@dataclass(frozen=True, kw_only=True)
class L1Sparse(UnlearningMethod, FineTuneRecipe, LoraFields):
    """ℓ1-sparse unlearning: fine-tune on D_r with a decaying ℓ1 penalty (Jia et al., NeurIPS'23, arXiv:2304.04934).

    Unlearn-Sparse's "sparsity-aware unlearning" (``FT_l1`` / ``FT_prune``): minimise
    ``CE(f_θ(x), y) + γ_e ‖θ‖₁`` over D_r, with ``γ_e = α (1 − e / (E − E_no))`` in epoch e
    (a linear decay to 0, the schedule the paper found best) and ``γ_e = 0`` in the last
    ``E_no`` epochs. ``‖θ‖₁`` runs over all parameters (BatchNorm affine and biases included,
    as in the paper's code); with LoRA, over the effective (merged) weights. The penalty pushes
    weights that only the forget set needed towards zero, which the paper shows brings
    fine-tuning much closer to retraining. The argparse default α = 0.2 of the seed code
    zeroes a ResNet within a few steps; the papers' scripts use α = 1e-4 (CIFAR-10, SVHN).

    Data needs: retain. Cost: ``epochs`` passes over D_r.

    Args:
        alpha: Peak ℓ1 weight α (γ). Default 1e-4 (Unlearn-Sparse / SalUn scripts).
        no_l1_epochs: E_no, final epochs without the penalty. Default 0.
        l1_schedule: "decay" (α → 0 linearly, the paper's code) or "constant". Default "decay".
        epochs: Epochs E over D_r. Default 10.
        lr: Learning rate. Default 0.01; with a known SGD recipe, 0.1 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: Learning-rate schedule, "constant" or "cosine". Default "constant".
        use_lora: Train LoRA adapters (merged back at the end) instead of all weights.
            Default False.
        lora_rank: LoRA rank r. Default 8.
        lora_alpha: LoRA scale α_lora. Default 16.
        lora_dropout: Dropout on the adapter input. Default 0.1.

    Presets:
        digits: ``finetune``'s digits preset (3 epochs at lr 0.1, cosine, batch 64) plus
            α 1e-2. The demo CNN has 6k weights (a CIFAR ResNet-18 11M), so its ‖θ‖₁ is orders
            of magnitude smaller and the papers' α does nothing in 3 epochs. On ``class:3``
            it forgets the class, which plain fine-tuning does not, at a small cost in retain
            accuracy; on ``random:0.1`` it costs retain and test accuracy and moves D_f's
            MIA-efficacy away from the oracle's (compare it with the no-op ``original`` row;
            α 5e-3 is the gentler choice there). Measured over 3 seeds per scenario in
            ``benchmarks/results/demo.json`` (``python benchmarks/demo.py --seeds 3``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 3, "lr": 0.1, "batch_size": 64, "schedule": "cosine", "alpha": 1e-2},
    }

    alpha: float = param(1e-4, Interval(float, 0.0), search=Log(1e-5, 0.1))
    no_l1_epochs: int = param(0, Interval(int, 0))
    l1_schedule: str = param("decay", Options("decay", "constant"))

    def _check(self) -> None:
        if self.no_l1_epochs >= self.epochs:
            raise InvalidConfigError(
                f"The 'no_l1_epochs' parameter of {type(self).__name__} must be smaller than epochs={self.epochs}; "
                f"got {self.no_l1_epochs}."
            )

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        state = {"epoch": 0}

        def loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            value = F.cross_entropy(logits_of(net(x)), y)
            gamma = l1_weight(self.alpha, state["epoch"], self.epochs, self.no_l1_epochs, self.l1_schedule)
            return value + gamma * effective_l1(net) if gamma > 0 else value

        def next_epoch(epoch: int, _net: nn.Module) -> bool:
            state["epoch"] = epoch + 1
            return False

        return self.fit_maybe_lora(
            model, scenario.retain, self.recipe(), ctx, loss_fn=loss, epoch_end=next_epoch, desc="l1_sparse"
        )


@register_method("ga_l1")
@dataclass(frozen=True, kw_only=True)
class GradientAscentL1(GradientAscent):
    """Gradient ascent on D_f plus an ℓ1 penalty (Unlearn-Sparse's ``GA_l1``, arXiv:2304.04934).

    Each step minimises ``−CE(f_θ(x_f), y_f) + α ‖θ‖₁`` (constant α, all parameters): the
    sparsity-promoting counterpart of gradient ascent, with the same optional stops as
    ``gradient_ascent``.

    Data needs: forget (and val when ``match_val``). Cost: ``epochs`` passes over D_f.

    Args:
        alpha: ℓ1 weight α. Default 1e-4 (the value the papers' scripts use for ℓ1-sparse;
            the seed code's argparse default 0.2 is far too large).
        epochs: Epochs over D_f. Default 5.
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
        digits: ``gradient_ascent``'s digits preset (stop at the validation accuracy) plus
            α 1e-2 (see ``l1_sparse``'s preset for the scale). The stop rule targets random
            forgetting, where the oracle's forget accuracy is about the validation accuracy;
            on a class-wise request it fires after the first epoch and the class is not
            forgotten (the ``class:3`` rows of ``benchmarks/results/demo.json``, made by
            ``python benchmarks/demo.py --seeds 3``). For class-wise forgetting pass
            ``match_val=False, target_accuracy=0.05`` instead, which keeps ascending until the
            class is forgotten.
    """

    presets: ClassVar[dict] = {
        "digits": {"epochs": 40, "lr": 0.003, "batch_size": 16, "grad_clip": 1.0, "match_val": True, "alpha": 1e-2},
    }

    alpha: float = param(1e-4, Interval(float, 0.0), search=Log(1e-5, 0.1))

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return super()._loss(net, x, y) + self.alpha * effective_l1(net)


@register_method("ft_prune")
@dataclass(frozen=True, kw_only=True)
class FinetunePrune(UnlearningMethod, FineTuneRecipe):
    """Fine-tune on D_r while pruning progressively (Unlearn-Sparse's ``FT_prune_bi``, arXiv:2304.04934).

    Before every second epoch (epochs e with ``(E − e)`` even, counting from 0) the ``scope``
    weights are pruned by global magnitude (or at random with ``random_prune``), each event
    removing the same fraction of the remaining weights so that the last one reaches ``rate``;
    fine-tuning with cross-entropy on D_r continues with the pruned weights frozen at zero.
    The head is never pruned. Differences from the seed code (which crashes at HEAD on a
    changed pruner signature): the per-event fraction is computed from the actual number of
    events, so an odd number of epochs also ends at ``rate``; the learning-rate schedule runs
    over all epochs, while the optimiser (and its momentum) restarts after each pruning event.
    With run masks, only trainable coordinates are pruned; frozen zero weights count as
    pruned, frozen non-zero ones as kept.

    Data needs: retain. Cost: ``epochs`` passes over D_r.

    Args:
        rate: Final sparsity of the ``scope`` weights. Default 0.95 (the sparsity of
            Unlearn-Sparse's OMP models).
        random_prune: Random instead of magnitude pruning. Default False.
        scope: "conv", "linear" or "conv_linear". Default "conv" (Unlearn-Sparse).
        epochs: Epochs E over D_r. Default 10.
        lr: Learning rate. Default 0.01; with a known SGD recipe, 0.1 x its lr (the default was set for lr 0.1).
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Batch size. Default 256.
        schedule: "constant" or "cosine". Default "constant".

    Presets:
        digits: 4 epochs at lr 0.1 (cosine), batch 64, pruning to 50 % (two events): the
            6k-parameter CNN loses accuracy quickly at higher sparsity. Like ``finetune``,
            this forgets only through catastrophic forgetting, which the Unlearn-Sparse paper
            also reports as weak for class-wise forgetting (its fix is ``l1_sparse``): on
            ``class:3`` the class stays mostly recognised, as with ``finetune`` (a higher rate
            changes little), while retain accuracy is kept
            (``benchmarks/results/demo.json``, ``python benchmarks/demo.py --seeds 3``). It is
            an expected result, not a preset problem.

    Unlearn-Sparse's own ``FT_prune`` is ℓ1-sparse fine-tuning that also reports sparsity:
    that is ``l1_sparse`` here.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
    presets: ClassVar[dict] = {
        "digits": {"epochs": 4, "lr": 0.1, "batch_size": 64, "schedule": "cosine", "rate": 0.5},
    }

    rate: float = param(0.95, Interval(float, 0.0, 1.0, closed="left"), search=Linear(0.0, 0.95))
    random_prune: bool = param(False, Boolean())
    scope: str = param("conv", Options("conv", "linear", "conv_linear"))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        example = first_input(scenario.retain).unsqueeze(0).to(ctx.device)
        head = ModelAdapter(model, example=example).head_name
        in_scope = prunable_parameters(model, self.scope, exclude=[head])
        old = {n: ctx.masks.get(n, torch.ones_like(p, dtype=torch.bool)) for n, p in in_scope.items()}
        current, protect = run_masks(in_scope, ctx.masks)
        events = [e for e in range(self.epochs) if (self.epochs - e) % 2 == 0] or [0]
        config = self.recipe()
        if events[0] > 0:  # an odd number of epochs: the first one runs before any pruning
            fit_from_epoch(model, scenario.retain, config, 0, events[0], **_fit_args(ctx, self.name))
        for i, start in enumerate(events):
            goal = 1.0 - (1.0 - self.rate) ** ((i + 1) / len(events))
            if self.random_prune:
                current = random_masks(
                    model, goal, generator=ctx.generator, scope=self.scope, exclude=[head], masks=current, protect=protect
                )
            else:
                current = magnitude_masks(model, goal, scope=self.scope, exclude=[head], masks=current, protect=protect)
            with torch.no_grad():
                for n, p in in_scope.items():
                    p.masked_fill_(old[n] & ~current[n], 0.0)  # only trainable coordinates are ever pruned
            stop = events[i + 1] if i + 1 < len(events) else self.epochs
            run = dataclasses.replace(ctx, masks={**ctx.masks, **{n: current[n] & old[n] for n in current}})
            fit_from_epoch(model, scenario.retain, config, start, stop, **_fit_args(run, self.name))
        ctx.diagnostics["sparsity"] = sparsity(model, scope=self.scope, exclude=[head])
        return model


def _fit_args(ctx: RunContext, desc: str) -> dict:
    return {
        "generator": ctx.generator,
        "device": ctx.device,
        "masks": ctx.masks,
        "counter": ctx.counter,
        "progress": ctx.progress,
        "desc": desc,
    }
