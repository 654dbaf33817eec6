"""In-memory datasets, views over them, and the one batch iterator every loop uses.

Registered datasets are held as tensors (:class:`ArrayDataset`), so a batch is one indexing
operation instead of hundreds of ``__getitem__`` calls and a collate: this is what makes the
CPU demo fast and lets a GPU run keep a whole CIFAR split on the device. Views
(:class:`Subset`, :class:`Relabeled`, :class:`Concat`) over one :class:`ArrayDataset` keep that
fast path; any other :class:`torch.utils.data.Dataset` goes through a seeded
:class:`~torch.utils.data.DataLoader`.

Every dataset obliviate hands out has integer ``targets`` (a ``numpy.int64`` array), and items
are ``(input_tensor, int_label)`` pairs without augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torch.utils.data import Subset as _TorchSubset

from ..errors import InvalidConfigError, MissingDataError

__all__ = [
    "ArrayDataset",
    "LabeledDataset",
    "Subset",
    "Relabeled",
    "Concat",
    "DatasetSplits",
    "targets_of",
    "iterate_batches",
    "flatten_view",
    "subset_root",
]


class ArrayDataset(Dataset):
    """A dataset held in memory as one input tensor and one label array.

    Inputs may be stored compactly (e.g. ``uint8`` images) and are turned into normalised
    ``float32`` per batch: ``x = (raw * scale - mean) / std``. Signed integer inputs without
    ``scale``, ``mean`` and ``std`` are token ids and are returned unchanged (integers).

    Args:
        inputs: Tensor of shape ``(N, *input_shape)``.
        targets: Integer labels, length N.
        scale: Factor applied first (e.g. ``1/255`` for ``uint8`` images); None keeps values.
        mean: Per-channel mean subtracted after scaling (None: no centring).
        std: Per-channel standard deviation divided by after centring.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        *,
        scale: float | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(inputs, torch.Tensor):
            raise InvalidConfigError(f"ArrayDataset inputs must be a torch.Tensor; got {type(inputs).__name__}.")
        y = _as_labels(targets, "targets")
        if inputs.shape[0] != len(y):
            raise InvalidConfigError(f"ArrayDataset got {inputs.shape[0]} inputs but {len(y)} targets; they must match.")
        self.inputs = inputs
        self.targets = y
        self.scale = scale
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).reshape(-1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32).reshape(-1)
        channels = inputs.shape[1] if inputs.dim() > 1 else 1
        for name, stat in (("mean", self.mean), ("std", self.std)):
            if stat is not None and len(stat) not in (1, channels):
                raise InvalidConfigError(
                    f"ArrayDataset {name} has {len(stat)} values but the inputs have {channels} channels (dimension 1)."
                )
        if self.std is not None and bool((self.std <= 0).any()):
            raise InvalidConfigError("ArrayDataset std values must be positive.")
        self._on_device: dict[str, torch.Tensor] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    def __len__(self) -> int:
        return len(self.targets)

    def _prepare(self, raw: torch.Tensor) -> torch.Tensor:
        if (
            not raw.is_floating_point()
            and raw.dtype not in (torch.uint8, torch.bool)
            and self.scale is None
            and self.mean is None
            and self.std is None
        ):
            return raw  # token ids (text models) stay integers
        x = raw.float()
        if self.scale is not None:
            x = x * self.scale
        if self.mean is not None or self.std is not None:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            if self.mean is not None:
                x = x - self.mean.to(x.device).view(shape)
            if self.std is not None:
                x = x / self.std.to(x.device).view(shape)
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._prepare(self.inputs[i].unsqueeze(0))[0], int(self.targets[i])

    def fetch(self, index: np.ndarray, device: torch.device) -> torch.Tensor:
        """Normalised inputs for ``index`` (base-dataset positions), on ``device``."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if device.type == "cpu":
            return self._prepare(self.inputs[idx])
        key = str(device)
        if key not in self._on_device:  # keep one copy per device: a batch is then a gather
            self._on_device[key] = self.inputs.to(device)
        return self._prepare(self._on_device[key][idx.to(device)])


class LabeledDataset(Dataset):
    """Any map-style dataset plus a precomputed ``targets`` array (for users' own data)."""

    def __init__(self, dataset: Dataset, targets: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.targets = _as_labels(targets, "targets")
        if len(self.targets) != len(dataset):  # type: ignore[arg-type]
            raise InvalidConfigError(
                f"LabeledDataset got {len(dataset)} items but {len(self.targets)} targets."  # type: ignore[arg-type]
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.dataset[i]
        x = item[0] if isinstance(item, (tuple, list)) else item
        return x, int(self.targets[i])


class Subset(_TorchSubset):
    """A torch ``Subset`` that also exposes ``targets`` for its positions.

    ``train_split_of`` names the dataset when ``dataset`` is that dataset's train split, so that
    :func:`obliviate.train` can record which training rows a model saw (the views of a
    :class:`~obliviate.data.Scenario` set it).
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray, *, train_split_of: str | None = None) -> None:
        super().__init__(dataset, np.asarray(indices, dtype=np.int64))
        self.train_split_of = train_split_of

    @property
    def targets(self) -> np.ndarray:
        return targets_of(self.dataset)[self.indices]


class Relabeled(Dataset):
    """The same inputs with other labels (random labels, super-class labels, ...)."""

    def __init__(self, dataset: Dataset, targets: Sequence[int] | np.ndarray) -> None:
        self.dataset = dataset
        self.targets = _as_labels(targets, "targets")
        if len(self.targets) != len(dataset):  # type: ignore[arg-type]
            raise InvalidConfigError(f"Relabeled got {len(dataset)} items but {len(self.targets)} labels.")  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.dataset[i][0], int(self.targets[i])


class Concat(ConcatDataset):
    """A torch ``ConcatDataset`` that also exposes the concatenated ``targets``."""

    @property
    def targets(self) -> np.ndarray:
        return np.concatenate([targets_of(d) for d in self.datasets]) if self.datasets else np.zeros(0, np.int64)


def _as_labels(values: Any, what: str) -> np.ndarray:
    arr = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if arr.ndim != 1:
        raise InvalidConfigError(f"The {what} must be a 1-D array of integer labels; got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
            raise InvalidConfigError(f"The {what} must be integer class labels; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise InvalidConfigError(f"The {what} must be non-negative class indices; found {int(arr.min())}.")
    return arr


def targets_of(dataset: Dataset) -> np.ndarray:
    """Integer labels of every item of ``dataset``, as a ``numpy.int64`` array.

    Uses a ``targets`` attribute when present (our views, torchvision datasets), looks through
    torch ``Subset``/``ConcatDataset``, and otherwise reads every item once.
    """
    t = getattr(dataset, "targets", None)
    if t is not None:
        return _as_labels(t, "targets")
    if isinstance(dataset, _TorchSubset):
        return targets_of(dataset.dataset)[np.asarray(dataset.indices)]
    if isinstance(dataset, ConcatDataset):
        return np.concatenate([targets_of(d) for d in dataset.datasets])
    labels = []
    for i in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InvalidConfigError(
                "Dataset items must be (input, label) pairs so labels can be read; "
                f"item 0 is a {type(item).__name__}. Wrap the data with obliviate.data.from_dataset(..., targets=...)."
            )
        labels.append(int(item[1]))
    return _as_labels(np.asarray(labels, dtype=np.int64), "targets")


def subset_root(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """The dataset under any stack of torch ``Subset`` views, and the root index of each position.

    The one walker of ``Subset`` stacks (:class:`Subset` is one): ``root[ids[i]]`` is ``dataset[i]``.
    """
    ids = np.arange(len(dataset), dtype=np.int64)  # type: ignore[arg-type]
    d = dataset
    while isinstance(d, _TorchSubset):
        ids = np.asarray(d.indices, dtype=np.int64)[ids]
        d = d.dataset
    return d, ids


def flatten_view(dataset: Dataset) -> tuple[ArrayDataset, np.ndarray, np.ndarray] | None:
    """Express a view of in-memory data as ``(base ArrayDataset, base positions, labels)``.

    Looks through :class:`Subset`, :class:`Relabeled` and ``ConcatDataset`` stacks; None when
    the data are not a view of one :class:`ArrayDataset` (e.g. a user's lazy dataset).
    """
    if isinstance(dataset, _TorchSubset):
        root, ids = subset_root(dataset)
        inner = flatten_view(root)
        return None if inner is None else (inner[0], inner[1][ids], inner[2][ids])
    if isinstance(dataset, ArrayDataset):
        return dataset, np.arange(len(dataset)), dataset.targets
    if isinstance(dataset, Relabeled):
        inner = flatten_view(dataset.dataset)
        return None if inner is None else (inner[0], inner[1], dataset.targets)
    if isinstance(dataset, ConcatDataset):
        parts = [flatten_view(d) for d in dataset.datasets]
        if not parts or any(p is None for p in parts) or len({id(p[0]) for p in parts}) != 1:  # type: ignore[index]
            return None
        return parts[0][0], np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])  # type: ignore[index]
    return None


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    *,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, labels)`` batches on ``device``.

    Shuffling draws only from ``generator`` (a CPU :class:`torch.Generator`), so the batch
    order is reproducible and the global random state is untouched.
    """
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        return
    flat = flatten_view(dataset)
    if flat is not None:
        base, positions, labels = flat
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        labels_t = torch.as_tensor(labels)
        for start in range(0, n, batch_size):
            chunk = order[start : start + batch_size]
            yield base.fetch(positions[chunk], device), labels_t[chunk].to(device)
        return
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), torch.as_tensor(y).long().to(device, non_blocking=True)


def first_input(dataset: Dataset) -> torch.Tensor:
    """The first input of a dataset, as a tensor (used to infer shapes)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise MissingDataError("The dataset is empty; cannot infer its input shape.")
    item = dataset[0]
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, torch.Tensor):
        raise InvalidConfigError(
            f"Dataset inputs must be tensors (apply a ToTensor transform); item 0 holds a {type(x).__name__}."
        )
    return x


@dataclass
class DatasetSplits:
    """A labelled dataset with its train and test splits and its metadata.

    Attributes:
        name: Registry name (or the user's name for their own data).
        train: Train split: items ``(input, label)``, a ``targets`` array.
        test: Test split, same form.
        num_classes: Number of classes the model predicts.
        classes: Class names, ``num_classes`` of them.
        input_shape: Shape of one input, e.g. ``(3, 32, 32)``.
        train_fine: Sub-class labels of the train split when ``targets`` are super-classes
            (CIFAR-20), else None.
        test_fine: The same for the test split.
        fine_classes: Names of the sub-classes.
        augment: Recommended training augmentation for ``ob.train`` ("crop_flip", "crop" or
            None).
        info: Free-form provenance (root directory, source, split seed).
    """

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    train_fine: np.ndarray | None = None
    test_fine: np.ndarray | None = None
    fine_classes: tuple[str, ...] | None = None
    augment: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train_targets(self) -> np.ndarray:
        return targets_of(self.train)

    @property
    def test_targets(self) -> np.ndarray:
        return targets_of(self.test)

    def __repr__(self) -> str:
        return (
            f"DatasetSplits(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "  # type: ignore[arg-type]
            f"num_classes={self.num_classes}, input_shape={self.input_shape})"
        )
