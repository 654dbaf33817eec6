"""``obliviate unlearn``: unlearn a scenario from a trained run, into a new run directory."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from .._utils import warning_notes
from ._common import parse_sets, print_from_recipe, print_metrics, print_notes, unlearn_inputs, unlearn_provenance
from .tune import add_tune_options


def add_parser(sub: Any) -> None:
    """Register the ``unlearn`` command."""
    u = sub.add_parser("unlearn", help="unlearn a scenario from a trained run")
    u.add_argument("run_dir", help="run directory of the trained model")
    u.add_argument("--scenario", required=True, help="class:C, class:C:n=K, random:F, random:n=K or subclass:NAME")
    u.add_argument("--method", required=True, help="registered method name")
    u.add_argument("--preset", default=None, help="start from a named preset of the method")
    u.add_argument("--set", action="append", metavar="KEY=VALUE", help="method hyperparameter, e.g. alpha=5")
    u.add_argument("--seed", type=int, default=0, help="seed of the method and of the forget draw")
    u.add_argument("--device", default="auto")
    add_tune_options(u, budget_flag="--tune", budget_default=None)  # --tune 60s: choose the hyperparameters first
    u.add_argument("--out", required=True, help="run directory to create")


def run(args: argparse.Namespace) -> int:
    """Claim the new run directory, unlearn, evaluate, and write it (model, masks, scenario, run record)."""
    from ..evaluation import evaluate
    from ..methods import make_method
    from ..report import run_record
    from ..runs import RunDir

    source = RunDir(args.run_dir)
    run_ = source.load()
    ds = run_.dataset
    sc = source.make_scenario(args.scenario, seed=args.seed)
    hyper = parse_sets(args.set)
    # Validates before anything is written; the defaults a paper states relative to the original training
    # (retrain: the whole recipe) come from the run's recipe.
    method = make_method(args.method, preset=args.preset, recipe=source.recipe or None, **hyper)
    if type(method).ensemble:
        from ..errors import InvalidConfigError

        raise InvalidConfigError(
            f"{args.method}'s result is an ensemble with its slice checkpoints, which a run directory does not hold; "
            f"use 'obliviate requests apply {args.run_dir} --ids-file F --method {args.method} --out DIR' instead."
        )
    RunDir.check_new(args.out, flag="--out")  # fail fast; create() claims it atomically below
    if args.tune is not None:  # search the hyperparameters not given with --set (obliviate tune), keep the best run
        from .tune import tune_and_save

        return tune_and_save(args, source, run_, sc, hyper, budget=args.tune, budget_flag="--tune")
    if args.objective != "proxy" or args.reference is not None or args.storage is not None or args.prune:
        from ..errors import InvalidConfigError

        raise InvalidConfigError(
            "--objective, --reference, --storage and --prune set how --tune searches; add --tune 60s (or 20trials)."
        )
    recording, masks, parent_digest = unlearn_inputs(args, source, run_.model, type(method))
    # Claimed before the compute, held until the files are in: a second command into the same --out is refused.
    with RunDir.create(args.out, flag="--out") as out:
        with warnings.catch_warnings(record=True) as caught:  # shown after the results, kept in the record
            warnings.simplefilter("default")
            result = method.unlearn(run_, sc, seed=args.seed, device=args.device, recording=recording, masks=masks)
            ev = evaluate(result, sc)
        notes = warning_notes(caught, result.notes)
        out.save(
            result.model,
            run_record(
                params=result.config,
                status=result.status,
                notes=notes,
                metrics=ev.to_dict(),
                seconds=result.seconds,
                diagnostics=result.diagnostics,
                from_recipe=result.from_recipe,
                **unlearn_provenance(args, source, sc, parent_digest),
            ),
            scenario=sc,
            masks=masks,
            metadata={"dataset": ds.name, "method": args.method},
        )
    print_metrics(ev.to_dict(), f"{args.method} on {sc.name} in {result.seconds:.2f} s -> {out.path} (status {result.status})")
    print_from_recipe(result.from_recipe)
    print_notes(notes, result.status)
    return 0
