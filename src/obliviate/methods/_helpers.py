"""Small pieces shared by the teacher-, noise- and boundary-based methods.

Frozen teachers (a copy of the original model, or a randomly initialised copy of its
architecture), seeded per-class subsets, and the batch streams that mix two datasets, all
drawing their randomness from the run's generator only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..data.base import Subset, iterate_batches
from ..models.zoo import reinitialize

__all__ = ["frozen_copy", "random_copy", "draw_seed", "per_class_subset", "fetch", "cycle_batches", "distill_kl"]


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every parameter frozen (a fixed teacher)."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def random_copy(model: nn.Module, seed: int) -> nn.Module:
    """The same architecture re-initialised from ``seed`` (an "incompetent" teacher), frozen, in eval mode."""
    teacher = copy.deepcopy(model)
    reinitialize(teacher, seed)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def draw_seed(generator: torch.Generator) -> int:
    """A fresh integer seed drawn from ``generator`` (for sub-steps that take a seed)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def per_class_subset(labels: np.ndarray, per_class: int, generator: torch.Generator) -> np.ndarray:
    """Sorted positions of at most ``per_class`` random samples of each label value (vectorised).

    Args:
        labels: Integer label of each position.
        per_class: How many to keep per label (all of a label's samples when it has fewer).
        generator: Source of the random draw.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n == 0:
        return np.zeros(0, np.int64)
    perm = torch.randperm(n, generator=generator).numpy()
    shuffled = labels[perm]
    order = np.argsort(shuffled, kind="stable")
    ranked = shuffled[order]
    rank = np.arange(n) - np.searchsorted(ranked, ranked, side="left")  # position within its label group
    return np.sort(perm[order[rank < per_class]]).astype(np.int64)


def fetch(dataset: Dataset, positions: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of ``dataset`` at ``positions`` as one batch on ``device``."""
    return next(iterate_batches(Subset(dataset, positions), max(1, len(positions)), device=device))


def cycle_batches(
    dataset: Dataset, batch_size: int, *, device: torch.device, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled batches of ``dataset`` without end (reshuffled at every pass)."""
    while True:
        yield from iterate_batches(dataset, batch_size, device=device, shuffle=True, generator=generator)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))`` averaged over the batch (``batchmean``).

    The ``T²`` factor (Hinton et al.) keeps the gradient scale independent of the temperature;
    at ``T = 1`` this is the plain KL divergence.
    """
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temperature**2
