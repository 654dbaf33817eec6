"""SISA (Bourtoule et al., IEEE S&P 2021): sharded, isolated, sliced, aggregated training; exact unlearning by shard.

The training rows are split at random into ``S`` disjoint shards, and each shard into ``R``
disjoint slices. Shard ``k``'s model is trained in ``R`` stages: stage ``r`` starts from the
checkpoint of stage ``r - 1`` (stage 1 from the shard's initial weights) and trains
``epochs_per_slice`` epochs, with :func:`obliviate.train` (the one training loop) and the recipe,
on the union of the shard's slices ``1 .. r``; its weights are kept (the slice checkpoint). The
ensemble predicts by majority vote or by the mean of the shard models' softmax outputs.

Removing rows retrains only the shards that hold them, and each from the last checkpoint that
never saw them: the checkpoint of the stage before the earliest slice holding a removed row. Every
stage's seed depends only on (seed, shard, stage), and a removed row leaves its slice without
moving any other row, so the result is exactly (bit for bit on CPU at a fixed thread count) the
shard trained from scratch on its rows without the removed ones.

Deviation from the paper, by design: each stage is a fresh :func:`obliviate.train` call (a fresh
optimiser and learning-rate schedule per stage); the paper's reference script also restarts its
optimiser per slice. Given a :class:`~obliviate.ledger.DeletionLedger`, ``fit`` records the training
rows and ``remove`` checks each request against it first (unknown rows, rows already removed are
refused before anything is retrained) and records it with the ensemble's digests before and after.
Shards train one after another by default; with ``backend="ray"`` each shard's stages run as one
Ray task (the shards are independent; the driver keeps the checkpoints). A task pins the driver's
thread count, so the Ray backend gives the same weights as the sequential one on the CPU.
:meth:`SISAEnsemble.save` writes the ensemble (every slice checkpoint and the assignment) to one
safetensors file, and :meth:`SISAEnsemble.load` reads it back without unpickling anything. The
registered exact method ``sisa`` (:class:`obliviate.methods.sisa.SISA`) wraps this class.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import InvalidConfigError

__all__ = ["SISAEnsemble", "RemovalReport"]

AGGREGATES = ("vote", "mean")
BACKENDS = ("local", "ray")


@dataclass
class RemovalReport:
    """What :meth:`SISAEnsemble.remove` did.

    Attributes:
        removed: The rows removed (those the ensemble held).
        shards: The shards retrained.
        stages_trained: Stages (slice trainings) run, over all retrained shards.
        stages_total: Stages a retraining of every shard from scratch would run (``S · R``).
        resumed_from: Per retrained shard, the stage its retraining started after (0: from scratch).
        samples_trained: Samples back-propagated by the retraining (rows x epochs over its stages).
    """

    removed: list[int]
    shards: list[int]
    stages_trained: int
    stages_total: int
    resumed_from: dict[int, int] = field(default_factory=dict)
    samples_trained: int = 0


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _train_stages(
    model: nn.Module,
    start_state: dict[str, torch.Tensor],
    data: Any,
    slices: Sequence[np.ndarray],
    start: int,
    recipe: dict[str, Any],
    seeds: dict[int, int],
    device: Any,
    threads: int | None = None,
) -> tuple[list[dict[str, torch.Tensor]], int]:
    """Stages ``start .. R`` of one shard from ``start_state``: ``(their checkpoints, stages trained)``.

    Stage ``r`` trains, with :func:`obliviate.train` and ``seeds[r]``, on the union of ``slices[:r]``;
    a stage whose slices hold no row (all removed) keeps the weights. ``threads`` pins
    ``torch.set_num_threads`` (what a Ray task needs to give the driver's result).
    """
    from .data.base import Subset
    from .training import train

    if threads is not None:
        torch.set_num_threads(threads)
    model = copy.deepcopy(model)
    model.load_state_dict(start_state)
    states, trained = [], 0
    for r in range(start, len(slices) + 1):
        rows = np.concatenate(slices[:r])
        if rows.size:
            out = train(model, Subset(data, rows), seed=seeds[r], device=device, progress=False, **recipe)
            model.load_state_dict(out.model.state_dict())
            trained += 1
        states.append(_state(model))
    return states, trained


def _on_ray(jobs: list[dict[str, Any]], address: str | None) -> list[tuple[list[dict[str, torch.Tensor]], int]]:
    """Run :func:`_train_stages` for each job as a Ray task (one CPU each), in the driver's thread count."""
    from ._utils import require

    ray = require("ray", "ray", "SISAEnsemble(backend='ray')")
    started_here = not ray.is_initialized()
    threads = torch.get_num_threads()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_train_stages)
        refs = [task.remote(**job, threads=threads) for job in jobs]
        try:
            return ray.get(refs)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


