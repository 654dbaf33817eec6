"""The one training loop, used by ``ob.train``, ``retrain`` and every training-based method.

:func:`fit` runs epochs of mini-batch optimisation with any per-batch loss, a per-step learning
rate schedule (warm-up, then constant / cosine / step), batched on-device augmentation, gradient
clipping, early stopping through a callback, a progress bar, divergence detection, and the
mask-safe optimiser (:func:`protect_masks`): coordinates whose mask is False stay bit-for-bit
frozen under momentum, weight decay and Adam (the SalUn bug of weight decay moving masked
weights cannot happen here).

:func:`train` is the public entry point: a fresh copy of the model trained with cross-entropy
under a :class:`TrainConfig` recipe, returned as a :class:`TrainResult` that remembers the
recipe, so the retrain oracle can reuse it exactly.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ._utils import Timer, eval_mode, model_device, resolve_device, seeded
from ._validation import Boolean, Config, Interval, IntSequence, Options, check_output_width, check_seed, param
from .data.base import Subset, iterate_batches
from .data.scenario import TrainingSet
from .errors import DivergenceError, IncompatibleModelError, InvalidConfigError, MissingDataError
from .models.adapter import logits_of

__all__ = [
    "TrainConfig",
    "TrainResult",
    "StepHook",
    "train",
    "fit",
    "make_optimizer",
    "protect_masks",
    "resolve_masks",
    "augment_batch",
    "predict",
    "accuracy",
    "cross_entropy_loss",
    "logit_loss",
    "lr_factor",
    "training_set_of",
    "register_recorder",
    "DIVERGENCE_NORM_RATIO",
    "MIN_REFERENCE_NORM",
    "parameter_norm",
    "check_weight_norm",
]

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

DIVERGENCE_NORM_RATIO = 1e3
"""The weights have diverged once their global L2 norm exceeds this many times the starting norm.

