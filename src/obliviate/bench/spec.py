"""Benchmark specs: a TOML file of datasets, scenarios, methods and seeds, expanded into keyed runs.

A spec (``obliviate bench SPEC.toml``)::

    name = "digits-small"
    seeds = [0, 1]
    threads = 1                      # optional: torch threads of every run (default 1)
    relearn = false                  # optional: true also measures each run's relearn time (Anamnesis Index)
    skip_inapplicable = false        # optional: true skips a method on a scenario kind its paper does not
                                     # cover (default: such a pair is an error)

    [[dataset]]
    name = "digits"
    model = "cnn"                    # optional (default "cnn"); model_options = {...} optional
    train = { epochs = 30, lr = 0.05 }   # the recipe, over the dataset's default recipe
    # root = "DIR", val_seed = 0 are optional; load = { test_fraction = 0.8 } passes loader options

    [[scenario]]
    spec = "class:3"
    # datasets = ["digits"]          optional: the datasets it runs on (default: every one)

    [[method]]
    name = "ssd"
    preset = "digits"                # optional; params = {...} fixed values, optional
    # sweep = { lr = [0.01, 0.05] }  one variant per point of the cartesian product
    # tune = { budget = "15s", objective = "proxy" }   ob.tune per run instead of fixed values
    # label = "..."                  optional display name of the variant(s)

    [pools]                          # optional: the per-example metrics of pools of models
    n = 32                           # pool size (3 .. 512); scenario_seed = 0 (the one forget draw); floor = true

Methods that unroll the original training (``sgu``, ``amnesiac``) get an original trained with a
recording, kept in the pool beside its weights. ``retrain`` is not a method of a spec: every grid
holds the oracle already.

With a ``[pools]`` table, every (dataset, scenario) also gets pools of ``n`` models over training
seeds 0 .. n-1 on one forget draw (``scenario_seed``): retrained oracles (and ``n`` more, the second
pool of the chance floor), originals, and per variant the originals unlearned with that seed;
each member is a ``pool_member`` run, and one ``pool_metrics`` run per variant computes the
per-example metrics (:mod:`obliviate.bench.pools`) from them. Tuned variants get no pool.

Per dataset, seed and scenario the expansion holds the ``retrain`` run (the oracle, from the
model pool), the ``original`` run (the no-op original against it) and one run per variant.
Every run has a stable key: the SHA-256 of the canonical JSON of everything that defines it
(:meth:`BenchRun.key_parts`); its label and the dataset's ``root`` are not part of it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidConfigError, UnlearningError
from ..io import canonical_json

__all__ = ["BenchSpec", "DatasetSpec", "MethodSpec", "BenchRun", "load_spec", "parse_spec", "run_key"]

_TOP = {"name", "seeds", "threads", "skip_inapplicable", "relearn", "dataset", "scenario", "method", "pools"}
_POOLS = {"n", "scenario_seed", "floor"}
POOL_N = (3, 512)
_DATASET = {"name", "model", "model_options", "train", "root", "val_seed", "load"}
_SCENARIO = {"spec", "datasets"}
_METHOD = {"name", "label", "params", "preset", "sweep", "tune"}
_TUNE = {"budget", "objective"}
RUN_KINDS = ("retrain", "original", "unlearn", "pool_member", "pool_metrics")
POOL_ROLES = ("r", "o", "u")
"""A pool member's role: ``r`` a retrained oracle, ``o`` an original (the no-op), ``u`` an unlearned model."""


