"""The dataset registry and the loaders behind it.

``digits`` (scikit-learn's 1,797 8x8 handwritten digits) is embedded and is the default: no
file, no download. The image benchmarks of the field come through torchvision's own dataset
classes, which download and verify the official files; obliviate wraps them into in-memory
tensors and never downloads unless ``download=True`` is passed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_interval
from ..errors import DatasetNotFoundError, InvalidConfigError
from ..registry import Registry, suggest
from .base import ArrayDataset, DatasetSplits, LabeledDataset, _as_labels, first_input, targets_of

__all__ = ["DATASETS", "load_dataset", "from_arrays", "from_dataset", "default_root", "CIFAR100_COARSE", "DIGITS_COARSE"]

DATASETS: Registry[Callable[..., DatasetSplits]] = Registry("dataset")

# Standard CIFAR-100 fine-label -> super-class map (the ``coarse_labels`` of the official files).
CIFAR100_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip
CIFAR20_CLASSES: tuple[str, ...] = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip

_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}


def default_root() -> Path:
    """Where torchvision datasets are looked for when no root is given.

    ``$OBLIVIATE_DATA`` if set, else ``~/.cache/obliviate/data``.
    """
    return Path(os.environ.get("OBLIVIATE_DATA", "~/.cache/obliviate/data")).expanduser()


def load_dataset(
    name: str = "digits", *, root: str | os.PathLike[str] | None = None, download: bool = False, **kwargs: Any
) -> DatasetSplits:
    """Load a registered dataset.

    Args:
        name: Registry name: ``digits`` (embedded, default), ``digits_coarse`` (the same
            digits grouped into five super-classes, for sub-class forgetting), ``cifar10``, ``cifar100``,
            ``cifar20``, ``svhn``, ``mnist``, ``fashion_mnist``, ``synthetic32`` (generated images
            of CIFAR's shape, for GPU checks and timings).
        root: Directory holding the torchvision files (ignored by ``digits``).
        download: Let torchvision download missing files. Never implied.
        **kwargs: Loader-specific options.

    Returns:
        The dataset's train and test splits with metadata.

    Raises:
        UnknownNameError: ``name`` is not registered.
        DatasetNotFoundError: the files are missing and ``download`` is False.

    Example:
        >>> ds = load_dataset("digits")
        >>> len(ds.train), len(ds.test), ds.num_classes
        (1437, 360, 10)
    """
    if not isinstance(download, bool):
        raise InvalidConfigError(f"The 'download' argument of load_dataset must be a bool; got {download!r}.")
    loader = DATASETS.get(name)
    allowed = [p for p in inspect.signature(loader).parameters if p not in ("root", "download")]
    for key in kwargs:
        if key not in allowed:
            raise InvalidConfigError(
                f"Dataset {name!r} has no option {key!r}.{suggest(key, allowed)} Valid options: {', '.join(allowed) or '(none)'}."
            )
    return loader(root=root, download=download, **kwargs)


@DATASETS.register("digits")
def _digits(*, root: Any = None, download: bool = False, test_fraction: float = 0.2) -> DatasetSplits:
    """scikit-learn's 8x8 digits in [0, 1], stratified 80/20 train/test split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = check_interval("load_dataset('digits')", "test_fraction", test_fraction, low=0.0, high=1.0, closed="neither")
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=0)
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return DatasetSplits(
        name="digits",
        train=ArrayDataset(torch.from_numpy(x[idx_train]), y[idx_train]),
        test=ArrayDataset(torch.from_numpy(x[idx_test]), y[idx_test]),
        num_classes=10,
        classes=tuple(str(c) for c in range(10)),
        input_shape=(1, 8, 8),
        augment=None,
        info={"source": "sklearn.datasets.load_digits", "split_seed": 0, "test_fraction": test_fraction},
    )


