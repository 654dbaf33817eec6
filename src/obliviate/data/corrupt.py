"""Corrupted training rows: flipped labels or a backdoor trigger, the data of corrective unlearning.

A :class:`Corruption` names the train-split rows an original model was trained on in corrupted
form (Goel et al., "Corrective Machine Unlearning"), and what was done to them:

* ``label_flip``: each row carries another label than its true one;
* ``backdoor``: a trigger (a ``patch`` x ``patch`` square at the bottom-right corner of the
  input, in every channel, set to each channel's maximum input value over the train split) is
  stamped on each row, which is relabelled to ``target`` (poison and relabel, BadNets-style).

:meth:`Corruption.apply` gives the train split as the original model saw it: the corrupted rows
changed, every other row as it is. Over an in-memory :class:`~obliviate.data.base.ArrayDataset`
the result is again an ``ArrayDataset`` (:class:`CorruptedArrayDataset`, sharing the input
tensor), so batches keep the one-gather fast path; any other dataset is wrapped in a
:class:`CorruptedView` (read item by item). Triggers are stamped on the normalised inputs the model
sees, per batch; nothing is copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidConfigError
from .base import ArrayDataset, iterate_batches, targets_of

__all__ = ["CORRUPTION_KINDS", "Corruption", "CorruptedArrayDataset", "CorruptedView", "trigger_value"]

CORRUPTION_KINDS: tuple[str, ...] = ("label_flip", "backdoor")


def trigger_value(train: Dataset, *, batch_size: int = 1024) -> tuple[float, ...]:
    """Each channel's maximum over a train split's (normalised) inputs: the colour of a backdoor patch.

    One pass over the split. Inputs of shape ``(C, H, W)`` give ``C`` values; inputs of shape
    ``(H, W)`` or ``(D,)`` give one.

    Raises:
        InvalidConfigError: the inputs are integer token ids (a text model), which take no patch.
    """
    top: torch.Tensor | None = None
    for x, _ in iterate_batches(train, batch_size, device=torch.device("cpu")):
        if not x.is_floating_point():
            raise InvalidConfigError(
                "A backdoor trigger is a patch of pixels; the dataset's inputs are integer token ids (dtype "
                f"{x.dtype}), which take none. Use kind='label_flip' for this dataset."
            )
        flat = x.transpose(0, 1).reshape(x.shape[1], -1) if x.dim() >= 4 else x.reshape(1, -1)
        m = flat.amax(dim=1)
        top = m if top is None else torch.maximum(top, m)
    if top is None:
        raise InvalidConfigError("A backdoor trigger needs a non-empty train split to take its value from.")
    return tuple(float(v) for v in top)


@dataclass(frozen=True, eq=False)
class Corruption:
    """Which train-split rows were corrupted, and how.

    Attributes:
        kind: ``"label_flip"`` or ``"backdoor"``.
        indices: The corrupted train-split rows, sorted ``int64`` (a scenario's forget set).
        labels: The label each corrupted row carries, in the order of ``indices``.
        target: The backdoor's target class (None for a label flip).
        patch: Side of the backdoor's square trigger, in pixels (None for a label flip).
        value: The trigger's value in each channel of the normalised input (None for a label flip).
    """

    kind: str
    indices: np.ndarray
    labels: np.ndarray
    target: int | None = None
    patch: int | None = None
    value: tuple[float, ...] | None = None
    _digest: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in CORRUPTION_KINDS:
            raise InvalidConfigError(f"A corruption's kind must be one of {', '.join(CORRUPTION_KINDS)}; got {self.kind!r}.")
        idx = np.asarray(self.indices, dtype=np.int64)
        lab = np.asarray(self.labels, dtype=np.int64)
        if idx.ndim != 1 or lab.shape != idx.shape:
            raise InvalidConfigError(
                f"A corruption needs one label per corrupted row; got {lab.shape} labels for {idx.shape} rows."
            )
        if idx.size and np.any(np.diff(idx) <= 0):
            raise InvalidConfigError("A corruption's row indices must be sorted and distinct.")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "labels", lab)
        if self.kind == "backdoor":
            if self.target is None or self.patch is None or not self.value:
                raise InvalidConfigError("A backdoor corruption needs its target, patch and trigger value.")
            if int(self.patch) < 1:
                raise InvalidConfigError(f"A backdoor's patch must be at least 1 pixel; got {self.patch!r}.")
            if np.any(lab != int(self.target)):
                raise InvalidConfigError(f"Every backdoored row carries the target label {self.target}.")
            object.__setattr__(self, "target", int(self.target))
            object.__setattr__(self, "patch", int(self.patch))
            object.__setattr__(self, "value", tuple(float(v) for v in self.value))
        elif (self.target, self.patch, self.value) != (None, None, None):
            raise InvalidConfigError("A label flip has no target, patch or trigger value.")
        object.__setattr__(self, "_digest", hashlib.sha256(_canonical(self.to_json()).encode()).hexdigest())

    # ------------------------------------------------------------------ identity
    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`to_json` (kind, rows, labels, trigger)."""
        return self._digest

    def to_json(self) -> dict[str, Any]:
        """Everything that defines the corruption, JSON-ready."""
        out: dict[str, Any] = {"kind": self.kind, "indices": self.indices.tolist(), "labels": self.labels.tolist()}
        if self.kind == "backdoor":
            out.update(target=self.target, patch=self.patch, value=list(self.value or ()))
        return out

    @classmethod
    def from_json(cls, data: Any) -> Corruption:
        """Read :meth:`to_json` output back.

        Raises:
            InvalidConfigError: not a corruption record.
        """
        if not isinstance(data, dict) or "kind" not in data or "indices" not in data or "labels" not in data:
            raise InvalidConfigError(f"Not a corruption record (needs kind, indices and labels): {str(data)[:120]!r}.")
        try:
            return cls(
                kind=str(data["kind"]),
                indices=np.asarray(data["indices"], dtype=np.int64),
                labels=np.asarray(data["labels"], dtype=np.int64),
                target=data.get("target"),
                patch=data.get("patch"),
                value=None if data.get("value") is None else tuple(float(v) for v in data["value"]),
            )
        except (TypeError, ValueError) as e:
            raise InvalidConfigError(f"The corruption record holds values of the wrong type: {e}") from None

    def summary(self) -> dict[str, Any]:
        """The compact description of a run record: kind, size, digest and the trigger."""
        out: dict[str, Any] = {"kind": self.kind, "size": int(self.indices.size), "digest": self.digest}
        if self.kind == "backdoor":
            out.update(target=self.target, patch=self.patch, value=list(self.value or ()))
        return out

    # ------------------------------------------------------------------ data
    def stamp(self, x: torch.Tensor, rows: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """A copy of the batch ``x`` (normalised inputs) with the trigger stamped on ``rows`` (default: all).

        The trigger covers the last ``patch`` positions of the last two dimensions, in every channel
        (the last ``patch`` features of a 1-D input).
        """
        if self.kind != "backdoor":
            raise InvalidConfigError("Only a backdoor corruption has a trigger to stamp.")
        out = x.clone()
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.bool, device=x.device)
            if not bool(rows.any()):
                return out
        p = int(self.patch)  # type: ignore[arg-type]
        value = torch.tensor(self.value, dtype=out.dtype, device=out.device)
        sel = out if rows is None else out[rows]
        if sel.dim() >= 4:  # (N, C, ..., H, W)
            sel[..., -p:, -p:] = value.view((1, -1) + (1,) * (sel.dim() - 2))
        elif sel.dim() == 3:  # (N, H, W)
            sel[:, -p:, -p:] = value.max()
        else:  # (N, D)
            sel[:, -p:] = value.max()
        if rows is not None:
            out[rows] = sel
        return out

    def check_fits(self, train: Dataset, input_shape: Sequence[int]) -> None:
        """Refuse a corruption that does not fit a train split (rows out of range, a patch too large)."""
        n = len(train)  # type: ignore[arg-type]
        if self.indices.size and (self.indices[0] < 0 or self.indices[-1] >= n):
            raise InvalidConfigError(f"The corruption names train row {int(self.indices[-1])}, but the train split has {n} rows.")
        if self.kind == "backdoor":
            shape = tuple(input_shape)
            side = min(shape[-2:]) if len(shape) >= 2 else shape[-1]
            if int(self.patch) > side:  # type: ignore[arg-type]
                raise InvalidConfigError(f"The backdoor's patch ({self.patch} pixels) is larger than the inputs ({shape}).")
            channels = shape[0] if len(shape) >= 3 else 1
            if len(self.value or ()) not in (1, channels):
                raise InvalidConfigError(
                    f"The trigger has {len(self.value or ())} channel values but the inputs have {channels} channels."
                )

    def apply(self, train: Dataset) -> Dataset:
        """The train split as the original model saw it: the corrupted rows changed, the rest as they are."""
        labels = targets_of(train).copy()
        labels[self.indices] = self.labels
        mask = np.zeros(len(labels), dtype=bool)
        if self.kind == "backdoor":
            mask[self.indices] = True
        return _view(train, labels, mask, self)

    def triggered(self, dataset: Dataset) -> Dataset:
        """Every row of ``dataset`` with the trigger stamped and its true label (the attack success rate's data)."""
        if self.kind != "backdoor":
            raise InvalidConfigError("Only a backdoor corruption has a trigger to stamp.")
        labels = targets_of(dataset)
        return _view(dataset, labels, np.ones(len(labels), dtype=bool), self)


def _view(dataset: Dataset, labels: np.ndarray, stamped: np.ndarray, corruption: Corruption) -> Dataset:
    if isinstance(dataset, ArrayDataset):
        return CorruptedArrayDataset(dataset, labels, stamped, corruption)
    return CorruptedView(dataset, labels, stamped, corruption)


class CorruptedArrayDataset(ArrayDataset):
    """An :class:`~obliviate.data.base.ArrayDataset` with corrupted labels and a trigger on marked rows.

    It shares the clean dataset's input tensor; the trigger is stamped on the normalised inputs of
    each fetched batch, so views over it keep the fast batch path.
    """

    def __init__(self, clean: ArrayDataset, labels: np.ndarray, stamped: np.ndarray, corruption: Corruption) -> None:
        self.inputs = clean.inputs
        self.targets = np.asarray(labels, dtype=np.int64)
        self.scale, self.mean, self.std = clean.scale, clean.mean, clean.std
        self._on_device = clean._on_device  # one device copy serves both
        self.stamped = np.asarray(stamped, dtype=bool)
        self.corruption = corruption
        self.clean = clean

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self._prepare(self.inputs[i].unsqueeze(0))
        if self.stamped[i]:
            x = self.corruption.stamp(x)
        return x[0], int(self.targets[i])

    def fetch(self, index: np.ndarray, device: torch.device) -> torch.Tensor:
        x = super().fetch(index, device)
        rows = self.stamped[np.asarray(index, dtype=np.int64)]
        return self.corruption.stamp(x, rows) if rows.any() else x


class CorruptedView(Dataset):
    """Any map-style dataset with corrupted labels and a trigger on marked rows (read item by item)."""

    def __init__(self, dataset: Dataset, labels: np.ndarray, stamped: np.ndarray, corruption: Corruption) -> None:
        self.dataset = dataset
        self.targets = np.asarray(labels, dtype=np.int64)
        self.stamped = np.asarray(stamped, dtype=bool)
        self.corruption = corruption

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.dataset[i]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if self.stamped[i]:
            x = self.corruption.stamp(x.unsqueeze(0))[0]
        return x, int(self.targets[i])


def _canonical(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
