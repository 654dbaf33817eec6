"""The ``obliviate`` command: a thin argparse layer over the Python API, one module per command.

Commands work on run directories (``model.safetensors`` + ``run.json`` [+ ``scenario.json``]):

    obliviate demo [--out DIR] [--force] [--methods a,b] [--scenarios class:3,random:0.1] [--seeds N] [--quick] [--sparsity S]
    obliviate methods [show NAME]
    obliviate train --dataset NAME [--root DIR] [--download] [--model NAME] [--epochs N] [--lr X] --out RUN_DIR
    obliviate unlearn RUN_DIR --scenario class:3 --method NAME [--preset P] [--set k=v ...] [--tune 60s] --out RUN_DIR
    obliviate tune RUN_DIR --scenario class:3 --method NAME [--budget 60s|20trials] [--objective oracle --reference RUN] --out DIR
    obliviate evaluate RUN_DIR [--reference RUN_DIR] [--scenario SPEC]
    obliviate study unrolling [--out DIR] [--quick] [--seed N]
    obliviate certified fit --dataset NAME [--classes 3,8] [--features raw|dp|run:DIR] [--removals K] --out RUN_DIR
    obliviate certified remove RUN_DIR --ids 1,2,3 [--ids-file FILE] [--request-id ID] [--reason TEXT]
    obliviate certified status RUN_DIR [--json]
    obliviate requests apply RUN_DIR --ids-file F [--batch M] --method NAME --out DIR | obliviate requests status DIR
    obliviate bench SPEC.toml --out DIR [--dry-run] [--pool P] [--threads N] [--device auto]
    obliviate pool ls [DIR] [--pool P] | obliviate pool gc DIR [--pool P] [--yes]

Each command module (:mod:`~obliviate.cli.train`, ``unlearn``, ``tune``, ``evaluate``, ``methods``, ``demo``,
``study``, ``certified``, ``requests``,
``bench``, ``pool``) has ``add_parser(subparsers)`` and ``run(args) -> exit status``; they import
only :mod:`obliviate.cli._common` at module level (so ``--help`` needs no torch) and the library
inside ``run``. Run directories are :class:`obliviate.runs.RunDir` objects; nothing here is needed to
use them from Python.

Bad input of any kind (an unknown name, a wrong value, missing data, an incompatible checkpoint)
prints one line and exits 2; a run that fails on good input (divergence) exits 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import UnlearningError
from . import bench, certified, demo, evaluate, methods, pool, report, requests, study, train, tune, unlearn
from ._common import Parser
from ._common import parse_sets as _parse_sets  # noqa: F401  (the old private name, kept for callers)

__all__ = ["main", "build_parser", "COMMANDS"]

# Command name -> its module, in the order of ``obliviate --help``.
COMMANDS = {
    "demo": demo,
    "methods": methods,
    "train": train,
    "unlearn": unlearn,
    "tune": tune,
    "study": study,
    "evaluate": evaluate,
    "certified": certified,
    "requests": requests,
    "bench": bench,
    "pool": pool,
    "report": report,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = Parser(prog="obliviate", description="Machine unlearning for PyTorch classifiers, and how well it worked.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``obliviate`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed in one line)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return COMMANDS[args.command].run(args)
    except UnlearningError as err:
        print(f"obliviate: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("obliviate: interrupted", file=sys.stderr)
        return 130


def _run() -> None:  # python -m obliviate
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _run()
