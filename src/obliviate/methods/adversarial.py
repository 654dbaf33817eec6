"""Discriminative Adversarial Unlearning: an attacker against the model (the Gunlearn system).

A membership-inference attacker learns to tell the forget set D_f from held-out samples D_val
of the same distribution; the model (the defender) is trained to keep its accuracy on the
retain set D_r while fooling the attacker, plus a Barlow-Twins term that pulls the feature
statistics of D_f towards those of D_val. Here live the method (:class:`AdversarialUnlearning`),
its game (:class:`AdversarialGame`, the state of one run) and :func:`barlow_twins_loss`.

The attack machinery is shared with the ``mia_adversarial`` metric and lives in
:mod:`obliviate.metrics.attacks`: :class:`~obliviate.metrics.attacks.Attacker`,
:func:`~obliviate.metrics.attacks.train_attacker`, :func:`~obliviate.metrics.attacks.attack_features`,
:func:`~obliviate.metrics.attacks.attack_features_of`, :func:`~obliviate.metrics.attacks.heldout_split`,
:func:`~obliviate.metrics.attacks.attack_heldout_split` and
:func:`~obliviate.metrics.attacks.membership.membership_attack_accuracy`. Those names still
resolve here, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from .._utils import eval_mode
from .._validation import Interval, IntRange, Linear, Log, Options, param
from ..data.base import iterate_batches
from ..data.scenario import Scenario
from ..errors import InvalidConfigError, MissingDataError
from ..metrics.attacks import attacker as _attacks
from ..metrics.attacks import heldout as _heldout
from ..metrics.attacks import membership as _membership
from ..models.adapter import ModelAdapter, logits_of
from .base import UNLEARN_SPARSE_LR, FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["AdversarialGame", "AdversarialUnlearning", "barlow_twins_loss"]

# Names that moved to obliviate.metrics.attacks (issue 12): old name -> (module, new import path).
_MOVED: dict[str, tuple[Any, str]] = {
    "Attacker": (_attacks, "obliviate.metrics.attacks"),
    "attack_features": (_attacks, "obliviate.metrics.attacks"),
    "attack_features_of": (_attacks, "obliviate.metrics.attacks"),
    "train_attacker": (_attacks, "obliviate.metrics.attacks"),
    "heldout_split": (_heldout, "obliviate.metrics.attacks"),
    "attack_heldout_split": (_heldout, "obliviate.metrics.attacks"),
    "membership_attack_accuracy": (_membership, "obliviate.metrics.attacks.membership"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, path = _MOVED[name]
        warnings.warn(
            f"obliviate.methods.adversarial.{name} moved to {path}.{name}; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _tensors(data: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*iterate_batches(data, 4096, device=device), strict=True)
    return torch.cat(xs), torch.cat(ys)


# --------------------------------------------------------------------------- the method
@register_method("adversarial")
@dataclass(frozen=True, kw_only=True)
class AdversarialUnlearning(UnlearningMethod, FineTuneRecipe):
    """Discriminative Adversarial Unlearning (Sharma, Zhou, Ji & Chen, arXiv:2402.06864).

    A min-max game between an attacker A (:class:`~obliviate.metrics.attacks.Attacker`) and the model D (the defender).
    A sees ``a(x) = [logits ‖ one-hot label ‖ finite-difference sensitivity]``
    (:func:`~obliviate.metrics.attacks.attack_features`) and is trained to call forget samples members (1) and held-out
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
    metric ``mia_adversarial`` (:func:`~obliviate.metrics.attacks.membership.membership_attack_accuracy`) trains a fresh one on
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
        lr: Defender learning rate (``unlearn_lr``). Default 0.01 (CIFAR-10 random);
            with a known SGD recipe, 0.1 x its lr (the default was set for lr 0.1).
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
    from_recipe: ClassVar[dict[str, FromRecipe]] = UNLEARN_SPARSE_LR
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

    epochs: int = param(3, Interval(int, 1), search=IntRange(1, 10))
    lr: float = param(0.01, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.1))
    attack_batch_size: int | None = param(None, Interval(int, 1, allow_none=True))
    stop_iter: int | None = param(None, Interval(int, 0, allow_none=True))
    stop_lr: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    beta: float = param(1.0, Interval(float, 0.0))
    adv_weight: float = param(0.9, Interval(float, 0.0), search=Linear(0.0, 1.0))
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

    def make_attacker(self, num_classes: int) -> _attacks.Attacker:
        """A fresh :class:`~obliviate.metrics.attacks.Attacker` of this method's size (drawn from the global RNG)."""
        return _attacks.Attacker(
            num_classes,
            dim=self.attacker_dim,
            layers=self.attacker_layers,
            heads=self.attacker_heads,
            ff=self.attacker_ff,
            dropout=self.attacker_dropout,
            hidden=self.attacker_hidden,
        )

    def lr_factor(self, step: int) -> float:
        """Factor on ``lr`` at optimiser step ``step``: ``stop_lr / lr`` from ``stop_iter`` on (when both are set), else 1."""
        if self.stop_iter is not None and self.stop_lr is not None and step >= self.stop_iter:
            return self.stop_lr / self.lr
        return 1.0

    def plays(self) -> bool:
        """Whether there is a game to play (else the run is plain fine-tuning on D_r)."""
        return self.beta > 0 and (self.adv_weight > 0 or self.bt_weight > 0) and (self.stop_iter is None or self.stop_iter > 0)

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        heldout = _heldout.heldout_split(scenario, restrict=self.val_set == "forget_class")
        if len(heldout) == 0:  # type: ignore[arg-type]
            raise MissingDataError(
                f"{type(self).__name__} with val_set='forget_class' needs validation samples of the forgotten class(es), "
                f"but scenario {scenario.name!r} has none; use val_set='all' or a scenario with a validation split."
            )
        if not self.plays():  # nothing to play: plain fine-tuning on D_r (at stop_lr from stop_iter on)
            ctx.fit(model, scenario.retain, self.recipe(), lr_factor=self.lr_factor, desc="adversarial")
            ctx.diagnostics["adversarial_iterations"] = 0.0
            return model
        game = AdversarialGame(self, model, scenario, heldout, ctx)
        game.warm_up()
        ctx.fit(model, scenario.retain, self.recipe(), loss_fn=game.loss, lr_factor=self.lr_factor, desc="adversarial")
        ctx.diagnostics.update(game.diagnostics())
        return model