@DATASETS.register("synthetic32")
def _synthetic32(
    *,
    root: Any = None,
    download: bool = False,
    n_train: int = 10000,
    n_test: int = 2000,
    num_classes: int = 10,
    seed: int = 0,
) -> DatasetSplits:
    """Generated 3x32x32 images of CIFAR's shape: learnable, nothing to download (GPU checks, timings).

    Each class has a smooth random template (a 3x4x4 Gaussian pattern upsampled bilinearly to
    32x32); an image is its class's template plus i.i.d. Gaussian pixel noise of the same scale,
    so a ResNet-18 learns it in a few epochs without reaching 100% at once. Fully determined by
    ``seed``; labels are balanced (``i mod num_classes``, shuffled).
    """
    import torch.nn.functional as F

    n_train = check_interval("load_dataset('synthetic32')", "n_train", n_train, kind=int, low=1)
    n_test = check_interval("load_dataset('synthetic32')", "n_test", n_test, kind=int, low=1)
    num_classes = check_interval("load_dataset('synthetic32')", "num_classes", num_classes, kind=int, low=2)
    g = torch.Generator().manual_seed(int(seed))
    templates = F.interpolate(torch.randn(num_classes, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False)
    templates = templates / templates.std()

    def draw(n: int) -> tuple[torch.Tensor, np.ndarray]:
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = templates[y] + torch.randn(n, 3, 32, 32, generator=g)
        return x.float(), y.numpy().astype(np.int64)

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return DatasetSplits(
        name="synthetic32",
        train=ArrayDataset(x_tr, y_tr),
        test=ArrayDataset(x_te, y_te),
        num_classes=num_classes,
        classes=tuple(str(c) for c in range(num_classes)),
        input_shape=(3, 32, 32),
        augment=None,
        info={"source": "generated", "seed": int(seed), "n_train": n_train, "n_test": n_test},
    )


# digit -> super-class of ``digits_coarse``: pairs of digits that share most of their strokes.
DIGITS_COARSE: tuple[int, ...] = (0, 1, 2, 3, 4, 2, 0, 1, 3, 4)
DIGITS_COARSE_CLASSES: tuple[str, ...] = ("0/6", "1/7", "2/5", "3/8", "4/9")


@DATASETS.register("digits_coarse")
def _digits_coarse(*, root: Any = None, download: bool = False, test_fraction: float = 0.2) -> DatasetSplits:
    """The embedded digits grouped into five super-classes, for sub-class forgetting.

    The same images and the same train/test split as ``digits``; the targets are five
    super-classes of two digits each (``DIGITS_COARSE``), pairing digits whose handwritten
    shapes share most of their strokes: ``0/6`` (a closed lower loop), ``1/7`` (one long
    slanted stroke), ``2/5`` (an S-like stroke, mirrored), ``3/8`` (two right-hand bowls) and
    ``4/9`` (a loop or angle on a vertical stem). ``train_fine``/``test_fine`` hold the digits
    themselves, so ``Scenario.subclass(ds, fine_class=3)`` forgets the 3s inside super-class
    ``3/8`` (the digits analogue of CIFAR-20's "rocket" inside "vehicles 2"). The validation
    split, being stratified by target, is drawn per super-class.
    """
    fine = _digits(root=root, download=download, test_fraction=test_fraction)
    table = np.asarray(DIGITS_COARSE, dtype=np.int64)
    splits = {}
    for name, part in (("train", fine.train), ("test", fine.test)):
        splits[name] = ArrayDataset(part.inputs, table[part.targets])  # type: ignore[attr-defined]
    return DatasetSplits(
        name="digits_coarse",
        train=splits["train"],
        test=splits["test"],
        num_classes=len(DIGITS_COARSE_CLASSES),
        classes=DIGITS_COARSE_CLASSES,
        input_shape=fine.input_shape,
        train_fine=fine.train_targets,
        test_fine=fine.test_targets,
        fine_classes=fine.classes,
        augment=None,
        info={**fine.info, "coarse_map": list(DIGITS_COARSE)},
    )


def _torchvision_class(class_name: str) -> Any:
    try:
        import torchvision.datasets as tvd
    except ImportError as e:  # pragma: no cover - torchvision is a core dependency
        raise ImportError("torchvision is needed for this dataset: pip install torchvision") from e
    return getattr(tvd, class_name)


def _open_torchvision(name: str, class_name: str, root: Any, download: bool, **split: Any) -> Any:
    root_path = Path(root).expanduser() if root is not None else default_root()
    if not download and not root_path.is_dir():
        raise DatasetNotFoundError(
            f"Dataset {name!r}: root directory {str(root_path)!r} does not exist. Pass download=True "
            "(CLI: --download) to fetch the official files, or root= (CLI: --root) pointing at them."
        )
    cls = _torchvision_class(class_name)
    try:
        return cls(str(root_path), download=download, **split)
    except RuntimeError as e:
        if download:
            raise
        raise DatasetNotFoundError(
            f"Dataset {name!r} was not found (or failed its checksum) under {str(root_path)!r}: {e} "
            "Pass download=True (CLI: --download) to fetch it."
        ) from e


def _images(data: Any, channels_last: bool) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(data))
    if t.dim() == 3:  # (N, H, W) grey images
        t = t.unsqueeze(1)
    elif channels_last:
        t = t.permute(0, 3, 1, 2)
    return t.contiguous()


