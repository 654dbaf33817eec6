"""The experiment runner: variants of registered methods on scenarios, over seeds, against the oracle.

Per seed and dataset, one original model is trained (a :class:`~obliviate.training.TrainResult`,
so that every later call checks the scenario against the model's training set); per scenario the
oracle is retrained with exactly the original recipe (the ``retrain`` record), the untouched
original is evaluated against it (the no-op ``original`` record), then every variant runs, is
evaluated against the oracle and is timed against it in the same process, cold: SSD's importance
cache is emptied before each run, so no record's time depends on what ran before it. A variant
that raises :class:`~obliviate.errors.UnlearningError` gives a ``failed`` record
(``diverged`` for a :class:`~obliviate.errors.DivergenceError`) instead of stopping the run.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .._utils import resolve_device, warning_notes
from .._validation import check_interval
from ..data import load_dataset, parse_scenario
from ..errors import DivergenceError, InvalidConfigError, UnlearningError
from ..evaluation import evaluate
from ..methods import METHODS, unlearn
from ..methods.ssd import clear_importance_cache
from ..models import build_model
from ..report import run_record
from ..training import train

__all__ = ["Variant", "run", "Progress"]

Variant = tuple[str, str, Mapping[str, Any]]
"""``(label, method name, params)``; ``params`` may hold ``preset`` (e.g. ``{"preset": "digits", "alpha": 5.0}``)."""

OriginalBuilder = Callable[[Any, int, bool], Any]
"""``original(scenario, seed, record) -> TrainResult``: the original model of the scenario's dataset."""

Derivation = Callable[[Any, Any, int, bool], Any]
"""``derive(base, scenario, seed, record) -> TrainResult``: another original made from the first (e.g. pruned)."""


