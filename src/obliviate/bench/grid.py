"""Run a bench spec's grid: models from the pool, one record per run key in the result store.

:func:`run_grid` walks the runs of a :class:`~obliviate.bench.spec.BenchSpec` in order; a run whose
key the store holds is skipped, so a grid killed at any point (``kill -9`` included) is completed
by running the same command again, every run recorded once. Per (dataset, seed, scenario) the
original and the oracle come from the :class:`~obliviate.bench.pool.ModelPool` (trained only when
absent); every variant is unlearned (or tuned, with ``ob.tune``) cold (SSD's importance cache
emptied first) and evaluated against the oracle, as in :func:`obliviate.bench.run`. Every run uses
the same torch thread count (``torch.set_num_threads`` and ``OMP_NUM_THREADS``), recorded with it.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._utils import warning_notes
from .pool import POOL_DIR, ModelPool
from .spec import BenchRun, BenchSpec
from .store import ResultStore, provenance

__all__ = ["run_grid", "plan_grid", "GridPlan", "GridProgress", "LOCK_FILE"]

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

    d = run.dataset
    if ("ds", d.name, d.root) not in cache:
        cache["ds", d.name, d.root] = load_dataset(d.name, **({"root": d.root} if d.root else {}))
    k = ("sc", d.name, d.root, d.val_seed, run.scenario, run.seed)
    if k not in cache:
        cache[k] = parse_scenario(run.scenario, cache["ds", d.name, d.root], seed=run.seed, val_seed=d.val_seed)
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

    Returns:
        ``{"runs", "skipped", "recorded", "trained"}``.

    Raises:
        InvalidConfigError: ``out``'s store holds runs of this grid made with another thread count
            (and the grid is not complete), or another process is running a grid into ``out``.
        KeyboardInterrupt: passed on after the store is closed (every finished run is kept).
    """
    out = Path(out)
    models = pool if isinstance(pool, ModelPool) else ModelPool(pool if pool is not None else out / POOL_DIR)
    n_threads = spec.threads if threads is None else threads
    import torch

    from ..errors import InvalidConfigError
    from .pool import exclusive

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
            return _run_grid(spec, out, models, n_threads, device, progress, on_record)
    finally:  # the caller's settings come back (a CLI process ends anyway)
        torch.set_num_threads(saved[0])
        if saved[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved[1]


def _run_grid(
    spec: BenchSpec,
    out: Path,
    models: ModelPool,
    n_threads: int,
    device: str,
    progress: bool | None,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> dict[str, int]:
    from .._utils import resolve_device
    from ..evaluation import evaluate

    dev = resolve_device(device)
    prov = provenance(dev, n_threads)
    trained_before = models.trained
    counts = {"runs": len(spec.runs), "skipped": 0, "recorded": 0, "trained": 0}
    cache: dict[Any, Any] = {}
    refs: dict[tuple[str, ...], Any] = {}
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
        try:
            for r in todo:
                what = f"seed {r.seed} · {r.dataset.name} · {r.scenario} · {r.label}"
                bar.start(what)
                sc = _scenario(r, cache)
                d = r.dataset
                base, kb = models.get_or_train(
                    sc, "original", model=d.model, options=d.model_options, recipe=d.recipe, seed=r.seed, device=dev
                )
                oracle, ko = models.get_or_train(
                    sc, "oracle", model=d.model, options=d.model_options, recipe=d.recipe, seed=r.seed, device=dev
                )
                gk = (d.name, d.model, r.scenario, str(r.seed), kb, ko)
                if gk not in refs:
                    refs[gk] = evaluate(oracle, sc, oracle, seed=r.seed)
                record = _one_run(r, sc, base, oracle, refs[gk], dev)
                record["bench"] = {"spec": spec.name, "key": r.key, "pool": {"original": kb, "oracle": ko}, "threads": n_threads}
                if store.add(r.key, record, kind=r.kind, provenance=prov, spec=spec.name, label=r.label, pool_keys=[kb, ko]):
                    counts["recorded"] += 1  # else another process recorded the key meanwhile: its row stays
                if on_record is not None:
                    on_record(record)
                bar.finish(what + ("" if record["status"] == "ok" else f" {record['status']}"))
        finally:
            bar.close()
            counts["trained"] = models.trained - trained_before
    return counts


def _one_run(r: BenchRun, sc: Any, base: Any, oracle: Any, reference: Any, dev: Any) -> dict[str, Any]:
    from ..errors import DivergenceError, UnlearningError
    from ..evaluation import evaluate
    from ..methods import unlearn
    from ..methods.ssd import clear_importance_cache
    from ..report import run_record

    summary = sc.summary()
    oracle_seconds = oracle.seconds
    if r.kind == "retrain":
        return run_record(
            scenario=summary,
            method="retrain",
            params=oracle.config.to_dict(),
            seed=r.seed,
            metrics=reference.to_dict(),
            seconds=oracle.seconds,
            oracle_seconds=oracle_seconds,
            preset="original recipe",
        )
    if r.kind == "original":
        ev = evaluate(base, sc, reference, seed=r.seed)
        return run_record(
            scenario=summary,
            method="original",
            params={},
            seed=r.seed,
            metrics=ev.to_dict(),
            oracle_seconds=oracle_seconds,
            preset=None,
        )
    extra: dict[str, Any] = {"preset": r.preset, **({"label": r.label} if r.label != r.method else {})}
    try:
        clear_importance_cache()  # every run is timed cold
        with warnings.catch_warnings(record=True) as caught:  # kept as the record's notes, not printed over the bar
            warnings.simplefilter("default")
            if r.tune is not None:
                from ..tuning import parse_budget, tune

                budget_s, n_trials = parse_budget(r.tune["budget"], "budget")
                tuned = tune(
                    base,
                    sc,
                    r.method,
                    budget_s=budget_s,
                    n_trials=n_trials,
                    objective=r.tune["objective"],
                    reference=oracle if r.tune["objective"] == "oracle" else None,
                    seed=r.seed,
                    progress=False,
                    device=dev,
                    preset=r.preset,
                    **r.params,
                )
                result = tuned.best_result
                extra["tune"] = {
                    **r.tune,
                    "best_params": tuned.best_params,
                    "trials": len(tuned.trials),
                    "seconds": tuned.seconds,
                }
            else:
                result = unlearn(base, sc, r.method, seed=r.seed, device=dev, progress=False, recipe=False, **r.params)
            ev = evaluate(result, sc, reference, seed=r.seed)
        notes = warning_notes(caught, result.notes)
        return run_record(
            scenario=summary,
            method=r.method,
            params=result.config,
            seed=r.seed,
            status=result.status,
            notes=notes,
            metrics=ev.to_dict(),
            seconds=result.seconds,
            oracle_seconds=oracle_seconds,
            diagnostics=result.diagnostics,
            **extra,
        )
    except UnlearningError as e:
        status = "diverged" if isinstance(e, DivergenceError) else "failed"
        return run_record(
            scenario=summary, method=r.method, seed=r.seed, status=status, error=str(e), oracle_seconds=oracle_seconds, **extra
        )
