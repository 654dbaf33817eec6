"""A process-wide cache of what a method derives from the model and the data alone.

SSD's importance over D, the Fisher diagonal of Fisher forgetting and the gradients of influence
unlearning do not depend on the hyperparameters a sweep or :func:`obliviate.tune` varies (α,
dampening, damping ...). Each is stored once under a key of the model's state digest, its
module tree, which parameters are trainable, a fingerprint of the data and the settings that
change the value, and reused until the model, the data or a setting differs. Timing a method
cold means clearing it first (:func:`clear_importance_cache`, as the benchmark runner does).
"""

from __future__ import annotations

import hashlib
import itertools
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .._utils import state_digest
from ..data.base import ArrayDataset, flatten_view
from ..errors import InvalidConfigError

__all__ = ["ImportanceCache", "IMPORTANCE_CACHE", "clear_importance_cache", "data_fingerprint", "model_key", "cached"]


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


class ImportanceCache:
    """A small least-recently-used cache of model- and data-derived tensors.

    SSD's importance over D does not depend on the forget request, so a sweep over ``alpha``
    or ``dampening`` (or several requests on one model) needs it once; the same holds for the
    Fisher diagonal of ``fisher`` and the gradients of ``iu``. Entries are keyed (see
    :func:`model_key`) by the model's state digest (:func:`obliviate._utils.state_digest`:
    every parameter and buffer), its module tree (class and ``repr``) and which parameters are
    trainable, a fingerprint of the data (:func:`data_fingerprint`) and the settings that
    change the value (loss, batch size, per-sample, device ...): a model changed in any weight
    or buffer, or other data, is recomputed. Entries stay on the device they were computed on;
    memory is bounded by ``max_entries`` and by ``max_bytes`` (an entry larger than it is not
    kept). The process-wide instance is :data:`IMPORTANCE_CACHE`.

    Args:
        max_entries: Entries kept; the least recently used is evicted beyond it (0 disables).
        max_bytes: Bytes of tensors kept in all; the least recently used are evicted beyond it.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int = 2 * 2**30) -> None:
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._sizes: dict[tuple[Any, ...], int] = {}
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidConfigError(f"The 'max_entries' of ImportanceCache must be an int in [0, inf); got {value!r}.")
        self._max_entries = value
        self._evict()

    @property
    def nbytes(self) -> int:
        """Bytes of tensors held."""
        return sum(self._sizes.values())

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self._max_entries or self.nbytes > self.max_bytes):
            key, _ = self._entries.popitem(last=False)
            self._sizes.pop(key, None)

    def get(self, key: tuple[Any, ...]) -> Any:
        """The cached importance for ``key`` (marked most recently used), or None."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        """Store ``value`` under ``key``, evicting the least recently used entries beyond the bounds."""
        size = _nbytes(value)
        if self._max_entries == 0 or size > self.max_bytes:
            return
        self._entries[key] = value
        self._sizes[key] = size
        self._entries.move_to_end(key)
        self._evict()

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        self._entries.clear()
        self._sizes.clear()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def info(self) -> dict[str, int]:
        """Entries held, the bound, hits and misses."""
        return {
            "entries": len(self._entries),
            "max_entries": self._max_entries,
            "bytes": self.nbytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }


IMPORTANCE_CACHE = ImportanceCache()


def clear_importance_cache() -> None:
    """Empty the process-wide cache (:data:`IMPORTANCE_CACHE`): SSD importances, Fisher diagonals, IU gradients."""
    IMPORTANCE_CACHE.clear()


_CONTENT: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_TOKENS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_TOKEN_COUNTER = itertools.count()


def _content_digest(base: ArrayDataset) -> str:
    digest = _CONTENT.get(base)
    if digest is None:
        h = hashlib.sha256()
        raw = base.inputs.detach().cpu().contiguous()
        h.update(f"{raw.dtype}{tuple(raw.shape)}{base.scale}".encode())
        for stat in (base.mean, base.std):
            h.update(b"-" if stat is None else stat.numpy().tobytes())
        h.update(raw.reshape(-1).view(torch.uint8).numpy().tobytes() if raw.numel() else b"")
        digest = _CONTENT[base] = h.hexdigest()
    return digest


def data_fingerprint(dataset: Dataset) -> str | None:
    """A digest of a dataset's content, for cache keys; None when it cannot be fingerprinted.

    Data held in memory (every registered dataset, ``from_arrays``, and views over them) are
    hashed by content: the base tensor's bytes (hashed once per object), the positions and the
    labels of the view. Any other dataset is identified by the object itself (a token that dies
    with it), so only the same object in the same process matches. Modifying a dataset's tensor
    in place after it was fingerprinted is not detected.
    """
    flat = flatten_view(dataset)
    h = hashlib.sha256()
    if flat is not None:
        base, positions, labels = flat
        h.update(_content_digest(base).encode())
        h.update(np.ascontiguousarray(positions, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
        return "content:" + h.hexdigest()
    try:
        token = _TOKENS.get(dataset)
        if token is None:
            token = _TOKENS[dataset] = f"{next(_TOKEN_COUNTER)}"
    except TypeError:  # not weak-referenceable or not hashable: do not cache
        return None
    return f"object:{token}:{len(dataset)}"  # type: ignore[arg-type]


def model_key(model: nn.Module) -> tuple[str, str, tuple[str, ...]]:
    """The model's part of a cache key: state digest, module-tree digest and trainable parameter names.

    The module tree (``repr``) tells apart architectures with the same weights but other layers
    (e.g. activations).
    """
    trainable = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    architecture = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode()).hexdigest()
    return state_digest(model), architecture, trainable


def masks_digest(masks: dict[str, torch.Tensor]) -> str:
    """A digest of ``{name: bool tensor}`` masks (empty string for none)."""
    h = hashlib.sha256()
    for name, m in sorted(masks.items()):
        h.update(name.encode())
        h.update(m.detach().cpu().to(torch.uint8).contiguous().numpy().tobytes())
    return h.hexdigest() if masks else ""


def cached(
    kind: str,
    model: nn.Module,
    datasets: tuple[Dataset, ...],
    settings: tuple[Any, ...],
    compute: Callable[[], Any],
    diagnostics: dict[str, float] | None = None,
) -> Any:
    """``compute()``, or the value stored for the same ``kind``, model, data and ``settings``.

    Data that cannot be fingerprinted (:func:`data_fingerprint` gives None) are never cached.
    ``diagnostics[f"{kind}_cached"]`` records a hit (1.0) or a miss (0.0).
    """
    prints = tuple(data_fingerprint(d) for d in datasets)
    if any(p is None for p in prints):
        return compute()
    key = (kind, *model_key(model), prints, *settings)
    value = IMPORTANCE_CACHE.get(key)
    if diagnostics is not None:
        diagnostics[f"{kind}_cached"] = float(value is not None)
    if value is None:
        value = compute()
        IMPORTANCE_CACHE.put(key, value)
    return value
