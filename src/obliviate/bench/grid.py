"""Run a bench spec's grid: models from the pool, one record per run key in the result store.

:func:`run_grid` walks the runs of a :class:`~obliviate.bench.spec.BenchSpec` in order; a run whose
key the store holds is skipped, so a grid killed at any point (``kill -9`` included) is completed
by running the same command again, every run recorded once. Per (dataset, seed, scenario) the
original and the oracle come from the :class:`~obliviate.bench.pool.ModelPool` (trained only when
absent); every variant is unlearned (or tuned, with ``ob.tune``) cold (SSD's importance cache
emptied first) and evaluated against the oracle, with the record functions of
:func:`obliviate.bench.run` (:func:`~obliviate.bench.runner.variant_record` ...). Every run uses the
same torch thread count (``torch.set_num_threads`` and ``OMP_NUM_THREADS``), recorded with it.

Two backends run the same function per run (:func:`execute_run`): ``local`` in this process, one
run after the other; ``ray``, one Ray task per run (``num_cpus`` = the thread count, ``num_gpus``
on a GPU), on a Ray instance started here or an existing cluster (``address``). The pool is a
directory both read and write (on a cluster: a shared filesystem), and its per-entry locks make
concurrent tasks train each model once. Only the driver writes the store, as each task ends.
A run depends only on its key's parts and the thread count (every random draw is seeded, every
cache emptied), so both backends give identical metrics.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pool import POOL_DIR, ModelPool
from .spec import BenchRun, BenchSpec, DatasetSpec
from .store import ResultStore, provenance

__all__ = ["run_grid", "plan_grid", "GridPlan", "GridProgress", "LOCK_FILE", "BACKENDS"]

LOCK_FILE = ".bench.lock"


@dataclass
class GridPlan:
    """What a grid holds before it runs: per run, whether the store has it and which pool entries it needs."""

    runs: list[BenchRun]
    stored: set[str]
    pool_keys: dict[str, list[str]] = field(default_factory=dict)  # run key -> [original key, oracle key]
    pooled: set[str] = field(default_factory=set)

    @property
    def todo(self) -> list[BenchRun]:
        """The runs not in the store yet."""
        return [r for r in self.runs if r.key not in self.stored]


def _scenario(run: BenchRun, cache: dict[Any, Any]) -> Any:
    from ..data import load_dataset, parse_scenario
    from ..io import canonical_json

    d = run.dataset
    dk = ("ds", d.name, d.root, canonical_json(d.load))
    if dk not in cache:
        cache[dk] = load_dataset(d.name, **({"root": d.root} if d.root else {}), **d.load)
    k = ("sc", *dk[1:], d.val_seed, run.scenario, run.scenario_seed)
    if k not in cache:
        cache[k] = parse_scenario(run.scenario, cache[dk], seed=run.scenario_seed, val_seed=d.val_seed)
    return cache[k]


def plan_grid(spec: BenchSpec, out: str | os.PathLike[str], pool: ModelPool) -> GridPlan:
    """The runs, which of them ``out``'s store holds, and the pool entries each needs (nothing is trained)."""
    store_path = Path(out)
    stored: set[str] = set()
    if (store_path / "results.sqlite").is_file():
        with ResultStore(store_path) as store:
            stored = store.keys()
    plan = GridPlan(spec.runs, stored)
    cache: dict[Any, Any] = {}
    for r in spec.runs:
        sc = _scenario(r, cache)
        d = r.dataset
        keys = [pool.key(sc, kind, d.model, d.model_options, d.recipe, r.seed) for kind in ("original", "oracle")]
        plan.pool_keys[r.key] = keys
        plan.pooled.update(k for k in keys if k in pool)
    return plan


