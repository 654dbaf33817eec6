"""The model registry: small models for CPU work and the CIFAR architectures of the papers.

Every model built here is initialised by :func:`reinitialize` with the given seed, the same
routine ``retrain`` uses: a model rebuilt with ``seed=s`` and a retrained copy re-initialised
with ``seed=s`` start from identical weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._utils import model_device, require, seeded
from .._validation import check_interval, check_seed
from ..errors import IncompatibleModelError, InvalidConfigError
from ..registry import Registry, suggest

__all__ = ["MODELS", "build_model", "reinitialize", "MLP", "SmallCNN"]

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


class MLP(nn.Module):
    """A multi-layer perceptron over flattened inputs.

    Args:
        input_shape: Shape of one input.
        num_classes: Number of outputs.
        hidden: Widths of the hidden layers.
        dropout: Dropout probability after each hidden layer.
    """

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (128,), dropout: float = 0.0
    ) -> None:
        super().__init__()
        width = int(torch.tensor(input_shape).prod())
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class SmallCNN(nn.Module):
    """Two conv + BatchNorm + ReLU blocks, pooling, and a linear head.

    Block 1 halves the resolution with max-pooling; an adaptive average pool brings block 2's
    output to 2x2, so the same model takes 8x8 digits and 32x32 CIFAR images.

    Args:
        input_shape: ``(channels, height, width)``.
        num_classes: Number of outputs.
        width: Channels of block 1 (block 2 has twice as many).
        dropout: Dropout probability before the head.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise IncompatibleModelError(f"The 'cnn' model takes images (C, H, W); got input shape {input_shape}.")
        c = input_shape[0]
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(8 * width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.body(x)))


@MODELS.register("mlp")
def _mlp(
    input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] | list[int] = (128,), dropout: float = 0.0
) -> nn.Module:
    """Multi-layer perceptron: Flatten, (Linear, ReLU) per hidden width, Linear head."""
    hidden = tuple(check_interval("mlp", "hidden", h, kind=int, low=1) for h in hidden)
    return MLP(input_shape, num_classes, hidden, check_interval("mlp", "dropout", dropout, low=0.0, high=1.0, closed="left"))


@MODELS.register("cnn")
def _cnn(input_shape: tuple[int, ...], num_classes: int, *, width: int = 16, dropout: float = 0.0) -> nn.Module:
    """Small CNN: 2 x (conv3x3, BatchNorm, ReLU), max/avg pooling, Linear head."""
    return SmallCNN(
        input_shape,
        num_classes,
        check_interval("cnn", "width", width, kind=int, low=1),
        check_interval("cnn", "dropout", dropout, low=0.0, high=1.0, closed="left"),
    )


def _image_channels(name: str, input_shape: tuple[int, ...], min_size: int) -> int:
    if len(input_shape) != 3:
        raise IncompatibleModelError(f"The {name!r} model takes images (C, H, W); got input shape {input_shape}.")
    if min(input_shape[1:]) < min_size:
        raise IncompatibleModelError(
            f"The {name!r} model needs images of at least {min_size}x{min_size} pixels; got {input_shape[1]}x{input_shape[2]}. "
            "Use 'cnn' or 'resnet18' for small inputs."
        )
    return input_shape[0]


@MODELS.register("resnet18")
def _resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Torchvision's ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool."""
    from torchvision.models import resnet18

    c = _image_channels("resnet18", input_shape, 1)
    model = resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@MODELS.register("vgg16_bn")
def _vgg16_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Torchvision's VGG-16 with BatchNorm for 32x32 inputs: global average pool + Linear(512, C)."""
    from torchvision.models import vgg16_bn

    c = _image_channels("vgg16_bn", input_shape, 32)
    model = vgg16_bn(weights=None, num_classes=num_classes)
    if c != 3:
        model.features[0] = nn.Conv2d(c, 64, kernel_size=3, padding=1)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)
    return model


