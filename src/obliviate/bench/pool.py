"""The content-addressed model pool: originals, retrained oracles and shadow models, trained once, shared by every run.

An entry's key is the SHA-256 of the canonical JSON of what determines the trained weights: the
data digest (:func:`data_digest`), the training indices (the training set of an original, the
retain set of an oracle, as :class:`~obliviate.data.TrainingSet` digests), the model spec (name
and options), the resolved training recipe and the seed. The kind (``original`` / ``oracle``) is
not part of it: an oracle is a model trained from scratch on its retain set, which is what it is.
So one original serves every forget draw over the same training set (``class:3`` and
``random:0.1`` of one seed split the same training set), and a pool directory shared between
invocations (``obliviate bench ... --pool P``) never trains the same model twice.

Files: ``<key>.safetensors`` (the weights) and ``<key>.json`` (what it is, the key's parts, the
training seconds, when it was made), each written to a temporary name and renamed into place;
an entry exists when both files do. An original that a recording-based method (``sgu``,
``amnesiac``) needs is trained with ``record=True, record_updates=True`` and its
:class:`~obliviate.recording.Recording` kept beside it in ``<key>.recording/`` (safetensors and
JSON, written to a temporary directory and renamed into place). Recording does not change the
weights (bit for bit), so the key is the same; an entry trained without its recording gets it
by training once more with recording on, and the weights are checked to be the stored ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..io import canonical_json, read_json, save_model, write_json

__all__ = ["ModelPool", "POOL_DIR", "data_digest", "trainings", "exclusive", "write_files"]

try:  # advisory locks (POSIX); without them two processes may both train a missing entry (the files stay whole)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

POOL_DIR = "pool"
POOL_SCHEMA = "obliviate.pool/1"
_TRAININGS = [0]


def trainings() -> int:
    """How many models every pool of this process has trained (tests count trainings with it)."""
    return _TRAININGS[0]


@contextlib.contextmanager
def exclusive(path: str | os.PathLike[str], *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock on the file ``path`` (created when missing).

    Yields False when ``wait`` is False and another process holds it. A killed process's lock goes with it.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def write_files(directory: Path, key: str, writes: list[tuple[Path, Any]]) -> None:
    """Write each ``(target, write)`` in turn: ``write(tmp)`` to a temporary file of ``directory``, then renamed
    onto ``target`` (atomic: a reader sees the whole file or none; a killed write leaves a ``.<key>.*`` leftover).
    """
    for target, write in writes:
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=target.suffix, dir=directory)
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def data_digest(dataset: Any) -> str:
    """SHA-256 of a dataset's name, shapes, class count and train-split targets (cheap; no pixel hashing)."""
    import numpy as np

    h = hashlib.sha256()
    h.update(
        canonical_json(
            {"name": dataset.name, "num_classes": int(dataset.num_classes), "input_shape": list(dataset.input_shape)}
        ).encode()
    )
    h.update(np.asarray(dataset.train_targets, dtype=np.int64).tobytes())
    return h.hexdigest()


