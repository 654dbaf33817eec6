"""Discriminative Adversarial Unlearning: an attacker against the model (the Gunlearn system).

A membership-inference attacker learns to tell the forget set D_f from held-out samples D_val
of the same distribution; the model (the defender) is trained to keep its accuracy on the
retain set D_r while fooling the attacker, plus a Barlow-Twins term that pulls the feature
statistics of D_f towards those of D_val. The building blocks are public so that the attacker
can also serve as an evaluation (:func:`obliviate.metrics.functional.mia_adversarial`):

* :func:`barlow_twins_loss`: the self-supervised term between two batches of features;
* :func:`attack_features`: the attacker's input ``[logits, one-hot label, sensitivity]``;
* :class:`Attacker`: the transformer attacker of the paper, its size configurable;
* :func:`train_attacker`: balanced mini-batch training of an attacker on fixed features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .._utils import eval_mode, model_device
from .._validation import Interval, Options, param
from ..data.base import Concat, Subset, iterate_batches
from ..data.scenario import Scenario
from ..errors import InvalidConfigError, MissingDataError
from ..models.adapter import ModelAdapter, logits_of
from .base import FineTuneRecipe, RunContext, UnlearningMethod, register_method

__all__ = [
    "AdversarialUnlearning",
    "Attacker",
    "attack_features",
    "attack_features_of",
    "barlow_twins_loss",
    "heldout_split",
    "attack_heldout_split",
    "membership_attack_accuracy",
    "train_attacker",
]


# --------------------------------------------------------------------------- Barlow Twins
def barlow_twins_loss(a: torch.Tensor, b: torch.Tensor, *, off_diagonal: float = 5e-3, eps: float = 1e-5) -> torch.Tensor:
    """The Barlow-Twins redundancy-reduction loss between two batches of features.

    Each input is standardised per feature dimension over the batch,
    ``â = (a - mean(a)) / sqrt(var(a) + eps)`` with the unbiased variance; the cross-correlation
    ``M = âᵀ b̂ / N`` pairs row i of ``a`` with row i of ``b``, and

        ``L = Σ_d (M_dd - 1)² + off_diagonal · Σ_{d≠e} M_de²``.

    The Gunlearn code divides by the standard deviation with no epsilon, so a dimension that
    is constant over the batch (a dead ReLU) makes the loss NaN; ``sqrt(var + eps)`` keeps it
    finite, and its gradient too (that of ``std`` is infinite at 0).

    Args:
        a: Features ``(N, D)`` (the paper: h of the validation batch).
        b: Features ``(N, D)`` (the paper: h of the forget batch).
        off_diagonal: Weight λ of the off-diagonal term. Default 5e-3 (the paper's).
        eps: Added to the variance before the square root. Default 1e-5.

    Returns:
        A scalar tensor.

    Raises:
        InvalidConfigError: shapes differ, are not 2-D, or N < 2 (no variance).

    Example:
        >>> x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(barlow_twins_loss(x, x) < barlow_twins_loss(x, torch.randn(64, 8)))
        True
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise InvalidConfigError(
            f"barlow_twins_loss needs two (N, D) feature batches of the same shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    n = a.shape[0]
    if n < 2:
        raise InvalidConfigError(f"barlow_twins_loss needs at least 2 samples per batch to standardise; got {n}.")

    def standardise(x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=0)
        return centred / torch.sqrt(centred.square().sum(dim=0) / (n - 1) + eps)

    m = standardise(a).T @ standardise(b) / n
    diagonal = torch.diagonal(m)
    on = (diagonal - 1.0).square().sum()
    off = m.square().sum() - diagonal.square().sum()
    return on + off_diagonal * off


# --------------------------------------------------------------------------- attack features
def _noisy(x: torch.Tensor, samples: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """``samples`` noisy copies of a batch, stacked: ``(samples * B, ...)``, copy-major."""
    eps = torch.randn((samples, *x.shape), generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return (x.unsqueeze(0) + std * eps).reshape(samples * x.shape[0], *x.shape[1:])


def _sensitivity(z: torch.Tensor, z_noisy: torch.Tensor, samples: int, std: float) -> torch.Tensor:
    """``(1/m) Σ_r |z(x + σ ε_r) - z(x)| / σ`` from the clean and the stacked noisy logits."""
    return (z_noisy.view(samples, *z.shape) - z.unsqueeze(0)).abs().mean(dim=0) / std


def _features(z: torch.Tensor, y: torch.Tensor, s: torch.Tensor, num_classes: int) -> torch.Tensor:
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
        return _features(z, y, torch.zeros_like(z), num_classes)
    z_noisy = logits_fn(_noisy(x, noise_samples, noise_std, generator))
    return _features(z, y, _sensitivity(z, z_noisy, noise_samples, noise_std), num_classes)


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


class _Cycler:
    """Index batches of a fixed size from successive random permutations of ``range(n)``.

    Every sample is drawn once per pass; a batch larger than ``n`` holds repeats. This
    replaces the Gunlearn code's ``next(iter(loader))`` (a full reshuffle at every step, and
    an equal-size assertion that needs |D_f| ≥ batch size).
    """

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self.n, self.generator = n, generator
        self.order = torch.zeros(0, dtype=torch.long)
        self.pos = 0

    def take(self, k: int) -> torch.Tensor:
        parts = []
        while k > 0:
            if self.pos == len(self.order):
                self.order, self.pos = torch.randperm(self.n, generator=self.generator), 0
            t = min(k, len(self.order) - self.pos)
            parts.append(self.order[self.pos : self.pos + t])
            self.pos, k = self.pos + t, k - t
        return torch.cat(parts)


def _membership(n_members: int, n_nonmembers: int, device: torch.device) -> torch.Tensor:
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
    draw_m, draw_n = _Cycler(len(members), generator), _Cycler(len(nonmembers), generator)
    target = _membership(batch_size, batch_size, members.device)
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


# --------------------------------------------------------------------------- held-out sets
def _forget_groups(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(the validation samples' group labels, the groups of the forget set).

    A group is the fine label for sub-class forgetting and the class otherwise.
    """
    ds = scenario.dataset
    if scenario.kind == "subclass" and ds.train_fine is not None:
        return np.asarray(ds.train_fine)[scenario.val_idx], np.asarray([scenario.params["fine_class"]])
    labels = ds.train_targets
    if scenario.kind == "classwise":
        return labels[scenario.val_idx], np.asarray([scenario.params["forget_class"]])
    return labels[scenario.val_idx], np.unique(labels[scenario.forget_idx])


def heldout_split(scenario: Scenario, *, restrict: bool = True, include_test: bool = False) -> Dataset:
    """Held-out samples from the forget set's distribution (the attacker's non-members).

    Args:
        scenario: The scenario.
        restrict: Keep only validation samples of the forget set's class(es): the forgotten
            class of a class-wise scenario, the forgotten sub-class of a sub-class scenario,
            the classes present in D_f otherwise (all of them for random forgetting).
            False: the whole validation split.
        include_test: Also add the test samples of the forgotten (sub-)class (class-wise and
            sub-class scenarios only; the validation split alone holds ~10 % of a class).

    Returns:
        A dataset (a view of the train split, or of train and test concatenated).
    """
    val_groups, wanted = _forget_groups(scenario)
    idx = scenario.val_idx[np.isin(val_groups, wanted)] if restrict else scenario.val_idx
    val = Subset(scenario.dataset.train, idx)
    if include_test and scenario.test_forget is not None:
        return Concat([val, scenario.test_forget])
    return val


def attack_heldout_split(scenario: Scenario) -> Subset:
    """The non-members of the ``mia_adversarial`` metric: test-split samples like the forget set.

    Only the test split is used: it is disjoint from the training set and from the validation
    split, which methods may read (the ``adversarial`` defender trains against the validation
    samples, so scoring against them would flatter it). For class-wise and sub-class forgetting
    these are the test samples of the forgotten (sub-)class (:attr:`Scenario.test_forget`); for
    random and custom forgetting, the test samples of the classes present in D_f.

    Args:
        scenario: The scenario.

    Returns:
        A view of ``scenario.dataset.test``.
    """
    if scenario.test_forget is not None:
        return scenario.test_forget
    labels = scenario.dataset.test_targets[scenario.test_idx]
    wanted = np.unique(scenario.dataset.train_targets[scenario.forget_idx])
    return Subset(scenario.dataset.test, scenario.test_idx[np.isin(labels, wanted)])


def membership_attack_accuracy(
    model: nn.Module,
    scenario: Scenario,
    *,
    seed: int = 0,
    batch_size: int = 512,
    device: torch.device | None = None,
    noise_samples: int = 10,
    noise_std: float = 1e-3,
) -> float:
    """The ``mia_adversarial`` metric of a model: a fresh attacker's accuracy, D_f vs held out.

    Members are the forget set; non-members are :func:`attack_heldout_split`: test-split
    samples only (for class-wise and sub-class forgetting those of the forgotten (sub-)class, so
    the one-hot label gives nothing away; for random forgetting those of D_f's classes). The
    test split is disjoint from everything any method sees: training data, and the validation
    split that the ``adversarial`` defender trains against (an earlier version scored against
    validation samples, which flattered that method). Features are :func:`attack_features_of`
    (model in eval mode, noise seeded by ``seed``); the score is
    :func:`obliviate.metrics.functional.mia_adversarial`. The held-out side is small for a
    class-wise scenario (on digits a few dozen test samples of the class), so the value is
    coarse; average it over seeds.

    Args:
        model: The model to attack.
        scenario: Its scenario (forget set, validation split, test split).
        seed: Seed of the noise, the subsample, the split and the attacker. Default 0.
        batch_size: Samples per forward when computing features. Default 512.
        device: Where the model runs; None: the device of its parameters.
        noise_samples: m of the sensitivity feature. Default 10.
        noise_std: σ of the sensitivity feature. Default 1e-3.

    Returns:
        The attacker's accuracy in [0, 1] (0.5: the forget set looks unseen).

    Raises:
        MissingDataError: fewer than 2 held-out samples of the forget set's distribution.
    """
    from ..metrics.functional.adversarial import mia_adversarial

    dev = model_device(model) if device is None else device
    heldout = attack_heldout_split(scenario)
    if len(heldout) < 2:  # type: ignore[arg-type]
        raise MissingDataError(
            f"mia_adversarial needs held-out test samples of the forget set's distribution, but scenario {scenario.name!r} "
            "has fewer than 2 in its test split."
        )
    num_classes = scenario.dataset.num_classes
    generator = torch.Generator(device=dev).manual_seed(seed)
    common = {
        "noise_samples": noise_samples,
        "noise_std": noise_std,
        "generator": generator,
        "batch_size": batch_size,
        "device": dev,
    }
    members = attack_features_of(model, scenario.forget, num_classes, **common)
    nonmembers = attack_features_of(model, heldout, num_classes, **common)
    return mia_adversarial(members, nonmembers, seed=seed)


def _tensors(data: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*iterate_batches(data, 4096, device=device), strict=True)
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------- the method
@register_method("adversarial")
@dataclass(frozen=True, kw_only=True)
class AdversarialUnlearning(UnlearningMethod, FineTuneRecipe):
    """Discriminative Adversarial Unlearning (Sharma, Zhou, Ji & Chen, arXiv:2402.06864).

    A min-max game between an attacker A (:class:`Attacker`) and the model D (the defender).
    A sees ``a(x) = [logits ‖ one-hot label ‖ finite-difference sensitivity]``
    (:func:`attack_features`) and is trained to call forget samples members (1) and held-out
    validation samples non-members (0). The defender is then trained, on each retain batch,
    to minimise

        ``L_D = CE(D(x_r), y_r) + β · (bt_weight · L_BT(h(V), h(F)) + adv_weight · L_adv)``

    where ``L_adv`` is A's cross-entropy with the membership labels flipped (gradients reach
    D through the logits and the sensitivities), ``h`` are the penultimate features (read
    through :class:`~obliviate.models.ModelAdapter`, so any classifier works) and ``L_BT``
    is :func:`barlow_twins_loss` between a validation batch V and a forget batch F. One
    iteration per retain batch: ``attacker_steps`` Adam steps of A on detached features, then
    one SGD step of D, with the same F, V batches. With ``stop_iter`` set, iterations from
    ``stop_iter`` on are plain fine-tuning on D_r at ``stop_lr`` (the paper's class-wise
    schedule; β = 0), and the attacker, the forget/validation and noisy forwards are skipped
    entirely (the Gunlearn code kept computing them). The learning rate changes inside the
    one optimiser, keeping its momentum; masks are honoured by the shared training loop.
    Before the game, A is warmed up for ``attacker_warmup`` steps on fixed features of
    members (``warmup_members``) against the held-out samples (the code's pre-trained
    attacker: 1 000 iterations on D against D_val).

    Differences from the Gunlearn code, on purpose: the Barlow-Twins standardisation has an
    epsilon (``bt_eps``; the code divides by a raw std, NaN on dead dimensions); forget and
    validation batches are drawn by cycling through seeded permutations of each set, so they
    always have the same size and |D_f| may be smaller than the batch (the code asserts equal
    sizes and needs |D_f| ≥ bs, and re-creates ``iter(loader)`` at every step); by default
    the forget, validation and noisy forwards run in eval mode (``feature_mode="eval"``), so
    they neither update nor use batch BatchNorm statistics (the code ran them in training
    mode, letting noisy copies and held-out batches pollute the running statistics); the
    class-wise validation set is an explicit choice (``val_set``), see below.

    The game's iterations are the first ``stop_iter`` optimiser steps (steps 0 .. stop_iter-1;
    the code switches once its attacker-step counter exceeds ``stop_iter``, i.e. after the
    same number of defender steps). The attacker also serves as an evaluation: the opt-in
    metric ``mia_adversarial`` (:func:`membership_attack_accuracy`) trains a fresh one on
    the evaluated model.

    Data needs: forget, retain, val (labelled). Cost in passes over D: ``epochs · |D_r| / |D|``
    for the retain batches plus ``iterations · 2 · (noise_samples + 1) · attack_batch_size
    / |D|`` for the game's forget, validation and noisy batches (forward and backward), i.e.
    one game iteration costs 23 retain batches with the paper's sizes (and the attacker);
    after ``stop_iter`` an iteration is one retain batch. The warm-up adds forward passes
    only: ``noise_samples + 1`` over the members and over the held-out set. The digits preset
    costs a fraction of the oracle's passes (``passes`` in ``benchmarks/results/adversarial.json``).

    Args:
        epochs: Epochs over D_r (one iteration per retain batch). Default 3 (CIFAR-10).
        lr: Defender learning rate (``unlearn_lr``). Default 0.01 (CIFAR-10 random).
        optimizer: Defender optimiser, "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9.
        weight_decay: Weight decay. Default 5e-4.
        batch_size: Retain batch size (bs). Default 256.
        schedule: "constant" (the paper's) or "cosine". Default "constant".
        attack_batch_size: Size of each forget and validation batch; None: ``batch_size``
            (the paper's). At least 2 are used (the standardisation needs two samples).
            Default None.
        stop_iter: Iterations of the adversarial game; from then on plain fine-tuning
            (``--stop-iter``; the paper uses 30 for class-wise forgetting, none for random
            forgetting). None: the game runs throughout. Default None.
        stop_lr: Defender learning rate after ``stop_iter`` (``--stop-unlearn-lr``); None
            keeps ``lr``. Setting it without ``stop_iter`` is an error. Default None.
        beta: β, weight of the unlearning terms before ``stop_iter``. Default 1.
        adv_weight: Weight of the flipped-label attacker loss. Default 0.9.
        bt_weight: Weight of the Barlow-Twins term (0: only logits are read, so a model
            without a linear head works too). Default 1e-3.
        bt_off_diagonal: λ, off-diagonal weight inside the Barlow-Twins loss. Default 5e-3.
        bt_eps: Epsilon of the Barlow-Twins standardisation (not in the paper). Default 1e-5.
        noise_samples: m, noisy copies for the sensitivity feature (0 disables it). Default 10.
        noise_std: σ, standard deviation of the input noise. Default 1e-3.
        attacker_lr: Adam learning rate of the attacker. Default 1e-3.
        attacker_steps: Attacker steps per iteration (``a_iters``). Default 1.
        attacker_warmup: Attacker steps before the game, on fixed features of the unchanged
            model (the code's pre-trained attacker). Default 1000.
        warmup_members: Members of the warm-up: "train" (D = D_f ∪ D_r, as the code's
            pre-training) or "forget" (D_f only). Default "train".
        val_set: Non-members of the game: "forget_class" keeps only validation samples of
            the forget set's class(es) (class-wise: the forgotten class; sub-class: the
            forgotten sub-class; random: every class present in D_f, i.e. all of them), as the
            code's "working config" (868bb49), whose stored class-wise result matches it;
            "all" is the whole validation split (the code at HEAD). With "all" on class-wise
            forgetting the attacker can separate the sets by the one-hot label alone.
            Default "forget_class".
        feature_mode: Mode of the forget, validation and noisy forwards: "eval" (running
            BatchNorm statistics, no dropout; nothing is updated) or "train" (the code's:
            batch statistics, running statistics updated). Default "eval".
        attacker_dim: Token width of the attacker. Default 64.
        attacker_layers: Transformer layers of the attacker (0: none). Default 3.
        attacker_heads: Attention heads (must divide ``attacker_dim``). Default 4.
        attacker_ff: Feed-forward width of the attacker's transformer. Default 128.
        attacker_dropout: Dropout of the attacker's transformer. Default 0.2.
        attacker_hidden: Width of the attacker's MLP head. Default 64.

    Presets:
        cifar10_random, cifar100_random, cifar10_classwise, cifar100_classwise: the Gunlearn
            README (lr 0.01 / 0.01 / 0.02 / 0.02; 3 / 5 / 3 / 5 epochs; class-wise:
            ``stop_iter`` 30, ``stop_lr`` 0.01 / 0.02).
        cifar10_random_sparse, cifar100_random_sparse, cifar10_classwise_sparse,
            cifar100_classwise_sparse: the same for 95 %-sparse (OMP) models, to be run with
            their masks: lr 0.03 / 0.01 / 0.02 / 0.02, class-wise ``stop_iter`` 20.
        digits: tuned on the demo's 6k-parameter digits CNN (``benchmarks/adversarial.py``):
            5 epochs at lr 0.02 with retain batches of 64, forget/validation batches of 32,
            4 noisy copies, a 5k-parameter attacker (width 16, 1 layer, 2 heads, ff 32,
            head 16) warmed up for 50 steps, the game stopped after 5 iterations, then
            fine-tuning at lr 0.05 (the game with a warmed-up attacker forgets the class
            within a few iterations on this model). The paper's sizes (batches of 256, 23
            batch-equivalents per iteration, a 140k-parameter attacker warmed up for 1 000
            steps) cost more than retraining this model (``iteration_cost`` in the results
            file below), 30 game iterations at lr 0.02 followed by 3 epochs cost retain
            accuracy, and a game without a stop (the paper's random-forgetting schedule)
            degrades every split. With this preset it forgets ``class:3`` while keeping most
            of the retain accuracy (the same schedule without the game does not forget the
            class); on ``random:0.1`` its average gap to the oracle differs from the original
            model's and ``finetune``'s by little, of the order of the spread between single
            runs. Measured over 5 seeds in ``benchmarks/results/adversarial.json``
            (``python benchmarks/adversarial.py --seeds 5 --repeats 3 --threads 2``).
    """

    requires: ClassVar[frozenset[str]] = frozenset({"forget", "retain", "val"})
    presets: ClassVar[dict] = {
        "cifar10_random": {"lr": 0.01, "epochs": 3},
        "cifar100_random": {"lr": 0.01, "epochs": 5},
        "cifar10_classwise": {"lr": 0.02, "epochs": 3, "stop_iter": 30, "stop_lr": 0.01},
        "cifar100_classwise": {"lr": 0.02, "epochs": 5, "stop_iter": 30, "stop_lr": 0.02},
        "cifar10_random_sparse": {"lr": 0.03, "epochs": 3},
        "cifar100_random_sparse": {"lr": 0.01, "epochs": 5},
        "cifar10_classwise_sparse": {"lr": 0.02, "epochs": 3, "stop_iter": 20, "stop_lr": 0.01},
        "cifar100_classwise_sparse": {"lr": 0.02, "epochs": 5, "stop_iter": 20, "stop_lr": 0.02},
        "digits": {
            "epochs": 5,
            "lr": 0.02,
            "batch_size": 64,
            "attack_batch_size": 32,
            "stop_iter": 5,
            "stop_lr": 0.05,
            "noise_samples": 4,
            "attacker_warmup": 50,
            "attacker_dim": 16,
            "attacker_layers": 1,
            "attacker_heads": 2,
            "attacker_ff": 32,
            "attacker_hidden": 16,
        },
    }

    epochs: int = param(3, Interval(int, 1))
    lr: float = param(0.01, Interval(float, 0.0, closed="neither"))
    attack_batch_size: int | None = param(None, Interval(int, 1, allow_none=True))
    stop_iter: int | None = param(None, Interval(int, 0, allow_none=True))
    stop_lr: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    beta: float = param(1.0, Interval(float, 0.0))
    adv_weight: float = param(0.9, Interval(float, 0.0))
    bt_weight: float = param(1e-3, Interval(float, 0.0))
    bt_off_diagonal: float = param(5e-3, Interval(float, 0.0))
    bt_eps: float = param(1e-5, Interval(float, 0.0, closed="neither"))
    noise_samples: int = param(10, Interval(int, 0))
    noise_std: float = param(1e-3, Interval(float, 0.0, closed="neither"))
    attacker_lr: float = param(1e-3, Interval(float, 0.0, closed="neither"))
    attacker_steps: int = param(1, Interval(int, 1))
    attacker_warmup: int = param(1000, Interval(int, 0))
    warmup_members: str = param("train", Options("train", "forget"))
    val_set: str = param("forget_class", Options("forget_class", "all"))
    feature_mode: str = param("eval", Options("eval", "train"))
    attacker_dim: int = param(64, Interval(int, 1))
    attacker_layers: int = param(3, Interval(int, 0))
    attacker_heads: int = param(4, Interval(int, 1))
    attacker_ff: int = param(128, Interval(int, 1))
    attacker_dropout: float = param(0.2, Interval(float, 0.0, 1.0, closed="left"))
    attacker_hidden: int = param(64, Interval(int, 1))

    def _check(self) -> None:
        if self.attacker_dim % self.attacker_heads:
            raise InvalidConfigError(
                f"The 'attacker_heads' parameter of {type(self).__name__} must divide attacker_dim={self.attacker_dim}; "
                f"got {self.attacker_heads}."
            )
        if self.stop_lr is not None and self.stop_iter is None:
            raise InvalidConfigError(
                f"The 'stop_lr' parameter of {type(self).__name__} applies from 'stop_iter' on, but stop_iter is None; "
                f"got stop_lr={self.stop_lr}. Set stop_iter too, or leave stop_lr at None."
            )

    def make_attacker(self, num_classes: int) -> Attacker:
        """A fresh :class:`Attacker` of this method's size (drawn from the global RNG)."""
        return Attacker(
            num_classes,
            dim=self.attacker_dim,
            layers=self.attacker_layers,
            heads=self.attacker_heads,
            ff=self.attacker_ff,
            dropout=self.attacker_dropout,
            hidden=self.attacker_hidden,
        )

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        dev, gen = ctx.device, ctx.generator
        num_classes = scenario.dataset.num_classes
        heldout = heldout_split(scenario, restrict=self.val_set == "forget_class")
        if len(heldout) == 0:  # type: ignore[arg-type]
            raise MissingDataError(
                f"{type(self).__name__} with val_set='forget_class' needs validation samples of the forgotten class(es), "
                f"but scenario {scenario.name!r} has none; use val_set='all' or a scenario with a validation split."
            )

        def lr_factor(step: int) -> float:
            if self.stop_iter is not None and self.stop_lr is not None and step >= self.stop_iter:
                return self.stop_lr / self.lr
            return 1.0

        game = self.beta > 0 and (self.adv_weight > 0 or self.bt_weight > 0) and (self.stop_iter is None or self.stop_iter > 0)
        if not game:  # nothing to play: plain fine-tuning on D_r (at stop_lr from stop_iter on)
            ctx.fit(model, scenario.retain, self.recipe(), lr_factor=lr_factor, desc="adversarial")
            ctx.diagnostics["adversarial_iterations"] = 0.0
            return model

        x_f, y_f = _tensors(scenario.forget, dev)
        x_v, y_v = _tensors(heldout, dev)
        adapter = ModelAdapter(model)  # the head is located on the first features call (only if bt_weight > 0)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        noise_gen = torch.Generator(device=dev).manual_seed(seed)
        attacker = self.make_attacker(num_classes).to(dev)
        opt_a = torch.optim.Adam(attacker.parameters(), lr=self.attacker_lr)
        m, std = self.noise_samples, self.noise_std

        if self.adv_weight > 0 and self.attacker_warmup > 0:
            members = scenario.train if self.warmup_members == "train" else scenario.forget
            common = {"noise_samples": m, "noise_std": std, "generator": noise_gen, "batch_size": 512, "device": dev}
            feats_m = attack_features_of(model, members, num_classes, **common).to(dev)
            feats_n = attack_features_of(model, heldout, num_classes, **common).to(dev)
            ctx.diagnostics["attacker_warmup_acc"] = train_attacker(
                attacker, feats_m, feats_n, steps=self.attacker_warmup, batch_size=64, generator=gen, optimizer=opt_a
            )

        b = max(2, self.attack_batch_size or self.batch_size)
        draw_f, draw_v = _Cycler(len(y_f), gen), _Cycler(len(y_v), gen)
        target = _membership(b, b, dev)
        state = {"step": 0, "attacker_acc": 0.0, "bt": 0.0, "adv": 0.0, "iters": 0}

        def outputs(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
            """Penultimate features (only when the Barlow-Twins term needs them) and logits."""
            return adapter.features_and_logits(x) if self.bt_weight > 0 else (None, adapter.logits(x))

        def forwards(x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
            """Features, logits and sensitivities of the forget or validation batch."""
            if not (self.adv_weight > 0 and m > 0):
                h, z = outputs(x)
                return h, z, torch.zeros_like(z)
            if self.feature_mode == "eval":  # BatchNorm on running statistics: one forward for all copies
                h, z = outputs(torch.cat([x, _noisy(x, m, std, noise_gen)]))
                z, z_noisy, h = z[: len(x)], z[len(x) :], None if h is None else h[: len(x)]
            else:  # the code's training-mode forwards: clean and noisy batches separately
                h, z = outputs(x)
                z_noisy = adapter.logits(_noisy(x, m, std, noise_gen))
            return h, z, _sensitivity(z, z_noisy, m, std)

        def unlearning_terms() -> torch.Tensor:
            fi, vi = draw_f.take(b).to(dev), draw_v.take(b).to(dev)
            if self.feature_mode == "eval":
                with eval_mode(model):
                    (h_f, z_f, s_f), (h_v, z_v, s_v) = forwards(x_f[fi]), forwards(x_v[vi])
            else:
                (h_f, z_f, s_f), (h_v, z_v, s_v) = forwards(x_f[fi]), forwards(x_v[vi])
            ctx.counter["samples"] += 2 * b * (1 + (m if self.adv_weight > 0 else 0))
            total = torch.zeros((), device=dev)
            if self.adv_weight > 0:
                a = torch.cat([_features(z_f, y_f[fi], s_f, num_classes), _features(z_v, y_v[vi], s_v, num_classes)])
                attacker.requires_grad_(True)
                for _ in range(self.attacker_steps):
                    out = attacker(a.detach())
                    loss_a = F.cross_entropy(out, target)
                    opt_a.zero_grad(set_to_none=True)
                    loss_a.backward()
                    opt_a.step()
                attacker.requires_grad_(False)
                state["attacker_acc"] += float((out.argmax(1) == target).float().mean())
                adv = F.cross_entropy(attacker(a), 1 - target)  # flipped membership labels
                state["adv"] = float(adv.detach())
                total = total + self.adv_weight * adv
            if h_f is not None and h_v is not None:
                bt = barlow_twins_loss(h_v, h_f, off_diagonal=self.bt_off_diagonal, eps=self.bt_eps)
                state["bt"] = float(bt.detach())
                total = total + self.bt_weight * bt
            state["iters"] += 1
            return self.beta * total

        def loss_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            step = state["step"]
            state["step"] += 1
            active = self.stop_iter is None or step < self.stop_iter
            extra = unlearning_terms() if active else None
            loss = F.cross_entropy(logits_of(net(x)), y)
            return loss if extra is None else loss + extra

        ctx.fit(model, scenario.retain, self.recipe(), loss_fn=loss_fn, lr_factor=lr_factor, desc="adversarial")
        ctx.diagnostics["adversarial_iterations"] = float(state["iters"])
        if state["iters"] and self.adv_weight > 0:
            ctx.diagnostics["attacker_acc"] = state["attacker_acc"] / state["iters"]
            ctx.diagnostics["last_adv_loss"] = state["adv"]
        if state["iters"] and self.bt_weight > 0:
            ctx.diagnostics["last_bt_loss"] = state["bt"]
        return model