class Progress:
    """A rich progress bar on a terminal, one line per finished step elsewhere (or nothing)."""

    def __init__(self, total: int, enabled: bool | None, title: str = "bench") -> None:
        self.tty = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.done = total, 0
        self.bar = None
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn(f"[bold]{title}[/bold] {{task.description}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=total)

    def start(self, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=what)

    def finish(self, what: str, seconds: float | None = None) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1)
        else:
            took = f" ({seconds:.2f} s)" if seconds is not None else ""
            print(f"[{self.done}/{self.total}] {what}{took}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _variants(variants: Sequence[Variant | str]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for v in variants:
        label, method, params = (v, v, {}) if isinstance(v, str) else v
        METHODS.get(method)  # unknown names raise with suggestions, before any training
        out.append((str(label), method, dict(params or {})))
    labels = [v[0] for v in out]
    if len(set(labels)) != len(labels):
        raise InvalidConfigError(f"The variants' labels must be distinct; got {labels}.")
    return out


def _seeds(seeds: int | Iterable[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return list(range(check_interval("bench.run", "seeds", seeds, kind=int, low=1)))
    out = [int(s) for s in seeds]
    if not out:
        raise InvalidConfigError("The 'seeds' argument of bench.run must be a positive count or a non-empty list of seeds.")
    return out


def run(
    scenarios: Sequence[str],
    variants: Sequence[Variant | str],
    seeds: int | Iterable[int] = 1,
    *,
    dataset: str | Any | Callable[[str], str | Any] = "digits",
    model: str = "cnn",
    recipe: Mapping[str, Any] | None = None,
    original: OriginalBuilder | None = None,
    originals: Mapping[str, Derivation | None] | None = None,
    device: str | Any = "auto",
    metrics: Iterable[str] | None = None,
    oracle: bool = True,
    only_applicable: bool = True,
    progress: bool | None = False,
    title: str = "bench",
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run variants of registered methods on scenarios over seeds; one run record each.

    Args:
        scenarios: Scenario names (``"class:3"``, ``"random:0.1"``, ``"subclass:3"``), parsed
            per seed with :func:`obliviate.data.parse_scenario`.
        variants: ``(label, method, params)`` triples, or bare method names (label = name,
            no params). ``params`` go to :func:`obliviate.unlearn`; ``params["preset"]`` picks a
            preset. Records carry ``method`` (the registry name) and, when it differs from
            the name, ``label``; :func:`obliviate.report.aggregate` groups by the label.
        seeds: A count (seeds 0 .. n-1) or the seeds themselves.
        dataset: A dataset name, a loaded dataset, or ``f(scenario name) -> name or dataset``
            (the demo runs sub-class scenarios on ``digits_coarse``).
        model: The registry name of the original's architecture (with ``recipe``; ignored when
            ``original`` is given).
        recipe: The original's training recipe (keyword arguments of :func:`obliviate.train`).
        original: ``original(scenario, seed, record) -> TrainResult``, which trains the original
            model of the scenario's dataset instead of ``model`` and ``recipe``; called once per
            (dataset, seed). ``record`` is True when a variant's method needs the training
            recording (``needs_recording``): train with ``record=record, record_updates=record``.
        originals: ``{tag: derive}`` to run every scenario on several originals (the demo's
            ``{"dense": None, "omp 50%": prune}``): ``derive(base, scenario, seed, record)`` makes
            one from the trained original (None: the original itself), once per (dataset, seed);
            its ``config`` is the oracle's recipe and its ``masks`` go to every run. Records
            carry ``variant`` = the tag. None: the original only, untagged.
        device: "auto", "cpu", "cuda" ...
        metrics: The metrics to evaluate (None: :func:`obliviate.evaluate`'s defaults).
        oracle: Retrain the oracle and evaluate everything against it (False: no ``retrain``
            record, no gaps, no speedups).
        only_applicable: Skip a variant on a scenario whose kind its method's paper does not
            cover (``METHODS.get(name).kinds``); no record is made for it.
        progress: True: a rich progress bar; False: one line per finished step on stderr;
            None: the bar on a terminal, else the lines.
        title: The progress bar's title.
        on_record: Called with every record as soon as it is made (e.g. to print a line).

    Returns:
        Run records (:func:`obliviate.report.run_record`), in the order seed, scenario,
        original (``originals``), then ``retrain``, ``original`` and the variants.

    Raises:
        InvalidConfigError: bad scenario names, seeds or variants (before any training).
        UnknownNameError: an unknown method name (before any training).
    """
    if isinstance(scenarios, str) or not scenarios:
        raise InvalidConfigError(f"The 'scenarios' argument of bench.run must be a non-empty list of names; got {scenarios!r}.")
    chosen = _variants(variants)
    seed_list = _seeds(seeds)
    dev = resolve_device(device)
    metrics = list(metrics) if metrics is not None else None
    record = any(METHODS.get(m).needs_recording for _, m, _ in chosen)
    derivations = dict(originals) if originals else {None: None}

    loaded: dict[str, Any] = {}  # datasets by name, each loaded once
    data: dict[str, Any] = {}  # by scenario name
    for spec in scenarios:
        ds = dataset(spec) if callable(dataset) else dataset
        if isinstance(ds, str):
            ds = loaded[ds] if ds in loaded else loaded.setdefault(ds, load_dataset(ds))
        data[spec] = ds
    # every scenario of every seed up front, so that bad names fail before any training
    plans = {s: [parse_scenario(spec, data[spec], seed=s) for spec in scenarios] for s in seed_list}

    def applicable(sc: Any) -> list[tuple[str, str, dict[str, Any]]]:
        return [v for v in chosen if not only_applicable or sc.kind in METHODS.get(v[1]).kinds]

    names = {data[spec].name for spec in scenarios}
    steps = sum((2 if oracle else 1) + len(applicable(sc)) for sc in plans[seed_list[0]])
    builds = 1 + sum(d is not None for d in derivations.values())
    bar = Progress(len(seed_list) * (len(names) * builds + steps * len(derivations)), progress, title=title)

    def build(sc: Any, seed: int) -> Any:
        if original is not None:
            return original(sc, seed, record)
        ds = sc.dataset
        rec = {"record": True, "record_updates": True} if record else {}
        return train(build_model(model, ds, seed=seed), sc.train, seed=seed, device=dev, progress=False, **rec, **(recipe or {}))

    records: list[dict[str, Any]] = []

    def emit(batch: list[dict[str, Any]], tag: str | None) -> None:
        for r in batch:
            if tag is not None:
                r["variant"] = tag
            records.append(r)
            if on_record is not None:
                on_record(r)

    try:
        for seed, scs in plans.items():
            bases: dict[tuple[str, str | None], Any] = {}  # one original per (dataset, seed), one per tag derived from it
            for sc in scs:
                ds = sc.dataset
                if (ds.name, None) not in bases:
                    bar.start(f"seed {seed}: training the original model on {ds.name}")
                    bases[ds.name, None] = base = build(sc, seed)
                    bar.finish(f"seed {seed}: original model trained on {ds.name}", getattr(base, "seconds", None))
                for tag, derive in derivations.items():
                    if derive is not None and (ds.name, tag) not in bases:
                        bar.start(f"seed {seed}: making the {tag} original model on {ds.name}")
                        bases[ds.name, tag] = base = derive(bases[ds.name, None], sc, seed, record)
                        bar.finish(f"seed {seed}: {tag} original model made on {ds.name}", getattr(base, "seconds", None))
                    base = bases[ds.name, None if derive is None else tag]
                    emit(_run_scenario(sc, base, applicable(sc), seed, dev, bar, metrics=metrics, oracle=oracle), tag)
    finally:
        bar.close()
    return records


def _run_scenario(
    sc: Any,
    base: Any,
    variants: list[tuple[str, str, dict[str, Any]]],
    seed: int,
    dev: Any,
    bar: Progress,
    *,
    metrics: list[str] | None,
    oracle: bool,
) -> list[dict[str, Any]]:
    label = f"seed {seed} · {sc.name}"
    summary = sc.summary()
    masks = getattr(base, "masks", None)  # a pruned original: every run keeps its masks
    recording = getattr(base, "recording", None)
    records = []
    reference, oracle_seconds = None, None
    if oracle:
        bar.start(f"{label} · retrain (oracle)")
        fresh = unlearn(base, sc, "retrain", seed=seed, device=dev, progress=False, masks=masks, **base.config.to_dict())
        reference, oracle_seconds = evaluate(fresh, sc, fresh, metrics=metrics), fresh.seconds
        records.append(
            run_record(
                scenario=summary,
                method="retrain",
                params=fresh.config,
                seed=seed,
                status=fresh.status,
                notes=fresh.notes,
                metrics=reference.to_dict(),
                seconds=fresh.seconds,
                oracle_seconds=fresh.seconds,
                diagnostics=fresh.diagnostics,
                preset="original recipe",
            )
        )
        bar.finish(f"{label} · retrain (oracle)", fresh.seconds)
    ev = evaluate(base, sc, reference, metrics=metrics)
    records.append(
        run_record(
            scenario=summary,
            method="original",
            params={},
            seed=seed,
            metrics=ev.to_dict(),
            oracle_seconds=oracle_seconds,
            preset=None,
        )
    )
    bar.finish(f"{label} · original (no-op)")
    for name, method, params in variants:
        bar.start(f"{label} · {name}")
        params = dict(params)
        preset = params.pop("preset", None)
        extra = {"preset": preset, **({"label": name} if name != method else {})}
        try:
            clear_importance_cache()  # every run is timed cold: no SSD importance left by an earlier scenario or method
            with warnings.catch_warnings(record=True) as caught:  # kept as the row's notes, not printed over the bar
                warnings.simplefilter("default")
                out = unlearn(
                    base,
                    sc,
                    method,
                    seed=seed,
                    device=dev,
                    progress=False,
                    preset=preset,
                    recording=recording,
                    masks=masks,
                    **params,
                )
                ev = evaluate(out, sc, reference, metrics=metrics)
            notes = warning_notes(caught, out.notes)
            records.append(
                run_record(
                    scenario=summary,
                    method=method,
                    params=out.config,
                    seed=seed,
                    status=out.status,
                    notes=notes,
                    metrics=ev.to_dict(),
                    seconds=out.seconds,
                    oracle_seconds=oracle_seconds,
                    diagnostics=out.diagnostics,
                    **extra,
                )
            )
            bar.finish(f"{label} · {name}" + ("" if out.status == "ok" else f" {out.status}"), out.seconds)
        except UnlearningError as e:
            status = "diverged" if isinstance(e, DivergenceError) else "failed"
            records.append(
                run_record(
                    scenario=summary,
                    method=method,
                    seed=seed,
                    status=status,
                    error=str(e),
                    oracle_seconds=oracle_seconds,
                    **extra,
                )
            )
            bar.finish(f"{label} · {name} {status}: {e}")
    return records