Training and unlearning move weights by a small fraction of their norm; a thousand-fold growth
only happens when the learning rate is far too large (the model is then at chance accuracy)."""

MIN_REFERENCE_NORM = 1.0
"""The starting norm the ratio is taken against is at least this, so that a model starting at (or
near) zero weights may grow to a norm of ``DIVERGENCE_NORM_RATIO * MIN_REFERENCE_NORM``."""


def parameter_norm(params: Iterable[torch.Tensor]) -> float:
    """The global L2 norm of ``params`` (accumulated in float64, so huge weights do not overflow);
    ``inf`` or ``nan`` when a value is not finite, 0 for no parameters.
    """
    tensors = [p.detach() for p in params]
    if not tensors:
        return 0.0
    wide = tensors[0].device.type != "mps"  # MPS has no float64
    norms = torch._foreach_norm(tensors, 2, dtype=torch.float64 if wide else torch.float32)
    return float(torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms])))


def check_weight_norm(
    norm: float, start: float, where: str, fix: str = "lower the learning rate or enable gradient clipping"
) -> None:
    """Raise :class:`~obliviate.errors.DivergenceError` when the weights' global norm ``norm`` is not
    finite or exceeds :data:`DIVERGENCE_NORM_RATIO` times ``max(start, MIN_REFERENCE_NORM)``.

    Args:
        norm: The current global norm (:func:`parameter_norm`).
        start: The norm before training.
        where: Where it happened, for the message (e.g. "in epoch 2 (finetune)").
        fix: What to do about it, for the message.
    """
    if not math.isfinite(norm):
        raise DivergenceError(f"The weights became non-finite (NaN or inf) {where}; {fix}.")
    reference = max(start, MIN_REFERENCE_NORM)
    if norm > DIVERGENCE_NORM_RATIO * reference:
        raise DivergenceError(
            f"The weights' norm grew {norm / reference:.3g} times (from {start:.3g} to {norm:.3g}; the limit is "
            f"{DIVERGENCE_NORM_RATIO:g} times) {where}; {fix}."
        )


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Config):
    """A training recipe. The defaults are Unlearn-Sparse's CIFAR pre-training recipe.

    Args:
        epochs: Passes over the data. Default 182.
        lr: Peak learning rate. Default 0.1.
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum (ignored by Adam). Default 0.9.
        weight_decay: L2 penalty (decoupled for AdamW). Default 5e-4.
        batch_size: Mini-batch size. Default 256.
        schedule: Learning-rate schedule after warm-up: "constant", "cosine" (to 0 at the last
            step) or "step" (multiply by ``gamma`` at each milestone). Default "step".
        milestones: Epochs of the step schedule; None means 50 % and 75 % of ``epochs``
            (91 and 136 for 182 epochs). Default None.
        gamma: Step-schedule factor. Default 0.1.
        warmup_epochs: Linear warm-up from ``lr/steps`` to ``lr`` over this many epochs, per
            step (never above ``lr``, unlike the SSD code's warm-up). Default 0.
        augment: Batched augmentation: "crop_flip" (random 4-pixel-padded crop + horizontal
            flip, the CIFAR recipe), "crop", "flip", or None. Default None.
        label_smoothing: Cross-entropy label smoothing. Default 0.
        grad_clip: Clip the global gradient norm to this value; None disables. Default None.
        nesterov: Nesterov momentum for SGD. Default False.
        std_reg: Weight λ_SD of Thudi et al.'s standard-deviation loss (arXiv:2109.13398): the
            loss becomes ``CE + std_reg * mean_b(std(z_b)) / C``, the batch mean of each
            sample's unbiased logit standard deviation divided by the number of classes C
            (the unrolling-SGD code's normalisation). It limits weight drift and so the
            unlearning error. Default 0 (plain cross-entropy).
    """

    epochs: int = param(182, Interval(int, 1))
    lr: float = param(0.1, Interval(float, 0.0, closed="neither"))
    optimizer: str = param("sgd", Options("sgd", "adam", "adamw"))
    momentum: float = param(0.9, Interval(float, 0.0, 1.0, closed="left"))
    weight_decay: float = param(5e-4, Interval(float, 0.0))
    batch_size: int = param(256, Interval(int, 1))
    schedule: str = param("step", Options("constant", "cosine", "step"))
    milestones: tuple[int, ...] | None = param(None, IntSequence(allow_none=True))
    gamma: float = param(0.1, Interval(float, 0.0, 1.0, closed="right"))
    warmup_epochs: int = param(0, Interval(int, 0))
    augment: str | None = param(None, Options("crop_flip", "crop", "flip", allow_none=True))
    label_smoothing: float = param(0.0, Interval(float, 0.0, 1.0, closed="left"))
    grad_clip: float | None = param(None, Interval(float, 0.0, closed="neither", allow_none=True))
    nesterov: bool = param(False, Boolean())
    std_reg: float = param(0.0, Interval(float, 0.0))

    def _check(self) -> None:
        if self.warmup_epochs >= self.epochs:
            raise InvalidConfigError(
                f"The 'warmup_epochs' parameter of {type(self).__name__} must be smaller than epochs={self.epochs}; "
                f"got {self.warmup_epochs}."
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise InvalidConfigError(
                f"The 'nesterov' parameter of {type(self).__name__} needs optimizer='sgd' with momentum > 0."
            )

    def resolved_milestones(self) -> tuple[int, ...]:
        """The step-schedule milestones in epochs."""
        if self.milestones is not None:
            return self.milestones
        return (int(0.5 * self.epochs), int(0.75 * self.epochs))


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: The trained model (a copy; the input model is untouched), in eval mode.
        config: The recipe, every field resolved.
        seconds: Wall time of the training loop.
        history: One dict per epoch: ``epoch``, ``loss`` (mean), ``lr`` (at the epoch's end).
        seed: Seed used for initial shuffling and augmentation.
        recording: With ``train(..., record=True)``: the :class:`~obliviate.recording.Recording`
            of the run (initial weights, batch order, learning rates, optional updates), which
            the ``sgu`` and ``amnesiac`` methods and the unrolling metrics need; else None.
        masks: The pruning masks the run kept (``train(..., masks=...)``), to pass on to
            ``ob.unlearn(..., masks=...)``; None for a dense run.
        training_set: The train-split rows the model saw (a :class:`~obliviate.data.TrainingSet`)
            when ``data`` was a view of a dataset's train split (``scenario.train``); None for
            other data. ``ob.unlearn`` and ``ob.evaluate`` check scenarios against it.
    """

    model: nn.Module
    config: TrainConfig
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    seed: int = 0
    recording: Any = None
    masks: dict[str, torch.Tensor] | None = None
    training_set: TrainingSet | None = None


def training_set_of(data: Dataset) -> TrainingSet | None:
    """The :class:`~obliviate.data.TrainingSet` of ``data`` when it is a view of a named dataset's
    train split (``scenario.train``, ``scenario.retain``, ...), else None.
    """
    name = getattr(data, "train_split_of", None)
    if isinstance(data, Subset) and name is not None:
        return TrainingSet.of(name, data.indices)
    return None


def logit_loss(label_smoothing: float = 0.0, std_reg: float = 0.0, reduction: str = "mean") -> Callable[..., torch.Tensor]:
    """The training loss of :class:`TrainConfig` as a function of logits: ``loss(logits, y)``.

    Cross-entropy with label smoothing plus ``std_reg`` times the standard-deviation penalty
    (each sample's unbiased logit std divided by the number of classes). ``reduction="none"``
    gives the per-sample terms, whose mean is the batch loss (up to rounding).
    """
    if reduction not in ("mean", "none"):
        raise InvalidConfigError(f"The 'reduction' argument of logit_loss must be 'mean' or 'none'; got {reduction!r}.")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if reduction == "none":
            per = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction="none")
            return per + std_reg * logits.std(dim=1) / logits.shape[1] if std_reg > 0 else per
        value = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if std_reg > 0:
            value = value + std_reg * logits.std(dim=1).mean() / logits.shape[1]
        return value

    return loss


def cross_entropy_loss(label_smoothing: float = 0.0, std_reg: float = 0.0) -> LossFn:
    """The standard classification loss ``CE(model(x), y)``, plus ``std_reg`` times the
    standard-deviation penalty of :class:`TrainConfig` when it is positive: :func:`logit_loss`
    of the model's logits.
    """
    on_logits = logit_loss(label_smoothing, std_reg)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return on_logits(logits_of(model(x)), y)

    return loss


# --------------------------------------------------------------------------- masks
def resolve_masks(model: nn.Module, masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Check a ``{parameter name: bool tensor}`` mask dict against ``model``.

    True marks a trainable coordinate, False a frozen (e.g. pruned) one.

    Raises:
        IncompatibleModelError: a name is not a parameter of the model or a shape differs.
        InvalidConfigError: the masks are not a mapping of boolean tensors.
    """
    if masks is None:
        return {}
    if not isinstance(masks, Mapping):
        raise InvalidConfigError(
            f"The 'masks' argument must be a dict of parameter name -> bool tensor; got {type(masks).__name__}."
        )
    params = dict(model.named_parameters())
    out = {}
    for name, mask in masks.items():
        if name not in params:
            raise IncompatibleModelError(f"Mask for {name!r}, which is not a parameter of {type(model).__name__}.")
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise InvalidConfigError(
                f"The mask for {name!r} must be a torch.bool tensor; got {getattr(mask, 'dtype', type(mask).__name__)}."
            )
        if mask.shape != params[name].shape:
            raise IncompatibleModelError(
                f"The mask for {name!r} has shape {tuple(mask.shape)}, the parameter {tuple(params[name].shape)}."
            )
        out[name] = mask.to(params[name].device)
    return out


def protect_masks(optimizer: torch.optim.Optimizer, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Make ``optimizer`` keep every masked-out coordinate exactly where it is now.

    Before each step the masked gradient entries are zeroed; after it, frozen coordinates are
    restored to their saved values and the optimiser's per-coordinate state (momentum buffers,
    Adam moments) is zeroed there. This holds for any optimiser, whatever its weight decay.
    """
    if not masks:
        return
    params = dict(model.named_parameters())
    guarded = [(params[n], m, params[n].detach().clone()) for n, m in masks.items() if not bool(m.all())]
    if not guarded:
        return

    def before(_opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        for p, m, _ in guarded:
            if p.grad is not None:
                p.grad.mul_(m)

    def after(opt: torch.optim.Optimizer, _args: Any, _kwargs: Any) -> None:
        with torch.no_grad():
            for p, m, frozen in guarded:
                p.copy_(torch.where(m, p, frozen))
                for value in opt.state.get(p, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape:
                        value.mul_(m)

    optimizer.register_step_pre_hook(before)
    optimizer.register_step_post_hook(after)


def make_optimizer(
    model: nn.Module,
    *,
    optimizer: str = "sgd",
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    masks: Mapping[str, torch.Tensor] | None = None,
    params: Iterable[nn.Parameter] | None = None,
) -> torch.optim.Optimizer:
    """Build a (mask-safe) optimiser over the model's trainable parameters.

    Args:
        model: The model.
        optimizer: "sgd", "adam" or "adamw".
        lr: Learning rate.
        momentum: SGD momentum.
        weight_decay: Weight decay.
        nesterov: Nesterov momentum (SGD).
        masks: Resolved masks (see :func:`resolve_masks`); frozen coordinates never move.
        params: Restrict to these parameters (default: all with ``requires_grad``).
    """
    chosen = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not chosen:
        raise IncompatibleModelError(f"{type(model).__name__} has no trainable parameters.")
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            chosen, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam(chosen, lr=lr, weight_decay=weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(chosen, lr=lr, weight_decay=weight_decay)
    else:
        raise InvalidConfigError(f"The 'optimizer' parameter must be one of 'sgd', 'adam', 'adamw'; got {optimizer!r}.")
    protect_masks(opt, model, masks or {})
    return opt


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The recipe's learning-rate multiplier as a function of the number of optimiser steps taken.

    Linear warm-up over ``warmup_epochs``, then the ``schedule`` (``cosine`` to zero at the end,
    ``step`` by ``gamma`` at the milestones, or ``constant``); ``fit`` multiplies ``lr`` by it.
    """
    total = config.epochs * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    milestones = [m * steps_per_epoch for m in config.resolved_milestones()]

    def factor(step: int) -> float:  # step = number of optimiser steps already taken
        if step < warm:
            return (step + 1) / warm
        if config.schedule == "cosine":
            t = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
        if config.schedule == "step":
            return config.gamma ** sum(step >= m for m in milestones)
        return 1.0

    return factor


_lr_factor = lr_factor  # the former name (older imports), and fit's: its argument ``lr_factor`` shadows the function


# --------------------------------------------------------------------------- augmentation
def augment_batch(x: torch.Tensor, kind: str | None, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Augment a batch of images on its device.

    Args:
        x: Images ``(B, C, H, W)`` (already normalised).
        kind: "crop_flip", "crop", "flip" or None.
        generator: CPU generator the random offsets and flips are drawn from.
        padding: Zero padding of the random crop (zero is the data mean after normalisation).
    """
    if kind is None:
        return x
    if x.dim() != 4:
        raise IncompatibleModelError(f"Augmentation {kind!r} needs image batches (B, C, H, W); got shape {tuple(x.shape)}.")
    b, _, h, w = x.shape
    if "crop" in kind:
        off = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if "flip" in kind:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
    return x


# --------------------------------------------------------------------------- the loop
class StepHook:
    """Sees every optimiser step of :func:`fit`; the base class changes nothing.

    Subclasses: the recorder behind ``train(..., record=True)`` and the replay of a recording
    (:mod:`obliviate.recording`). ``fit`` calls :meth:`start` once, :meth:`iterate` for each
    epoch's batches when ``data`` is a dataset, :meth:`before_step`/:meth:`after_step` around
    each ``optimizer.step()`` (skipped batches get neither), and :meth:`finish` at the end.
    """

    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, *, custom_loss: bool) -> None:
        """Called once before the first step."""

    def iterate(
        self, dataset: Dataset, epoch: int, batch_size: int, *, device: torch.device, generator: torch.Generator
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch; by default exactly what ``fit`` draws without a hook."""
        return iterate_batches(dataset, batch_size, device=device, shuffle=True, generator=generator)

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called after the backward pass, right before ``optimizer.step()``."""

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called right after ``optimizer.step()``."""

    def finish(self, model: nn.Module) -> None:
        """Called once after the last epoch."""


# The StepHook factory behind ``train(record=True)``. obliviate.recording sits above this module (it replays
# runs through ``fit``), so the loop never imports it: the recording module registers its Recorder when it is
# imported (``import obliviate`` imports it), and the two modules form no import cycle.
_recorder_factory: Callable[..., StepHook] | None = None


def register_recorder(factory: Callable[..., StepHook]) -> None:
    """Install the :class:`StepHook` factory that ``train(record=True)`` uses.

    :mod:`obliviate.recording` registers its :class:`~obliviate.recording.Recorder`; the
    factory is called as ``factory(seed=..., updates=..., augment_fn=..., record=...)``.
    """
    global _recorder_factory
    if not callable(factory):
        raise InvalidConfigError(f"register_recorder needs a callable; got {type(factory).__name__}.")
    _recorder_factory = factory


def _progress_bar(enabled: bool | None, total: int, desc: str) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        transient=True,
    )
    bar.start()
    bar.add_task(desc, total=total, info="")
    return bar


def fit(
    model: nn.Module,
    data: Dataset | Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    *,
    config: TrainConfig,
    loss_fn: LossFn | None = None,
    generator: torch.Generator,
    device: torch.device,
    masks: Mapping[str, torch.Tensor] | None = None,
    params: Iterable[nn.Parameter] | None = None,
    steps_per_epoch: int | None = None,
    epoch_end: Callable[[int, nn.Module], bool] | None = None,
    progress: bool | None = None,
    desc: str = "train",
    counter: dict[str, int] | None = None,
    augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    lr_factor: Callable[[int], float] | None = None,
    step_hook: StepHook | None = None,
) -> list[dict[str, float]]:
    """Optimise ``model`` in place for ``config.epochs`` epochs.

    Args:
        model: The model, already on ``device``; it is put in training mode.
        data: A dataset (shuffled each epoch from ``generator``) or a function
            ``epoch -> iterable of (x, y) batches`` for methods that build their own batches.
        config: Optimiser, schedule and augmentation settings.
        loss_fn: ``loss_fn(model, x, y) -> scalar``; default cross-entropy.
        generator: CPU generator for shuffling and augmentation.
        device: Device of the model and batches.
        masks: Resolved masks; frozen coordinates never move.
        params: Optimise only these parameters.
        steps_per_epoch: Needed for the schedule when ``data`` is a function.
        epoch_end: Called after each epoch as ``epoch_end(epoch, model)``; returning True stops.
        progress: Show a progress bar (None: only on a terminal).
        desc: Progress-bar label.
        counter: If given, ``counter["samples"]`` is increased by every sample back-propagated.
        augment_fn: A user augmentation hook ``augment_fn(x, generator) -> x`` applied to each
            batch on its device after ``config.augment``; draw randomness from ``generator``
            to stay reproducible.
        lr_factor: Extra learning-rate factor per optimiser step, ``lr_factor(step)`` with
            ``step`` the number of steps already taken; it multiplies the recipe's schedule
            (e.g. the adversarial method's switch to ``stop_lr`` after ``stop_iter`` steps,
            keeping the optimiser's momentum).
        step_hook: A :class:`StepHook` that sees every optimiser step (the recorder of
            ``train(..., record=True)``, the replay of a recording); None changes nothing.

    Returns:
        One dict per epoch run: ``epoch``, ``loss``, ``lr``.

    Raises:
        DivergenceError: the loss became NaN or infinite, or after a step the weights did
            (:func:`check_weight_norm`): not finite, or their global norm above
            :data:`DIVERGENCE_NORM_RATIO` times the starting one (checked after every step, all
            of the model's parameters, the frozen ones included).
    """
    custom_loss = loss_fn is not None
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing, config.std_reg)
    if callable(data) and not isinstance(data, Dataset):
        if steps_per_epoch is None:
            raise InvalidConfigError("fit() needs steps_per_epoch when data is a batch function.")
        batches = data
        n_steps = steps_per_epoch
    else:
        if len(data) == 0:  # type: ignore[arg-type]
            raise MissingDataError("fit() got an empty dataset.")
        dataset = data
        n_steps = math.ceil(len(dataset) / config.batch_size)  # type: ignore[arg-type]

        def batches(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            if step_hook is not None:
                return step_hook.iterate(dataset, epoch, config.batch_size, device=device, generator=generator)
            return iterate_batches(dataset, config.batch_size, device=device, shuffle=True, generator=generator)

    opt = make_optimizer(
        model,
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        masks=masks,
        params=params,
    )
    recipe_factor = _lr_factor(config, max(1, n_steps))

    def schedule(step: int) -> float:
        return recipe_factor(step) * (1.0 if lr_factor is None else lr_factor(step))

    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    history: list[dict[str, float]] = []
    weights = list(model.parameters())
    start_norm = parameter_norm(weights)
    if not math.isfinite(start_norm):
        raise IncompatibleModelError(
            f"The model's weights hold NaN or inf values before training ({desc}); load a checkpoint with finite weights."
        )
    bar = _progress_bar(progress, config.epochs, desc)
    model.train()
    if step_hook is not None:
        step_hook.start(model, opt, config, custom_loss=custom_loss)
    try:
        for epoch in range(config.epochs):
            total, count = 0.0, 0
            for x, y in batches(epoch):
                if has_bn and x.shape[0] == 1 and config.batch_size > 1:
                    continue  # a ragged last batch of one sample breaks BatchNorm statistics
                x = augment_batch(x, config.augment, generator)
                if augment_fn is not None:
                    x = augment_fn(x, generator)
                loss = loss_fn(model, x, y)
                if not torch.isfinite(loss):
                    raise DivergenceError(
                        f"The loss became {loss.item()} in epoch {epoch + 1} ({desc}); lower the learning rate "
                        "or enable gradient clipping (grad_clip)."
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                if step_hook is not None:
                    step_hook.before_step(model, opt)
                opt.step()
                if step_hook is not None:
                    step_hook.after_step(model, opt)
                scheduler.step()
                check_weight_norm(parameter_norm(weights), start_norm, f"in epoch {epoch + 1} ({desc})")
                total += float(loss.detach()) * x.shape[0]
                count += x.shape[0]
            if counter is not None:
                counter["samples"] = counter.get("samples", 0) + count
            record = {"epoch": epoch + 1, "loss": total / max(count, 1), "lr": opt.param_groups[0]["lr"]}
            history.append(record)
            if bar is not None:
                bar.update(bar.task_ids[0], advance=1, info=f"loss {record['loss']:.4f}")
            if epoch_end is not None and epoch_end(epoch, model):
                break
    finally:
        if bar is not None:
            bar.stop()
    if step_hook is not None:
        step_hook.finish(model)
    return history


def train(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    masks: Mapping[str, torch.Tensor] | None = None,
    progress: bool | None = None,
    augment_fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    record: bool | StepHook = False,
    record_updates: bool | Iterable[int] = False,
    **overrides: Any,
) -> TrainResult:
    """Train a copy of ``model`` on ``data`` with cross-entropy.

    Args:
        model: Any classifier; it is copied, never changed.
        data: Training data, e.g. ``scenario.train``.
        config: A recipe; keyword ``overrides`` replace its fields (or the defaults).
        seed: Seed of shuffling, augmentation and any dropout. Same seed on CPU gives
            bit-identical weights.
        device: "auto", "cpu", "cuda" ...
        masks: ``{parameter name: bool tensor}``; False coordinates stay frozen.
        progress: Show a progress bar (None: only on a terminal).
        augment_fn: Augmentation hook ``augment_fn(x, generator) -> x`` applied to every batch
            after ``augment`` (not part of the recorded recipe: pass it again to reproduce).
        record: Keep a :class:`~obliviate.recording.Recording` of the run on
            ``result.recording``: initial and final weights, the batch order (one int32
            permutation per epoch), every step's learning rate. The trained weights are the
            same as without recording (bit for bit for in-memory datasets). Needed by
            ``sgu``, ``amnesiac``, the naive retrain and the unrolling metrics. A
            :class:`~obliviate.recording.Recorder` may be given instead of True (e.g. to
            measure the Hessian along the run).
        record_updates: Also keep each step's parameter update (needed by ``amnesiac``):
            True for every step, or sample indices (the numbering of ``scenario`` indices,
            e.g. ``scenario.forget_idx``) to keep only the steps whose batch holds one of them.
            Costs 4 bytes per trainable parameter per kept step
            (``result.recording.nbytes()`` reports it). Needs ``record=True``.
        **overrides: Fields of :class:`TrainConfig` (``epochs``, ``lr``, ...).

    Returns:
        A :class:`TrainResult` with the trained copy (in eval mode) and the resolved recipe.

    Example:
        >>> import obliviate as ob
        >>> ds = ob.load_dataset("digits")
        >>> sc = ob.Scenario.random(ds, fraction=0.1, seed=0)
        >>> model = ob.build_model("mlp", ds, seed=0)
        >>> result = ob.train(model, sc.train, epochs=2, lr=0.05, batch_size=64, seed=0, progress=False)
        >>> result.config.epochs, len(result.history)
        (2, 2)
    """
    if not isinstance(model, nn.Module):
        raise InvalidConfigError(f"The 'model' argument of train must be a torch.nn.Module; got {type(model).__name__}.")
    if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise InvalidConfigError(
            f"The 'data' argument of train must be a map-style torch Dataset (e.g. scenario.train); got {type(data).__name__}."
        )
    if augment_fn is not None and not callable(augment_fn):
        raise InvalidConfigError(f"The 'augment_fn' argument of train must be callable; got {type(augment_fn).__name__}.")
    if config is not None and not isinstance(config, TrainConfig):
        raise InvalidConfigError(f"The 'config' argument of train must be a TrainConfig; got {type(config).__name__}.")
    base = config.to_dict() if config is not None else {}
    recipe = TrainConfig.from_dict({**base, **overrides})
    seed = check_seed("train", seed)
    check_output_width("train", model, data)
    dev = resolve_device(device)
    net = copy.deepcopy(model).to(dev)
    resolved = resolve_masks(net, masks)
    generator = torch.Generator().manual_seed(seed)
    recorder: Any = None
    if isinstance(record, StepHook):
        if record_updates is not False:
            raise InvalidConfigError("Pass record_updates to the Recorder itself when 'record' is a Recorder.")
        recorder = record
        if hasattr(recorder, "seed"):
            recorder.seed = seed  # the recording stores the run's seed
        if augment_fn is not None and hasattr(recorder, "augment_fn"):
            recorder.augment_fn = True
    elif record or record_updates is not False:
        if _recorder_factory is None:  # pragma: no cover - obliviate/__init__ imports obliviate.recording
            raise InvalidConfigError("train(record=True) needs obliviate.recording: import it (import obliviate does).")
        recorder = _recorder_factory(seed=seed, updates=record_updates, augment_fn=augment_fn is not None, record=bool(record))
    with seeded(seed, dev), Timer(dev) as timer:
        history = fit(
            net,
            data,
            config=recipe,
            generator=generator,
            device=dev,
            masks=resolved,
            progress=progress,
            augment_fn=augment_fn,
            step_hook=recorder,
        )
    net.eval()
    recording = getattr(recorder, "recording", None)
    return TrainResult(
        model=net,
        config=recipe,
        seconds=timer.seconds,
        history=history,
        seed=seed,
        recording=recording,
        masks=None if masks is None else dict(masks),
        training_set=training_set_of(data),
    )


# --------------------------------------------------------------------------- inference
@torch.no_grad()
def predict(
    model: nn.Module, data: Dataset, *, batch_size: int = 512, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every sample of ``data``, in order, with the model in eval mode.

    Every submodule's train/eval mode is restored afterwards. Returns CPU tensors.
    """
    if device is None:
        device = model_device(model)
    outs, labels = [], []
    with eval_mode(model):
        for x, y in iterate_batches(data, batch_size, device=device):
            outs.append(logits_of(model(x)).float().cpu())
            labels.append(y.cpu())
    if not outs:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    return torch.cat(outs), torch.cat(labels)


def accuracy(model: nn.Module, data: Dataset, *, batch_size: int = 512, device: torch.device | None = None) -> float:
    """Fraction of ``data`` the model classifies correctly (NaN for an empty set)."""
    logits, y = predict(model, data, batch_size=batch_size, device=device)
    if len(y) == 0:
        return float("nan")
    return int((logits.argmax(1) == y).sum()) / len(y)
