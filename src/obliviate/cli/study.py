"""``obliviate study unrolling``: reproduce a paper's analysis on the embedded data."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import InvalidConfigError
from ._common import Parser


def add_parser(sub: Any) -> None:
    """Register the ``study`` command and its studies."""
    st = sub.add_parser("study", help="reproduce a paper's analysis on the embedded data")
    studies = st.add_subparsers(dest="study", metavar="STUDY", parser_class=Parser)
    studies.required = True
    su = studies.add_parser("unrolling", help="verification vs unlearning error of single-gradient unlearning (Thudi et al.)")
    su.add_argument("--out", default="runs/study-unrolling", help="output directory (default: runs/study-unrolling)")
    su.add_argument("--quick", action="store_true", help="a small grid (8 points instead of 24)")
    su.add_argument("--seed", type=int, default=0, help="seed of the model, batch order and shadow model (default: 0)")
    su.add_argument("--no-privacy", action="store_true", help="skip the privacy risk scores (no shadow model)")
    su.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    su.add_argument("--force", action="store_true", help="overwrite an earlier study's files in --out")


def run(args: argparse.Namespace) -> int:
    """Run the chosen study."""
    if args.study == "unrolling":
        from ..studies.unrolling import run_unrolling_study

        run_unrolling_study(
            out=args.out, quick=args.quick, seed=args.seed, privacy=not args.no_privacy, device=args.device, force=args.force
        )
        return 0
    raise InvalidConfigError(f"Unknown study {args.study!r}; valid: unrolling.")  # argparse already refuses it