def _torchvision_splits(
    name: str, class_name: str, root: Any, download: bool, *, stats: str
) -> tuple[ArrayDataset, ArrayDataset, tuple[str, ...]]:
    """Open the train and test splits of a torchvision image dataset as uint8 ArrayDatasets."""
    parts, classes = {}, ()
    for split in ("train", "test"):
        # SVHN takes split="train"/"test" and calls its labels .labels; the others train=True/False and .targets
        kwargs = {"split": split} if class_name == "SVHN" else {"train": split == "train"}
        raw = _open_torchvision(name, class_name, root, download, **kwargs)
        labels = raw.labels if class_name == "SVHN" else raw.targets
        classes = tuple(str(c) for c in getattr(raw, "classes", range(10)))
        parts[split] = ArrayDataset(
            _images(raw.data, channels_last=class_name.startswith("CIFAR")),
            np.asarray(labels, dtype=np.int64),
            scale=1 / 255,
            mean=_STATS[stats][0],
            std=_STATS[stats][1],
        )
    return parts["train"], parts["test"], classes


def _cifar(name: str, class_name: str, root: Any, download: bool, coarse: bool = False) -> DatasetSplits:
    train, test, classes = _torchvision_splits(
        name, class_name, root, download, stats="cifar100" if class_name == "CIFAR100" else "cifar10"
    )
    fine: dict[str, np.ndarray | None] = {"train": None, "test": None}
    if coarse:  # CIFAR-20: the super-classes become the targets, the fine labels are kept
        table = np.asarray(CIFAR100_COARSE, dtype=np.int64)
        fine = {"train": train.targets, "test": test.targets}
        train.targets, test.targets = table[train.targets], table[test.targets]
    return DatasetSplits(
        name=name,
        train=train,
        test=test,
        num_classes=20 if coarse else len(classes),
        classes=CIFAR20_CLASSES if coarse else classes,
        input_shape=(3, 32, 32),
        train_fine=fine["train"],
        test_fine=fine["test"],
        fine_classes=classes if coarse else None,
        augment="crop_flip",
        info={"source": f"torchvision.datasets.{class_name}", "root": str(root) if root else str(default_root())},
    )


