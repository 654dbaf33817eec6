"""Small shared helpers: devices, seeding, timing, digests, versions."""

from __future__ import annotations

import contextlib
import hashlib
import platform
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidConfigError

__all__ = [
    "resolve_device",
    "eval_mode",
    "seeded",
    "Timer",
    "state_digest",
    "versions",
    "model_device",
    "console",
    "require",
    "warning_notes",
]


def warning_notes(caught: Iterable[warnings.WarningMessage] = (), *earlier: Iterable[str]) -> list[str]:
    """Notes (``"Category: message"``) of recorded warnings after the ``earlier`` notes, each once, in order.

    What a run record, a table row or a trials table keeps of the warnings a run raised, so that they
    are shown beside the row instead of in the middle of a progress bar.
    """
    notes = [n for group in earlier for n in group]
    notes += [f"{w.category.__name__}: {w.message}" for w in caught]
    return list(dict.fromkeys(notes))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/None/a name into a :class:`torch.device` (CUDA when available)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InvalidConfigError(f"The 'device' argument must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidConfigError("The 'device' argument asks for CUDA, but no CUDA device is available; use 'cpu' or 'auto'.")
    return dev


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for a block, then restore each one's own mode.

    ``model.train(previous)`` would not do: it sets one mode for all submodules, so a frozen
    BatchNorm inside a training model would come back in training mode.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with the global torch RNGs seeded, restoring them afterwards.

    Layers that draw from the global generator (dropout, ``reset_parameters``) become
    deterministic without changing the caller's random state.
    """
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


class Timer:
    """Wall-clock timer that synchronises CUDA before reading the clock."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device
        self.seconds = 0.0

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> Timer:
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes), as hex."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        arr = t.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(tuple(arr.shape)).encode())
        h.update(arr.reshape(-1).view(torch.uint8).numpy().tobytes() if arr.numel() else b"")
    return h.hexdigest()


def require(module: str, extra: str, user: str) -> Any:
    """Import an optional dependency, or raise one clear error naming the extra that installs it.

    Args:
        module: The package to import (e.g. "peft").
        extra: The obliviate extra that installs it (e.g. "lora").
        user: What needs it, for the message (e.g. "LoRA").

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: ``module`` is not installed.

    Example:
        >>> require("numpy", "core", "this example").__name__
        'numpy'
    """
    import importlib

    from .errors import MissingDependencyError

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{user} needs the {module} package: pip install obliviate[{extra}]") from e


def console() -> Any:
    """A rich console; at least 120 columns wide when output is not a terminal (logs, CI)."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def versions() -> dict[str, str]:
    """Versions recorded in every run record."""
    from ._version import __version__

    return {"obliviate": __version__, "torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__}


def moved_names(old: str, moved: dict[str, Any]) -> Any:
    """A module-level ``__getattr__`` for names that moved out of module ``old``.

    ``moved`` maps each old name to the module object now holding it; reading ``old.name``
    returns that module's attribute with a :class:`DeprecationWarning` naming the new place.

    Example:
        >>> from obliviate import hessian
        >>> __getattr__ = moved_names("obliviate.metrics.hessian", {"top_eigenvalue": hessian})
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        module = moved[name]
        warnings.warn(f"{old}.{name} moved to {module.__name__}.{name}; import it from there.", DeprecationWarning, stacklevel=2)
        return getattr(module, name)

    return __getattr__
