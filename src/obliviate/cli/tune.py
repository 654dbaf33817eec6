"""``obliviate tune``: choose a method's hyperparameters for a trained run (Optuna), and keep the best run.

``obliviate tune RUN --scenario S --method M [--budget 60s|20trials] [--objective proxy|oracle --reference RUN]
--out DIR`` writes ``DIR`` as a run directory of the best trial's model (``obliviate evaluate DIR`` works
on it) and, beside it, ``tune.json``: the trials table, the search space and the best parameters. The
same search backs ``obliviate unlearn ... --tune 60s`` (:func:`add_tune_options`, :func:`tune_and_save`).
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from .._utils import warning_notes
from ..tuning import parse_budget
from ._common import console, parse_sets, print_from_recipe, print_metrics, print_notes, unlearn_inputs, unlearn_provenance

__all__ = ["add_parser", "run", "parse_budget", "add_tune_options", "tune_and_save", "TUNE_FILE", "TUNE_SCHEMA"]

TUNE_FILE = "tune.json"
TUNE_SCHEMA = "obliviate.tune/1"


def add_tune_options(parser: Any, *, budget_flag: str, budget_default: str | None) -> None:
    """The options a tuning command takes: the budget, the objective, the reference, the study store."""
    parser.add_argument(
        budget_flag,
        default=budget_default,
        metavar="BUDGET",
        help="search budget: a time (60s, 2m), a number of trials (20trials) or both (60s,20trials)"
        + (f"; default {budget_default}" if budget_default else ""),
    )
    parser.add_argument(
        "--objective",
        choices=("proxy", "oracle"),
        default="proxy",
        help="proxy (default; no oracle needed) or oracle (the avg gap to --reference)",
    )
    parser.add_argument("--reference", default=None, help="run directory of the retrained model (needed by --objective oracle)")
    parser.add_argument("--storage", default=None, help="SQLite file that keeps the study; the same file resumes it")
    parser.add_argument("--study-name", default=None, help="name of the study in --storage")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="stop unpromising trials early: methods that train report the proxy after each epoch (one inference pass each)",
    )


def add_parser(sub: Any) -> None:
    """Register the ``tune`` command."""
    t = sub.add_parser("tune", help="choose a method's hyperparameters for a trained run and keep the best run")
    t.add_argument("run_dir", help="run directory of the trained model")
    t.add_argument("--scenario", required=True, help="class:C, class:C:n=K, random:F, random:n=K or subclass:NAME")
    t.add_argument("--method", required=True, help="registered method name")
    t.add_argument("--preset", default=None, help="start from a named preset of the method")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="hold a hyperparameter fixed (not searched), e.g. epochs=5"
    )
    t.add_argument("--seed", type=int, default=0, help="seed of the search, of every trial and of the forget draw")
    t.add_argument("--device", default="auto")
    add_tune_options(t, budget_flag="--budget", budget_default="60s")
    t.add_argument("--out", required=True, help="run directory to create (the best run, with tune.json beside it)")


def run(args: argparse.Namespace) -> int:
    """Tune, then write the best run and the trials table."""
    from ..methods import make_method
    from ..runs import RunDir

    source = RunDir(args.run_dir)
    run_ = source.load()
    sc = source.make_scenario(args.scenario, seed=args.seed)
    fixed = parse_sets(args.set)
    make_method(args.method, preset=args.preset, recipe=source.recipe or None, **fixed)  # validates before anything is written
    RunDir.check_new(args.out, flag="--out")
    return tune_and_save(args, source, run_, sc, fixed, budget=args.budget, budget_flag="--budget")


def tune_and_save(
    args: argparse.Namespace, source: Any, run_: Any, sc: Any, fixed: dict[str, Any], *, budget: str, budget_flag: str
) -> int:
    """Run :func:`obliviate.tune` on a loaded run and write ``args.out`` (the best run and ``tune.json``).

    ``args`` carries ``method``, ``preset``, ``seed``, ``device``, ``objective``, ``reference``,
    ``storage``, ``study_name`` and ``out``; the run record's ``timings.seconds`` is the whole
    search (the cost of the tuned result) and ``diagnostics.final_run_seconds`` the best run alone.
    """
    from ..errors import MissingDataError
    from ..evaluation import evaluate
    from ..methods import METHODS
    from ..report import run_record
    from ..runs import RunDir
    from ..tuning import tune

    budget_s, n_trials = parse_budget(budget, budget_flag)
    if args.objective == "oracle" and args.reference is None:
        raise MissingDataError(
            "--objective oracle needs --reference RUN (the retrained model: obliviate unlearn RUN --method retrain ...)."
        )
    recording, masks, parent_digest = unlearn_inputs(args, source, run_.model, METHODS.get(args.method))
    reference = None
    if args.reference is not None:
        reference = evaluate(args.reference, sc, metrics=["forget_acc", "retain_acc", "test_acc", "mia_efficacy"], seed=args.seed)
    # Claimed before the search, held until the files are in: a second command into the same --out is refused.
    with RunDir.create(args.out, flag="--out") as out:
        with warnings.catch_warnings(record=True) as caught:  # kept in the record and shown after the results
            warnings.simplefilter("default")
            result = tune(
                run_,
                sc,
                args.method,
                budget_s=budget_s,
                n_trials=n_trials,
                objective=args.objective,
                reference=reference,
                seed=args.seed,
                storage=args.storage,
                study_name=args.study_name,
                prune=args.prune,
                progress=True,
                device=args.device,
                preset=args.preset,
                masks=masks,
                recording=recording,
                **fixed,
            )
        best = result.best_result
        ev = evaluate(best, sc, reference=reference, seed=args.seed)
        summary = result.to_dict()
        diagnostics = {**best.diagnostics, "final_run_seconds": best.seconds, "tune_trials": float(len(result.trials))}
        notes = warning_notes(caught, best.notes, result.best["warnings"])
        tune_block = {k: summary[k] for k in ("objective", "study_name", "space", "best_trial", "best_params", "best_value")}
        out.save(
            best.model,
            run_record(
                params=best.config,
                status=best.status,
                notes=notes,
                metrics=ev.to_dict(),
                seconds=result.seconds,
                diagnostics=diagnostics,
                from_recipe=best.from_recipe,
                **unlearn_provenance(args, source, sc, parent_digest),
                tune={**tune_block, "budget": budget, "trials": len(result.trials), "file": TUNE_FILE},
            ),
            scenario=sc,
            masks=masks,
            metadata={"dataset": run_.dataset.name, "method": args.method},
            extra={TUNE_FILE: {"schema": TUNE_SCHEMA, "scenario": sc.summary(), **summary}},
        )
    failed = sum(t["status"] == "failed" for t in result.trials)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in result.best_params.items())
    print_metrics(
        ev.to_dict(),
        f"{args.method} on {sc.name}, tuned by {args.objective} over {len(result.trials)} trials ({failed} failed) "
        f"in {result.seconds:.1f} s (best run {best.seconds:.2f} s) -> {out.path} (status {best.status})",
    )
    console().print(f"best: {shown}; trials table: {out.path / TUNE_FILE}")
    print_from_recipe(best.from_recipe)
    print_notes(notes, best.status)
    if best.status == "collapsed":
        console().print(
            "[bold red]WARNING[/bold red]: every trial collapsed the model; raise the budget, search more "
            "hyperparameters (fix fewer with --set) or choose another method."
        )
    return 0


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
