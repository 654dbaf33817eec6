"""``obliviate bench SPEC.toml --out DIR``: run a benchmark grid, resumably, into DIR's result store.

``--backend ray [--address auto|HOST:PORT]`` runs one Ray task per run (see
:mod:`obliviate.bench.grid`); the default ``local`` runs them in this process. ``--dry-run`` lists
the runs (key prefix, dataset, scenario, seed, variant) and what the store and the model pool
already hold, and trains nothing. Runs the store holds are skipped, so the same
command completes a grid that was killed or interrupted (Ctrl-C keeps every finished run, exit 130).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the ``bench`` command."""
    b = sub.add_parser("bench", help="run a benchmark grid from a TOML spec into a resumable result store")
    b.add_argument("spec", metavar="SPEC.toml", help="the bench spec (see obliviate.bench.spec)")
    b.add_argument("--out", required=True, help="output directory: results.sqlite (the result store) and pool/")
    b.add_argument("--dry-run", action="store_true", help="list the runs and what the store and the pool hold; train nothing")
    b.add_argument("--pool", default=None, help="model pool directory shared across invocations (default: OUT/pool)")
    b.add_argument("--threads", type=int, default=None, help="torch threads of every run (default: the spec's threads, else 1)")
    b.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    b.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="local: in this process (default); ray: one Ray task per run"
    )
    b.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster to join (auto, HOST:PORT; default: start Ray on this machine)",
    )
    b.add_argument(
        "--gpus-per-run", type=float, default=None, help="with --backend ray: num_gpus of each task (default: 1 on a GPU, else 0)"
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def run(args: argparse.Namespace) -> int:
    """Run (or list) the grid."""
    from pathlib import Path

    from ..bench.grid import plan_grid, run_grid
    from ..bench.pool import POOL_DIR, ModelPool
    from ..bench.spec import load_spec
    from ..bench.store import ResultStore
    from ..errors import InvalidConfigError

    if args.threads is not None and args.threads < 1:
        raise InvalidConfigError(f"--threads must be a positive integer; got {args.threads}.")
    spec = load_spec(args.spec)
    out = Path(args.out)
    pool_dir = Path(args.pool) if args.pool else out / POOL_DIR
    if args.dry_run:
        pool = ModelPool(pool_dir, create=False)  # a dry run creates nothing
        plan = plan_grid(spec, out, pool)
        print(f"{spec.name}: {len(spec.runs)} runs ({len(spec.unlearning_runs)} unlearning), {len(plan.todo)} to run")
        print(f"{'key':12}  {'dataset':10} {'scenario':12} {'seed':>4}  {'run':24} {'store':6} pool (original, oracle)")
        for r in spec.runs:
            orig, orac = (("held" if k in plan.pooled else "train") for k in plan.pool_keys[r.key])
            held = "done" if r.key in plan.stored else "-"
            print(f"{r.key[:12]}  {r.dataset.name:10} {r.scenario:12} {r.seed:>4}  {r.label:24} {held:6} {orig}, {orac}")
        models = {k for keys in plan.pool_keys.values() for k in keys}
        print(
            f"pool {pool_dir}: {len(models & plan.pooled)} of {len(models)} models held; "
            f"store {out}: {len(plan.stored & {r.key for r in spec.runs})} runs held"
        )
        return 0
    progress = False if args.no_progress else None
    try:
        if args.backend != "ray" and (args.address is not None or args.gpus_per_run is not None):
            raise InvalidConfigError("--address and --gpus-per-run go with --backend ray.")
        counts = run_grid(
            spec,
            out,
            pool=pool_dir,
            threads=args.threads,
            device=args.device,
            progress=progress,
            backend=args.backend,
            address=args.address,
            gpus_per_run=args.gpus_per_run,
        )
    except KeyboardInterrupt:
        with ResultStore(out) as store:
            done = len(store.keys() & {r.key for r in spec.runs})
        print(
            f"obliviate: interrupted; {done} of {len(spec.runs)} runs are in {str(out)!r}: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    print(
        f"{spec.name}: {counts['recorded']} runs recorded, {counts['skipped']} already in the store, "
        f"{counts['trained']} models trained; results in {str(out / 'results.sqlite')!r}"
    )
    return 0
