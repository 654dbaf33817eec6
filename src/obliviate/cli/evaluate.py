"""``obliviate evaluate``: evaluate a run, optionally against a retrained reference run."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import print_metrics


def add_parser(sub: Any) -> None:
    """Register the ``evaluate`` command."""
    e = sub.add_parser("evaluate", help="evaluate a run, optionally against a retrained reference run")
    e.add_argument("run_dir", help="run directory to evaluate")
    e.add_argument("--reference", default=None, help="run directory of the retrained (oracle) model")
    e.add_argument("--scenario", default=None, help="scenario for a run without scenario.json (e.g. a trained model)")
    e.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    """Evaluate; an unlearning run's own record gets the metrics (and the oracle's timing)."""
    from ..errors import InvalidConfigError, MissingDataError
    from ..evaluation import evaluate
    from ..io import SCENARIO_FILE
    from ..runs import Run, RunDir

    source = RunDir(args.run_dir)
    run_ = source.load()
    record, ds = run_.record, run_.dataset
    own = source.has_scenario
    if own:
        sc = source.scenario()
    elif args.scenario is None:
        raise MissingDataError(f"{args.run_dir!r} has no {SCENARIO_FILE}; pass --scenario (e.g. class:3) to evaluate it on one.")
    else:
        sc = source.make_scenario(args.scenario)
    reference: Run | None = None
    ref_record: dict[str, Any] = {}
    if args.reference:
        ref_dir = RunDir(args.reference)
        reference = ref_dir.load()
        ref_record, ref_ds = reference.record, reference.dataset
        if ref_ds.name != ds.name:
            raise InvalidConfigError(f"The reference run is on {ref_ds.name!r}, the evaluated run on {ds.name!r}.")
        if ref_dir.has_scenario and ref_dir.scenario_hash() != sc.hash:
            raise InvalidConfigError("The reference run was unlearned on another scenario (its scenario hash differs).")
    ev = evaluate(run_, sc, reference, device=None if args.device == "auto" else args.device)
    if own:
        record["metrics"] = {**record.get("metrics", {}), **ev.to_dict()}
        oracle_seconds = (ref_record.get("timings") or {}).get("seconds") if ref_record.get("method") == "retrain" else None
        timings = record.setdefault("timings", {})
        if oracle_seconds is not None:
            timings["oracle_seconds"] = oracle_seconds
            if timings.get("seconds"):
                timings["speedup"] = oracle_seconds / timings["seconds"]
        source.write_record(record)
    print_metrics(
        ev.to_dict(),
        f"{record.get('method') or 'trained model'} on {sc.name}" + (" vs reference" if reference is not None else ""),
    )
    return 0
