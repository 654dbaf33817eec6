"""The learned membership attacker of Discriminative Adversarial Unlearning (Sharma et al.).

The attacker's input for a sample is ``a(x) = [logits ‖ one-hot label ‖ sensitivity]``
(:func:`attack_features`); :class:`Attacker` is the paper's transformer over these features;
:func:`train_attacker` trains one on fixed features with balanced mini-batches. The
``adversarial`` unlearning method (:mod:`obliviate.methods.adversarial`) plays a game against
this attacker; the ``mia_adversarial`` metric trains a fresh one on the evaluated model.

This module depends only on torch, the data and model layers and ``_utils``, so both the method
and the metric can import it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..._utils import eval_mode
from ...data.base import iterate_batches
from ...errors import InvalidConfigError, MissingDataError
from ...models.adapter import logits_of

__all__ = [
    "Attacker",
    "BatchCycler",
    "attack_features",
    "attack_features_of",
    "logit_sensitivity",
    "membership_labels",
    "noisy_copies",
    "stack_features",
    "train_attacker",
]


# --------------------------------------------------------------------------- attack features
def noisy_copies(x: torch.Tensor, samples: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """``samples`` noisy copies of a batch, stacked: ``(samples * B, ...)``, copy-major.

    Args:
        x: A batch ``(B, ...)``.
        samples: m, the number of copies.
        std: σ, the standard deviation of the Gaussian noise added to each copy.
        generator: Source of the noise (the noise is drawn on its device, then moved to ``x``'s).

    Returns:
        ``x + σ ε_r`` for r = 1..m, stacked copy after copy.
    """
    eps = torch.randn((samples, *x.shape), generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return (x.unsqueeze(0) + std * eps).reshape(samples * x.shape[0], *x.shape[1:])


def logit_sensitivity(z: torch.Tensor, z_noisy: torch.Tensor, samples: int, std: float) -> torch.Tensor:
    """``(1/m) Σ_r |z(x + σ ε_r) - z(x)| / σ`` from the clean and the stacked noisy logits.

    Args:
        z: Clean logits ``(B, C)``.
        z_noisy: Logits of :func:`noisy_copies` of the same batch, ``(m * B, C)``.
        samples: m.
        std: σ.

    Returns:
        ``(B, C)`` sensitivities.
    """
    return (z_noisy.view(samples, *z.shape) - z.unsqueeze(0)).abs().mean(dim=0) / std


def stack_features(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The attack feature vector ``[z ‖ onehot(y) ‖ s]``, ``(B, 3C)``.

    Args:
        z: Logits ``(B, C)``.
        y: Labels ``(B,)``.
        s: Sensitivities ``(B, C)``.
        num_classes: C.

    Returns:
        ``(B, 3C)`` features, in the dtype of ``z``.
    """
    return torch.cat([z, F.one_hot(y, num_classes).to(z.dtype), s], dim=1)


def attack_features(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    noise_samples: int = 10,
    noise_std: float = 1e-3,
    generator: torch.Generator,
) -> torch.Tensor:
    """The attacker's input for a batch: ``a(x) = [z(x) ‖ onehot(y) ‖ s(x)] ∈ R^{3C}``.

    ``z`` are the logits and ``s = (1/m) Σ_{r=1..m} |z(x + σ ε_r) - z(x)| / σ``, ε_r ~ N(0, I),
    a finite-difference estimate of the logits' local sensitivity to the input (zeros when
    ``noise_samples`` is 0). Gradients flow into the model through ``z`` and ``s`` unless the
    caller disables them.

    Args:
        logits_fn: The model's logits, ``x -> (B, C)``.
        x: Inputs ``(B, ...)``.
        y: Labels ``(B,)``.
        num_classes: C.
        noise_samples: m. Default 10 (the paper's).
        noise_std: σ. Default 1e-3 (the paper's).
        generator: Source of the noise (on the device the noise is drawn on).

    Returns:
        ``(B, 3C)`` features.
    """
    z = logits_fn(x)
    if noise_samples == 0:
        return stack_features(z, y, torch.zeros_like(z), num_classes)
    z_noisy = logits_fn(noisy_copies(x, noise_samples, noise_std, generator))
    return stack_features(z, y, logit_sensitivity(z, z_noisy, noise_samples, noise_std), num_classes)


@torch.no_grad()
def attack_features_of(
    model: nn.Module,
    data: Dataset,
    num_classes: int,
    *,
    noise_samples: int = 10,
    noise_std: float = 1e-3,
    generator: torch.Generator,
    batch_size: int = 256,
    device: torch.device,
) -> torch.Tensor:
    """:func:`attack_features` of every sample of ``data``, in order, model in eval mode.

    Args:
        model: The classifier (logits read by :func:`~obliviate.models.adapter.logits_of`).
        data: A labelled dataset.
        num_classes: C.
        noise_samples: m, noisy copies per sample (0: zero sensitivities). Default 10.
        noise_std: σ. Default 1e-3.
        generator: Source of the noise, on ``device``.
        batch_size: Samples per forward (times ``noise_samples + 1``). Default 256.
        device: Where the model runs.

    Returns:
        ``(len(data), 3C)`` CPU tensor.
    """
    out = [torch.zeros(0, 3 * num_classes)]
    with eval_mode(model):
        for x, y in iterate_batches(data, batch_size, device=device):
            feats = attack_features(
                lambda v: logits_of(model(v)),
                x,
                y,
                num_classes,
                noise_samples=noise_samples,
                noise_std=noise_std,
                generator=generator,
            )
            out.append(feats.float().cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------- the attacker
class Attacker(nn.Module):
    """The membership attacker of Discriminative Adversarial Unlearning.

    Input ``a ∈ R^{3C}`` (:func:`attack_features`) → BatchNorm1d(3C) → C tokens of 3 features
    (the logit, label indicator and sensitivity of each class) → Linear(3, dim) + GELU →
    a transformer encoder (``layers`` layers, ``heads`` heads, feed-forward ``ff``, GELU,
    ``dropout``) → flatten (C·dim) → Linear(C·dim, hidden) + ReLU → Linear(hidden, 2). Output
    logits: column 1 = member (forget), column 0 = non-member (held out). The paper's size:
    dim 64, 3 layers, 4 heads, ff 128, dropout 0.2, hidden 64.

    Args:
        num_classes: C, the classifier's number of classes.
        dim: Token width. Default 64.
        layers: Transformer layers (0: tokens go straight to the head). Default 3.
        heads: Attention heads (must divide ``dim``). Default 4.
        ff: Feed-forward width. Default 128.
        dropout: Dropout in the encoder. Default 0.2.
        hidden: Width of the MLP head. Default 64.

    Example:
        >>> net = Attacker(10, dim=16, layers=1, heads=2, ff=32, hidden=16)
        >>> net(torch.randn(4, 30)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        dim: int = 64,
        layers: int = 3,
        heads: int = 4,
        ff: int = 128,
        dropout: float = 0.2,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise InvalidConfigError(f"The attacker's width ({dim}) must be a multiple of its number of heads ({heads}).")
        self.num_classes = num_classes
        self.norm = nn.BatchNorm1d(3 * num_classes)
        self.embed = nn.Sequential(nn.Linear(3, dim), nn.GELU())
        if layers:
            layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout, activation="gelu", batch_first=True)
            self.encoder: nn.Module = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            self.encoder = nn.Identity()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(num_classes * dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(a).view(a.shape[0], 3, self.num_classes).transpose(1, 2)
        return self.head(self.encoder(self.embed(tokens)))


class BatchCycler:
    """Index batches of a fixed size from successive random permutations of ``range(n)``.

    Args:
        n: Size of the set drawn from.
        generator: CPU generator of the permutations.

    Every sample is drawn once per pass; a batch larger than ``n`` holds repeats. This
    replaces the Gunlearn code's ``next(iter(loader))`` (a full reshuffle at every step, and
    an equal-size assertion that needs |D_f| ≥ batch size).
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator
        self.order = torch.zeros(0, dtype=torch.long)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        """The next ``k`` indices (a CPU long tensor), starting a new permutation when one runs out."""
        parts = []
        while k > 0:
            if self.pos == len(self.order):
                self.order, self.pos = torch.randperm(self.n, generator=self.generator), 0
            t = min(k, len(self.order) - self.pos)
            parts.append(self.order[self.pos : self.pos + t])
            self.pos, k = self.pos + t, k - t
        return torch.cat(parts)


def membership_labels(n_members: int, n_nonmembers: int, device: torch.device) -> torch.Tensor:
    """Attack targets: ``n_members`` ones (member) followed by ``n_nonmembers`` zeros, on ``device``."""
    return torch.cat([torch.ones(n_members, dtype=torch.long), torch.zeros(n_nonmembers, dtype=torch.long)]).to(device)


def train_attacker(
    attacker: nn.Module,
    members: torch.Tensor,
    nonmembers: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """Train an attacker on fixed features: balanced batches, label 1 = member, Adam.

    Each step draws ``batch_size`` members and as many non-members (successive permutations of
    each set, so a small set is cycled) and takes one step on the cross-entropy.

    Args:
        attacker: The attacker (e.g. :class:`Attacker`), on the features' device.
        members: ``(N_m, 3C)`` member features.
        nonmembers: ``(N_n, 3C)`` non-member features.
        steps: Optimiser steps.
        batch_size: Samples per side and step (at least 2).
        lr: Adam learning rate (when ``optimizer`` is None).
        generator: CPU generator of the batch draws.
        optimizer: Continue with this optimiser instead of a fresh Adam.

    Returns:
        The attacker's accuracy on the last batch (in training mode).

    Raises:
        MissingDataError: an empty member or non-member set.
    """
    if len(members) == 0 or len(nonmembers) == 0:
        raise MissingDataError("train_attacker needs non-empty member and non-member sets.")
    batch_size = max(2, int(batch_size))
    opt = optimizer or torch.optim.Adam(attacker.parameters(), lr=lr)
    draw_m, draw_n = BatchCycler(len(members), generator), BatchCycler(len(nonmembers), generator)
    target = membership_labels(batch_size, batch_size, members.device)
    attacker.train()
    acc = float("nan")
    for _ in range(steps):
        batch = torch.cat(
            [members[draw_m.take(batch_size).to(members.device)], nonmembers[draw_n.take(batch_size).to(nonmembers.device)]]
        )
        out = attacker(batch)
        loss = F.cross_entropy(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = float((out.argmax(1) == target).float().mean())
    return acc
