"""``obliviate demo``: every registered method on the embedded digits data, against the oracle.

Per seed and dataset: train the original ``cnn`` on the scenario's training set (train split
minus the validation split; sub-class scenarios such as ``subclass:3`` run on ``digits_coarse``,
the same digits grouped into super-classes, with an original model of their own), then for each
scenario retrain the oracle with exactly the original recipe (its row is the ``retrain`` row),
evaluate the untouched original model (the no-op ``original`` row) and run every other
registered method whose paper covers the scenario's kind with its ``digits`` preset; each is
evaluated against the oracle and timed against it in the same process, cold: caches such as SSD's
importance over the training data are emptied before every run, so a row's time does not depend
on what ran before it (the cache's warm benefit has its own benchmark,
``benchmarks/ssd_cache.py``). The runs go through :func:`obliviate.bench.run`; the original's
training is recorded (for the methods that unroll it, ``sgu`` and ``amnesiac``) only when a
selected method needs the recording. Writes
``results.json`` (run records), ``results.csv`` and ``report.md``, and prints one table per
scenario (percentages; mean ± standard deviation over seeds).
"""

from __future__ import annotations

import functools
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._utils import resolve_device
from ._validation import check_interval
from .bench import run
from .errors import InvalidConfigError, MissingDependencyError
from .io import write_json
from .methods import METHODS
from .report import aggregate, csv_text, markdown_table, results_document, rich_table
from .runs import DIGITS_RECIPE, DirClaim
from .training import train

__all__ = ["DEMO_RECIPE", "DEMO_SCENARIOS", "DEMO_FILES", "DemoResult", "run_demo", "demo_command", "claim_output"]

