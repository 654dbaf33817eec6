"""What to forget: a :class:`Scenario` is four explicit, sorted, disjoint index arrays.

``forget_idx``, ``retain_idx`` and ``val_idx`` index the dataset's train split; ``test_idx``
indexes its test split (all of it). The original model is trained on
``sorted(forget ∪ retain)`` (:attr:`Scenario.train`); ``val_idx`` (10 % of each class by
default) is held out from training, and is the non-member set some methods and metrics need.

Every index set is derived from a seed and stored explicitly, and a scenario saves as JSON with
a SHA-256 hash of the dataset name and the indices, so a run can be reproduced and audited.
The validation split is drawn with ``val_seed`` (default 0), independently of the forget draw's
``seed``: one trained model serves every forget draw, and its training set is the same in all of
them. (The seed code drew the validation split with the forget seed, so a model trained for one
draw and evaluated on another had "retain" rows it never saw and "held-out" rows it trained on.)
A :class:`TrainingSet` names the rows a model was trained on; ``ob.unlearn`` and
``ob.evaluate`` compare it with the scenario's and refuse a mismatch.

A corrective scenario (:meth:`Scenario.corrupted`) also holds a
:class:`~obliviate.data.corrupt.Corruption`: the original was trained with some rows corrupted
(flipped labels, or a backdoor trigger with the target label), and those rows are the forget set.
Its ``train`` and ``forget`` views yield the corrupted rows, ``retain``, ``val`` and ``test`` are
clean, and its training set is named after the corruption (``"<dataset>+<kind>:<digest>"``), so a
model trained on the clean rows does not pass for its original.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from .._validation import check_interval, check_seed
from ..errors import InvalidConfigError
from ..registry import suggest
from .base import DatasetSplits, Subset
from .corrupt import CORRUPTION_KINDS, Corruption, trigger_value

__all__ = ["Scenario", "TrainingSet", "validation_split", "parse_scenario", "SCENARIO_KINDS", "SPLITS"]

Split = Literal["forget", "retain", "val", "train", "test"]
SPLITS: tuple[str, ...] = ("forget", "retain", "val", "train", "test")
SCENARIO_KINDS: tuple[str, ...] = ("random", "classwise", "subclass", "custom", "corrupted")
_SCHEMA = "obliviate.scenario/1"


def validation_split(dataset: DatasetSplits, *, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Held-out validation indices: ``int(fraction * n_c)`` random train samples of each class.

    Args:
        dataset: The dataset whose train split is split.
        fraction: Share of each class held out, in [0, 1).
        seed: Seed of the draw (a :func:`numpy.random.default_rng` stream of its own).

    Returns:
        Sorted ``int64`` indices into ``dataset.train``.
    """
    fraction = check_interval("validation_split", "fraction", fraction, low=0.0, high=1.0, closed="left")
    seed = _check_seed("validation_split", seed)
    rng = np.random.default_rng([seed, 0])
    targets = dataset.train_targets
    chosen = []
    for c in np.unique(targets):
        members = np.flatnonzero(targets == c)
        k = int(fraction * len(members))
        if k:
            chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)


def _check_seed(owner: str, seed: Any) -> int:
    return check_seed(owner, seed)


