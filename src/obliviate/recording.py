"""Recorded training runs, and their replay without chosen samples (the "naive retrain").

Unrolling-SGD unlearning (Thudi et al., EuroS&P'22, arXiv:2109.13398) and amnesiac unlearning
(Graves et al., AAAI'21, arXiv:2010.10981) need more than the trained weights: the initial
weights ``w_0``, which samples each SGD step used, the learning rate of each step and, for
amnesiac unlearning, the parameter update of the steps that used the samples to forget.
``ob.train(model, data, record=True)`` keeps exactly that on ``result.recording``:

* the initial and final state dicts (parameters and buffers);
* the batch order compactly: one ``int32`` permutation of the training positions per epoch,
  plus, for every optimiser step, its epoch and batch number (batches of one sample that the
  loop skips under BatchNorm are not steps);
* the learning rate of every step, as the optimiser used it;
* optionally (``record_updates``) the update ``w_{s+1} - w_s`` of the trainable parameters at
  every step, or only at the steps whose batch holds given samples; 4 bytes per parameter per
  kept step, reported by :meth:`Recording.nbytes`;
* optionally (:class:`Recorder` with ``hessian_every``) the top Hessian eigenvalue along the
  trajectory, for the unlearning-error proxy.

Sample identity: the recording stores, for each training position, the index of the sample in
the underlying dataset (``scenario.train`` is a view of the dataset's train split, so these are
train-split indices, the numbering of ``scenario.forget_idx``) and its label, which is checked
when the recording is used with a scenario.

:func:`replay` re-runs a recording through the one training loop (:func:`obliviate.training.fit`)
from the recorded initial weights, with the recorded batches minus excluded samples and the
recorded learning rates; batches left empty are skipped. :func:`naive_retrain` is the replay
without a scenario's forget set: the model ``w'`` of the paper, against which the verification
error is measured. The replay is exact (bit for bit) for deterministic models; dropout masks and
random augmentation cannot be replayed, so a recording made with ``augment``/``augment_fn`` is
refused and dropout makes the replay approximate. Masks given to ``ob.train`` are not recorded.

Recordings are saved as ``recording.safetensors`` + ``recording.json`` beside a checkpoint
(:meth:`Recording.save`, :meth:`Recording.load`); nothing is pickled.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ._utils import resolve_device, seeded
from .data.base import Subset, iterate_batches, subset_root, targets_of
from .data.scenario import Scenario
from .errors import IncompatibleModelError, InvalidConfigError, MissingDataError, ReproducibilityWarning, UnlearningWarning
from .io import canonical_json, load_state_dict, read_json, write_json
from .training import StepHook, TrainConfig, fit, logit_loss, register_recorder

__all__ = ["Recording", "Recorder", "replay", "naive_retrain", "logit_loss", "RECORDING_FILE", "RECORDING_META"]

RECORDING_FILE = "recording.safetensors"
RECORDING_META = "recording.json"
_SCHEMA = "obliviate.recording/1"


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _flat(params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


# The fields of recording.json that the digest covers (all but the digest and the derived summary).
_DIGEST_FIELDS = ("schema", "config", "seed", "batch_size", "param_names", "state_keys", "loss", "augmented", "dropout")


def _digest(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the recording's JSON fields (canonical JSON) and every tensor of its file (name,
    dtype, shape and bytes, in name order): any edit of either file changes it.
    """
    h = hashlib.sha256(b"obliviate.recording.digest/1\0")
    h.update(canonical_json({k: meta.get(k) for k in _DIGEST_FIELDS}).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return "sha256:" + h.hexdigest()


@dataclass(eq=False)
class Recording:
    """What a recorded training run keeps (see the module docstring).

    Build one with ``ob.train(..., record=True)``; read it, never change it.

    Attributes:
        config: The training recipe (``TrainConfig.to_dict()``).
        seed: The training seed.
        batch_size: The recipe's batch size.
        ids: Index of each training position in the underlying dataset (``int64``).
        labels: Label of each training position (``int64``).
        orders: One ``int32`` permutation of the positions per epoch run.
        step_epoch: Epoch of each optimiser step (``int32``).
        step_batch: Batch number within its epoch of each step (``int32``).
        lrs: Learning rate of each step (``float64``).
        initial: State dict before the first step (CPU tensors).
        final: State dict after the last step (CPU tensors).
        param_names: Trainable parameters, in the order of the flattened update vectors.
        update_steps: Steps whose update was kept (``int64``).
        updates: ``(len(update_steps), P)`` parameter updates ``w_{s+1} - w_s``, or None.
        hessian_steps: Number of steps taken at each Hessian measurement.
        hessian_eigenvalues: Signed top Hessian eigenvalue at each measurement.
        loss: "cross_entropy" (the recipe's loss) or "custom" (a ``loss_fn`` given to ``fit``).
        augmented: Whether random augmentation was used (then the run cannot be replayed).
        dropout: Whether the model had active dropout (then a replay is approximate).
        source: The ``recording.json`` it was loaded from (named in errors), or None.
    """

    config: dict[str, Any]
    seed: int
    batch_size: int
    ids: np.ndarray
    labels: np.ndarray
    orders: list[np.ndarray]
    step_epoch: np.ndarray
    step_batch: np.ndarray
    lrs: np.ndarray
    initial: dict[str, torch.Tensor]
    final: dict[str, torch.Tensor]
    param_names: list[str]
    update_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    updates: torch.Tensor | None = None
    hessian_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    hessian_eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    loss: str = "cross_entropy"
    augmented: bool = False
    dropout: bool = False
    source: str | None = field(default=None, repr=False, compare=False)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ structure
    @property
    def num_steps(self) -> int:
        """Number of optimiser steps taken."""
        return len(self.lrs)

    @property
    def num_samples(self) -> int:
        """Number of training positions."""
        return len(self.ids)

    @property
    def num_epochs(self) -> int:
        """Number of epochs run."""
        return len(self.orders)

    @property
    def train_config(self) -> TrainConfig:
        """The recipe as a :class:`~obliviate.training.TrainConfig`."""
        return TrainConfig.from_dict(self.config)

    def batch(self, step: int) -> np.ndarray:
        """Training positions of the batch of ``step`` (``int64``)."""
        e, k = int(self.step_epoch[step]), int(self.step_batch[step])
        return self.orders[e][k * self.batch_size : (k + 1) * self.batch_size].astype(np.int64)

    def positions(self, ids: Any) -> np.ndarray:
        """Training positions of the samples with these dataset indices.

        Raises:
            MissingDataError: an index was not part of the recorded training set.
        """
        want = np.asarray(ids, dtype=np.int64).reshape(-1)
        order = np.argsort(self.ids, kind="stable")
        where = np.searchsorted(self.ids, want, sorter=order)
        where = np.minimum(where, len(order) - 1) if len(order) else where
        found = self.ids[order[where]] == want if len(order) else np.zeros(len(want), bool)
        if not np.all(found):
            raise MissingDataError(
                f"Sample {int(want[~found][0])} is not in the recorded training set ({self.num_samples} samples): the "
                "recording belongs to a model trained on other data. Record the training of this model "
                "(ob.train(..., record=True) on scenario.train)."
            )
        return order[where].astype(np.int64)

    def _batch_hits(self, positions: np.ndarray) -> np.ndarray:
        """Number of the given positions in the batch of each step."""
        if self.num_steps == 0:
            return np.zeros(0, np.int64)
        n_batches = math.ceil(self.num_samples / self.batch_size)
        hits = np.zeros((self.num_epochs, n_batches), np.int64)
        for e, order in enumerate(self.orders):
            rank = np.empty(len(order), np.int64)
            rank[order] = np.arange(len(order))
            np.add.at(hits[e], rank[positions] // self.batch_size, 1)
        return hits[self.step_epoch, self.step_batch]

    def steps_holding(self, positions: Any) -> np.ndarray:
        """Boolean mask over steps: does the step's batch hold one of these positions?"""
        return self._batch_hits(np.asarray(positions, dtype=np.int64)) > 0

    def batch_sizes(self) -> np.ndarray:
        """Size of the batch of each step."""
        n = self.num_samples
        return np.minimum(self.batch_size, n - self.step_batch.astype(np.int64) * self.batch_size)

    def forget_counts(self, positions: Any) -> np.ndarray:
        """How many of these positions each step's batch holds."""
        return self._batch_hits(np.asarray(positions, dtype=np.int64))

    # ------------------------------------------------------------------ checks
    def training_data(self, dataset: Dataset) -> Subset:
        """The recorded training set as a view of ``dataset`` (the dataset's train split).

        Position ``i`` of the result is training position ``i`` of the recording.

        Raises:
            IncompatibleModelError: the dataset is too small or its labels differ from the
                recorded ones (the recording was made on other data).
        """
        n = len(dataset)  # type: ignore[arg-type]
        if self.num_samples and int(self.ids.max()) >= n:
            raise IncompatibleModelError(
                f"The recording refers to sample {int(self.ids.max())}, but the dataset has {n} samples: it was "
                "recorded on other data."
            )
        view = Subset(dataset, self.ids)
        if not np.array_equal(targets_of(view), self.labels):
            raise IncompatibleModelError(
                "The recorded training labels differ from the dataset's: the recording was made on other data "
                "(record the training on scenario.train of this dataset)."
            )
        return view

    def check_model(self, model: nn.Module) -> None:
        """Check that the recording and ``model`` describe the same trainable parameters.

        Every recorded parameter (``param_names``, each once) is in the recorded initial and final
        state and in the model, with the same shape everywhere; every trainable parameter of the
        model is recorded, unless the recorded run left it unchanged (initial equal to final: it was
        frozen during training); recorded updates have one entry per recorded coordinate. An edited
        recording (a shortened ``param_names``, say) would otherwise make ``sgu`` or ``amnesiac``
        update only part of the model, silently.

        Raises:
            IncompatibleModelError: any of these does not hold; the message names the recording's
                file when it was loaded from one.
        """
        where = f"the recording {self.source!r}" if self.source else "the recording"

        def refuse(reason: str) -> IncompatibleModelError:
            return IncompatibleModelError(
                f"The model {type(model).__name__} does not match {where}: {reason}. Use the recording made when this "
                "model was trained (ob.train(..., record=True) or 'obliviate train --record')."
            )

        names = list(self.param_names)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise refuse(f"parameter {repeated[0]!r} is listed twice in its param_names")
        params = dict(model.named_parameters())
        for name in names:
            if name not in self.initial or name not in self.final:
                raise refuse(f"parameter {name!r} of its param_names has no recorded initial or final value")
            shape = tuple(self.initial[name].shape)
            if tuple(self.final[name].shape) != shape:
                raise refuse(f"parameter {name!r} has shape {shape} initially and {tuple(self.final[name].shape)} finally")
            if name not in params or tuple(params[name].shape) != shape:
                got = "missing" if name not in params else f"of shape {tuple(params[name].shape)}"
                raise refuse(f"parameter {name!r} is {got} in the model, recorded with shape {shape}")
        recorded = set(names)
        for name, p in params.items():
            if not p.requires_grad or name in recorded:
                continue
            frozen = name in self.initial and name in self.final and torch.equal(self.initial[name], self.final[name])
            if not frozen:
                raise refuse(f"the model's trainable parameter {name!r} is not in the recording's param_names")
        if self.updates is not None:
            width = sum(self.initial[n].numel() for n in names)
            if self.updates.ndim != 2 or self.updates.shape[1] != width:
                raise refuse(f"its updates have shape {tuple(self.updates.shape)}, not (steps, {width})")

    def is_final(self, model: nn.Module) -> bool:
        """Whether ``model``'s trainable parameters equal the recorded final ones."""
        params = dict(model.named_parameters())
        return all(torch.equal(params[n].detach().cpu(), self.final[n]) for n in self.param_names if n in params)

    def scenario_positions(self, scenario: Scenario) -> np.ndarray:
        """Training positions of ``scenario.forget``, after checking the data matches."""
        self.training_data(scenario.train_split)
        return self.positions(scenario.forget_idx)

    # ------------------------------------------------------------------ weights
    def vector(self, state: dict[str, torch.Tensor] | nn.Module, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The trainable parameters of a state dict or model as one flat CPU vector."""
        src = dict(state.named_parameters()) if isinstance(state, nn.Module) else state
        return torch.cat([src[n].detach().cpu().reshape(-1).to(dtype) for n in self.param_names])

    def update_sum(self, steps: np.ndarray) -> torch.Tensor:
        """Sum of the recorded updates of the given steps, as one flat vector.

        Raises:
            MissingDataError: a step's update was not recorded.
        """
        steps = np.asarray(steps, dtype=np.int64)
        if self.updates is None:
            missing = steps
        else:
            missing = np.setdiff1d(steps, self.update_steps)
        if len(missing):
            raise MissingDataError(
                f"The recording has no parameter update for step {int(missing[0])} ({len(missing)} of {len(steps)} "
                "steps needed); train with ob.train(..., record=True, record_updates=True), or pass the indices to "
                "forget as record_updates=..."
            )
        if len(steps) == 0:
            return torch.zeros(sum(self.initial[n].numel() for n in self.param_names), dtype=torch.float64)
        rows = np.searchsorted(self.update_steps, steps)
        return self.updates[torch.as_tensor(rows)].double().sum(0)  # type: ignore[index]

    def split_vector(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cut a flat vector back into ``{parameter name: tensor}`` of the recorded shapes."""
        out, start = {}, 0
        for n in self.param_names:
            shape = self.initial[n].shape
            k = int(np.prod(shape)) if len(shape) else 1
            out[n] = vec[start : start + k].reshape(shape)
            start += k
        return out

    # ------------------------------------------------------------------ cost
    def nbytes(self) -> dict[str, int]:
        """Memory held, in bytes: ``order`` (batch order), ``weights`` (initial and final
        state), ``updates``, ``other`` and ``total``.
        """

        def size(t: torch.Tensor) -> int:
            return t.numel() * t.element_size()

        out = {
            "order": sum(o.nbytes for o in self.orders) + self.step_epoch.nbytes + self.step_batch.nbytes + self.lrs.nbytes,
            "weights": sum(size(t) for t in self.initial.values()) + sum(size(t) for t in self.final.values()),
            "updates": 0 if self.updates is None else size(self.updates),
            "other": self.ids.nbytes + self.labels.nbytes + self.hessian_eigenvalues.nbytes + self.hessian_steps.nbytes,
        }
        out["total"] = sum(out.values())
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (sizes, steps, memory)."""
        return {
            "steps": self.num_steps,
            "epochs": self.num_epochs,
            "samples": self.num_samples,
            "batch_size": self.batch_size,
            "updates_kept": int(len(self.update_steps)),
            "hessian_measurements": int(len(self.hessian_steps)),
            "nbytes": self.nbytes(),
        }

    def __repr__(self) -> str:
        mb = self.nbytes()["total"] / 2**20
        return (
            f"Recording(steps={self.num_steps}, epochs={self.num_epochs}, samples={self.num_samples}, "
            f"updates_kept={len(self.update_steps)}, {mb:.2f} MiB)"
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``recording.safetensors`` and ``recording.json`` into ``directory``."""
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for prefix, state in (("initial", self.initial), ("final", self.final)):
            for k, v in state.items():
                tensors[f"{prefix}/{k}"] = v.detach().cpu().contiguous().clone()
        arrays = {
            "ids": self.ids,
            "labels": self.labels,
            "step_epoch": self.step_epoch,
            "step_batch": self.step_batch,
            "lrs": self.lrs,
            "update_steps": self.update_steps,
            "hessian_steps": self.hessian_steps,
            "hessian_eigenvalues": self.hessian_eigenvalues,
            "orders": np.stack(self.orders) if self.orders else np.zeros((0, self.num_samples), np.int32),
        }
        for k, a in arrays.items():
            tensors[k] = torch.from_numpy(np.ascontiguousarray(a))
        if self.updates is not None:
            tensors["updates"] = self.updates.contiguous()
        meta: dict[str, Any] = {
            "schema": _SCHEMA,
            "config": self.config,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "param_names": self.param_names,
            "state_keys": {"initial": list(self.initial), "final": list(self.final)},
            "loss": self.loss,
            "augmented": self.augmented,
            "dropout": self.dropout,
            "summary": self.summary(),
        }
        meta["digest"] = _digest(meta, tensors)
        save_file(tensors, str(path / RECORDING_FILE), metadata={"format": "obliviate-recording"})
        write_json(path / RECORDING_META, meta)
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Recording:
        """Read a recording written by :meth:`save`, and check it was not edited since.

        ``recording.json`` holds a SHA-256 digest of both files' content (:meth:`save` computes it);
        a recording whose content no longer matches it is refused. The digest catches edits and
        damage, not a forger who recomputes it (a recording holds no secret to sign it with).
        Recordings saved before digests existed load with an :class:`~obliviate.errors.UnlearningWarning`
        (they are still checked against the model on use, :meth:`check_model`); re-record to
        protect them.

        Raises:
            InvalidConfigError: the JSON file is missing or not a recording.
            IncompatibleModelError: the tensor file is not safetensors or lacks entries, or the
                content does not match its digest (the file is named).
        """
        path = Path(directory)
        meta_path = path / RECORDING_META
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("schema") != _SCHEMA:
            raise InvalidConfigError(f"{str(meta_path)!r} is not an obliviate recording (schema {_SCHEMA!r}).")
        t = load_state_dict(path / RECORDING_FILE)
        stored = meta.get("digest")
        if stored is None:
            warnings.warn(
                f"The recording {str(meta_path)!r} has no digest (saved by an older obliviate), so edits to it cannot be "
                "detected; re-record the training (ob.train(..., record=True) or 'obliviate train --record') to protect it.",
                UnlearningWarning,
                stacklevel=2,
            )
        elif stored != _digest(meta, t):
            raise IncompatibleModelError(
                f"The recording {str(meta_path)!r} (with {RECORDING_FILE}) was edited or damaged since it was saved: its "
                "content does not match its digest. Use the recording as saved, or re-record the training."
            )
        try:
            keys = meta["state_keys"]
            orders = t["orders"].numpy()
            return cls(
                config=dict(meta["config"]),
                seed=int(meta["seed"]),
                batch_size=int(meta["batch_size"]),
                ids=t["ids"].numpy(),
                labels=t["labels"].numpy(),
                orders=[orders[i] for i in range(len(orders))],
                step_epoch=t["step_epoch"].numpy(),
                step_batch=t["step_batch"].numpy(),
                lrs=t["lrs"].numpy(),
                initial={k: t[f"initial/{k}"] for k in keys["initial"]},
                final={k: t[f"final/{k}"] for k in keys["final"]},
                param_names=list(meta["param_names"]),
                update_steps=t["update_steps"].numpy(),
                updates=t.get("updates"),
                hessian_steps=t["hessian_steps"].numpy(),
                hessian_eigenvalues=t["hessian_eigenvalues"].numpy(),
                loss=str(meta.get("loss", "cross_entropy")),
                augmented=bool(meta.get("augmented", False)),
                dropout=bool(meta.get("dropout", False)),
                source=str(meta_path),
            )
        except KeyError as e:
            raise IncompatibleModelError(
                f"{str(path / RECORDING_FILE)!r} lacks the entry {e}; it is not a complete recording."
            ) from None


class Recorder(StepHook):
    """The :class:`~obliviate.training.StepHook` behind ``ob.train(..., record=True)``.

    Use it directly with :func:`~obliviate.training.fit` (``step_hook=recorder``) for runs that
    ``ob.train`` cannot express (a custom loss); :attr:`recording` holds the result after the
    run.

    Args:
        seed: The run's seed (stored).
        updates: Keep parameter updates: False, True (every step) or sample indices (dataset
            numbering) whose steps to keep.
        hessian_every: Measure the top Hessian eigenvalue (power iteration) at the start and
            after every this many steps; 0 disables.
        hessian_samples: Size of the fixed probe batch (the first training positions).
        augment_fn: Whether a user augmentation hook is used (the run then cannot be replayed).
        record: Must be True (``record_updates`` without ``record`` is an error).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        updates: bool | Iterable[int] = False,
        hessian_every: int = 0,
        hessian_samples: int = 256,
        augment_fn: bool = False,
        record: bool = True,
    ) -> None:
        if not record:
            raise InvalidConfigError("The 'record_updates' argument of train needs record=True as well.")
        if isinstance(updates, (bool, np.bool_)):
            self._wanted_ids: np.ndarray | None = None
            self._all_updates = bool(updates)
        else:
            try:
                self._wanted_ids = np.asarray(list(updates), dtype=np.int64).reshape(-1)
            except (TypeError, ValueError):
                raise InvalidConfigError(
                    f"The 'record_updates' argument of train must be True, False or sample indices; got {updates!r}."
                ) from None
            self._all_updates = False
        if not isinstance(hessian_every, int) or isinstance(hessian_every, bool) or hessian_every < 0:
            raise InvalidConfigError(f"The 'hessian_every' argument of Recorder must be an int >= 0; got {hessian_every!r}.")
        self.seed = int(seed)
        self.hessian_every = hessian_every
        self.hessian_samples = int(hessian_samples)
        self.augment_fn = bool(augment_fn)
        self.recording: Recording | None = None
        self._orders: list[np.ndarray] = []
        self._steps: list[tuple[int, int]] = []
        self._lrs: list[float] = []
        self._update_steps: list[int] = []
        self._updates: list[torch.Tensor] = []
        self._h_steps: list[int] = []
        self._h_values: list[float] = []
        self._current: tuple[int, int] = (0, 0)
        self._before: torch.Tensor | None = None
        self._ids: np.ndarray | None = None
        self._wanted: np.ndarray | None = None
        self._probe: tuple[torch.Tensor, torch.Tensor] | None = None

    def start(self, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, *, custom_loss: bool) -> None:
        if self._orders or self.recording is not None:
            raise InvalidConfigError("A Recorder records one training run; make a new one for each run.")
        self._model = model  # for the Hessian measurements
        self._config = config
        self._custom = custom_loss
        self._initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        named = _trainable(model)
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        self._dropout = _has_dropout(model)
        self._loss = logit_loss(config.label_smoothing, config.std_reg)
        if self.hessian_every:
            self._measure_pending = True  # at w_0, once the probe batch is known (first iterate call)

    def iterate(
        self, dataset: Dataset, epoch: int, batch_size: int, *, device: torch.device, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(dataset)  # type: ignore[arg-type]
        if self._ids is None:
            _, self._ids = subset_root(dataset)
            self._labels = targets_of(dataset)
            self._batch_size = batch_size
            if self._wanted_ids is not None:
                self._wanted = np.isin(self._ids, self._wanted_ids)
            if self.hessian_every:
                k = min(self.hessian_samples, n)
                self._probe = next(iter(iterate_batches(Subset(dataset, np.arange(k)), k, device=device)))
        # the same draw as iterate_batches(shuffle=True): one permutation per epoch from the generator
        order = torch.randperm(n, generator=generator).numpy()
        self._orders.append(order.astype(np.int32))
        if self.hessian_every and getattr(self, "_measure_pending", False):
            self._measure_pending = False
            self._measure(0)
        for k, batch in enumerate(iterate_batches(Subset(dataset, order), batch_size, device=device)):
            self._current = (len(self._orders) - 1, k)
            yield batch

    def _keep_update(self) -> bool:
        if self._all_updates:
            return True
        if self._wanted is None:
            return False
        e, k = self._current
        batch = self._orders[e][k * self._batch_size : (k + 1) * self._batch_size]
        return bool(self._wanted[batch].any())

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._steps.append(self._current)
        self._lrs.append(float(optimizer.param_groups[0]["lr"]))
        self._before = _flat(self._params) if self._keep_update() else None  # torch.cat copies

    def after_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self._before is not None:
            self._updates.append((_flat(self._params) - self._before).cpu())
            self._update_steps.append(len(self._steps) - 1)
            self._before = None
        if self.hessian_every and len(self._steps) % self.hessian_every == 0:
            self._measure(len(self._steps))

    def _measure(self, steps: int) -> None:
        from .hessian import top_eigenvalue

        x, y = self._probe  # type: ignore[misc]
        spectrum = top_eigenvalue(self._model, x, y, loss=self._loss, seed=self.seed + steps)
        self._h_steps.append(steps)
        self._h_values.append(spectrum.eigenvalue)

    def finish(self, model: nn.Module) -> None:
        if self._ids is None:
            raise InvalidConfigError("The recorder saw no dataset: record runs that train on a Dataset, not a batch function.")
        steps = np.asarray(self._steps, dtype=np.int32).reshape(-1, 2)
        self.recording = Recording(
            config=self._config.to_dict(),
            seed=self.seed,
            batch_size=self._batch_size,
            ids=self._ids.astype(np.int64),
            labels=np.asarray(self._labels, dtype=np.int64),
            orders=self._orders,
            step_epoch=steps[:, 0].copy(),
            step_batch=steps[:, 1].copy(),
            lrs=np.asarray(self._lrs, dtype=np.float64),
            initial=self._initial,
            final={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            param_names=self._names,
            update_steps=np.asarray(self._update_steps, dtype=np.int64),
            updates=torch.stack(self._updates) if self._updates else None,
            hessian_steps=np.asarray(self._h_steps, dtype=np.int64),
            hessian_eigenvalues=np.asarray(self._h_values, dtype=np.float64),
            loss="custom" if self._custom else "cross_entropy",
            augmented=self.augment_fn or self._config.augment is not None,
            dropout=self._dropout,
        )


class _Replay(StepHook):
    """Steps through a recording's batches without excluded positions, at the recorded rates."""

    def __init__(self, recording: Recording, data: Dataset, keep: np.ndarray, device: torch.device) -> None:
        self.recording, self.data, self.keep, self.device = recording, data, keep, device
        self.current = -1
        self.steps_taken = 0
        self.by_epoch: list[list[int]] = [[] for _ in range(recording.num_epochs)]
        for s, e in enumerate(recording.step_epoch):
            self.by_epoch[int(e)].append(s)

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for s in self.by_epoch[epoch] if epoch < len(self.by_epoch) else []:
            positions = self.recording.batch(s)
            kept = positions[self.keep[positions]]
            if len(kept) == 0:
                continue  # the naive retrain never sees this batch
            self.current = s
            yield next(iter(iterate_batches(Subset(self.data, kept), len(kept), device=self.device)))

    def before_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            group["lr"] = float(self.recording.lrs[self.current])
        self.steps_taken += 1


def _check_replayable(recording: Recording, loss_fn: Any) -> None:
    if not isinstance(recording, Recording):
        raise InvalidConfigError(f"Expected a Recording (ob.train(..., record=True).recording); got {type(recording).__name__}.")
    if recording.augmented:
        raise InvalidConfigError(
            "The recorded run used random augmentation (augment or augment_fn), which cannot be replayed; "
            "record a run without augmentation to measure the verification error."
        )
    if recording.loss == "custom" and loss_fn is None:
        raise InvalidConfigError("The recorded run used a custom loss; pass the same loss_fn to replay it.")


def replay(
    model: nn.Module,
    recording: Recording,
    data: Dataset,
    *,
    exclude: Any = (),
    loss_fn: Any = None,
    device: str | torch.device = "auto",
) -> tuple[nn.Module, int]:
    """Re-run a recorded training from its initial weights, without some training positions.

    Each recorded step is taken on its batch minus the excluded positions, with the recorded
    learning rate and the recorded optimiser settings; a batch left empty is skipped (and so is
    one left with a single sample when the model has BatchNorm, as :func:`fit` does).

    Args:
        model: A model of the recorded architecture (copied; its weights are replaced by the
            recorded initial ones).
        recording: The recording.
        data: The recorded training data (:meth:`Recording.training_data`).
        exclude: Training positions to leave out.
        loss_fn: The loss, when the recording used a custom one (``loss_fn(model, x, y)``).
        device: "auto", "cpu", "cuda" ...

    Returns:
        (the replayed model in eval mode, the number of steps taken).
    """
    _check_replayable(recording, loss_fn)
    recording.check_model(model)
    dev = resolve_device(device)
    net = copy.deepcopy(model).to(dev)
    net.load_state_dict(recording.initial)
    keep = np.ones(recording.num_samples, dtype=bool)
    keep[np.asarray(exclude, dtype=np.int64)] = False
    hook = _Replay(recording, data, keep, dev)
    config = TrainConfig.from_dict({**recording.config, "augment": None, "epochs": max(1, recording.num_epochs)})
    if recording.dropout:
        warnings.warn(
            "The recorded model has dropout, whose random masks cannot be replayed: the naive retrain is approximate.",
            ReproducibilityWarning,
            stacklevel=2,
        )
    if recording.num_steps:
        steps_per_epoch = max(len(s) for s in hook.by_epoch) or 1
        with seeded(recording.seed, dev):
            fit(
                net,
                hook.batches,
                config=config,
                loss_fn=loss_fn,
                generator=torch.Generator().manual_seed(recording.seed),
                device=dev,
                steps_per_epoch=steps_per_epoch,
                progress=False,
                desc="replay",
                step_hook=hook,
            )
    net.eval()
    return net, hook.steps_taken


def naive_retrain(
    model: nn.Module,
    recording: Recording,
    scenario: Scenario,
    *,
    loss_fn: Any = None,
    device: str | torch.device = "auto",
) -> nn.Module:
    """The model ``w'`` of the unrolling paper: the recorded run replayed without ``scenario.forget``.

    Same initial weights, same batches minus the forget samples, same learning rates. The
    verification error of an unlearned model is its ``weight_distance`` to this model. The
    result is cached on the recording per scenario and device (it costs one training run).

    Args:
        model: A model of the recorded architecture (e.g. the original model; not changed).
        recording: ``ob.train(..., record=True).recording`` of the original model.
        scenario: What to forget; its dataset must be the recorded one.
        loss_fn: The loss, when the recording used a custom one.
        device: "auto", "cpu", "cuda" ...

    Returns:
        A new model in eval mode.
    """
    _check_replayable(recording, loss_fn)
    data = recording.training_data(scenario.train_split)
    forget = recording.positions(scenario.forget_idx)
    dev = resolve_device(device)
    key = ("naive_retrain", scenario.hash, str(dev), id(loss_fn) if loss_fn is not None else None)
    if key not in recording._cache:
        net, _ = replay(model, recording, data, exclude=forget, loss_fn=loss_fn, device=dev)
        recording._cache[key] = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net = copy.deepcopy(model).to(dev)
    net.load_state_dict(recording._cache[key])
    net.eval()
    return net


register_recorder(Recorder)  # the hook behind ob.train(..., record=True); training never imports this module
