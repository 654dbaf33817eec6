"""``obliviate demo``: every method on the embedded digits data, against the retrained oracle."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import csv


def add_parser(sub: Any) -> None:
    """Register the ``demo`` command."""
    d = sub.add_parser("demo", help="every method on the embedded digits data, against the retrained oracle")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--methods", type=csv, default=None, help="comma-separated methods (default: all registered)")
    d.add_argument(
        "--scenarios", type=csv, default=None, help="comma-separated scenarios (default: class:3,random:0.1,subclass:3)"
    )
    d.add_argument("--seeds", type=int, default=1, help="number of seeds; tables show mean ± std (default: 1)")
    d.add_argument("--quick", action="store_true", help="8 training epochs instead of 30 (smoke test)")
    d.add_argument(
        "--sparsity", type=float, default=None, help="also run on the original pruned to this sparsity (OMP), e.g. 0.5"
    )
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    d.add_argument("--force", action="store_true", help="overwrite the results of an earlier demo in --out")


def run(args: argparse.Namespace) -> int:
    """Run the demo (see :func:`obliviate.demo.run_demo`)."""
    from ..demo import DEMO_SCENARIOS, run_demo

    run_demo(
        out=args.out,
        methods=args.methods,
        scenarios=args.scenarios or DEMO_SCENARIOS,
        seeds=args.seeds,
        quick=args.quick,
        device=args.device,
        sparsity=args.sparsity,
        force=args.force,
    )
    return 0