class ModelPool:
    """A directory of trained models, addressed by what made them.

    Args:
        path: The pool directory.
        create: Create the directory when missing (False: a read-only look, e.g. a dry run).

    Attributes:
        trained: How many models this pool object has trained.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.trained = 0
        self._digests: dict[int, str] = {}

    # ------------------------------------------------------------------ keys
    def key_parts(
        self, scenario: Any, kind: str, model: str, options: Mapping[str, Any], recipe: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        """The parts of the key of the ``kind`` (``original`` / ``oracle``) model of ``scenario``."""
        if kind not in ("original", "oracle"):
            raise ValueError(f"kind must be 'original' or 'oracle'; got {kind!r}")
        indices = scenario.training_set if kind == "original" else scenario.retain_set
        return self._parts(scenario.dataset, indices, model, options, recipe, seed)

    def _parts(
        self, ds: Any, training_set: Any, model: str, options: Mapping[str, Any], recipe: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        if id(ds) not in self._digests:
            self._digests[id(ds)] = data_digest(ds)
        return {
            "data": self._digests[id(ds)],
            "train_set": training_set.to_json(),
            "model": {"name": model, "options": dict(options)},
            "recipe": dict(recipe),
            "seed": int(seed),
        }

    def key(self, scenario: Any, kind: str, model: str, options: Mapping[str, Any], recipe: Mapping[str, Any], seed: int) -> str:
        """The pool key (SHA-256 of :meth:`key_parts`)."""
        return hashlib.sha256(canonical_json(self.key_parts(scenario, kind, model, options, recipe, seed)).encode()).hexdigest()

    def files(self, key: str) -> tuple[Path, Path]:
        """``(<key>.safetensors, <key>.json)``."""
        return self.path / f"{key}.safetensors", self.path / f"{key}.json"

    def recording_dir(self, key: str) -> Path:
        """``<key>.recording/``: the entry's training recording, when it has one."""
        return self.path / f"{key}.recording"

    def has_recording(self, key: str) -> bool:
        """Whether the entry ``key`` holds its training recording."""
        from ..recording import RECORDING_META

        return (self.recording_dir(key) / RECORDING_META).is_file()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and all(p.is_file() for p in self.files(key))

    # ------------------------------------------------------------------ training
    def get_or_train(
        self,
        scenario: Any,
        kind: str,
        *,
        model: str,
        recipe: Mapping[str, Any],
        seed: int,
        options: Mapping[str, Any] | None = None,
        device: Any = "auto",
        record: bool = False,
        record_if_training: bool = False,
    ) -> tuple[Any, str]:
        """The ``kind`` model of ``scenario`` as a :class:`~obliviate.training.TrainResult`, and its key.

        An original is trained on ``scenario.train``, an oracle on ``scenario.retain``, from
        ``build_model(model, dataset, seed=seed, **options)`` with ``recipe`` and ``seed``; only when
        the pool holds no entry with the same key. The result's ``seconds`` is the training's
        (as recorded when it was trained). With ``record`` the result carries the training's
        :class:`~obliviate.recording.Recording` (with every step's update), made once and kept.
        ``record_if_training`` records (and keeps) it when the model is trained now, without
        loading it: a grid whose other runs need the recording trains the original once.

        Raises:
            IncompatibleModelError: training again to record gave other weights than the stored
                ones (the training is not reproducible here, e.g. another torch build); the stored
                entry is left as it is.
        """
        options = dict(options or {})
        self.key_parts(scenario, kind, model, options, recipe, seed)  # checks the kind
        data = scenario.train if kind == "original" else scenario.retain
        training_set = scenario.training_set if kind == "original" else scenario.retain_set
        rest = (model, options, recipe, seed, device, record, record_if_training)
        return self._get_or_train(scenario.dataset, data, training_set, kind, scenario.name, *rest)

    def get_or_train_on(
        self,
        dataset: Any,
        indices: Any,
        *,
        model: str,
        recipe: Mapping[str, Any],
        seed: int,
        options: Mapping[str, Any] | None = None,
        device: Any = "auto",
        kind: str = "shadow",
    ) -> tuple[Any, str]:
        """A model trained on the train-split rows ``indices`` of ``dataset`` (e.g. a shadow model), and its key.

        The membership attacks that train shadow models on random halves of the data (LiRA,
        U-LiRA) draw them from here, so each is trained once per (data, rows, model, recipe, seed)
        and shared by every run and invocation. The key has the same parts as an original's (the
        rows as a :class:`~obliviate.data.TrainingSet`), so a shadow trained on exactly an
        original's rows is that original.

        Args:
            dataset: A loaded dataset.
            indices: Rows of its train split (any order, no duplicates).
            model: The registry name of the architecture.
            recipe: The training recipe.
            seed: The seed of the initialisation and the batch order.
            options: The architecture's keyword arguments.
            device: Where to train.
            kind: What the entry is, as listed by ``obliviate pool ls`` (not part of the key).
        """
        import numpy as np
        from torch.utils.data import Subset

        from ..data import TrainingSet

        idx = np.unique(np.asarray(indices, dtype=np.int64))
        if idx.size == 0 or idx[0] < 0 or idx[-1] >= len(dataset.train) or idx.size != np.asarray(indices).size:
            from ..errors import InvalidConfigError

            raise InvalidConfigError(
                f"get_or_train_on needs distinct rows of {dataset.name!r}'s train split (0 .. {len(dataset.train) - 1}); "
                f"got {np.asarray(indices).size} indices, {idx.size} distinct, in [{idx.min(initial=0)}, {idx.max(initial=0)}]."
            )
        training_set = TrainingSet.of(dataset.name, idx)
        data = Subset(dataset.train, idx.tolist())
        rest = (model, dict(options or {}), recipe, seed, device, False, False)
        return self._get_or_train(dataset, data, training_set, kind, f"{kind} on {idx.size} rows", *rest)

    def _get_or_train(self, ds: Any, data: Any, training_set: Any, kind: str, made_for: str, *rest: Any) -> tuple[Any, str]:
        from ..io import load_weights
        from ..models import build_model
        from ..training import TrainConfig, TrainResult

        model, options, recipe, seed, device, record, record_if_training = rest
        parts = self._parts(ds, training_set, model, options, recipe, seed)
        key = hashlib.sha256(canonical_json(parts).encode()).hexdigest()
        weights, meta_path = self.files(key)
        config = TrainConfig.from_dict(dict(recipe))

        def load() -> Any:
            from ..recording import Recording

            meta = read_json(meta_path)
            net = load_weights(build_model(model, ds, seed=seed, **options), weights)
            net.eval()
            recording = Recording.load(self.recording_dir(key)) if record else None
            return TrainResult(
                model=net,
                config=config,
                seconds=float(meta["seconds"]),
                seed=seed,
                training_set=training_set,
                recording=recording,
            )

        def ready() -> bool:
            return key in self and (not record or self.has_recording(key))

        if ready():
            return load(), key
        with exclusive(self.path / f".{key}.lock"):  # another process training the same model: wait, then load it
            if ready():
                return load(), key
            trained = self._train(
                key, parts, kind, ds, made_for, data, config, model, options, seed, device, record or record_if_training
            )
            if trained.training_set is None:  # rows given by index (a shadow): ob.train cannot tell which
                trained.training_set = training_set
            return trained, key

    def _train(
        self, key: str, parts: dict[str, Any], kind: str, ds: Any, made_for: str, data: Any, config: Any, *rest: Any
    ) -> Any:
        import torch

        from ..errors import IncompatibleModelError
        from ..io import load_state_dict
        from ..models import build_model
        from ..training import train

        model, options, seed, device, record = rest
        flags = {"record": True, "record_updates": True} if record else {}
        out = train(
            build_model(model, ds, seed=seed, **options),
            data,
            config,
            seed=seed,
            device=device,
            progress=False,
            **flags,
        )
        self.trained += 1
        _TRAININGS[0] += 1
        if key in self:  # the entry was trained before without its recording: the weights must be the same
            stored = load_state_dict(self.files(key)[0])
            mine = {k: v.detach().cpu() for k, v in out.model.state_dict().items()}
            if set(stored) != set(mine) or any(not torch.equal(stored[k], mine[k]) for k in mine):
                raise IncompatibleModelError(
                    f"Training the pool entry {key[:12]} again to record it gave other weights than the stored ones, so the "
                    "training is not reproducible here (another torch build or thread count?); the recording is kept beside "
                    f"the stored weights only when they match. Delete the entry's files ({self.path / key}.*) to retrain it."
                )
            out.seconds = float(read_json(self.files(key)[1])["seconds"])
            self._write_recording(key, out.recording)
            return out
        if record:
            self._write_recording(key, out.recording)
        self._write(
            key,
            out.model,
            {
                "schema": POOL_SCHEMA,
                "key": key,
                "kind": kind,
                "dataset": ds.name,
                "model": model,
                "seed": int(seed),
                "parts": parts,
                "seconds": out.seconds,
                "torch_threads": torch.get_num_threads(),
                "created": time.time(),
                "made_for": made_for,
            },
        )
        return out

    def _write_recording(self, key: str, recording: Any) -> None:
        import shutil

        target = self.recording_dir(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".recording", dir=self.path))
        try:
            recording.save(tmp)
            shutil.rmtree(target, ignore_errors=True)  # a stale partial one (the whole directory moves in at once)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write(self, key: str, net: Any, meta: dict[str, Any]) -> None:
        weights, meta_path = self.files(key)
        write_files(self.path, key, [(weights, lambda p: save_model(net, p)), (meta_path, lambda p: write_json(p, meta))])

    # ------------------------------------------------------------------ listing
    def entries(self) -> list[dict[str, Any]]:
        """Every complete entry's JSON plus ``size`` (bytes of both files), oldest first."""
        out = []
        for meta_path in self.path.glob("*.json") if self.path.is_dir() else []:
            key = meta_path.stem
            if key not in self:
                continue
            try:
                meta = read_json(meta_path)
            except (OSError, ValueError):
                continue
            weights, _ = self.files(key)
            meta["size"] = weights.stat().st_size + meta_path.stat().st_size
            meta["key"] = key
            out.append(meta)
        return sorted(out, key=lambda m: (m.get("created", 0), m["key"]))

    def leftovers(self, older_than_s: float = 3600.0) -> list[Path]:
        """Files no entry needs: temporary files of writes that never finished (a process killed mid-write)
        older than ``older_than_s``, and the training locks of complete entries (nobody waits on those).
        """
        if not self.path.is_dir():
            return []
        cutoff = time.time() - older_than_s
        out = []
        for p in self.path.glob(".*"):
            if not p.is_file():
                continue
            if p.suffix == ".lock":
                if p.name[1:-5] in self:
                    out.append(p)
            elif p.stat().st_mtime < cutoff:
                out.append(p)
        return sorted(out)

    def remove(self, key: str) -> None:
        """Delete an entry's files (and its recording)."""
        import shutil

        for p in self.files(key):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.recording_dir(key), ignore_errors=True)