@DATASETS.register("cifar10")
def _cifar10(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """CIFAR-10 through torchvision (50,000 / 10,000 images, 10 classes)."""
    return _cifar("cifar10", "CIFAR10", root, download)


@DATASETS.register("cifar100")
def _cifar100(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """CIFAR-100 through torchvision (100 fine classes)."""
    return _cifar("cifar100", "CIFAR100", root, download)


@DATASETS.register("cifar20")
def _cifar20(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """CIFAR-100 with its 20 super-classes as targets; the 100 fine labels are kept."""
    return _cifar("cifar20", "CIFAR100", root, download, coarse=True)


def _plain(name: str, class_name: str, root: Any, download: bool, input_shape: tuple[int, ...]) -> DatasetSplits:
    train, test, classes = _torchvision_splits(name, class_name, root, download, stats=name)
    return DatasetSplits(
        name=name,
        train=train,
        test=test,
        num_classes=10,
        classes=classes,
        input_shape=input_shape,
        augment=None,
        info={"source": f"torchvision.datasets.{class_name}"},
    )


@DATASETS.register("svhn")
def _svhn(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """SVHN (cropped digits) through torchvision: 73,257 train / 26,032 test images."""
    return _plain("svhn", "SVHN", root, download, (3, 32, 32))


@DATASETS.register("mnist")
def _mnist(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """MNIST through torchvision (60,000 / 10,000 28x28 grey images)."""
    return _plain("mnist", "MNIST", root, download, (1, 28, 28))


@DATASETS.register("fashion_mnist")
def _fashion_mnist(*, root: Any = None, download: bool = False) -> DatasetSplits:
    """Fashion-MNIST through torchvision (60,000 / 10,000 28x28 grey images)."""
    return _plain("fashion_mnist", "FashionMNIST", root, download, (1, 28, 28))


def _check_num_classes(owner: str, num_classes: int | None, labels: list[np.ndarray], classes: Sequence[str] | None) -> int:
    seen = max((int(a.max()) + 1 for a in labels if a.size), default=0)
    if num_classes is None and classes is None:
        # Inferring max(label) + 1 is only sane when the labels that occur nearly fill [0, max]: a stray
        # huge label (10**9) or a sentinel (255 among 0..9) would otherwise make absurd, empty classes.
        n = sum(int(a.size) for a in labels)
        distinct = len(np.unique(np.concatenate([np.asarray(a).ravel() for a in labels]))) if n else 0
        if seen > n or seen > 2 * distinct:
            raise InvalidConfigError(
                f"The labels of {owner} go up to {seen - 1}, which would make {seen} classes, but only {distinct} "
                f"distinct labels occur in {n} samples; pass num_classes= explicitly or relabel to 0..K-1."
            )
    if num_classes is None:
        num_classes = len(classes) if classes is not None else seen
    num_classes = check_interval(owner, "num_classes", num_classes, kind=int, low=2)
    if seen > num_classes:
        raise InvalidConfigError(
            f"The labels of {owner} go up to {seen - 1}, but num_classes is {num_classes}; labels must lie in [0, num_classes)."
        )
    if classes is not None and len(classes) != num_classes:
        raise InvalidConfigError(f"{owner} got {len(classes)} class names for {num_classes} classes.")
    return num_classes


def from_arrays(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    name: str = "custom",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    scale: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    train_fine: Any = None,
    test_fine: Any = None,
    fine_classes: Sequence[str] | None = None,
    augment: str | None = None,
) -> DatasetSplits:
    """Wrap the user's own arrays (numpy or torch) as a dataset.

    Args:
        x_train: Train inputs, shape ``(N, *input_shape)`` (float, or uint8 with ``scale``).
        y_train: Train labels, integers in ``[0, num_classes)``.
        x_test: Test inputs, same trailing shape.
        y_test: Test labels.
        name: Name recorded in scenarios and run records.
        num_classes: Defaults to ``len(classes)`` or ``max(label) + 1``.
        classes: Optional class names.
        scale: Optional factor applied to inputs per batch (``1/255`` for uint8 images).
        mean: Optional per-channel mean subtracted per batch.
        std: Optional per-channel std divided by per batch.
        train_fine: Optional sub-class labels when ``y`` are super-classes.
        test_fine: The same for the test split.
        fine_classes: Optional sub-class names.
        augment: Recommended ``ob.train`` augmentation.

    Example:
        >>> import numpy as np
        >>> ds = from_arrays(np.zeros((6, 4), np.float32), [0, 1, 0, 1, 0, 1], np.zeros((2, 4), np.float32), [0, 1])
        >>> ds.input_shape, ds.num_classes
        ((4,), 2)
    """
    owner = "from_arrays"
    xs = []
    for label, x in (("x_train", x_train), ("x_test", x_test)):
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if t.dim() < 2:
            raise InvalidConfigError(
                f"The {label!r} argument of {owner} must have shape (N, *input_shape); got {tuple(t.shape)}."
            )
        if not (t.is_floating_point() or t.dtype == torch.uint8):
            t = t.float()
        xs.append(t)
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise InvalidConfigError(
            f"x_train and x_test must have the same input shape; got {tuple(xs[0].shape[1:])} and {tuple(xs[1].shape[1:])}."
        )
    train = ArrayDataset(xs[0], y_train, scale=scale, mean=mean, std=std)
    test = ArrayDataset(xs[1], y_test, scale=scale, mean=mean, std=std)
    k = _check_num_classes(owner, num_classes, [train.targets, test.targets], classes)
    fine = [
        None if f is None else _as_labels(f, f"{label} labels of {owner}")
        for f, label in ((train_fine, "train_fine"), (test_fine, "test_fine"))
    ]
    for f, ref, label in ((fine[0], train, "train_fine"), (fine[1], test, "test_fine")):
        if f is not None and len(f) != len(ref):
            raise InvalidConfigError(f"The {label!r} argument of {owner} has {len(f)} labels for {len(ref)} samples.")
        if f is not None and fine_classes is not None and len(f) and f.max() >= len(fine_classes):
            raise InvalidConfigError(
                f"The {label!r} labels of {owner} go up to {int(f.max())}, but there are {len(fine_classes)} fine_classes."
            )
    return DatasetSplits(
        name=name,
        train=train,
        test=test,
        num_classes=k,
        classes=tuple(classes) if classes is not None else tuple(str(c) for c in range(k)),
        input_shape=tuple(xs[0].shape[1:]),
        train_fine=fine[0],
        test_fine=fine[1],
        fine_classes=tuple(fine_classes) if fine_classes is not None else None,
        augment=augment,
        info={"source": "from_arrays"},
    )


def from_dataset(
    train: Dataset,
    test: Dataset,
    *,
    name: str = "custom",
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    train_targets: Any = None,
    test_targets: Any = None,
    augment: str | None = None,
) -> DatasetSplits:
    """Wrap the user's own map-style datasets whose items are ``(tensor, label)``.

    Labels come from ``train_targets``/``test_targets`` when given, else from a ``targets``
    attribute, else by reading every item once.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> tr = TensorDataset(torch.zeros(4, 3), torch.tensor([0, 1, 2, 1]))
        >>> te = TensorDataset(torch.zeros(2, 3), torch.tensor([0, 2]))
        >>> from_dataset(tr, te).num_classes
        3
    """
    owner = "from_dataset"
    wrapped = []
    for label, ds, t in (("train", train, train_targets), ("test", test, test_targets)):
        if not isinstance(ds, Dataset) or not hasattr(ds, "__len__"):
            raise InvalidConfigError(
                f"The {label!r} argument of {owner} must be a map-style torch Dataset; got {type(ds).__name__}."
            )
        wrapped.append(LabeledDataset(ds, targets_of(ds) if t is None else t))
    k = _check_num_classes(owner, num_classes, [w.targets for w in wrapped], classes)
    x0 = first_input(wrapped[0])
    return DatasetSplits(
        name=name,
        train=wrapped[0],
        test=wrapped[1],
        num_classes=k,
        classes=tuple(classes) if classes is not None else tuple(str(c) for c in range(k)),
        input_shape=tuple(x0.shape),
        augment=augment,
        info={"source": "from_dataset"},
    )