def run_key(parts: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a run's defining parts."""
    return hashlib.sha256(canonical_json(dict(parts)).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetSpec:
    """One ``[[dataset]]`` table: the data, the model and its training recipe (resolved)."""

    name: str
    model: str
    model_options: dict[str, Any]
    recipe: dict[str, Any]
    root: str | None = None
    val_seed: int = 0
    load: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """One variant of a ``[[method]]`` table (a sweep makes several)."""

    name: str
    label: str
    params: dict[str, Any]
    preset: str | None = None
    tune: dict[str, Any] | None = None


@dataclass(frozen=True)
class BenchRun:
    """One run of the grid.

    Attributes:
        kind: ``retrain`` (the oracle), ``original`` (the no-op original) or ``unlearn``.
        dataset: The dataset table it runs on.
        scenario: The scenario spec (``class:3``).
        seed: The seed (of the original, the oracle, the forget draw and the method).
        method: The method's registry name (``retrain`` / ``original`` for the first two kinds).
        label: The variant's display name.
        params: The method's resolved hyperparameters (for ``tune``: the fixed ones).
        preset: The preset the values start from.
        tune: ``{"budget", "objective"}`` for a tuned variant, else None.
        key: The stable key (:func:`run_key` of :meth:`key_parts`).
        pool: For the pool runs of per-example metrics: ``{"role", "scenario_seed"}`` of a
            ``pool_member`` (its seed is the training seed of its original or oracle, and of the
            unlearning), ``{"n", "scenario_seed", "floor"}`` of a ``pool_metrics`` run. None otherwise.
        relearn: Also measure the relearn time (the spec's ``relearn = true``): the record gets
            ``relearn_steps`` and the Anamnesis Index ``anamnesis_index`` (relative to the oracle's).
    """

    kind: str
    dataset: DatasetSpec
    scenario: str
    seed: int
    method: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    tune: dict[str, Any] | None = None
    key: str = ""
    pool: dict[str, Any] | None = None
    relearn: bool = False

    @property
    def scenario_seed(self) -> int:
        """The seed of the forget draw: the run's seed, or for a pool run the one draw every member shares."""
        return int(self.pool["scenario_seed"]) if self.pool is not None else self.seed

    def key_parts(self) -> dict[str, Any]:
        """Everything that defines the run (what :attr:`key` hashes)."""
        extra: dict[str, Any] = {} if self.pool is None else {"pool": self.pool}
        if self.relearn:
            extra["relearn"] = True
        if self.dataset.load:
            extra["load"] = self.dataset.load
        return {
            **extra,
            "kind": self.kind,
            "dataset": self.dataset.name,
            "val_seed": self.dataset.val_seed,
            "model": {"name": self.dataset.model, "options": self.dataset.model_options},
            "recipe": self.dataset.recipe,
            "scenario": self.scenario,
            "seed": self.seed,
            "method": self.method,
            "params": self.params,
            "preset": self.preset,
            "tune": self.tune,
        }


@dataclass(frozen=True)
class BenchSpec:
    """A validated spec; :attr:`runs` is its expansion, in order seed, dataset, scenario, run."""

    name: str
    seeds: list[int]
    threads: int
    datasets: list[DatasetSpec]
    scenarios: list[str]
    methods: list[MethodSpec]
    runs: list[BenchRun]
    path: str = "<spec>"
    pools: dict[str, Any] | None = None

    @property
    def unlearning_runs(self) -> list[BenchRun]:
        """The runs of the variants (not the oracles and the no-op originals)."""
        return [r for r in self.runs if r.kind == "unlearn"]

    @property
    def pool_runs(self) -> list[BenchRun]:
        """The members and the metric runs of the pools (empty without a ``[pools]`` table)."""
        return [r for r in self.runs if r.kind in ("pool_member", "pool_metrics")]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    def __init__(self, path: str) -> None:
        self.file = repr(path)

    def fail(self, fld: str, what: str, value: Any = ..., fix: str = "") -> InvalidConfigError:
        got = "" if value is ... else f"; got {_short(value)}"
        return InvalidConfigError(
            f"{self.file} is not a valid bench spec: field {fld!r} {what}{got}.{(' ' + fix) if fix else ''}"
        )

    def keys(self, table: Any, known: set[str], where: str) -> dict[str, Any]:
        if not isinstance(table, dict):
            raise self.fail(where, "must be a table", table)
        for k in table:
            if k not in known:
                fld = f"{where}.{k}" if where else k
                raise self.fail(fld, f"is not a known field (known: {', '.join(sorted(known))})")
        return table

    def str_(self, table: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
        fld = f"{where}.{key}" if where else key
        if key not in table:
            if default is ...:
                raise self.fail(fld, "is missing (it must be a non-empty string)")
            return default
        v = table[key]
        if not isinstance(v, str) or not v.strip():
            raise self.fail(fld, "must be a non-empty string", v)
        return v

    def int_(self, v: Any, fld: str, low: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low or v >= 2**63:
            raise self.fail(fld, f"must be an integer in [{low}, 2**63)", v)
        return v

    def table(self, table: dict[str, Any], key: str, where: str) -> dict[str, Any]:
        v = table.get(key, {})
        if not isinstance(v, dict):
            raise self.fail(f"{where}.{key}", "must be a table (e.g. {{ lr = 0.05 }})", v)
        return dict(v)

    def tables(self, doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
        v = doc.get(key)
        if v is None:
            raise self.fail(key, f"is missing (add at least one [[{key}]] table)")
        if not isinstance(v, list) or not v or not all(isinstance(t, dict) for t in v):
            raise self.fail(key, f"must be a list of [[{key}]] tables", v)
        return v


def load_spec(path: str | os.PathLike[str]) -> BenchSpec:
    """Read and validate a TOML spec file (see the module docstring).

    Raises:
        InvalidConfigError: the file is missing or not TOML, or any field is unknown, of the wrong
            type or names an unknown dataset, model, scenario, method, preset or hyperparameter
            (the message names the file and the field).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidConfigError(f"Cannot read the bench spec {str(p)!r}: {e.strerror or e}.") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidConfigError(f"{str(p)!r} is not a valid bench spec: not TOML ({e}).") from None
    return parse_spec(doc, str(p))


def _resolve_recipe(c: _Checker, ds: Any, train: dict[str, Any], where: str) -> dict[str, Any]:
    from ..runs import default_recipe
    from ..training import TrainConfig

    known = {f for f in TrainConfig.__dataclass_fields__ if not f.startswith("_")}
    for k in train:
        if k not in known:
            raise c.fail(f"{where}.train.{k}", f"is not a training-recipe field (known: {', '.join(sorted(known))})")
    try:
        return TrainConfig.from_dict({**default_recipe(ds), **train}).to_dict()
    except UnlearningError as e:
        raise c.fail(f"{where}.train", f"is not a valid recipe: {e}") from None


def _methods(c: _Checker, tables: list[dict[str, Any]]) -> list[tuple[str, list[MethodSpec], str, list[str]]]:
    """Each [[method]] table: (its field prefix, its variants, its name, its swept fields)."""
    from ..methods import METHODS

    out = []
    for i, t in enumerate(tables):
        where = f"method[{i}]"
        c.keys(t, _METHOD, where)
        name = c.str_(t, "name", where)
        if name not in METHODS:
            try:
                METHODS.get(name)
            except UnlearningError as e:
                raise c.fail(f"{where}.name", f"names no registered method ({e})") from None
        if name in ("retrain",):
            raise c.fail(f"{where}.name", "is the oracle, which every grid holds already; remove this [[method]] table")
        cls = METHODS.get(name)
        preset = c.str_(t, "preset", where, None)
        if preset is not None and preset not in cls.presets:
            raise c.fail(f"{where}.preset", f"names no preset of {name} (presets: {', '.join(cls.presets) or 'none'})", preset)
        params = c.table(t, "params", where)
        sweep = c.table(t, "sweep", where)
        for k, vals in sweep.items():
            if not isinstance(vals, list) or not vals:
                raise c.fail(f"{where}.sweep.{k}", "must be a non-empty list of values", vals)
            if k in params:
                raise c.fail(f"{where}.sweep.{k}", "is also fixed in params; give it in one of the two")
        tune = None
        if "tune" in t:
            raw = c.keys(t["tune"], _TUNE, f"{where}.tune")
            if sweep:
                raise c.fail(f"{where}.tune", "cannot be combined with sweep (tune searches the space itself)")
            budget = raw.get("budget", "60s")
            from ..tuning import parse_budget

            try:
                parse_budget(budget, "budget")
            except UnlearningError as e:
                raise c.fail(f"{where}.tune.budget", str(e)) from None
            objective = raw.get("objective", "proxy")
            if objective not in ("proxy", "oracle"):
                raise c.fail(f"{where}.tune.objective", "must be 'proxy' or 'oracle'", objective)
            tune = {"budget": budget, "objective": objective}
        label = c.str_(t, "label", where, None)
        names = list(sweep)
        variants = []
        for point in itertools.product(*(sweep[k] for k in names)):
            values = {**params, **dict(zip(names, point, strict=True))}
            shown = ",".join(f"{k}={v}" for k, v in zip(names, point, strict=True))
            base = label or name + (" (tuned)" if tune else "")
            variants.append(MethodSpec(name, f"{base} {shown}" if shown else base, values, preset, tune))
        out.append((where, variants, name, names))
    return out


def parse_spec(doc: Mapping[str, Any], path: str = "<spec>") -> BenchSpec:
    """Validate a parsed TOML document and expand it into runs (see :func:`load_spec`)."""
    from ..data import load_dataset, parse_scenario
    from ..methods import METHODS
    from ..methods.base import make_method
    from ..models import MODELS

    c = _Checker(path)
    doc = c.keys(dict(doc), _TOP, "")
    name = c.str_(doc, "name", "")
    seeds = doc.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise c.fail("seeds", "must be a non-empty list of integer seeds (e.g. [0, 1])", seeds)
    seeds = [c.int_(s, f"seeds[{i}]") for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise c.fail("seeds", "must not repeat a seed", seeds)
    threads = c.int_(doc.get("threads", 1), "threads", low=1)

    datasets: list[DatasetSpec] = []
    loaded: dict[str, Any] = {}
    for i, t in enumerate(c.tables(doc, "dataset")):
        where = f"dataset[{i}]"
        c.keys(t, _DATASET, where)
        dname = c.str_(t, "name", where)
        model = c.str_(t, "model", where, "cnn")
        if model not in MODELS:
            try:
                MODELS.get(model)
            except UnlearningError as e:
                raise c.fail(f"{where}.model", f"names no registered model ({e})") from None
        root = c.str_(t, "root", where, None)
        val_seed = c.int_(t.get("val_seed", 0), f"{where}.val_seed")
        load = c.table(t, "load", where)
        try:
            ds = load_dataset(dname, **({"root": root} if root else {}), **load)
        except UnlearningError as e:
            fld = f"{where}.load" if load and "option" in str(e) else f"{where}.name"
            raise c.fail(fld, f"names a dataset that cannot be loaded ({e})") from None
        recipe = _resolve_recipe(c, ds, c.table(t, "train", where), where)
        spec = DatasetSpec(dname, model, c.table(t, "model_options", where), recipe, root, val_seed, load)
        if any(d.name == spec.name and d.load != spec.load for d in datasets):
            raise c.fail(f"{where}.load", "differs from an earlier table of the same dataset; a spec loads a dataset one way")
        if any((d.name, d.model, d.model_options) == (spec.name, spec.model, spec.model_options) for d in datasets):
            raise c.fail(where, "repeats an earlier dataset and model; give each pair once")
        datasets.append(spec)
        loaded[dname] = ds

    skip = doc.get("skip_inapplicable", False)
    if not isinstance(skip, bool):
        raise c.fail("skip_inapplicable", "must be true or false", skip)
    relearn = doc.get("relearn", False)
    if not isinstance(relearn, bool):
        raise c.fail("relearn", "must be true or false", relearn)
    scenarios = []
    kinds: dict[tuple[str, str], str] = {}  # (dataset, scenario) -> kind, for the pairs that run
    names = [d.name for d in datasets]
    for i, t in enumerate(c.tables(doc, "scenario")):
        where = f"scenario[{i}]"
        c.keys(t, _SCENARIO, where)
        sc = c.str_(t, "spec", where)
        if sc in scenarios:
            raise c.fail(f"{where}.spec", "repeats an earlier scenario", sc)
        on = t.get("datasets", names)
        if not isinstance(on, list) or not on or not all(isinstance(n, str) for n in on):
            raise c.fail(f"{where}.datasets", "must be a non-empty list of dataset names", on)
        for n in on:
            if n not in names:
                raise c.fail(f"{where}.datasets", f"names {n!r}, which no [[dataset]] table gives (datasets: {', '.join(names)})")
        for d in datasets:
            if d.name not in on:
                continue
            try:
                kinds[d.name, sc] = parse_scenario(sc, loaded[d.name], seed=seeds[0], val_seed=d.val_seed).kind
            except UnlearningError as e:
                raise c.fail(f"{where}.spec", f"is not a scenario of dataset {d.name!r} ({e})") from None
        scenarios.append(sc)

    pools = None
    if "pools" in doc:
        raw = c.keys(doc["pools"], _POOLS, "pools")
        n = c.int_(raw.get("n", 32), "pools.n", low=POOL_N[0])
        if n > POOL_N[1]:
            raise c.fail("pools.n", f"must be at most {POOL_N[1]}", n)
        floor = raw.get("floor", True)
        if not isinstance(floor, bool):
            raise c.fail("pools.floor", "must be true or false", floor)
        pools = {"n": n, "scenario_seed": c.int_(raw.get("scenario_seed", 0), "pools.scenario_seed"), "floor": floor}

    tables = _methods(c, c.tables(doc, "method"))
    methods = [m for _, vs, _, _ in tables for m in vs]
    labels = [m.label for m in methods]
    for lab in labels:
        if labels.count(lab) > 1:
            raise c.fail("method", f"gives two variants the label {lab!r}; set 'label' to tell them apart")
    resolved: dict[tuple[str, int], dict[str, Any]] = {}
    for where, variants, mname, swept in tables:
        kinds_ok = METHODS.get(mname).kinds
        for (_dname, sc), kind in kinds.items():
            if not METHODS.get(mname).supports(kind) and not skip:
                raise c.fail(
                    f"{where}.name",
                    f"names {mname}, which supports {', '.join(sorted(kinds_ok))} scenarios, not {sc!r} ({kind})",
                    fix="Remove the pair, or set skip_inapplicable = true to skip such pairs.",
                )
        for m in variants:
            for i, d in enumerate(datasets):
                try:  # validates the params before anything runs; the resolved values are the key's
                    inst = make_method(m.name, preset=m.preset, recipe=d.recipe, **m.params)
                except UnlearningError as e:
                    fld = "sweep" if any(repr(k) in str(e) or f" {k}" in str(e) for k in swept) else "params"
                    raise c.fail(f"{where}.{fld}", f"is not valid for {mname}: {e}") from None
                resolved[m.label, i] = m.params if m.tune else inst.to_dict()

    runs: list[BenchRun] = []
    for seed in seeds:
        for i, d in enumerate(datasets):
            for sc in scenarios:
                if (d.name, sc) not in kinds:
                    continue
                runs.append(
                    BenchRun(
                        "retrain", d, sc, seed, "retrain", "retrain", params=d.recipe, preset="original recipe", relearn=relearn
                    )
                )
                runs.append(BenchRun("original", d, sc, seed, "original", "original", relearn=relearn))
                for m in methods:
                    if not METHODS.get(m.name).supports(kinds[d.name, sc]):
                        continue  # skip_inapplicable (else the spec was refused above)
                    runs.append(
                        BenchRun("unlearn", d, sc, seed, m.name, m.label, resolved[m.label, i], m.preset, m.tune, relearn=relearn)
                    )
    if pools is not None:
        runs += _pool_runs(pools, datasets, scenarios, methods, kinds, resolved)
    keyed = []
    for r in runs:
        key = run_key(r.key_parts())
        keyed.append(BenchRun(**{**r.__dict__, "key": key}))
    seen: dict[str, str] = {}
    for r in keyed:
        if r.key in seen:
            raise c.fail("method", f"defines the same run twice ({seen[r.key]!r} and {r.label!r} resolve to the same values)")
        seen[r.key] = r.label
    return BenchSpec(name, seeds, threads, datasets, scenarios, methods, keyed, path, pools)


def member_run(
    d: DatasetSpec,
    scenario: str,
    seed: int,
    role: str,
    method: str,
    label: str,
    params: dict[str, Any],
    preset: str | None,
    scenario_seed: int,
) -> BenchRun:
    """One ``pool_member`` run, keyed (the one place its key parts are put together)."""
    r = BenchRun(
        "pool_member", d, scenario, seed, method, label, params, preset, pool={"role": role, "scenario_seed": scenario_seed}
    )
    return BenchRun(**{**r.__dict__, "key": run_key(r.key_parts())})


def _pool_runs(
    pools: dict[str, Any],
    datasets: list[DatasetSpec],
    scenarios: list[str],
    methods: list[MethodSpec],
    kinds: dict[tuple[str, str], str],
    resolved: dict[tuple[str, int], dict[str, Any]],
) -> list[BenchRun]:
    """The pools of every (dataset, scenario): ``n`` retrained oracles (``2n`` with the chance floor's second
    pool), ``n`` originals and ``n`` unlearned models per variant, then one ``pool_metrics`` run per variant
    (and one for the no-op original). Members are keyed without ``n``, so a larger pool reuses a smaller one's.
    """
    from ..methods import METHODS

    n, s0 = pools["n"], pools["scenario_seed"]
    out: list[BenchRun] = []
    for i, d in enumerate(datasets):
        for sc in scenarios:
            if (d.name, sc) not in kinds:
                continue
            chosen = [m for m in methods if METHODS.get(m.name).supports(kinds[d.name, sc]) and m.tune is None]
            for seed in range(2 * n if pools["floor"] else n):
                out.append(
                    BenchRun(
                        "pool_member", d, sc, seed, "retrain", "retrain", params=d.recipe, pool={"role": "r", "scenario_seed": s0}
                    )
                )
            for seed in range(n):
                out.append(BenchRun("pool_member", d, sc, seed, "original", "original", pool={"role": "o", "scenario_seed": s0}))
            for m in chosen:
                for seed in range(n):
                    out.append(
                        BenchRun(
                            "pool_member",
                            d,
                            sc,
                            seed,
                            m.name,
                            m.label,
                            resolved[m.label, i],
                            m.preset,
                            pool={"role": "u", "scenario_seed": s0},
                        )
                    )
            for m in [None, *chosen]:
                name, label = ("original", "original") if m is None else (m.name, m.label)
                params = {} if m is None else resolved[m.label, i]
                out.append(
                    BenchRun("pool_metrics", d, sc, s0, name, label, params, None if m is None else m.preset, pool=dict(pools))
                )
    return out
