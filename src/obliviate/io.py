"""Checkpoints and run directories: safetensors for tensors, JSON for everything else.

Nothing here unpickles: weights and masks are read with :mod:`safetensors` (a file that is not
one is refused), metadata with :mod:`json`. A run directory holds ``model.safetensors``,
``run.json`` (one run record) and, for unlearning runs, ``scenario.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import IncompatibleModelError, InvalidConfigError

__all__ = [
    "save_model",
    "load_state_dict",
    "load_weights",
    "save_masks",
    "load_masks",
    "read_metadata",
    "canonical_json",
    "METADATA_KEY",
    "write_json",
    "read_json",
    "MODEL_FILE",
    "RUN_FILE",
    "SCENARIO_FILE",
]

MODEL_FILE = "model.safetensors"
RUN_FILE = "run.json"
SCENARIO_FILE = "scenario.json"


METADATA_KEY = "obliviate"
"""The one safetensors header metadata key obliviate writes: its value is the metadata as canonical
JSON (sorted keys, no spaces). The safetensors writer keeps metadata in a hash map whose order
changes between processes, so several keys would give different file bytes for the same model;
one key gives the same bytes for the same tensors and metadata in every process."""


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON: sorted keys, no spaces, ASCII, NaN/inf as null (as :func:`write_json`
    stores them), so that equal content gives equal text (for digests and file headers).
    """
    return json.dumps(_clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _canonical_metadata(metadata: dict[str, str]) -> dict[str, str]:
    return {METADATA_KEY: canonical_json(metadata)}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=_canonical_metadata(metadata))
    return path


def save_model(model: nn.Module, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> Path:
    """Write a model's state dict (parameters and buffers) as a safetensors file.

    The same tensors and metadata give the same file bytes in every process: the metadata
    (``format: obliviate`` plus ``metadata``, values as strings) is stored as canonical JSON under
    the single header key :data:`METADATA_KEY`; :func:`read_metadata` reads it back.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "obliviate"} | {str(k): str(v) for k, v in (metadata or {}).items()}
    return _save_tensors(state, path, meta)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a safetensors file written by obliviate, as a dict of strings.

    Reads the single canonical-JSON key of current files (:data:`METADATA_KEY`) and the
    one-key-per-entry header of files written before it; other files' header metadata is
    returned as it is (empty when there is none).

    Raises:
        InvalidConfigError: the file does not exist.
        IncompatibleModelError: the file is not a safetensors file, or its obliviate metadata is
            not a JSON object of strings.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InvalidConfigError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), "pt") as f:
            raw = dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise IncompatibleModelError(f"{str(path)!r} is not a safetensors file ({type(e).__name__}: {e}).") from e
    if METADATA_KEY not in raw:
        return raw  # the former layout: one header key per entry
    try:
        meta = json.loads(raw.pop(METADATA_KEY))
    except json.JSONDecodeError as e:
        raise IncompatibleModelError(f"The {METADATA_KEY!r} metadata of {str(path)!r} is not valid JSON: {e}.") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise IncompatibleModelError(f"The {METADATA_KEY!r} metadata of {str(path)!r} must be a JSON object of strings.")
    return {**raw, **meta}


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors file into a dict of CPU tensors.

    Raises:
        InvalidConfigError: the file does not exist.
        IncompatibleModelError: the file is not a safetensors file (a pickle, say).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InvalidConfigError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise IncompatibleModelError(
            f"{str(path)!r} is not a safetensors file ({type(e).__name__}: {e}). obliviate never unpickles "
            "checkpoints; convert it with safetensors.torch.save_file(model.state_dict(), ...)."
        ) from e


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load a safetensors checkpoint into ``model`` (in place, strictly).

    The checkpoint is checked before anything is copied (a refused file leaves ``model`` as it
    was): the same keys and shapes as the model, each tensor in the model's own dtype (a float32
    weight stored as int32 or float64 is refused, never cast; integer buffers such as BatchNorm's
    ``num_batches_tracked`` stay integers), and only finite floating values.

    Raises:
        IncompatibleModelError: not a safetensors file, its keys/shapes/dtypes differ from the
            model, or a tensor holds NaN or infinite values (the file and the tensor are named).
    """
    state = load_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if shapes:
            k = shapes[0]
            parts.append(f"shape of {k!r} is {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model")
        raise IncompatibleModelError(f"Checkpoint {str(path)!r} does not match {type(model).__name__}: " + "; ".join(parts) + ".")
    dtypes = [k for k in expected if state[k].dtype != expected[k].dtype]
    if dtypes:
        k = dtypes[0]
        raise IncompatibleModelError(
            f"Checkpoint {str(path)!r} does not match {type(model).__name__}: tensor {k!r} is "
            f"{str(state[k].dtype).removeprefix('torch.')} in the file, {str(expected[k].dtype).removeprefix('torch.')} "
            f"in the model ({len(dtypes)} tensor(s) differ); obliviate does not cast checkpoints, convert the file first."
        )
    for k, v in state.items():
        if v.is_floating_point() or v.is_complex():
            bad = int((~torch.isfinite(v)).sum())
            if bad:
                raise IncompatibleModelError(
                    f"Checkpoint {str(path)!r} is corrupt: tensor {k!r} holds {bad} non-finite value(s) (NaN or inf) "
                    f"of {v.numel()}; the file cannot be used as model weights."
                )
    model.load_state_dict(state, strict=True)
    return model


def save_masks(masks: dict[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write ``{parameter name: bool tensor}`` masks as safetensors (same masks, same bytes; see :func:`save_model`)."""
    tensors = {k: v.detach().cpu().bool().contiguous() for k, v in masks.items()}
    return _save_tensors(tensors, Path(path), {"format": "obliviate-masks"})


def load_masks(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read masks written by :func:`save_masks`."""
    masks = load_state_dict(path)
    bad = [k for k, v in masks.items() if v.dtype != torch.bool]
    if bad:
        raise IncompatibleModelError(f"{str(path)!r} is not a mask file: {bad[0]!r} is not boolean.")
    return masks


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON (NaN/inf become null, numpy scalars plain numbers)."""
    path = Path(path)
    path.write_text(json.dumps(_clean(obj), indent=2) + "\n")
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidConfigError(f"{str(path)!r} does not exist.") from None
    except json.JSONDecodeError as e:
        raise InvalidConfigError(f"{str(path)!r} is not valid JSON: {e}") from None