@MODELS.register("vit_tiny")
def _vit_tiny(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    patch_size: int = 4,
    embed_dim: int = 64,
    depth: int = 4,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
) -> nn.Module:
    """A small timm VisionTransformer (extra ``vit``): patch 4, width 64, depth 4, 4 heads.

    Built for the input size (32x32 CIFAR: 64 patches; 8x8 digits: 4 patches) with a class
    token and a linear head, so it trains on the CPU; widen it with ``embed_dim``/``depth``.
    """
    require("timm", "vit", "The 'vit_tiny' model")
    from timm.models.vision_transformer import VisionTransformer

    if len(input_shape) != 3:
        raise IncompatibleModelError(f"The 'vit_tiny' model takes images (C, H, W); got input shape {input_shape}.")
    c, h, w = input_shape
    patch_size = check_interval("vit_tiny", "patch_size", patch_size, kind=int, low=1)
    if h % patch_size or w % patch_size:
        raise IncompatibleModelError(f"The 'vit_tiny' model needs image sides divisible by patch_size={patch_size}; got {h}x{w}.")
    depth = check_interval("vit_tiny", "depth", depth, kind=int, low=1)
    num_heads = check_interval("vit_tiny", "num_heads", num_heads, kind=int, low=1)
    embed_dim = check_interval("vit_tiny", "embed_dim", embed_dim, kind=int, low=1)
    if embed_dim % num_heads:
        raise InvalidConfigError(f"The 'embed_dim' option of vit_tiny ({embed_dim}) must be divisible by num_heads={num_heads}.")
    return VisionTransformer(
        img_size=(h, w),
        patch_size=patch_size,
        in_chans=c,
        num_classes=num_classes,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=check_interval("vit_tiny", "mlp_ratio", mlp_ratio, low=0.0, closed="neither"),
    )


def reinitialize(model: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every parameter of ``model`` in place, deterministically from ``seed``.

    Calls ``reset_parameters()`` on every submodule that has one (BatchNorm's also resets its
    running statistics), then the model's own ``init_weights()`` if it defines one (Hugging Face
    and timm models do). Works for any :class:`~torch.nn.Module` whose parameters all belong to
    such modules.

    Raises:
        IncompatibleModelError: some parameter would keep its trained value (it belongs to a
            module without ``reset_parameters``); a "retrain" would then not be one.
    """
    covered: set[int] = set()
    with seeded(seed, model_device(model)):
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        init_weights = getattr(model, "init_weights", None)
        if callable(init_weights):
            # Hugging Face skips modules and tensors flagged as initialised: clear the flags first
            for obj in [*model.modules(), *model.parameters(), *model.buffers()]:
                if getattr(obj, "_is_hf_initialized", False):
                    obj._is_hf_initialized = False
            init_weights()
            covered.update(id(p) for p in model.parameters())
    missed = [n for n, p in model.named_parameters() if id(p) not in covered]
    if missed:
        raise IncompatibleModelError(
            f"Cannot re-initialise parameters {missed[:5]} of {type(model).__name__}: their modules have no "
            "reset_parameters() and the model has no init_weights(). Add one so retraining starts from scratch."
        )
    return model


def build_model(
    name: str,
    dataset: Any = None,
    *,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model for a dataset, initialised from ``seed``.

    Args:
        name: ``mlp``, ``cnn``, ``resnet18``, ``vgg16_bn``, ``vit_tiny`` (extra ``vit``) ...
        dataset: A :class:`~obliviate.data.DatasetSplits` or :class:`~obliviate.data.Scenario`
            giving the input shape and number of classes.
        seed: Initialisation seed.
        input_shape: Overrides (or replaces) the dataset's input shape.
        num_classes: Overrides (or replaces) the dataset's number of classes.
        **kwargs: Architecture options (``width``, ``hidden``, ``dropout`` ...).

    Returns:
        A model on the CPU, in training mode.

    Example:
        >>> from obliviate.data import load_dataset
        >>> model = build_model("cnn", load_dataset("digits"), seed=0)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    builder = MODELS.get(name)
    ds = getattr(dataset, "dataset", dataset)  # a Scenario carries its dataset
    shape = input_shape if input_shape is not None else getattr(ds, "input_shape", None)
    classes = num_classes if num_classes is not None else getattr(ds, "num_classes", None)
    if shape is None or classes is None:
        raise InvalidConfigError(
            f"build_model({name!r}) needs a dataset, or both input_shape and num_classes; got dataset={dataset!r}."
        )
    classes = check_interval("build_model", "num_classes", classes, kind=int, low=2)
    seed = check_seed("build_model", seed)
    allowed = [p for p in inspect.signature(builder).parameters if p not in ("input_shape", "num_classes")]
    for key in kwargs:
        if key not in allowed:
            raise InvalidConfigError(
                f"Model {name!r} has no option {key!r}.{suggest(key, allowed)} Valid options: {', '.join(allowed) or '(none)'}."
            )
    with seeded(seed):
        model = builder(tuple(int(s) for s in shape), classes, **kwargs)
    return reinitialize(model, seed)
