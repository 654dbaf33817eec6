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

__all__ = ["Variant", "run", "Progress", "oracle_record", "original_record", "variant_record"]

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
        return [v for v in chosen if not only_applicable or METHODS.get(v[1]).supports(sc.kind)]

    originals_per_seed = len({sc.training_set.digest for sc in plans[seed_list[0]]})
    steps = sum((2 if oracle else 1) + len(applicable(sc)) for sc in plans[seed_list[0]])
    builds = 1 + sum(d is not None for d in derivations.values())
    bar = Progress(len(seed_list) * (originals_per_seed * builds + steps * len(derivations)), progress, title=title)

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
            # one original per (training set, seed), one per tag derived from it: scenarios of one dataset share
            # its training set, a corrective scenario (corrupted rows) has its own
            bases: dict[tuple[str, str | None], Any] = {}
            for sc in scs:
                ds, ts = sc.dataset, sc.training_set.digest
                if (ts, None) not in bases:
                    bar.start(f"seed {seed}: training the original model on {ds.name}")
                    bases[ts, None] = base = build(sc, seed)
                    bar.finish(f"seed {seed}: original model trained on {ds.name}", getattr(base, "seconds", None))
                for tag, derive in derivations.items():
                    if derive is not None and (ts, tag) not in bases:
                        bar.start(f"seed {seed}: making the {tag} original model on {ds.name}")
                        bases[ts, tag] = base = derive(bases[ts, None], sc, seed, record)
                        bar.finish(f"seed {seed}: {tag} original model made on {ds.name}", getattr(base, "seconds", None))
                    base = bases[ts, None if derive is None else tag]
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
    masks = getattr(base, "masks", None)  # a pruned original: every run keeps its masks
    recording = getattr(base, "recording", None)
    records = []
    reference, oracle_seconds = None, None
    if oracle:
        bar.start(f"{label} · retrain (oracle)")
        fresh = unlearn(base, sc, "retrain", seed=seed, device=dev, progress=False, masks=masks, **base.config.to_dict())
        reference, oracle_seconds = evaluate(fresh, sc, fresh, metrics=metrics), fresh.seconds
        records.append(oracle_record(sc, fresh, reference, seed))
        bar.finish(f"{label} · retrain (oracle)", fresh.seconds)
    records.append(original_record(sc, base, reference, seed, oracle_seconds=oracle_seconds, metrics=metrics))
    bar.finish(f"{label} · original (no-op)")
    for name, method, params in variants:
        bar.start(f"{label} · {name}")
        params = dict(params)
        preset = params.pop("preset", None)
        rec = variant_record(
            base,
            sc,
            method,
            seed=seed,
            device=dev,
            reference=reference,
            oracle_seconds=oracle_seconds,
            unlearn_kwargs={"preset": preset, "recording": recording, "masks": masks, **params},
            label=name,
            preset=preset,
            metrics=metrics,
        )
        records.append(rec)
        what = "" if rec["status"] == "ok" else f" {rec['status']}" + (f": {rec['error']}" if rec.get("error") else "")
        bar.finish(f"{label} · {name}{what}", rec["timings"]["seconds"])
    return records


# ---------------------------------------------------------------------------------------------
# The run records, shared by this runner and the grid runner of ``obliviate bench`` (bench/grid.py)


Measure = Callable[[Any], Mapping[str, float]]
"""``measure(model) -> {name: value}``: more numbers of a run's model, merged into its record's metrics."""


def _with_curves(
    record: dict[str, Any], ev: Any, sc: Any, curves: bool, model: Any = None, measure: Measure | None = None
) -> dict[str, Any]:
    if measure is not None and model is not None:
        record["metrics"].update(measure(model))
    if curves:
        from .curves import record_curves

        record["curves"] = record_curves(ev, sc)
    return record


def oracle_record(
    sc: Any, oracle: Any, reference: Any, seed: int, *, curves: bool = False, measure: Measure | None = None
) -> dict[str, Any]:
    """The ``retrain`` record: the oracle (a ``TrainResult`` or the ``retrain`` method's result) and its evaluation."""
    config = oracle.config
    record = run_record(
        scenario=sc.summary(),
        method="retrain",
        params=config.to_dict() if hasattr(config, "to_dict") else dict(config),
        seed=seed,
        status=getattr(oracle, "status", "ok"),
        notes=getattr(oracle, "notes", None),
        metrics=reference.to_dict(),
        seconds=oracle.seconds,
        oracle_seconds=oracle.seconds,
        diagnostics=getattr(oracle, "diagnostics", None),
        preset="original recipe",
    )
    return _with_curves(record, reference, sc, curves, oracle.model, measure)


