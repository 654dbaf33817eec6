"""CF-k and EU-k: forget by training only the last k layers on the retain set (Goel et al.).

Both methods freeze everything but the last ``k`` layers of the model and train those on D_r
with the one training loop; EU-k first re-initialises them. :func:`last_layers` says which
modules "the last k layers" are for any ``nn.Module``, so a user can check it before a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._utils import seeded
from .._validation import Config, Interval, IntRange, Log, Options, param
from ..data.scenario import Scenario
from ..errors import IncompatibleModelError, InvalidConfigError
from ..training import TrainConfig, cross_entropy_loss
from .base import FineTuneRecipe, FromRecipe, RunContext, UnlearningMethod, register_method

__all__ = ["CatastrophicForgettingK", "ExactUnlearningK", "NORM_LAYERS", "layers_of", "last_layers"]

NORM_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
"""Normalisation layers (BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm): not counted in ``k``."""


def layers_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers: every module that owns parameters itself, in registration order.

    Registration order (``model.named_modules()``) is the forward order of the zoo's models and of
    torchvision's (a ResNet block's ``downsample`` comes after its second convolution, as in its
    forward pass); a model that registers its head before its body would need its own ordering.
    """
    return [(name, m) for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None]


def last_layers(model: nn.Module, k: int) -> list[tuple[str, nn.Module]]:
    """The last ``k`` layers of ``model`` as ``(name, module)`` pairs, in registration order.

    ``k`` counts weight layers (every parameter-owning module that is not in :data:`NORM_LAYERS`:
    convolutions, linear layers, embeddings, attention ...); the normalisation layers that come
    after the k-th last weight layer belong to it and are included. For the demo's CNN
    (conv, BN, conv, BN, head) ``k=1`` is the head, ``k=2`` the second conv, its BatchNorm and
    the head. This is the authors' rule (their ``getRetrainLayers`` counts Conv2d and Linear
    layers from the end and also trains the BatchNorm layers met on the way).

    Raises:
        InvalidConfigError: ``k`` is not a positive int, or exceeds the number of weight layers
            (the message gives the count and their names).
    """
    k = Interval(int, 1).coerce("last_layers", "k", k)
    layers = layers_of(model)
    weights = [i for i, (_, m) in enumerate(layers) if not isinstance(m, NORM_LAYERS)]
    if k > len(weights):
        names = ", ".join(layers[i][0] or "(the model itself)" for i in weights)
        raise InvalidConfigError(
            f"The 'k' parameter asks for the last {k} layers, but {type(model).__name__} has {len(weights)} weight "
            f"layers ({names or 'none'}); choose k <= {len(weights)}."
        )
    return layers[weights[-k] :]


@dataclass(frozen=True, kw_only=True)
class _LastK(Config):
    """The field shared by CF-k and EU-k (documented in each method's ``Args:``)."""

    k: int = param(2, Interval(int, 1), search=IntRange(1, 3))


def _recipe_rules(epochs: FromRecipe) -> dict[str, FromRecipe]:
    """The ``from_recipe`` of CF-k / EU-k: the authors train the last layers with the original recipe."""
    source = "the authors train the last k layers with the original training's optimiser settings"
    same = {"same_optimizer": True, "source": source}
    return {
        "epochs": epochs,
        "lr": FromRecipe("lr", **same),
        "momentum": FromRecipe("momentum", **same),
        "weight_decay": FromRecipe("weight_decay", **same),
        "batch_size": FromRecipe("batch_size", source=source),
    }