DEMO_DATASET = "digits"
# Sub-class scenarios run on the same digits grouped into five super-classes (pairs of digits).
DEMO_SUBCLASS_DATASET = "digits_coarse"
DEMO_MODEL = "cnn"
DEMO_SCENARIOS: tuple[str, ...] = ("class:3", "random:0.1", "subclass:3")
# The original model's recipe (the digits recipe of obliviate.runs); the oracle retrains with exactly this.
DEMO_RECIPE: dict[str, Any] = dict(DIGITS_RECIPE)
QUICK_EPOCHS = 8
DEMO_OUT = "runs/demo"
# What the demo writes into its output directory (an earlier demo's are overwritten only with force).
DEMO_FILES: tuple[str, ...] = ("results.json", "results.csv", "report.md")


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        records: One run record per (seed, scenario, method).
        rows: Aggregated table rows (see :func:`obliviate.report.aggregate`).
        out_dir: Where the files were written (None when not written).
        seconds: Wall time of the whole demo.
        recipe: The original model's (and the oracle's) training recipe.
        sparsity: The ``--sparsity`` of the pruned original, or None (dense only).
        skipped: ``{method: reason}`` for the methods left out because their optional
            dependency is not installed (e.g. ``prune_lora`` without peft).
    """

    records: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    out_dir: Path | None
    seconds: float
    recipe: dict[str, Any] = field(default_factory=dict)
    sparsity: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)


def _dataset_for(spec: str) -> str:
    """The demo dataset of a scenario name: sub-class scenarios need super-class labels."""
    return DEMO_SUBCLASS_DATASET if str(spec).startswith("subclass") else DEMO_DATASET


def _resolve_methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        return [m for m in METHODS.names() if m != "retrain"]
    chosen = []
    for m in methods:
        METHODS.get(m)  # unknown names raise with suggestions
        if m != "retrain" and m not in chosen:
            chosen.append(m)
    return chosen


def _installed(names: list[str], explicit: bool) -> tuple[list[str], dict[str, str]]:
    """Split off the methods whose optional dependency (an extra) is not installed.

    With every method (the default) they are skipped and reported; a method the user named
    in ``methods`` raises :class:`~obliviate.errors.MissingDependencyError` before any training.
    """
    runnable, skipped = [], {}
    for name in names:
        cls = METHODS.get(name)
        instance = cls.from_preset("digits") if "digits" in cls.presets else cls()
        try:
            instance.load_dependencies()
        except MissingDependencyError as e:
            if explicit:
                raise
            skipped[name] = str(e)
            continue
        runnable.append(name)
    return runnable, skipped


def run_demo(
    *,
    out: str | Path | None = DEMO_OUT,
    methods: Sequence[str] | None = None,
    scenarios: Sequence[str] = DEMO_SCENARIOS,
    seeds: int = 1,
    quick: bool = False,
    device: str = "auto",
    progress: bool | None = None,
    console: Any = None,
    sparsity: float | None = None,
    force: bool = False,
) -> DemoResult:
    """Run the demo and write its results.

    The output directory is claimed (see :class:`obliviate.runs.DirClaim`) once the arguments are
    checked and before anything is trained, and held until the files are written (each moved in
    whole); another process writing into it meanwhile is refused, and so are an earlier demo's
    files there unless ``force``.

    Args:
        out: Output directory (None: write nothing).
        methods: Method names to run besides the oracle (default: all registered).
        scenarios: Scenario names, e.g. ``("class:3", "random:0.1")``.
        seeds: Number of seeds (0 .. seeds-1); tables show mean ± std.
        quick: Train for 8 epochs instead of 30 (a smoke test; numbers are not meaningful).
        device: "auto", "cpu", "cuda" ...
        progress: Show a progress bar (None: on a terminal; otherwise one line per step).
        console: A :class:`rich.console.Console` to print tables to (None: stdout).
        sparsity: Also run every scenario on a pruned original model: one-shot magnitude
            pruning (OMP) of the original's convolution weights to this sparsity, then a short
            masked retraining (a third of the recipe's epochs); the oracle retrains with the
            same masks and the full recipe, and every method runs with the masks
            (Unlearn-Sparse's "prune first, then unlearn"). Records carry ``variant``
            ("dense" or e.g. "omp 50%") and tables are split by it. None: dense only.
        force: Overwrite the results of an earlier demo in ``out`` (``--force``).

    Returns:
        A :class:`DemoResult`.

    Raises:
        InvalidConfigError: a bad argument, or ``out`` holds an earlier demo's files (without
            ``force``), is being written by another process or is a file.
    """
    started = time.perf_counter()
    seeds = check_interval("run_demo", "seeds", seeds, kind=int, low=1)
    names, skipped = _installed(_resolve_methods(methods), explicit=methods is not None)
    if isinstance(scenarios, str) or not scenarios:
        raise InvalidConfigError(f"The 'scenarios' argument of run_demo must be a non-empty list of names; got {scenarios!r}.")
    sparsity = check_interval("run_demo", "sparsity", sparsity, low=0.0, high=1.0, closed="left", allow_none=True)
    dev = resolve_device(device)
    recipe = dict(DEMO_RECIPE, epochs=QUICK_EPOCHS if quick else DEMO_RECIPE["epochs"])
    command = demo_command(
        methods=methods, scenarios=scenarios, seeds=seeds, quick=quick, sparsity=sparsity, device=device, out=out
    )
    claim = claim_output(out, force=force) if out is not None else None
    try:
        result = _run(names, skipped, scenarios, seeds, recipe, sparsity, dev, progress, console, started)
        if claim is not None:
            result.out_dir = _write(claim, result, scenarios, seeds, command, str(dev))
            _say(console, f"Wrote results.json, results.csv and report.md to {result.out_dir}")
    except BaseException:
        if claim is not None:
            claim.abandon()
        raise
    if claim is not None:
        claim.release()
    return result


def _run(
    names: list[str],
    skipped: dict[str, str],
    scenarios: Sequence[str],
    seeds: int,
    recipe: dict[str, Any],
    sparsity: float | None,
    dev: Any,
    progress: bool | None,
    console: Any,
    started: float,
) -> DemoResult:
    """The demo's runs, aggregated and printed (nothing written)."""
    variants = [(name, name, {"preset": "digits"} if "digits" in METHODS.get(name).presets else {}) for name in names]
    originals = None
    if sparsity is not None:
        pruned = functools.partial(_sparse_original, sparsity=sparsity, dev=dev, recipe=recipe)
        originals = {"dense": None, f"omp {sparsity:.0%}": pruned}
    records = run(
        list(scenarios),
        variants,
        seeds,
        dataset=_dataset_for,
        model=DEMO_MODEL,
        recipe=recipe,
        originals=originals,
        device=dev,
        progress=progress,
        title="demo",
    )
    rows = aggregate(records)
    result = DemoResult(
        records=records,
        rows=rows,
        out_dir=None,
        seconds=time.perf_counter() - started,
        recipe=recipe,
        sparsity=sparsity,
        skipped=skipped,
    )
    _print_tables(result, scenarios, console)
    return result


def demo_command(
    *,
    methods: Sequence[str] | None,
    scenarios: Sequence[str],
    seeds: int,
    quick: bool,
    sparsity: float | None,
    device: str,
    out: str | Path | None,
) -> str:
    """The ``obliviate demo`` command line that reproduces a run with these arguments (for the report).

    Every option that differs from the command's default is named, ``--methods`` included;
    ``--force`` is left out (it changes what may be overwritten, not the results).
    """
    words = ["obliviate", "demo"]
    if methods is not None:
        words += ["--methods", ",".join(methods)]
    if tuple(scenarios) != DEMO_SCENARIOS:
        words += ["--scenarios", ",".join(scenarios)]
    if seeds != 1:
        words += ["--seeds", str(seeds)]
    if quick:
        words.append("--quick")
    if sparsity is not None:
        words += ["--sparsity", f"{sparsity:g}"]
    if str(device) != "auto":
        words += ["--device", str(device)]
    if out is not None and str(out) != DEMO_OUT:
        words += ["--out", str(out)]
    return shlex.join(words)


def claim_output(out: str | Path, *, force: bool = False) -> DirClaim:
    """Claim the demo's output directory (created when missing) until its files are written.

    Raises:
        InvalidConfigError: ``out`` is a file, is being written by another process, holds an
            unfinished run, or holds one of :data:`DEMO_FILES` and ``force`` is false.
    """
    return DirClaim.acquire(out, flag="--out", protected=DEMO_FILES, force_flag="--force (force=True)", force=force)


def _sparse_original(base: Any, sc: Any, seed: int, record: bool, *, sparsity: float, dev: Any, recipe: dict[str, Any]) -> Any:
    """OMP of the original model's conv weights, then a third of the recipe's epochs with the masks.

    Returns ``train``'s result with ``config`` set to the full recipe, which the oracle retrains
    with (from scratch, with the masks); its ``masks`` go to every method. Recorded like the
    dense original when a method unrolls the training run (``record``: sgu, amnesiac).
    """
    import dataclasses

    from .pruning import prune
    from .training import TrainConfig

    pruned = prune(base.model, sparsity, kind="omp")
    short = dict(recipe, epochs=max(1, recipe["epochs"] // 3))
    recorded = {"record": True, "record_updates": True} if record else {}
    tuned = train(pruned.model, sc.train, masks=pruned.masks, seed=seed, device=dev, progress=False, **recorded, **short)
    return dataclasses.replace(tuned, config=TrainConfig.from_dict(recipe))


def _say(console: Any, text: str) -> None:
    if console is None:
        print(text)
    else:
        console.print(text)


def _print_tables(result: DemoResult, scenarios: Sequence[str], console: Any) -> None:
    from ._utils import console as make_console

    con = console or make_console()
    for spec in dict.fromkeys(r["scenario"] for r in result.rows):
        rows = [r for r in result.rows if r["scenario"] == spec]
        n = rows[0]["n"] if rows else 0
        con.print(rich_table(rows, f"{spec}: {_dataset_for(spec)} / cnn, {n} seed(s); accuracies and MIA in %"))
        for r in rows:  # the warnings of the runs, beside their method rather than in the middle of the progress
            for note in r.get("notes") or []:
                con.print(f"  note ({r['method']}): {note}", markup=False)
    for name, why in result.skipped.items():
        con.print(f"skipped {name}: {why}", markup=False)
    con.print(f"demo finished in {result.seconds:.1f} s")


def _write(claim: DirClaim, result: DemoResult, scenarios: Sequence[str], seeds: int, command: str, device: str) -> Path:
    """Write results.json, results.csv and report.md into a staging directory, then move them in whole."""
    stage = claim.staging()
    write_json(stage / "results.json", results_document(result.records))
    (stage / "results.csv").write_text(csv_text(result.records))
    lines = [
        "# obliviate demo",
        "",
        f"Command: `{command}` · device: {device} · wall time {result.seconds:.1f} s · seeds: {seeds}",
        "",
        f"Dataset `{DEMO_DATASET}` (scikit-learn's 8x8 digits, stratified 80/20 split; sub-class scenarios use "
        f"`{DEMO_SUBCLASS_DATASET}`, the same digits in five super-classes of two digits), model `{DEMO_MODEL}`, "
        f"original recipe: {result.recipe}. The oracle is `retrain` with that recipe; `original` is the model before "
        "unlearning. Every other method runs with its `digits` preset (see `obliviate methods show NAME`).",
        "",
        "Accuracies and MIA-efficacy in percent; `avg gap` is SalUn's mean absolute gap to the oracle over forget, "
        "retain and test accuracy and MIA-efficacy (points); `seconds` is the method alone; `speedup` is oracle "
        "seconds / method seconds in the same run. For class-wise scenarios `test acc` excludes the forgotten class "
        "and `test forget acc` scores it.",
        "",
    ]
    for spec in dict.fromkeys(r["scenario"] for r in result.rows):
        lines += [f"## {spec}", "", markdown_table([r for r in result.rows if r["scenario"] == spec]), ""]
    failures = [r for r in result.records if r["status"] in ("failed", "diverged")]
    collapsed = [r for r in result.records if r["status"] == "collapsed"]
    if collapsed:
        lines += (
            ["## Collapsed (retained-class validation accuracy fell by more than 10 points)", ""]
            + [
                f"- {r['scenario']['name']} / {r.get('label') or r['method']} (seed {r['seed']}): "
                f"{r['diagnostics'].get('val_acc_drop', float('nan')):.1f} points"
                for r in collapsed
            ]
            + [""]
        )
    if failures:
        lines += (
            ["## Failures", ""]
            + [f"- {r['scenario']['name']} / {r['method']} (seed {r['seed']}): {r['error']}" for r in failures]
            + [""]
        )
    if result.skipped:
        lines += ["## Skipped (optional dependency not installed)", ""]
        lines += [f"- {name}: {why}" for name, why in result.skipped.items()] + [""]
    (stage / "report.md").write_text("\n".join(lines))
    claim.publish(stage)
    return claim.path
