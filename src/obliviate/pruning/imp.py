"""Iterative magnitude pruning with weight and learning-rate rewinding (IMP; Unlearn-Sparse's OMP pipeline)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import resolve_device, seeded
from .._validation import check_interval, check_seed
from ..errors import InvalidConfigError
from ..training import TrainConfig, fit, lr_factor, resolve_masks
from .masks import apply_masks, prunable_parameters, sparsity
from .pruners import PruneResult, magnitude_masks

__all__ = ["imp", "fit_from_epoch"]


def fit_from_epoch(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    start_epoch: int,
    stop_epoch: int | None = None,
    **fit_kwargs: Any,
) -> list[dict[str, float]]:
    """Run epochs ``start_epoch .. stop_epoch - 1`` of ``config`` on its learning-rate schedule.

    The schedule continues where epoch ``start_epoch`` of a full run would be (learning-rate
    rewinding: Frankle et al.'s "rewind" variant and Unlearn-Sparse's scheduler steps after
    loading the rewind weights; also methods that train in segments, such as ``ft_prune``). A
    fresh optimiser is built, so momentum starts at zero.

    Args:
        model: The model (on its device).
        data: Training data.
        config: The full recipe.
        start_epoch: First epoch to run (0 from the start).
        stop_epoch: Epoch to stop before (None: ``config.epochs``).
        **fit_kwargs: Passed to :func:`obliviate.training.fit` (generator, device, masks ...).

    Returns:
        The per-epoch records, numbered as in the full run.
    """
    stop = config.epochs if stop_epoch is None else min(stop_epoch, config.epochs)
    if start_epoch >= stop:
        return []
    steps = max(1, math.ceil(len(data) / config.batch_size))  # type: ignore[arg-type]
    full = lr_factor(config, steps)
    offset = start_epoch * steps
    rest = dataclasses.replace(config, epochs=stop - start_epoch, schedule="constant", warmup_epochs=0, milestones=None)
    user_end = fit_kwargs.pop("epoch_end", None)

    def factor(step: int) -> float:
        return full(step + offset)

    def epoch_end(epoch: int, m: nn.Module) -> bool:
        return bool(user_end(epoch + start_epoch, m)) if user_end is not None else False

    history = fit(model, data, config=rest, lr_factor=factor, epoch_end=epoch_end, **fit_kwargs)
    for record in history:
        record["epoch"] += start_epoch
    return history


def imp(
    model: nn.Module,
    data: Dataset,
    *,
    sparsity_target: float,
    rounds: int = 1,
    config: TrainConfig | None = None,
    rewind_epoch: int = 8,
    scope: str = "conv",
    exclude: Iterable[str] = (),
    masks: Mapping[str, torch.Tensor] | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    callback: Callable[[int, nn.Module, dict[str, torch.Tensor]], None] | None = None,
    **overrides: Any,
) -> PruneResult:
    """Train, prune, rewind, retrain: iterative magnitude pruning with rewinding (Frankle et al.).

    Unlearn-Sparse's ``main_imp.py``: train a copy of ``model`` (the initialisation) with the
    recipe, keeping the weights after ``rewind_epoch`` epochs; then per round prune a fraction
    ``r`` of the remaining ``scope`` weights by global magnitude, rewind the surviving weights
    to the saved ones, and retrain epochs ``rewind_epoch ..`` of the recipe with the masks and
    the learning-rate schedule rewound as well. After ``k`` rounds the sparsity is
    ``1 - (1 - r)^k``; ``r`` is chosen so that the last round reaches ``sparsity_target``.
    Unlearn-Sparse's OMP is ``rounds=1`` (one 95 % prune after dense training); its IMP is
    ``r = 0.2`` per round (``sparsity_target = 1 - 0.8 ** rounds``). ``rewind_epoch=0`` rewinds
    to the initialisation (the original lottery-ticket "lt" variant). Unlike the seed code, no
    final prune is wasted after the last retraining.

    Args:
        model: The initial (untrained) model; it is copied, never changed.
        data: Training data (e.g. ``scenario.train``).
        sparsity_target: Sparsity of the scope after the last round, in [0, 1).
        rounds: Prune-rewind-retrain rounds (>= 1).
        config: The training recipe (keyword ``overrides`` replace its fields).
        rewind_epoch: Epoch whose weights (and learning rate) each round rewinds to. Default 8.
        scope: "conv", "linear" or "conv_linear" (see :func:`prunable_parameters`).
        exclude: Parameter names or module prefixes to keep dense.
        masks: Masks of coordinates that are already pruned (or frozen) before starting.
        seed: Seed of shuffling and augmentation.
        device: "auto", "cpu", "cuda" ...
        progress: Progress bars.
        callback: Called after each round as ``callback(round, model, masks)`` (round 0 is the
            dense training).
        **overrides: Fields of :class:`~obliviate.training.TrainConfig` replacing the recipe's.

    Returns:
        A :class:`PruneResult` whose ``history`` holds every epoch's record with a ``round`` key.

    Raises:
        InvalidConfigError: invalid sparsity, rounds or rewind epoch.
    """
    sparsity_target = check_interval("imp", "sparsity_target", sparsity_target, low=0.0, high=1.0, closed="left")
    rounds = check_interval("imp", "rounds", rounds, kind=int, low=1)
    recipe = TrainConfig.from_dict({**(config.to_dict() if config is not None else {}), **overrides})
    rewind_epoch = check_interval("imp", "rewind_epoch", rewind_epoch, kind=int, low=0)
    if rewind_epoch >= recipe.epochs:
        raise InvalidConfigError(
            f"The 'rewind_epoch' argument of imp must be smaller than epochs={recipe.epochs}; got {rewind_epoch}."
        )
    seed = check_seed("imp", seed)
    dev = resolve_device(device)
    net = copy.deepcopy(model).to(dev)
    current = {n: m.to(dev) for n, m in resolve_masks(net, masks).items()}
    apply_masks(net, current)
    generator = torch.Generator().manual_seed(seed)
    common = {"generator": generator, "device": dev, "progress": progress}
    rate = 1.0 - (1.0 - sparsity_target) ** (1.0 / rounds)
    history: list[dict[str, float]] = []
    rewind_state: dict[str, torch.Tensor] = {}

    def keep_rewind(epoch: int, m: nn.Module) -> bool:
        if epoch + 1 == rewind_epoch:
            rewind_state.update({k: v.detach().clone() for k, v in m.state_dict().items()})
        return False

    with seeded(seed, dev):
        if rewind_epoch == 0:
            rewind_state.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        for record in fit(net, data, config=recipe, masks=current, epoch_end=keep_rewind, desc="imp: dense", **common):
            history.append({**record, "round": 0})
        if callback is not None:
            callback(0, net, current)
        in_scope = prunable_parameters(net, scope, exclude)
        pruned = {n: m for n, m in current.items() if n in in_scope}
        achieved = sparsity(pruned) if pruned else 0.0
        for k in range(1, rounds + 1):
            goal = 1.0 - (1.0 - rate) ** k if k < rounds else sparsity_target
            pruned = magnitude_masks(net, max(goal, achieved), scope=scope, exclude=exclude, masks=pruned)
            achieved = sparsity(pruned)
            current = {**current, **pruned}
            net.load_state_dict(rewind_state)
            apply_masks(net, current)
            records = fit_from_epoch(net, data, recipe, rewind_epoch, masks=current, desc=f"imp: round {k}", **common)
            history.extend({**r, "round": k} for r in records)
            if callback is not None:
                callback(k, net, current)
    net.eval()
    return PruneResult(model=net, masks=current, sparsity=achieved, kind="imp", history=history)