def _train_last_layers(
    method: UnlearningMethod, model: nn.Module, scenario: Scenario, ctx: RunContext, *, reinit: bool, desc: str
) -> nn.Module:
    """Train the last ``method.k`` layers of ``model`` on D_r, everything else frozen (re-initialised first with ``reinit``).

    The frozen parameters get ``requires_grad=False`` for the run (no backward pass through the
    frozen part; the flags are put back afterwards), and the frozen normalisation layers with
    running statistics are kept in eval mode at every step, so their statistics do not move and
    they normalise with them. Dropout and every other module keep the training mode ``fit`` sets.
    """
    chosen = last_layers(model, method.k)  # type: ignore[attr-defined]
    chosen_ids = {id(m) for _, m in chosen}
    trained = [p for _, m in chosen for p in m.parameters(recurse=False)]
    trained_ids = {id(p) for p in trained}
    frozen = [p for p in model.parameters() if id(p) not in trained_ids]
    frozen_norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and id(m) not in chosen_ids
    ]
    if reinit:
        with seeded(ctx.seed, ctx.device):
            for name, m in chosen:
                reset = getattr(m, "reset_parameters", None)
                if not callable(reset):
                    raise IncompatibleModelError(
                        f"eu_k cannot re-initialise layer {name!r} ({type(m).__name__}): it has no reset_parameters(); "
                        "choose a smaller k or add the method to the module."
                    )
                reset()
        ctx.restore_frozen(model)  # masked-out coordinates keep their values (zero, for pruning masks)
    recipe: TrainConfig = method.recipe()
    loss_fn = None
    if frozen_norms:
        plain = cross_entropy_loss(recipe.label_smoothing, recipe.std_reg)

        def loss_fn(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            for m in frozen_norms:  # fit() put the whole model in training mode
                m.train(False)
            return plain(net, x, y)

    flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        ctx.fit(model, scenario.retain, recipe, loss_fn=loss_fn, params=trained, desc=desc)
    finally:
        for p, flag in zip(frozen, flags, strict=True):
            p.requires_grad_(flag)
    total = sum(p.numel() for p in model.parameters())
    ctx.diagnostics["layers_trained"] = float(len(chosen))
    ctx.diagnostics["params_trained_fraction"] = sum(p.numel() for p in trained) / max(1, total)
    return model


_DIGITS_SHARED = {"k": 2, "batch_size": 64, "schedule": "cosine", "weight_decay": 5e-4}


@register_method("cf_k")
@dataclass(frozen=True, kw_only=True)
class CatastrophicForgettingK(UnlearningMethod, FineTuneRecipe, _LastK):
    """CF-k: fine-tune only the last k layers on the retain set (catastrophic forgetting of the last k layers).

    Goel, Prabhu, Sanyal, Lim, Torr & Kumaraguru, "Towards Adversarial Evaluations for Inexact
    Machine Unlearning" (arXiv:2201.06640; first titled "Evaluating Inexact Unlearning Requires
    Revisiting Forgetting"). The paper's baseline minimises the cross-entropy on D_r over the
    parameters θ_{L-k+1..L} of the last k layers, the others fixed at their trained values:
    forgetting comes only from the drift of those layers while D_f is never read. Which modules
    are "the last k layers" for any ``nn.Module``: :func:`last_layers` (k counts weight layers;
    the normalisation layers after the k-th last one are trained too).

    Everything outside those layers is bit-identical afterwards, BatchNorm running statistics
    included: frozen BatchNorm layers stay in eval mode while the last layers train.

    Scenario kinds: all. The paper's test forgets mislabelled samples between two classes
    (interclass confusion: a ``corrupted`` label-flip scenario here); nothing in the method
    depends on how D_f was chosen, since it never reads D_f.

    Data needs: retain. Cost: ``epochs`` passes over D_r, each a full forward pass and a backward
    pass through the last k layers only.

    Args:
        k: Number of last weight layers trained. Default 2 (the head and the layer before it, a
            k every classifier of two weight layers or more has). The authors' scripts use
            k = 1 to 10 on ResNet-20 and k = 10 and 50 on ResNet-110 (the paper's text was not
            reachable to check it); their k = 10 would exceed small models' depth. Larger than
            the model's number of weight layers is an error naming that number.
        epochs: Epochs over D_r. Default 30 (the authors' fine-tuning runs: 30 epochs against
            62 of training); with a known recipe, 30/62 of its epochs.
        lr: Peak learning rate. Default 0.1 (the authors' training lr); with a known recipe of
            the same optimiser, its lr.
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9; with a known SGD recipe, its momentum.
        weight_decay: Weight decay. Default 5e-5 (the authors' recipe); with a known recipe of
            the same optimiser, its weight decay.
        batch_size: Batch size. Default 64 (the authors'); with a known recipe, its batch size.
        schedule: "constant" or "cosine" (to 0). Default "cosine".

    Presets:
        digits: k = 2 (the second convolution, its BatchNorm and the head of the demo's CNN),
            5 epochs at SGD lr 0.5 (cosine), batch 64, weight decay 5e-4. Fine-tuning the last
            layers at the demo's training lr (0.05) leaves a forgotten class recognised: on
            D_r alone the forgotten class's logit gets almost no gradient (its softmax
            probability is already near zero there), so only a step ten times larger moves
            the layers far enough from their fit of D_f. Results:
            ``benchmarks/results/recent_methods.json``.

    Differences from the authors' code (``shash42/Evaluating-Inexact-Unlearning``,
    ``src/methods.py``): they keep the whole model in training mode, so the running statistics
    of the frozen BatchNorm layers drift on D_r; here they do not move. They count only
    ``nn.Conv2d``/``nn.Linear`` layers and train only ``nn.BatchNorm2d`` besides; here any
    parameter-owning module is a layer and every normalisation type is handled. Their schedule is
    SGDR (cosine with warm restarts, T_0 = 1 epoch, T_mult = 2, down to lr 0.005) with gradient
    clipping at 10; here a single cosine (or constant) schedule without clipping.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = _recipe_rules(
        FromRecipe("epochs", reference=62, source="the authors fine-tune 30 epochs after 62 of training")
    )
    presets: ClassVar[dict] = {"digits": {**_DIGITS_SHARED, "epochs": 5, "lr": 0.5}}

    epochs: int = param(30, Interval(int, 1), search=IntRange(1, 30, log=True))
    lr: float = param(0.1, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.3))
    weight_decay: float = param(5e-5, Interval(float, 0.0))
    batch_size: int = param(64, Interval(int, 1))
    schedule: str = param("cosine", Options("constant", "cosine"))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        return _train_last_layers(self, model, scenario, ctx, reinit=False, desc="cf_k")


@register_method("eu_k")
@dataclass(frozen=True, kw_only=True)
class ExactUnlearningK(UnlearningMethod, FineTuneRecipe, _LastK):
    """EU-k: re-initialise the last k layers and train them from scratch on the retain set.

    Goel, Prabhu, Sanyal, Lim, Torr & Kumaraguru, "Towards Adversarial Evaluations for Inexact
    Machine Unlearning" (arXiv:2201.06640). The last k layers (:func:`last_layers`: k counts
    weight layers, the normalisation layers after the k-th last one come with it) are reset with
    their ``reset_parameters()`` (BatchNorm's resets its running statistics too), in registration
    order under the global torch seed ``seed`` (for one layer exactly
    ``obliviate.models.zoo.reinitialize(layer, seed)``), and trained on D_r with cross-entropy,
    everything else frozen: bit-identical afterwards, frozen BatchNorm statistics included (those
    layers stay in eval mode).

    What it is exact for: the result depends on D_f only through the frozen part. When that part
    never saw D_f (a feature extractor trained on other data, or on D_r alone, and a head trained
    on D_f ∪ D_r), EU-k *is* retraining the last k layers from scratch on D_r with those features:
    on the CPU it is bit-identical to ``ob.train`` of the model with the last k layers reset as
    above and the rest frozen, on ``scenario.retain``, with this recipe and ``seed`` (tested
    against such an independent ``ob.train``). When the frozen part was trained on D_f too (the
    usual case: the whole model trained on D_f ∪ D_r), its features still carry D_f and EU-k is
    approximate; the class attribute ``exact`` is therefore False (it is not full retraining).

    Scenario kinds: all. The paper's test forgets mislabelled samples between two classes
    (interclass confusion: a ``corrupted`` label-flip scenario here); nothing in the method
    depends on how D_f was chosen, since it never reads D_f.

    Data needs: retain. Cost: ``epochs`` passes over D_r, each a full forward pass and a backward
    pass through the last k layers only.

    Args:
        k: Number of last weight layers re-initialised and trained. Default 2 (the head and the
            layer before it, a k every classifier of two weight layers or more has). The authors'
            scripts use k = 1 to 10 on ResNet-20 and k = 10 and 50 on ResNet-110 (the paper's text
            was not reachable to check it); their k = 10 would exceed small models' depth. Larger
            than the model's number of weight layers is an error naming that number.
        epochs: Epochs over D_r. Default 62 (the authors retrain for as many epochs as the
            original training, 62); with a known recipe, its epochs.
        lr: Peak learning rate. Default 0.1 (the authors' training lr); with a known recipe of
            the same optimiser, its lr.
        optimizer: "sgd", "adam" or "adamw". Default "sgd".
        momentum: SGD momentum. Default 0.9; with a known SGD recipe, its momentum.
        weight_decay: Weight decay. Default 5e-5 (the authors' recipe); with a known recipe of
            the same optimiser, its weight decay.
        batch_size: Batch size. Default 64 (the authors'); with a known recipe, its batch size.
        schedule: "constant" or "cosine" (to 0). Default "cosine".

    Presets:
        digits: k = 2 (the second convolution, its BatchNorm and the head of the demo's CNN),
            15 epochs at SGD lr 0.05 (cosine), batch 64, weight decay 5e-4: half the demo's
            training epochs at its lr (the first conv block stays as trained). Results:
            ``benchmarks/results/recent_methods.json``.

    Differences from the authors' code (``shash42/Evaluating-Inexact-Unlearning``,
    ``src/methods.py``, ``retrain_lastK``): they re-initialise only the Conv2d/Linear layers
    (Kaiming normal, zero bias) and keep the trained BatchNorm parameters and statistics of the
    last k layers; here every layer among them is reset with its own ``reset_parameters()``, as
    ``retrain`` does. They keep the whole model in training mode (the frozen BatchNorm statistics
    drift on D_r); here the frozen part does not move. Their schedule is SGDR (cosine with warm
    restarts, T_0 = 1 epoch, T_mult = 2, down to lr 0.005) with gradient clipping at 10; here a
    single cosine (or constant) schedule without clipping.
    """

    requires: ClassVar[frozenset[str]] = frozenset({"retain"})
    from_recipe: ClassVar[dict[str, FromRecipe]] = _recipe_rules(
        FromRecipe("epochs", source="the authors retrain the last k layers for the original training's epochs")
    )
    presets: ClassVar[dict] = {"digits": {**_DIGITS_SHARED, "epochs": 15, "lr": 0.05}}

    epochs: int = param(62, Interval(int, 1), search=IntRange(1, 62, log=True))
    lr: float = param(0.1, Interval(float, 0.0, closed="neither"), search=Log(1e-3, 0.3))
    weight_decay: float = param(5e-5, Interval(float, 0.0))
    batch_size: int = param(64, Interval(int, 1))
    schedule: str = param("cosine", Options("constant", "cosine"))

    def _unlearn(self, model: nn.Module, scenario: Scenario, ctx: RunContext) -> nn.Module:
        return _train_last_layers(self, model, scenario, ctx, reinit=True, desc="eu_k")