def _index_array(owner: str, name: str, values: Any, size: int, allow_empty: bool) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidConfigError(f"The {name!r} indices of {owner} must be a 1-D list of integers; got shape {arr.shape}.")
    if arr.size == 0:
        if not allow_empty:
            raise InvalidConfigError(f"The {name!r} indices of {owner} are empty; give at least one sample to forget.")
        return np.zeros(0, np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidConfigError(f"The {name!r} indices of {owner} must be integers; got dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= size)]
    if bad.size:
        raise InvalidConfigError(
            f"The {name!r} indices of {owner} must lie in [0, {size}) (the split's size); got {int(bad[0])}."
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise InvalidConfigError(
            f"The {name!r} indices of {owner} contain duplicates (e.g. {int(uniq[counts > 1][0])}); each sample may appear once."
        )
    return uniq


@dataclass(frozen=True)
class TrainingSet:
    """The rows of a dataset's train split that a model was trained on, by hash.

    Two training sets are equal when their dataset names, sizes and SHA-256 digests of the sorted
    indices are; the indices themselves are kept when known (not when read back from a run
    record, which stores only the digest), so a mismatch can be explained row by row.

    Attributes:
        dataset: Name of the dataset whose train split the indices refer to.
        size: Number of rows.
        digest: SHA-256 of the dataset name and the sorted ``int64`` indices.
        indices: The sorted indices, or None when only the digest is known.
    """

    dataset: str
    size: int
    digest: str
    indices: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, dataset: str, indices: Any) -> TrainingSet:
        """The training set of ``dataset``'s train-split rows ``indices`` (any order, no duplicates)."""
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        payload = json.dumps({"dataset": dataset, "train_indices": idx.tolist()}, separators=(",", ":"))
        return cls(dataset=dataset, size=int(idx.size), digest=hashlib.sha256(payload.encode()).hexdigest(), indices=idx)

    def to_json(self) -> dict[str, Any]:
        """``{"dataset", "size", "hash"}`` for a run record."""
        return {"dataset": self.dataset, "size": self.size, "hash": self.digest}

    @classmethod
    def from_json(cls, data: Any) -> TrainingSet:
        """Read :meth:`to_json` output back (without the indices)."""
        if not isinstance(data, dict) or not {"dataset", "size", "hash"} <= set(data):
            raise InvalidConfigError(f"Not a training-set record (needs dataset, size and hash): {data!r}.")
        return cls(dataset=str(data["dataset"]), size=int(data["size"]), digest=str(data["hash"]))

    def explain(self, other: TrainingSet, scenario: Scenario | None = None) -> str:
        """Why ``other`` (what a scenario expects) differs from this training set, in words."""
        if other.dataset.startswith(self.dataset + "+"):
            return (
                f"the model was trained on clean rows of {self.dataset!r}, but the scenario's original was trained with "
                f"corrupted rows ({other.dataset!r}): train it on scenario.train"
            )
        if self.dataset.startswith(other.dataset + "+"):
            return f"the model was trained with corrupted rows ({self.dataset!r}), the scenario is on clean {other.dataset!r}"
        if self.dataset != other.dataset:
            return f"the model was trained on dataset {self.dataset!r}, the scenario is on {other.dataset!r}"
        text = (
            f"the model was trained on {self.size} rows (hash {self.digest[:12]}), "
            f"the scenario expects {other.size} (hash {other.digest[:12]})"
        )
        if self.indices is None or other.indices is None:
            return text
        unseen = np.setdiff1d(other.indices, self.indices)
        parts = []
        if scenario is not None:
            n_r = int(np.isin(scenario.retain_idx, unseen).sum())
            n_f = int(np.isin(scenario.forget_idx, unseen).sum())
            n_v = int(np.isin(scenario.val_idx, self.indices).sum())
            if n_r or n_f:
                parts.append(f"{n_r} retain and {n_f} forget rows were never trained on")
            if n_v:
                parts.append(f"{n_v} of {len(scenario.val_idx)} held-out validation rows were trained on")
        else:
            extra = np.setdiff1d(self.indices, other.indices)
            parts.append(f"{unseen.size} expected rows were never trained on, {extra.size} trained rows are not expected")
        return text + ("; " + "; ".join(parts) if parts else "")


@dataclass(frozen=True, eq=False)
class Scenario:
    """A forgetting request over a dataset, as explicit index arrays.

    Build one with :meth:`random`, :meth:`classwise`, :meth:`subclass` or :meth:`from_indices`
    rather than directly.

    Attributes:
        dataset: The dataset the indices refer to.
        forget_idx: Train-split indices to forget (D_f).
        retain_idx: Train-split indices to keep (D_r).
        val_idx: Train-split indices held out from training (D_v).
        test_idx: Test-split indices (all of them).
        kind: "random", "classwise", "subclass", "custom" or "corrupted".
        name: Short name used in tables, e.g. "class:3", "random:0.1".
        seed: Seed of the forget draw.
        val_seed: Seed of the validation split (default 0, independent of ``seed``).
        params: The arguments that built it (forget_class, fraction, ...).
        corruption: The corrupted rows (exactly ``forget_idx``) and what was done to them, for a
            ``"corrupted"`` scenario; None otherwise.
    """

    dataset: DatasetSplits
    forget_idx: np.ndarray
    retain_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    kind: str = "custom"
    name: str = "custom"
    seed: int = 0
    val_seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    corruption: Corruption | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise InvalidConfigError(f"A Scenario's kind must be one of {', '.join(SCENARIO_KINDS)}; got {self.kind!r}.")
        n_train, n_test = len(self.dataset.train), len(self.dataset.test)  # type: ignore[arg-type]
        for attr, size in (("forget_idx", n_train), ("retain_idx", n_train), ("val_idx", n_train), ("test_idx", n_test)):
            object.__setattr__(self, attr, _index_array("Scenario", attr, getattr(self, attr), size, allow_empty=True))
        sets = {"forget": self.forget_idx, "retain": self.retain_idx, "val": self.val_idx}
        for a, b in (("forget", "retain"), ("forget", "val"), ("retain", "val")):
            common = np.intersect1d(sets[a], sets[b])
            if common.size:
                raise InvalidConfigError(
                    f"Scenario splits must be disjoint, but train index {int(common[0])} is in both {a} and {b}."
                )
        if (self.kind == "corrupted") != (self.corruption is not None):
            raise InvalidConfigError(
                "A Scenario has a corruption exactly when its kind is 'corrupted'; build it with Scenario.corrupted."
            )
        if self.corruption is not None:
            self._check_corruption(self.corruption)

    def _check_corruption(self, c: Corruption) -> None:
        if not np.array_equal(c.indices, self.forget_idx):
            raise InvalidConfigError("A corrupted scenario's forget set must be exactly its corrupted rows.")
        c.check_fits(self.dataset.train, self.dataset.input_shape)
        true = self.dataset.train_targets[c.indices]
        if c.labels.size and (c.labels.min() < 0 or c.labels.max() >= self.dataset.num_classes):
            raise InvalidConfigError(f"A corrupted label lies outside the dataset's {self.dataset.num_classes} classes.")
        if c.kind == "label_flip" and np.any(c.labels == true):
            raise InvalidConfigError("Every row of a label flip carries a label other than its true one.")
        if c.kind == "backdoor" and np.any(true == c.target):
            raise InvalidConfigError(f"A backdoor's rows are drawn from classes other than its target {c.target}.")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def _pool(cls, dataset: DatasetSplits, val_fraction: float, val_seed: int) -> tuple[np.ndarray, np.ndarray]:
        val = validation_split(dataset, fraction=val_fraction, seed=val_seed)
        pool = np.setdiff1d(np.arange(len(dataset.train)), val)  # type: ignore[arg-type]
        return val, pool

    @classmethod
    def _build(cls, dataset: DatasetSplits, forget: np.ndarray, pool: np.ndarray, val: np.ndarray, **kw: Any) -> Scenario:
        forget = np.sort(forget.astype(np.int64))
        retain = np.setdiff1d(pool, forget)
        test = np.arange(len(dataset.test), dtype=np.int64)  # type: ignore[arg-type]
        return cls(dataset=dataset, forget_idx=forget, retain_idx=retain, val_idx=val, test_idx=test, **kw)

    @classmethod
    def random(
        cls,
        dataset: DatasetSplits,
        *,
        fraction: float | None = None,
        count: int | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> Scenario:
        """Forget a uniformly random subset of the training data.

        Args:
            dataset: The dataset.
            fraction: Share of train-minus-val to forget, in (0, 1). Give this or ``count``.
            count: Number of samples to forget.
            seed: Seed of the draw.
            val_fraction: Share of each class held out as the validation split.
            val_seed: Seed of the validation split (default 0, independent of ``seed``); must be
                the one the original model was trained with.

        Example:
            >>> from obliviate.data import load_dataset
            >>> sc = Scenario.random(load_dataset("digits"), fraction=0.1, seed=0)
            >>> sc.name, len(sc.forget)
            ('random:0.1', 129)
        """
        owner = "Scenario.random"
        seed = _check_seed(owner, seed)
        val_seed = _check_seed(owner, val_seed)
        if (fraction is None) == (count is None):
            raise InvalidConfigError(
                f"{owner} needs exactly one of 'fraction' or 'count'; got fraction={fraction!r}, count={count!r}."
            )
        val, pool = cls._pool(dataset, val_fraction, val_seed)
        if fraction is not None:
            fraction = check_interval(owner, "fraction", fraction, low=0.0, high=1.0, closed="neither")
            n = int(fraction * len(pool))
            name = f"random:{fraction:g}"
        else:
            n = check_interval(owner, "count", count, kind=int, low=1, high=len(pool) - 1)
            name = f"random:n={n}"
        if n < 1:
            raise InvalidConfigError(
                f"{owner}: fraction={fraction} of {len(pool)} samples selects nothing; use a larger fraction."
            )
        rng = np.random.default_rng([seed, 1])
        forget = rng.choice(pool, size=n, replace=False)
        return cls._build(
            dataset,
            forget,
            pool,
            val,
            kind="random",
            name=name,
            seed=seed,
            val_seed=val_seed,
            params={"fraction": fraction, "count": None if fraction is not None else n, "val_fraction": val_fraction},
        )

    @classmethod
    def classwise(
        cls,
        dataset: DatasetSplits,
        *,
        forget_class: int | str,
        count: int | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> Scenario:
        """Forget a whole class (or ``count`` random samples of it).

        ``test_acc`` then excludes the class (:attr:`test_retain`) and ``test_forget_acc``
        scores the class's test samples (:attr:`test_forget`).

        Args:
            dataset: The dataset.
            forget_class: Class index or class name.
            count: Forget only this many random samples of the class (None: all of them).
            seed: Seed of the draw (used when ``count`` is given).
            val_fraction: Share of each class held out as the validation split.
            val_seed: Seed of the validation split (default 0, independent of ``seed``).
        """
        owner = "Scenario.classwise"
        seed = _check_seed(owner, seed)
        val_seed = _check_seed(owner, val_seed)
        c = _resolve_class(owner, "forget_class", forget_class, dataset.classes, dataset.num_classes)
        val, pool = cls._pool(dataset, val_fraction, val_seed)
        members = pool[dataset.train_targets[pool] == c]
        if members.size == 0:
            raise InvalidConfigError(f"{owner}: class {c} has no training samples outside the validation split.")
        if count is not None:
            count = check_interval(owner, "count", count, kind=int, low=1, high=len(members))
            members = np.random.default_rng([seed, 2]).choice(members, size=count, replace=False)
        name = f"class:{c}" if count is None else f"class:{c}:n={count}"
        return cls._build(
            dataset,
            members,
            pool,
            val,
            kind="classwise",
            name=name,
            seed=seed,
            val_seed=val_seed,
            params={"forget_class": c, "count": count, "val_fraction": val_fraction},
        )

    @classmethod
    def subclass(
        cls,
        dataset: DatasetSplits,
        *,
        fine_class: int | str,
        count: int | None = None,
        seed: int = 0,
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> Scenario:
        """Forget one sub-class (a fine label) inside its super-class (CIFAR-20's "rocket").

        The model predicts super-classes; the forgotten samples keep their super-class label,
        and ``test_acc`` excludes the sub-class's test samples.

        Args:
            dataset: A dataset with ``train_fine``/``test_fine`` labels (e.g. ``cifar20``).
            fine_class: Fine class index or name.
            count: Forget only this many random samples of the sub-class.
            seed: Seed of the draw.
            val_fraction: Share of each class held out as the validation split.
            val_seed: Seed of the validation split (default 0, independent of ``seed``).
        """
        owner = "Scenario.subclass"
        if dataset.train_fine is None or dataset.test_fine is None or dataset.fine_classes is None:
            raise InvalidConfigError(
                f"{owner} needs a dataset with sub-class labels (train_fine/test_fine), such as 'cifar20'; "
                f"{dataset.name!r} has none."
            )
        seed = _check_seed(owner, seed)
        val_seed = _check_seed(owner, val_seed)
        c = _resolve_class(owner, "fine_class", fine_class, dataset.fine_classes, len(dataset.fine_classes))
        val, pool = cls._pool(dataset, val_fraction, val_seed)
        members = pool[dataset.train_fine[pool] == c]
        if members.size == 0:
            raise InvalidConfigError(f"{owner}: sub-class {c} has no training samples outside the validation split.")
        supers = np.unique(dataset.train_targets[members])
        if count is not None:
            count = check_interval(owner, "count", count, kind=int, low=1, high=len(members))
            members = np.random.default_rng([seed, 3]).choice(members, size=count, replace=False)
        name = f"subclass:{c}" if count is None else f"subclass:{c}:n={count}"
        return cls._build(
            dataset,
            members,
            pool,
            val,
            kind="subclass",
            name=name,
            seed=seed,
            val_seed=val_seed,
            params={"fine_class": c, "superclass": int(supers[0]), "count": count, "val_fraction": val_fraction},
        )

    @classmethod
    def corrupted(
        cls,
        dataset: DatasetSplits,
        fraction: float,
        kind: str = "label_flip",
        seed: int = 0,
        *,
        target: int | str = 0,
        patch: int = 3,
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> Scenario:
        """Corrective unlearning: the original was trained with corrupted rows, and forget is exactly those rows.

        A random ``fraction`` of the training rows outside the validation split is corrupted
        (Goel et al., "Corrective Machine Unlearning"):

        * ``"label_flip"``: each row gets another label, uniform over the other classes;
        * ``"backdoor"``: rows are drawn from the classes other than ``target``, a ``patch`` x
          ``patch`` square at the bottom-right corner of each input is set, in every channel, to
          that channel's maximum input value over the train split, and the row is relabelled to
          ``target`` (poison and relabel).

        :attr:`train` and :attr:`forget` yield the corrupted rows (what the original is trained on
        and what must be unlearned); :attr:`retain`, :attr:`val` and :attr:`test` are clean, so the
        retrained oracle has never seen a corrupted row. :attr:`forget_clean` gives the forgotten
        rows as they truly are and, for a backdoor, :attr:`test_triggered` the test samples of
        the other classes with the trigger (the ``forget_true_acc`` and ``attack_success_rate``
        metrics). The corruption (:attr:`corruption`: kind, rows, labels, trigger, target) is in
        the scenario's JSON and hash, and its digest in the name of :attr:`training_set`.

        Args:
            dataset: The dataset.
            fraction: Share of train-minus-val to corrupt, in (0, 1).
            kind: ``"label_flip"`` or ``"backdoor"``.
            seed: Seed of the draw of the rows and of their new labels.
            target: The backdoor's target class (index or name).
            patch: Side of the backdoor's square trigger, in pixels.
            val_fraction: Share of each class held out as the validation split.
            val_seed: Seed of the validation split (default 0, independent of ``seed``).

        Example:
            >>> from obliviate.data import load_dataset
            >>> sc = Scenario.corrupted(load_dataset("digits"), 0.1, "backdoor", target=0)
            >>> sc.name, sc.kind, len(sc.forget), set(sc.forget.targets.tolist())
            ('backdoor:0.1', 'corrupted', 129, {0})
        """
        owner = "Scenario.corrupted"
        seed = _check_seed(owner, seed)
        val_seed = _check_seed(owner, val_seed)
        if kind not in CORRUPTION_KINDS:
            raise InvalidConfigError(
                f"The 'kind' parameter of {owner} must be one of {', '.join(CORRUPTION_KINDS)}; got {kind!r}."
                f"{suggest(str(kind), list(CORRUPTION_KINDS))}"
            )
        fraction = check_interval(owner, "fraction", fraction, low=0.0, high=1.0, closed="neither")
        val, pool = cls._pool(dataset, val_fraction, val_seed)
        n = int(fraction * len(pool))
        if n < 1:
            raise InvalidConfigError(
                f"{owner}: fraction={fraction} of {len(pool)} samples selects nothing; use a larger fraction."
            )
        targets = dataset.train_targets
        rng = np.random.default_rng([seed, 4])
        if kind == "label_flip":
            if dataset.num_classes < 2:
                raise InvalidConfigError(
                    f"{owner}: a label flip needs at least 2 classes; {dataset.name!r} has {dataset.num_classes}."
                )
            rows = np.sort(rng.choice(pool, size=n, replace=False))
            # uniform over the other classes: add 1 .. C-1 modulo C
            labels = (targets[rows] + rng.integers(1, dataset.num_classes, size=n)) % dataset.num_classes
            corruption = Corruption(kind=kind, indices=rows, labels=labels)
            name, extra = f"corrupt:{fraction:g}", {"target": None, "patch": None}
        else:
            t = _resolve_class(owner, "target", target, dataset.classes, dataset.num_classes)
            patch = check_interval(owner, "patch", patch, kind=int, low=1)
            side = min(dataset.input_shape[-2:]) if len(dataset.input_shape) >= 2 else dataset.input_shape[-1]
            if patch > side:
                raise InvalidConfigError(
                    f"The 'patch' parameter of {owner} must fit the inputs ({tuple(dataset.input_shape)}); got {patch}."
                )
            eligible = pool[targets[pool] != t]
            if n > len(eligible):
                raise InvalidConfigError(
                    f"{owner}: fraction={fraction} asks for {n} backdoored rows, but only {len(eligible)} training rows "
                    f"lie outside the target class {t}; use a smaller fraction."
                )
            rows = np.sort(rng.choice(eligible, size=n, replace=False))
            value = trigger_value(dataset.train)
            corruption = Corruption(kind=kind, indices=rows, labels=np.full(n, t), target=t, patch=patch, value=value)
            name = f"backdoor:{fraction:g}" + (f":target={t}" if t != 0 else "") + (f":patch={patch}" if patch != 3 else "")
            extra = {"target": t, "patch": patch}
        return cls._build(
            dataset,
            rows,
            pool,
            val,
            kind="corrupted",
            name=name,
            seed=seed,
            val_seed=val_seed,
            params={"fraction": fraction, "corruption": kind, **extra, "val_fraction": val_fraction},
            corruption=corruption,
        )

    @classmethod
    def from_indices(
        cls,
        dataset: DatasetSplits,
        forget_indices: Any,
        *,
        seed: int = 0,
        val_fraction: float = 0.1,
        val_seed: int = 0,
    ) -> Scenario:
        """Forget exactly the given train-split indices (a deletion request).

        Args:
            dataset: The dataset.
            forget_indices: Indices into ``dataset.train``; unique, in range, not empty, and
                outside the validation split.
            seed: Recorded seed.
            val_fraction: Share of each class held out (0 when the model was trained on the
                whole train split).
            val_seed: Seed of the validation split (default 0, independent of ``seed``).
        """
        owner = "Scenario.from_indices"
        seed = _check_seed(owner, seed)
        val_seed = _check_seed(owner, val_seed)
        forget = _index_array(owner, "forget_indices", forget_indices, len(dataset.train), allow_empty=False)  # type: ignore[arg-type]
        val, pool = cls._pool(dataset, val_fraction, val_seed)
        clash = np.intersect1d(forget, val)
        if clash.size:
            raise InvalidConfigError(
                f"{owner}: train index {int(clash[0])} is in the validation split (val_fraction={val_fraction}, "
                f"val_seed={val_seed}), which the model never trained on. Use the val_fraction/val_seed the model "
                "was trained with, or val_fraction=0."
            )
        return cls._build(
            dataset,
            forget,
            pool,
            val,
            kind="custom",
            name=f"indices:n={len(forget)}",
            seed=seed,
            val_seed=val_seed,
            params={"count": len(forget), "val_fraction": val_fraction},
        )

    # ------------------------------------------------------------------ views
    @cached_property
    def train_idx(self) -> np.ndarray:
        """``sorted(forget ∪ retain)``: what the original model is trained on."""
        return np.union1d(self.forget_idx, self.retain_idx).astype(np.int64)

    @cached_property
    def training_set(self) -> TrainingSet:
        """What the original model must have been trained on: ``sorted(forget ∪ retain)``.

        For a corrupted scenario its dataset name carries the corruption's digest
        (``"<dataset>+<kind>:<digest>"``): the clean rows are other data.
        """
        return TrainingSet.of(self._train_name, self.train_idx)

    @cached_property
    def _train_name(self) -> str:
        c = self.corruption
        return self.dataset.name if c is None else f"{self.dataset.name}+{c.kind}:{c.digest[:16]}"

    @cached_property
    def train_split(self) -> Dataset:
        """The dataset's train split as the original model saw it (with the corrupted rows changed, if any)."""
        return self.dataset.train if self.corruption is None else self.corruption.apply(self.dataset.train)

    @cached_property
    def retain_set(self) -> TrainingSet:
        """What a model unlearned on this scenario was (in effect) trained on: the retain set."""
        return TrainingSet.of(self.dataset.name, self.retain_idx)

    def then(self, forget_indices: Any, *, name: str | None = None) -> Scenario:
        """The next deletion request on a model already unlearned on this scenario.

        Its training set is this scenario's retain set: ``forget_indices`` (train-split indices,
        all in the current retain set) are forgotten, the rest of the retain set is kept, and
        the validation and test splits are unchanged.

        Args:
            forget_indices: Train-split indices to forget now.
            name: Table name (default ``"<this name>+n=<count>"``).

        Raises:
            InvalidConfigError: an index is not in this scenario's retain set.

        Example:
            >>> from obliviate.data import load_dataset
            >>> sc = Scenario.random(load_dataset("digits"), count=10, seed=0)
            >>> nxt = sc.then(sc.retain_idx[:5])
            >>> nxt.training_set == sc.retain_set, len(nxt.forget)
            (True, 5)
        """
        forget = _index_array("Scenario.then", "forget_indices", forget_indices, len(self.dataset.train), allow_empty=False)  # type: ignore[arg-type]
        outside = np.setdiff1d(forget, self.retain_idx)
        if outside.size:
            raise InvalidConfigError(
                f"Scenario.then: train index {int(outside[0])} is not in the retain set of {self.name!r} (it was "
                "forgotten already, is held out, or was never trained on); a follow-up request forgets retained rows only."
            )
        return Scenario(
            dataset=self.dataset,
            forget_idx=forget,
            retain_idx=np.setdiff1d(self.retain_idx, forget),
            val_idx=self.val_idx,
            test_idx=self.test_idx,
            kind="custom",
            name=name or f"{self.name}+n={len(forget)}",
            seed=self.seed,
            val_seed=self.val_seed,
            params={"count": int(len(forget)), "after": self.hash},
        )

    @cached_property
    def forget(self) -> Subset:
        return Subset(self.train_split, self.forget_idx, train_split_of=self._train_name)

    @cached_property
    def retain(self) -> Subset:
        return Subset(self.train_split, self.retain_idx, train_split_of=self.dataset.name)

    @cached_property
    def val(self) -> Subset:
        return Subset(self.train_split, self.val_idx, train_split_of=self.dataset.name)

    @cached_property
    def train(self) -> Subset:
        return Subset(self.train_split, self.train_idx, train_split_of=self._train_name)

    @cached_property
    def forget_clean(self) -> Subset | None:
        """The forget rows as they truly are (clean inputs, true labels); None unless corrupted."""
        return None if self.corruption is None else Subset(self.dataset.train, self.forget_idx)

    @cached_property
    def test_triggered(self) -> Dataset | None:
        """The test samples whose class is not the backdoor's target, with the trigger stamped and
        their true labels (the data of the attack success rate); None unless a backdoor.
        """
        c = self.corruption
        if c is None or c.kind != "backdoor":
            return None
        keep = self.test_idx[self.dataset.test_targets[self.test_idx] != c.target]
        return Subset(c.triggered(self.dataset.test), keep)

    @cached_property
    def test(self) -> Subset:
        return Subset(self.dataset.test, self.test_idx)

    @cached_property
    def test_forget_mask(self) -> np.ndarray | None:
        """Boolean mask over ``test_idx`` of the forgotten (sub-)class (None for random/custom)."""
        if self.kind == "classwise":
            return self.dataset.test_targets[self.test_idx] == self.params["forget_class"]
        if self.kind == "subclass" and self.dataset.test_fine is not None:
            return self.dataset.test_fine[self.test_idx] == self.params["fine_class"]
        return None

    @cached_property
    def test_retain(self) -> Subset:
        """The test split without the forgotten (sub-)class (the whole test split otherwise)."""
        mask = self.test_forget_mask
        return self.test if mask is None else Subset(self.dataset.test, self.test_idx[~mask])

    @cached_property
    def val_retain(self) -> Subset:
        """The validation split without the forgotten (sub-)class (the whole split otherwise).

        What the health check of every unlearning result measures: accuracy on the classes the
        model must keep, on rows no method trains on.
        """
        if self.kind == "classwise":
            mask = self.dataset.train_targets[self.val_idx] == self.params["forget_class"]
        elif self.kind == "subclass" and self.dataset.train_fine is not None:
            mask = self.dataset.train_fine[self.val_idx] == self.params["fine_class"]
        else:
            return self.val
        return Subset(self.dataset.train, self.val_idx[~mask], train_split_of=self.dataset.name)

    @cached_property
    def test_forget(self) -> Subset | None:
        """Test samples of the forgotten (sub-)class, or None for random/custom scenarios."""
        mask = self.test_forget_mask
        return None if mask is None else Subset(self.dataset.test, self.test_idx[mask])

    @cached_property
    def attack_heldout(self) -> Subset:
        """Test samples like the forget set: the non-members of a membership attack on D_f.

        Class-wise and sub-class scenarios: the test samples of the forgotten (sub-)class
        (:attr:`test_forget`), so the label gives nothing away. Random and custom scenarios: the
        test samples of the classes present in D_f. Only the test split is used: it is disjoint
        from the training set and from the validation split, which methods may read. A view
        over ``test_idx``; no other split changes.
        """
        if self.test_forget is not None:
            return self.test_forget
        labels = self.dataset.test_targets[self.test_idx]
        wanted = np.unique(self.dataset.train_targets[self.forget_idx])
        return Subset(self.dataset.test, self.test_idx[np.isin(labels, wanted)])

    def split(self, name: str) -> Dataset:
        """The dataset of a named split: forget, retain, val, train or test."""
        if name not in SPLITS:
            raise InvalidConfigError(f"Unknown split {name!r}.{suggest(name, list(SPLITS))} Valid splits: {', '.join(SPLITS)}.")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {s: len(self.split(s)) for s in SPLITS}  # type: ignore[arg-type]

    # ------------------------------------------------------------------ persistence
    @property
    def hash(self) -> str:
        """SHA-256 of the dataset name, the four index arrays, the kind and the parameters.

        ``kind`` and ``params`` are included because they define ``test_retain`` and
        ``test_forget``: editing the forgotten class in a saved file must not go unnoticed. A
        corrupted scenario's corruption (rows, labels, trigger) is included too.
        """
        return _hash(
            self.dataset.name,
            self.kind,
            self.params,
            self.forget_idx,
            self.retain_idx,
            self.val_idx,
            self.test_idx,
            corruption=self.corruption,
        )

    def summary(self) -> dict[str, Any]:
        """The scenario block of a run record (with ``corruption``: kind, size, digest, trigger, when corrupted)."""
        out = {
            "name": self.name,
            "kind": self.kind,
            "dataset": self.dataset.name,
            "forget_size": int(len(self.forget_idx)),
            "seed": self.seed,
            "val_seed": self.val_seed,
            "hash": self.hash,
            "train_set": self.training_set.to_json(),
            "retain_set": self.retain_set.to_json(),
        }
        if self.corruption is not None:
            out["corruption"] = self.corruption.summary()
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict holding every index."""
        return {
            "schema": _SCHEMA,
            **self.summary(),
            "params": self.params,
            "forget_idx": self.forget_idx.tolist(),
            "retain_idx": self.retain_idx.tolist(),
            "val_idx": self.val_idx.tolist(),
            "test_idx": self.test_idx.tolist(),
            **({} if self.corruption is None else {"corruption": self.corruption.to_json()}),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the scenario as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any], dataset: DatasetSplits) -> Scenario:
        """Rebuild a scenario from :meth:`to_json` output, checking dataset and hash."""
        if not isinstance(data, dict) or data.get("schema") != _SCHEMA:
            raise InvalidConfigError(f"Not an obliviate scenario file (expected schema {_SCHEMA!r}).")
        if data.get("dataset") != dataset.name:
            raise InvalidConfigError(
                f"The scenario was made for dataset {data.get('dataset')!r}, not {dataset.name!r}; a scenario only "
                f"fits the dataset it was built on, so build one on {dataset.name!r}."
            )
        keys = ("forget_idx", "retain_idx", "val_idx", "test_idx")
        try:
            arrays = {k: np.asarray(data.get(k, []), dtype=np.int64) for k in keys}
        except (TypeError, ValueError) as e:
            raise InvalidConfigError(f"The scenario file's indices are not integer lists: {e}") from None
        kind, params = data.get("kind", "custom"), dict(data.get("params") or {})
        corruption = None if data.get("corruption") is None else Corruption.from_json(data["corruption"])
        digest = _hash(dataset.name, kind, params, *arrays.values(), corruption=corruption)
        if digest != data.get("hash"):
            raise InvalidConfigError("The scenario file's hash does not match its indices: the file was edited or corrupted.")
        return cls(
            dataset=dataset,
            **arrays,
            kind=kind,
            name=data.get("name", "custom"),
            seed=int(data.get("seed", 0)),
            val_seed=int(data.get("val_seed", 0)),
            params=params,
            corruption=corruption,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], dataset: DatasetSplits) -> Scenario:
        """Read a scenario JSON file written by :meth:`save`.

        Raises:
            InvalidConfigError: the file cannot be read, is not a scenario file, was made for another
                dataset than ``dataset``, or its hash does not match its indices (the file is named).
        """
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InvalidConfigError(f"Cannot read scenario file {str(path)!r}: {e}") from e
        try:
            return cls.from_json(data, dataset)
        except InvalidConfigError as e:  # name the file (a scenario saved for another dataset, an edited file)
            raise InvalidConfigError(f"Scenario file {str(path)!r}: {e}") from None

    def __repr__(self) -> str:
        s = self.sizes()
        return (
            f"Scenario({self.name!r}, dataset={self.dataset.name!r}, forget={s['forget']}, retain={s['retain']}, "
            f"val={s['val']}, test={s['test']})"
        )


def _hash(name: str, kind: str, params: dict[str, Any], *arrays: np.ndarray, corruption: Corruption | None = None) -> str:
    data: dict[str, Any] = {
        "dataset": name,
        "kind": kind,
        "params": params,
        "indices": [np.asarray(a, dtype=np.int64).tolist() for a in arrays],
    }
    if corruption is not None:  # absent otherwise, so the hashes of other scenarios are what they were
        data["corruption"] = corruption.to_json()
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _resolve_class(owner: str, name: str, value: Any, classes: tuple[str, ...], num: int) -> int:
    if isinstance(value, str) and not value.isdigit():
        if value not in classes:
            raise InvalidConfigError(
                f"The {name!r} parameter of {owner} must be a class of the dataset; got {value!r}.{suggest(value, list(classes))}"
            )
        return classes.index(value)
    if isinstance(value, str):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < num:
        raise InvalidConfigError(
            f"The {name!r} parameter of {owner} must be a class index in [0, {num}) or a class name; got {value!r}."
        )
    return int(value)


def parse_scenario(spec: str, dataset: DatasetSplits, *, seed: int = 0, val_fraction: float = 0.1, val_seed: int = 0) -> Scenario:
    """Build a scenario from its short name: ``class:3``, ``class:3:n=50``, ``random:0.1``,
    ``random:n=100``, ``subclass:rocket``, ``corrupt:0.1`` (labels flipped), ``backdoor:0.1``,
    ``backdoor:0.1:target=2`` or ``backdoor:0.1:target=2:patch=2`` (see :meth:`Scenario.corrupted`).

    Raises:
        InvalidConfigError: the text is not of one of these forms.
    """
    kind, _, rest = str(spec).partition(":")
    parts = rest.split(":") if rest else []
    common = {"seed": seed, "val_fraction": val_fraction, "val_seed": val_seed}
    if kind in ("corrupt", "backdoor"):
        return _parse_corrupted(spec, kind, parts, dataset, common)
    count = None
    if len(parts) == 2 and parts[1].startswith("n="):
        count = _parse_int(spec, parts[1][2:])
        parts = parts[:1]
    if kind == "class" and len(parts) == 1:
        return Scenario.classwise(dataset, forget_class=parts[0], count=count, **common)
    if kind == "subclass" and len(parts) == 1:
        return Scenario.subclass(dataset, fine_class=parts[0], count=count, **common)
    if kind == "random" and len(parts) == 1:
        if count is not None:
            raise InvalidConfigError(f"Scenario {spec!r}: write 'random:F' or 'random:n=K', not both.")
        if parts[0].startswith("n="):
            return Scenario.random(dataset, count=_parse_int(spec, parts[0][2:]), **common)
        try:
            fraction = float(parts[0])
        except ValueError:
            raise InvalidConfigError(f"Scenario {spec!r}: {parts[0]!r} is not a fraction; write e.g. 'random:0.1'.") from None
        return Scenario.random(dataset, fraction=fraction, **common)
    kinds = ["class", "random", "subclass", "corrupt", "backdoor"]
    raise InvalidConfigError(
        f"Unknown scenario {spec!r}.{suggest(kind, kinds)} Write 'class:C', 'class:C:n=K', 'random:F', 'random:n=K', "
        "'subclass:NAME', 'corrupt:F' or 'backdoor:F[:target=C][:patch=P]'."
    )


def _parse_corrupted(spec: str, kind: str, parts: list[str], dataset: DatasetSplits, common: dict[str, Any]) -> Scenario:
    """``corrupt:F`` or ``backdoor:F[:target=C][:patch=P]``."""
    form = "'corrupt:F'" if kind == "corrupt" else "'backdoor:F', 'backdoor:F:target=C' or 'backdoor:F:target=C:patch=P'"
    if not parts or not parts[0]:
        raise InvalidConfigError(
            f"Scenario {spec!r} needs the fraction of training rows to corrupt; write {form}, e.g. '{kind}:0.1'."
        )
    try:
        fraction = float(parts[0])
    except ValueError:
        raise InvalidConfigError(f"Scenario {spec!r}: {parts[0]!r} is not a fraction; write {form}, e.g. '{kind}:0.1'.") from None
    options: dict[str, Any] = {}
    allowed = ("target", "patch") if kind == "backdoor" else ()
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        if not eq or key not in allowed:
            raise InvalidConfigError(
                f"Scenario {spec!r}: {part!r} is not an option of a {kind} scenario; write {form}."
                + (f"{suggest(key, list(allowed))}" if allowed else "")
            )
        if key in options:
            raise InvalidConfigError(f"Scenario {spec!r} gives {key!r} twice.")
        options[key] = value if key == "target" else _parse_int(spec, value)
    return Scenario.corrupted(dataset, fraction, "label_flip" if kind == "corrupt" else "backdoor", **options, **common)


def _parse_int(spec: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidConfigError(f"Scenario {spec!r}: {text!r} is not a whole number.") from None