class SISAEnsemble(nn.Module):
    """``S`` shard models trained on disjoint shards in ``R`` slices each, with a checkpoint per slice.

    Args:
        build: ``build(shard) -> nn.Module``, a fresh model of the architecture (its initial
            weights are the shard's; call with the same argument, get the same weights).
        n_shards: ``S``, at least 1.
        n_slices: ``R``, at least 1.
        recipe: The training recipe of each stage (keyword arguments of :func:`obliviate.train`;
            its ``epochs`` is replaced by ``epochs_per_slice``).
        epochs_per_slice: Epochs of each stage.
        aggregate: ``"vote"`` (majority of the shard models' predictions; ties broken by the mean
            softmax) or ``"mean"`` (mean softmax).
        seed: Seed of the shard and slice assignment and of every stage.
        device: Where to train.
        backend: ``"local"`` (shards one after another, the default) or ``"ray"`` (one Ray task
            per shard to train; needs the ``ray`` extra; a Ray instance is started on this machine
            when none is running, and shut down afterwards).
        ray_address: With ``backend="ray"``: the address of a running Ray cluster (None: local).

    Example:
        >>> import obliviate as ob
        >>> from obliviate.testing import toy_dataset
        >>> ds = toy_dataset()
        >>> sisa = SISAEnsemble(lambda k: ob.build_model("mlp", ds, seed=k), 2, 2, {"lr": 0.05, "batch_size": 32},
        ...                     epochs_per_slice=1).fit(ds.train)
        >>> report = sisa.remove([0, 1])
        >>> report.stages_trained <= 4
        True
    """

    def __init__(
        self,
        build: Callable[[int], nn.Module],
        n_shards: int,
        n_slices: int,
        recipe: dict[str, Any] | None = None,
        *,
        epochs_per_slice: int = 1,
        aggregate: str = "mean",
        seed: int = 0,
        device: Any = "cpu",
        backend: str = "local",
        ray_address: str | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_shards", n_shards), ("n_slices", n_slices), ("epochs_per_slice", epochs_per_slice)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidConfigError(f"SISAEnsemble: {name!r} must be a positive integer; got {v!r}.")
        if aggregate not in AGGREGATES:
            raise InvalidConfigError(f"SISAEnsemble: 'aggregate' must be one of {', '.join(AGGREGATES)}; got {aggregate!r}.")
        self.build = build
        self.n_shards, self.n_slices, self.epochs_per_slice = n_shards, n_slices, epochs_per_slice
        self.recipe = dict(recipe or {})
        if backend not in BACKENDS:
            raise InvalidConfigError(f"SISAEnsemble: 'backend' must be one of {', '.join(BACKENDS)}; got {backend!r}.")
        self.aggregate, self.seed, self.device = aggregate, int(seed), device
        self.backend, self.ray_address = backend, ray_address
        self.shards = nn.ModuleList()
        self.slices: list[list[np.ndarray]] = []  # [shard][slice] -> rows of the train split
        self.checkpoints: list[list[dict[str, torch.Tensor]]] = []  # [shard][stage 0..R] -> state (0: initial)
        self.data: Any = None
        self.stages_trained = 0
        self.samples_trained = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> SISAEnsemble:
        """A copy with its own weights, checkpoints and slices that shares the (read-only) data."""
        memo[id(self.data)] = self.data
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        return new

    # ------------------------------------------------------------------ training
    def digest(self) -> str:
        """SHA-256 of every shard's weights (what the ledger records before and after a request)."""
        import hashlib

        from ._utils import state_digest

        return hashlib.sha256("".join(state_digest(m) for m in self.shards).encode()).hexdigest()

    def fit(self, data: Any, rows: Sequence[int] | None = None, *, ledger: Any = None) -> SISAEnsemble:
        """Assign ``rows`` (default: every row of ``data``) to shards and slices at random and train every shard.

        ``ledger``: a new :class:`~obliviate.ledger.DeletionLedger`, which records the fit (the rows).
        """
        self.data = data
        rows = np.arange(len(data)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size < self.n_shards * self.n_slices:
            raise InvalidConfigError(
                f"SISAEnsemble: {rows.size} rows cannot fill {self.n_shards} shards x {self.n_slices} slices."
            )
        order = np.random.default_rng(self.seed).permutation(rows)
        self.slices = [
            [np.sort(s) for s in np.array_split(shard, self.n_slices)] for shard in np.array_split(order, self.n_shards)
        ]
        self.shards = nn.ModuleList([self.build(k) for k in range(self.n_shards)])
        self.checkpoints = [[_state(m)] for m in self.shards]
        self._train_shards([(k, 1) for k in range(self.n_shards)])
        if ledger is not None:
            method = {"name": "sisa", "shards": self.n_shards, "slices": self.n_slices, "seed": self.seed}
            entry = ledger.prepare(rows.tolist(), kind="fit", digest_before=None, digest_after=self.digest(), method=method)
            ledger.commit(entry.request_id)
        return self

    def _stage_seed(self, shard: int, stage: int) -> int:
        return int(np.random.SeedSequence([self.seed, shard, stage]).generate_state(1)[0])

    def _job(self, k: int, start: int) -> dict[str, Any]:
        """The arguments of :func:`_train_stages` for stages ``start .. R`` of shard ``k``."""
        return {
            "model": self.shards[k],
            "start_state": self.checkpoints[k][start - 1],
            "data": self.data,
            "slices": self.slices[k],
            "start": start,
            "recipe": {**self.recipe, "epochs": self.epochs_per_slice},
            "seeds": {r: self._stage_seed(k, r) for r in range(start, self.n_slices + 1)},
            "device": self.device,
        }

    def _train_shard(self, k: int, start: int) -> int:
        """Stages ``start .. R`` of shard ``k`` from the checkpoint of stage ``start - 1``; returns the stages run."""
        return self._train_shards([(k, start)])

    def _train_shards(self, jobs: Sequence[tuple[int, int]]) -> int:
        """Train each ``(shard, start)`` of ``jobs`` (sequentially, or as Ray tasks); returns the stages run."""
        if self.backend == "ray" and len(jobs) > 1:
            results = _on_ray([self._job(k, start) for k, start in jobs], self.ray_address)
        else:
            results = [_train_stages(**self._job(k, start)) for k, start in jobs]
        trained = 0
        for k, start in jobs:
            sizes = np.cumsum([len(s) for s in self.slices[k]])
            self.samples_trained += int(sizes[start - 1 :].sum()) * self.epochs_per_slice
        for (k, start), (states, n) in zip(jobs, results, strict=True):
            self.checkpoints[k] = self.checkpoints[k][:start] + states
            self.shards[k].load_state_dict(states[-1])
            self.stages_trained += n
            trained += n
        return trained

    # ------------------------------------------------------------------ unlearning
    def rows(self) -> np.ndarray:
        """Every row the ensemble holds (sorted)."""
        return np.sort(np.concatenate([np.concatenate(s) for s in self.slices])) if self.slices else np.zeros(0, np.int64)

    def remove(self, ids: Sequence[int], *, ledger: Any = None, reason: str | None = None) -> RemovalReport:
        """Remove rows exactly: each shard holding one retrains from the last slice checkpoint that never saw them.

        Args:
            ids: Rows of the training data to remove.
            ledger: The :class:`~obliviate.ledger.DeletionLedger` of the fit: the request is checked
                against it before anything is retrained, then recorded with the digests before and after.
            reason: Recorded with the request.

        Raises:
            InvalidConfigError: the ensemble is not fitted, or no given row is one it holds.
            DuplicateRequestError, UnknownSampleError: (with a ledger) rows already removed or never trained on.
        """
        if not self.slices:
            raise InvalidConfigError("SISAEnsemble.remove: fit the ensemble first.")
        if ledger is not None:
            ledger.check_request(ids)
        gone = np.unique(np.asarray(ids, dtype=np.int64))
        held = np.intersect1d(gone, self.rows())
        if held.size == 0:
            raise InvalidConfigError(f"SISAEnsemble.remove: none of the {gone.size} rows given is held by the ensemble.")
        before, samples = self.stages_trained, self.samples_trained
        digest_before = self.digest() if ledger is not None else None
        shards, resumed = [], {}
        for k in range(self.n_shards):
            first = None
            for r, s in enumerate(self.slices[k], start=1):
                if np.isin(s, held).any():
                    first = r if first is None else first
                    self.slices[k][r - 1] = s[~np.isin(s, held)]
            if first is not None:
                shards.append(k)
                resumed[k] = first - 1
        self._train_shards([(k, resumed[k] + 1) for k in shards])
        if ledger is not None:
            method = {"name": "sisa", "shards_retrained": shards, "stages_trained": self.stages_trained - before}
            entry = ledger.prepare(
                held.tolist(), digest_before=digest_before, digest_after=self.digest(), method=method, reason=reason
            )
            ledger.commit(entry.request_id)
        return RemovalReport(
            removed=held.tolist(),
            shards=shards,
            stages_trained=self.stages_trained - before,
            stages_total=self.n_shards * self.n_slices,
            resumed_from=resumed,
            samples_trained=self.samples_trained - samples,
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the ensemble to one safetensors file: every slice checkpoint and the row assignment.

        Tensors ``shard{k}.stage{r}.{name}`` (stage 0: the shard's initial weights),
        ``assignment.rows`` and ``assignment.lengths`` (``S x R`` slice sizes); the settings in the
        header. Written to a temporary file and moved into place, so a reader never sees half a file.
        """
        from .io import _save_tensors, canonical_json

        if not self.slices:
            raise InvalidConfigError("SISAEnsemble.save: fit the ensemble first.")
        tensors = {
            f"shard{k}.stage{r}.{name}": t.contiguous()
            for k, stages in enumerate(self.checkpoints)
            for r, state in enumerate(stages)
            for name, t in state.items()
        }
        tensors["assignment.rows"] = torch.from_numpy(np.concatenate([np.concatenate(s) for s in self.slices]).astype(np.int64))
        tensors["assignment.lengths"] = torch.tensor([[len(s) for s in shard] for shard in self.slices], dtype=torch.int64)
        settings = {
            "n_shards": self.n_shards,
            "n_slices": self.n_slices,
            "epochs_per_slice": self.epochs_per_slice,
            "recipe": self.recipe,
            "aggregate": self.aggregate,
            "seed": self.seed,
            "stages_trained": self.stages_trained,
        }
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _save_tensors(tensors, tmp, {"format": "obliviate-sisa", "sisa": canonical_json(settings)})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        build: Callable[[int], nn.Module],
        data: Any,
        *,
        device: Any = "cpu",
        backend: str = "local",
        ray_address: str | None = None,
    ) -> SISAEnsemble:
        """Read an ensemble written by :meth:`save` (safetensors only: nothing is unpickled).

        Args:
            path: The file.
            build: The same architecture ``build`` as at fit time (its weights are replaced).
            data: The data the ensemble was fit on (rows index it).
            device: As in the constructor.
            backend: As in the constructor.
            ray_address: As in the constructor.

        Raises:
            IncompatibleModelError: the file is not an ensemble file, or ``build``'s models do not fit it.
        """
        import json

        from .errors import IncompatibleModelError
        from .io import load_state_dict, read_metadata

        meta = read_metadata(path)
        if meta.get("format") != "obliviate-sisa" or "sisa" not in meta:
            raise IncompatibleModelError(f"{str(path)!r} is not a SISA ensemble file (written by SISAEnsemble.save).")
        settings = json.loads(meta["sisa"])
        tensors = load_state_dict(path)
        ens = cls(
            build,
            settings["n_shards"],
            settings["n_slices"],
            settings["recipe"],
            epochs_per_slice=settings["epochs_per_slice"],
            aggregate=settings["aggregate"],
            seed=settings["seed"],
            device=device,
            backend=backend,
            ray_address=ray_address,
        )
        rows, lengths = tensors.pop("assignment.rows").numpy(), tensors.pop("assignment.lengths").numpy()
        bounds = np.cumsum(lengths.reshape(-1))[:-1]
        flat = np.split(rows, bounds)
        ens.slices = [flat[k * ens.n_slices : (k + 1) * ens.n_slices] for k in range(ens.n_shards)]
        ens.checkpoints = [[{} for _ in range(ens.n_slices + 1)] for _ in range(ens.n_shards)]
        for key, t in tensors.items():
            shard, stage, name = key.split(".", 2)
            ens.checkpoints[int(shard[5:])][int(stage[5:])][name] = t
        ens.shards = nn.ModuleList([build(k) for k in range(ens.n_shards)])
        for k, m in enumerate(ens.shards):
            try:
                m.load_state_dict(ens.checkpoints[k][-1])
            except RuntimeError as e:
                raise IncompatibleModelError(f"SISAEnsemble.load: shard {k} of {str(path)!r} does not fit build({k}): {e}") from e
        ens.data, ens.stages_trained = data, int(settings["stages_trained"])
        return ens

    # ------------------------------------------------------------------ prediction
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean softmax (``"mean"``), or vote counts plus the mean softmax as a tie-break (``"vote"``)."""
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.shards])
        mean = probs.mean(0)
        if self.aggregate == "mean":
            return torch.log(mean.clamp_min(1e-12))
        votes = torch.nn.functional.one_hot(probs.argmax(2), probs.shape[2]).sum(0).to(mean.dtype)
        return votes + 1e-3 * mean

    def shard_copy(self, k: int) -> nn.Module:
        """A copy of shard ``k``'s model."""
        return copy.deepcopy(self.shards[k])