class AdversarialGame:
    """The state of one run of :class:`AdversarialUnlearning`'s game, and its per-step loss.

    Built once per run (it draws the noise seed from ``ctx.generator`` and initialises the
    attacker from the global RNG, in that order), then :meth:`warm_up` trains the attacker on
    fixed features, and :meth:`loss` is the training loop's loss function: at each step before
    ``stop_iter`` it plays one iteration (:meth:`unlearning_terms`) and adds it to the retain
    cross-entropy.

    Args:
        method: The method's hyperparameters.
        model: The defender (trained in place by the caller's loop).
        scenario: The scenario (forget set, and the members of the warm-up).
        heldout: The non-members (validation samples, :func:`~obliviate.metrics.attacks.heldout_split`).
        ctx: The run's context (device, generator, sample counter, diagnostics).

    Attributes:
        step: Optimiser steps seen so far.
        iterations: Game iterations played so far.
        attacker_acc: Sum over iterations of the attacker's accuracy on its last step.
        last_adv: The last flipped-label attacker loss.
        last_bt: The last Barlow-Twins loss.
    """

    def __init__(self, method: AdversarialUnlearning, model: nn.Module, scenario: Scenario, heldout: Dataset, ctx: RunContext):
        self.method, self.model, self.scenario, self.heldout, self.ctx = method, model, scenario, heldout, ctx
        self.device, dev, gen = ctx.device, ctx.device, ctx.generator
        self.num_classes = scenario.dataset.num_classes
        self.x_f, self.y_f = _tensors(scenario.forget, dev)
        self.x_v, self.y_v = _tensors(heldout, dev)
        self.adapter = ModelAdapter(model)  # the head is located on the first features call (only if bt_weight > 0)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        self.noise_gen = torch.Generator(device=dev).manual_seed(seed)
        self.attacker = method.make_attacker(self.num_classes).to(dev)
        self.opt_a = torch.optim.Adam(self.attacker.parameters(), lr=method.attacker_lr)
        self.batch = max(2, method.attack_batch_size or method.batch_size)
        self.draw_f = _attacks.BatchCycler(len(self.y_f), gen)
        self.draw_v = _attacks.BatchCycler(len(self.y_v), gen)
        self.target = _attacks.membership_labels(self.batch, self.batch, dev)
        self.step, self.iterations = 0, 0
        self.attacker_acc, self.last_adv, self.last_bt = 0.0, 0.0, 0.0

    def warm_up(self) -> None:
        """Train the attacker for ``attacker_warmup`` steps on fixed features of the unchanged model."""
        method, ctx = self.method, self.ctx
        if not (method.adv_weight > 0 and method.attacker_warmup > 0):
            return
        members = self.scenario.train if method.warmup_members == "train" else self.scenario.forget
        common = {
            "noise_samples": method.noise_samples,
            "noise_std": method.noise_std,
            "generator": self.noise_gen,
            "batch_size": 512,
            "device": self.device,
        }
        feats_m = _attacks.attack_features_of(self.model, members, self.num_classes, **common).to(self.device)
        feats_n = _attacks.attack_features_of(self.model, self.heldout, self.num_classes, **common).to(self.device)
        ctx.diagnostics["attacker_warmup_acc"] = _attacks.train_attacker(
            self.attacker,
            feats_m,
            feats_n,
            steps=method.attacker_warmup,
            batch_size=64,
            generator=ctx.generator,
            optimizer=self.opt_a,
        )

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Penultimate features (only when the Barlow-Twins term needs them) and logits."""
        return self.adapter.features_and_logits(x) if self.method.bt_weight > 0 else (None, self.adapter.logits(x))

    def forwards(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Features, logits and sensitivities of the forget or validation batch."""
        method, m, std = self.method, self.method.noise_samples, self.method.noise_std
        if not (method.adv_weight > 0 and m > 0):
            h, z = self.outputs(x)
            return h, z, torch.zeros_like(z)
        if method.feature_mode == "eval":  # BatchNorm on running statistics: one forward for all copies
            h, z = self.outputs(torch.cat([x, _attacks.noisy_copies(x, m, std, self.noise_gen)]))
            z, z_noisy, h = z[: len(x)], z[len(x) :], None if h is None else h[: len(x)]
        else:  # the code's training-mode forwards: clean and noisy batches separately
            h, z = self.outputs(x)
            z_noisy = self.adapter.logits(_attacks.noisy_copies(x, m, std, self.noise_gen))
        return h, z, _attacks.logit_sensitivity(z, z_noisy, m, std)

    def unlearning_terms(self) -> torch.Tensor:
        """One game iteration: attacker steps on a forget and a validation batch, then the defender's extra loss."""
        method, dev, b = self.method, self.device, self.batch
        fi, vi = self.draw_f.take(b).to(dev), self.draw_v.take(b).to(dev)
        if method.feature_mode == "eval":
            with eval_mode(self.model):
                (h_f, z_f, s_f), (h_v, z_v, s_v) = self.forwards(self.x_f[fi]), self.forwards(self.x_v[vi])
        else:
            (h_f, z_f, s_f), (h_v, z_v, s_v) = self.forwards(self.x_f[fi]), self.forwards(self.x_v[vi])
        self.ctx.counter["samples"] += 2 * b * (1 + (method.noise_samples if method.adv_weight > 0 else 0))
        total = torch.zeros((), device=dev)
        if method.adv_weight > 0:
            c = self.num_classes
            a = torch.cat(
                [_attacks.stack_features(z_f, self.y_f[fi], s_f, c), _attacks.stack_features(z_v, self.y_v[vi], s_v, c)]
            )
            self.attacker.requires_grad_(True)
            for _ in range(method.attacker_steps):
                out = self.attacker(a.detach())
                loss_a = F.cross_entropy(out, self.target)
                self.opt_a.zero_grad(set_to_none=True)
                loss_a.backward()
                self.opt_a.step()
            self.attacker.requires_grad_(False)
            self.attacker_acc += float((out.argmax(1) == self.target).float().mean())
            adv = F.cross_entropy(self.attacker(a), 1 - self.target)  # flipped membership labels
            self.last_adv = float(adv.detach())
            total = total + method.adv_weight * adv
        if h_f is not None and h_v is not None:
            bt = barlow_twins_loss(h_v, h_f, off_diagonal=method.bt_off_diagonal, eps=method.bt_eps)
            self.last_bt = float(bt.detach())
            total = total + method.bt_weight * bt
        self.iterations += 1
        return method.beta * total

    def loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loop's loss on a retain batch: cross-entropy, plus the game's terms before ``stop_iter``."""
        step = self.step
        self.step += 1
        active = self.method.stop_iter is None or step < self.method.stop_iter
        extra = self.unlearning_terms() if active else None
        loss = F.cross_entropy(logits_of(net(x)), y)
        return loss if extra is None else loss + extra

    def diagnostics(self) -> dict[str, float]:
        """``adversarial_iterations``, and the attacker's mean accuracy and last losses when they were computed."""
        out = {"adversarial_iterations": float(self.iterations)}
        if self.iterations and self.method.adv_weight > 0:
            out["attacker_acc"] = self.attacker_acc / self.iterations
            out["last_adv_loss"] = self.last_adv
        if self.iterations and self.method.bt_weight > 0:
            out["last_bt_loss"] = self.last_bt
        return out