def original_record(
    sc: Any,
    base: Any,
    reference: Any,
    seed: int,
    *,
    oracle_seconds: float | None,
    metrics: list[str] | None = None,
    eval_seed: int = 0,
    curves: bool = False,
    measure: Measure | None = None,
) -> dict[str, Any]:
    """The no-op ``original`` record: the original model evaluated against the oracle."""
    ev = evaluate(base, sc, reference, metrics=metrics, seed=eval_seed)
    record = run_record(
        scenario=sc.summary(),
        method="original",
        params={},
        seed=seed,
        metrics=ev.to_dict(),
        oracle_seconds=oracle_seconds,
        preset=None,
    )
    return _with_curves(record, ev, sc, curves, getattr(base, "model", base), measure)


def variant_record(
    base: Any,
    sc: Any,
    method: str,
    *,
    seed: int,
    device: Any,
    reference: Any,
    oracle_seconds: float | None,
    unlearn_kwargs: Mapping[str, Any],
    label: str | None = None,
    preset: str | None = None,
    metrics: list[str] | None = None,
    eval_seed: int = 0,
    tune: Mapping[str, Any] | None = None,
    oracle_model: Any = None,
    curves: bool = False,
    measure: Measure | None = None,
) -> dict[str, Any]:
    """One variant's record: ``method`` run (or tuned) on ``base``, evaluated against ``reference``.

    The run is timed cold (every derived-quantity cache is emptied first); the warnings it raises
    become the record's notes; an :class:`~obliviate.errors.UnlearningError` gives a ``failed``
    record (``diverged`` for a :class:`~obliviate.errors.DivergenceError`) with the error's text.

    Args:
        base: The original (a ``TrainResult``).
        sc: The scenario.
        method: The method's registry name.
        seed: The run's seed (of the method, and of ``ob.tune``).
        device: Where to run.
        reference: The oracle's :class:`~obliviate.evaluation.Evaluation` (None: no gaps).
        oracle_seconds: The oracle's training seconds (the speedup's numerator).
        unlearn_kwargs: Everything else :func:`obliviate.unlearn` gets (params, preset, masks ...).
        label: The variant's display name (recorded when it differs from ``method``).
        preset: The preset, as recorded.
        metrics: The metrics to evaluate (None: the defaults).
        eval_seed: The evaluation's seed (its attacks' subsampling).
        tune: ``{"budget", "objective"}``: run :func:`obliviate.tune` with the budget instead, and
            record the best trial's result with the search's summary.
        oracle_model: The oracle model (``tune``'s ``objective="oracle"`` reads it).
        curves: Add the report's per-run curves (:func:`obliviate.bench.curves.record_curves`).
        measure: More numbers of the unlearned model for the record's metrics (e.g. the relearn time).
    """
    extra: dict[str, Any] = {"preset": preset, **({"label": label} if label is not None and label != method else {})}
    try:
        clear_importance_cache()  # every run is timed cold: no cached importance, Fisher or gradients of an earlier run
        with warnings.catch_warnings(record=True) as caught:  # kept as the record's notes, not printed over a progress bar
            warnings.simplefilter("default")
            if tune is not None:
                from ..tuning import parse_budget
                from ..tuning import tune as run_tune

                budget_s, n_trials = parse_budget(tune["budget"], "budget")
                tuned = run_tune(
                    base,
                    sc,
                    method,
                    budget_s=budget_s,
                    n_trials=n_trials,
                    objective=tune["objective"],
                    reference=oracle_model if tune["objective"] == "oracle" else None,
                    seed=seed,
                    progress=False,
                    device=device,
                    **unlearn_kwargs,
                )
                result = tuned.best_result
                extra["tune"] = {**tune, "best_params": tuned.best_params, "trials": len(tuned.trials), "seconds": tuned.seconds}
            else:
                result = unlearn(base, sc, method, seed=seed, device=device, progress=False, **unlearn_kwargs)
            ev = evaluate(result, sc, reference, metrics=_comparable_metrics(metrics, result.model, reference), seed=eval_seed)
        record = run_record(
            scenario=sc.summary(),
            method=method,
            params=result.config,
            seed=seed,
            status=result.status,
            notes=warning_notes(caught, result.notes),
            metrics=ev.to_dict(),
            seconds=result.seconds,
            oracle_seconds=oracle_seconds,
            diagnostics=result.diagnostics,
            **extra,
        )
        return _with_curves(record, ev, sc, curves, result.model, measure)
    except UnlearningError as e:
        status = "diverged" if isinstance(e, DivergenceError) else "failed"
        return run_record(
            scenario=sc.summary(), method=method, seed=seed, status=status, error=str(e), oracle_seconds=oracle_seconds, **extra
        )


def _comparable_metrics(metrics: list[str] | None, model: Any, reference: Any) -> list[str] | None:
    """``metrics`` less those that compare weights, when the model's cannot be compared (an ensemble such as
    ``sisa``'s against the single-model oracle): they are left out of its record instead of failing the run.
    """
    from ..evaluation import _comparable_weights
    from ..metrics import METRICS

    if metrics is None or _comparable_weights(model, reference, None):
        return metrics
    return [m for m in metrics if not METRICS.get(m).compares_weights]