class GridProgress:
    """A rich progress bar with an ETA on a terminal, else one line per finished run with the ETA (or nothing)."""

    def __init__(self, total: int, enabled: bool | None, title: str) -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.bar = None
        self.quiet = enabled is False
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"[bold]{title}[/bold] {{task.description}}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=total)

    def start(self, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=what)

    def finish(self, what: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1)
        elif not self.quiet:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            print(f"[{self.done}/{self.total}] {what} (ETA {eta:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def pin_threads(threads: int) -> None:
    """``torch.set_num_threads(threads)`` and ``OMP_NUM_THREADS`` for this process and its children."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def run_grid(
    spec: BenchSpec,
    out: str | os.PathLike[str],
    *,
    pool: str | os.PathLike[str] | ModelPool | None = None,
    threads: int | None = None,
    device: str = "auto",
    progress: bool | None = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    backend: str = "local",
    address: str | None = None,
    gpus_per_run: float | None = None,
) -> dict[str, int]:
    """Run every run of ``spec`` that ``out``'s store does not hold; returns counts.

    Args:
        spec: A loaded spec (:func:`~obliviate.bench.spec.load_spec`).
        out: The output directory (its ``results.sqlite`` is the store).
        pool: The model pool (a directory or a :class:`ModelPool`; None: ``out/pool``).
        threads: Torch threads of every run (None: the spec's ``threads``).
        device: "auto", "cpu", "cuda" ...
        progress: True: a rich bar with an ETA; False: nothing; None: the bar on a terminal, else lines.
        on_record: Called with every record written.
        backend: ``"local"`` (in this process) or ``"ray"`` (one Ray task per run).
        address: The Ray cluster to join (``"auto"``, ``"HOST:PORT"``); None: start a local Ray
            instance with this machine's cores (or use the one this process already started).
        gpus_per_run: ``num_gpus`` of each Ray task (None: 1 when ``device`` is a GPU, else 0).

    Returns:
        ``{"runs", "skipped", "recorded", "trained"}``.

    Raises:
        InvalidConfigError: ``out``'s store holds runs of this grid made with another thread count
            (and the grid is not complete), another process is running a grid into ``out``, or
            an unknown backend.
        MissingDependencyError: ``backend="ray"`` without Ray installed (``pip install obliviate[ray]``).
        KeyboardInterrupt: passed on after the store is closed (every finished run is kept).
    """
    import torch

    from ..errors import InvalidConfigError
    from .pool import exclusive

    if backend not in BACKENDS:
        raise InvalidConfigError(f"Unknown bench backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    out = Path(out)
    models = pool if isinstance(pool, ModelPool) else ModelPool(pool if pool is not None else out / POOL_DIR)
    n_threads = spec.threads if threads is None else threads
    out.mkdir(parents=True, exist_ok=True)
    saved = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    pin_threads(n_threads)
    try:
        with exclusive(out / LOCK_FILE, wait=False) as mine:
            if not mine:
                raise InvalidConfigError(
                    f"Another 'obliviate bench' is writing to {str(out)!r}; wait for it to end, or write to another --out "
                    "(a --pool directory may be shared)."
                )
            return _run_grid(spec, out, models, n_threads, device, progress, on_record, backend, address, gpus_per_run)
    finally:  # the caller's settings come back (a CLI process ends anyway)
        torch.set_num_threads(saved[0])
        if saved[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved[1]


BACKENDS = ("local", "ray")


def _run_grid(
    spec: BenchSpec,
    out: Path,
    models: ModelPool,
    n_threads: int,
    device: str,
    progress: bool | None,
    on_record: Callable[[dict[str, Any]], None] | None,
    backend: str,
    address: str | None,
    gpus_per_run: float | None,
) -> dict[str, int]:
    from .._utils import resolve_device

    dev = resolve_device(device)
    counts = {"runs": len(spec.runs), "skipped": 0, "recorded": 0, "trained": 0}
    with ResultStore(out) as store:
        stored = store.keys()
        mine = {r.key for r in spec.runs}
        other = store.threads(mine) - {n_threads}
        if other and stored & mine != mine:  # results depend on the thread count: one grid, one value
            from ..errors import InvalidConfigError

            raise InvalidConfigError(
                f"The runs of {spec.name!r} in {str(out)!r} were made with {min(other)} torch thread(s), and results depend on "
                f"the thread count; pass --threads {min(other)} to complete the grid, or write to another --out."
            )
        todo = [r for r in spec.runs if r.key not in stored]
        counts["skipped"] = len(spec.runs) - len(todo)
        bar = GridProgress(len(todo), progress, spec.name)

        def keep(record: dict[str, Any], prov: dict[str, Any], r: BenchRun) -> None:
            used = record["bench"]["pool"]
            pool_keys = [k for k in (used["original"], used["oracle"]) if k] if used else []
            if store.add(r.key, record, kind=r.kind, provenance=prov, spec=spec.name, label=r.label, pool_keys=pool_keys):
                counts["recorded"] += 1  # else another process recorded the key meanwhile: its row stays
            if on_record is not None:
                on_record(record)
            bar.finish(_what(r) + ("" if record["status"] == "ok" else f" {record['status']}"))

        try:
            if backend == "local":
                trained_before = models.trained
                try:
                    prov = provenance(dev, n_threads)
                    cache: dict[Any, Any] = {}
                    recorded = _recorded_datasets(spec)
                    for r in todo:
                        bar.start(_what(r))
                        keep(_one_run(r, models, dev, cache, spec.name, n_threads, recorded), prov, r)
                finally:
                    counts["trained"] = models.trained - trained_before
            else:
                tasks = [r for r in todo if r.kind != "pool_metrics"]  # read the members' outputs: after them, here
                counts["trained"] = _run_on_ray(spec, tasks, models, dev, n_threads, keep, bar, address, gpus_per_run)
                prov, cache = provenance(dev, n_threads), {}
                for r in todo:
                    if r.kind == "pool_metrics":
                        bar.start(_what(r))
                        keep(_one_run(r, models, dev, cache, spec.name, n_threads), prov, r)
        finally:
            bar.close()
    return counts


def _what(r: BenchRun) -> str:
    return f"seed {r.seed} · {r.dataset.name} · {r.scenario} · {r.label}"


def _dataset_id(d: DatasetSpec) -> tuple[str, str, str]:
    from ..io import canonical_json

    return d.name, d.model, canonical_json([d.model_options, d.load])


def _recorded_datasets(spec: BenchSpec) -> frozenset[tuple[str, str, str]]:
    """The datasets whose original some run of the grid unrolls (its training is recorded when it is trained)."""
    from ..methods import METHODS

    return frozenset(_dataset_id(r.dataset) for r in spec.runs if r.kind == "unlearn" and METHODS.get(r.method).needs_recording)


def _one_run(
    r: BenchRun,
    models: ModelPool,
    dev: Any,
    cache: dict[Any, Any],
    spec_name: str,
    n_threads: int,
    recorded: frozenset[tuple[str, str, str]] = frozenset(),
) -> dict[str, Any]:
    """The record of one run, its models from the pool (trained when absent); ``cache`` keeps data and oracle evaluations.

    ``recorded``: the datasets whose original is trained with a recording (some run of the grid needs it).
    """
    from ..evaluation import evaluate
    from ..methods import METHODS
    from .runner import oracle_record, original_record, variant_record

    sc = _scenario(r, cache)
    d = r.dataset
    if r.kind in ("pool_member", "pool_metrics"):
        from .pools import member_record, metrics_record

        record = member_record(r, models, dev, cache, sc) if r.kind == "pool_member" else metrics_record(r, models, sc)
        used = record.pop("pool_model", None)
        pool = {"original": used if r.method != "retrain" else None, "oracle": used if r.method == "retrain" else None}
        record["bench"] = {"spec": spec_name, "key": r.key, "kind": r.kind, "pool": pool if used else None, "threads": n_threads}
        return record
    needs_recording = r.kind == "unlearn" and METHODS.get(r.method).needs_recording
    common = {"model": d.model, "options": d.model_options, "recipe": d.recipe, "seed": r.seed, "device": dev}
    base, kb = models.get_or_train(
        sc, "original", record=needs_recording, record_if_training=_dataset_id(r.dataset) in recorded, **common
    )
    oracle, ko = models.get_or_train(sc, "oracle", **common)
    gk = ("reference", d.name, d.root, str(d.load), d.val_seed, r.scenario, r.seed, kb, ko)
    if gk not in cache:
        cache[gk] = evaluate(oracle, sc, oracle, seed=r.seed)
    reference = cache[gk]
    measure = _relearn(r, sc, base, oracle, dev, cache, gk) if r.relearn else None
    if r.kind == "retrain":
        record = oracle_record(sc, oracle, reference, r.seed, curves=True, measure=measure)
    elif r.kind == "original":
        record = original_record(
            sc, base, reference, r.seed, oracle_seconds=oracle.seconds, eval_seed=r.seed, curves=True, measure=measure
        )
    else:
        if r.tune is not None:  # ob.tune resolves the preset and the recipe itself
            kwargs: dict[str, Any] = {"preset": r.preset, **r.params}
        else:  # the spec resolved preset and recipe into the params (they are the run key's)
            kwargs = {"recipe": False, **r.params}
        if needs_recording:
            kwargs["recording"] = base.recording
        record = variant_record(
            base,
            sc,
            r.method,
            seed=r.seed,
            device=dev,
            reference=reference,
            oracle_seconds=oracle.seconds,
            unlearn_kwargs=kwargs,
            label=r.label,
            preset=r.preset,
            eval_seed=r.seed,
            tune=r.tune,
            oracle_model=oracle,
            curves=True,
            measure=measure,
        )
    record["bench"] = {
        "spec": spec_name,
        "key": r.key,
        "kind": r.kind,
        "pool": {"original": kb, "oracle": ko},
        "threads": n_threads,
    }
    return record


def _relearn(r: BenchRun, sc: Any, base: Any, oracle: Any, dev: Any, cache: dict[Any, Any], gk: tuple[Any, ...]) -> Any:
    """The relearn-time measure of a run (the spec's ``relearn = true``): ``relearn_steps`` of its model and the
    Anamnesis Index, its steps over the oracle's (Chundawat et al.), both with the target 0.95 x the original's
    forget accuracy, on the scenario's training set, seeded with the run's seed (:func:`relearn_steps`).
    """
    from ..metrics.functional.pool import anamnesis_index, relearn_steps
    from ..training import predict

    key = ("relearn", *gk)
    if key not in cache:
        logits, labels = predict(base.model, sc.forget, device=dev)
        target = 0.95 * float((logits.argmax(1) == labels).double().mean())
        cache[key] = target, relearn_steps(oracle.model, sc.train, sc.forget, target, device=dev, seed=r.seed)
    target, oracle_steps = cache[key]

    def measure(model: Any) -> dict[str, float]:
        steps = relearn_steps(model, sc.train, sc.forget, target, device=dev, seed=r.seed)
        return {"relearn_steps": float(steps), "anamnesis_index": anamnesis_index(steps, oracle_steps)}

    return measure


# ------------------------------------------------------------------------------------------ Ray

_WORKER_CACHE: dict[Any, Any] = {}  # a Ray worker process keeps its loaded data and oracle evaluations between tasks


def _ray_task(
    r: BenchRun, pool_dir: str, device: str, n_threads: int, spec_name: str, recorded: frozenset[tuple[str, str, str]]
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """One run in a Ray worker: ``(record, provenance, models trained)``."""
    from .._utils import resolve_device

    pin_threads(n_threads)
    dev = resolve_device(device)
    models = ModelPool(pool_dir)
    record = _one_run(r, models, dev, _WORKER_CACHE, spec_name, n_threads, recorded)
    return record, provenance(dev, n_threads), models.trained


def _ray() -> Any:
    """The ``ray`` module (:class:`~obliviate.errors.MissingDependencyError` naming the ``ray`` extra without it)."""
    from .._utils import require

    return require("ray", "ray", "The ray backend of 'obliviate bench'")


def _run_on_ray(
    spec: BenchSpec,
    todo: list[BenchRun],
    models: ModelPool,
    dev: Any,
    n_threads: int,
    keep: Callable[[dict[str, Any], dict[str, Any], BenchRun], None],
    bar: GridProgress,
    address: str | None,
    gpus_per_run: float | None,
) -> int:
    """Submit one Ray task per run, keep each record as its task ends; returns the models trained."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        env = {"env_vars": {"OMP_NUM_THREADS": str(n_threads)}}
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    gpus = gpus_per_run if gpus_per_run is not None else (1.0 if dev.type == "cuda" else 0.0)
    task = ray.remote(num_cpus=n_threads, num_gpus=gpus, max_retries=0)(_ray_task)
    pool_dir = str(models.path.resolve())
    recorded = _recorded_datasets(spec)
    pending = {task.remote(r, pool_dir, str(dev), n_threads, spec.name, recorded): r for r in todo}
    trained = 0
    try:
        if todo:
            bar.start(f"{len(todo)} runs as Ray tasks")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                r = pending.pop(ref)
                record, prov, n = ray.get(ref)
                trained += n
                keep(record, prov, r)
    except BaseException:
        for ref in pending:  # Ctrl-C or a failed task: stop the rest, keep what finished
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return trained
