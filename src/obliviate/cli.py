"""The ``obliviate`` command: a thin argparse layer over the Python API.

Commands work on run directories (``model.safetensors`` + ``run.json`` [+ ``scenario.json``]):

    obliviate demo [--out DIR] [--methods a,b] [--scenarios class:3,random:0.1] [--seeds N] [--quick] [--sparsity S]
    obliviate methods [show NAME]
    obliviate train --dataset NAME [--root DIR] [--download] [--model NAME] [--epochs N] [--lr X] --out RUN_DIR
    obliviate unlearn RUN_DIR --scenario class:3 --method NAME [--preset P] [--set key=value ...] --out RUN_DIR
    obliviate evaluate RUN_DIR [--reference RUN_DIR] [--scenario SPEC]
    obliviate study unrolling [--out DIR] [--quick] [--seed N]
    obliviate certified fit --dataset NAME [--classes 3,8] [--features raw|dp|run:DIR] [--removals K] --out RUN_DIR
    obliviate certified remove RUN_DIR --ids 1,2,3 [--ids-file FILE] [--request-id ID] [--reason TEXT]
    obliviate certified status RUN_DIR [--json]

Bad input of any kind (an unknown name, a wrong value, missing data, an incompatible checkpoint)
prints one line and exits 2; a run that fails on good input (divergence) exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .errors import InvalidConfigError, UnlearningError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"obliviate: error: {message} (see '{self.prog} --help')\n")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _parse_sets(items: Sequence[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, lists, true, null)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidConfigError(f"{flag} expects key=value; got {item!r}.")
        lowered = raw.strip().lower()
        if lowered in ("none", "null"):
            value: Any = None
        elif lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = _Parser(prog="obliviate", description="Machine unlearning for PyTorch classifiers, and how well it worked.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser("demo", help="every method on the embedded digits data, against the retrained oracle")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--methods", type=_csv, default=None, help="comma-separated methods (default: all registered)")
    d.add_argument(
        "--scenarios", type=_csv, default=None, help="comma-separated scenarios (default: class:3,random:0.1,subclass:3)"
    )
    d.add_argument("--seeds", type=int, default=1, help="number of seeds; tables show mean ± std (default: 1)")
    d.add_argument("--quick", action="store_true", help="8 training epochs instead of 30 (smoke test)")
    d.add_argument(
        "--sparsity", type=float, default=None, help="also run on the original pruned to this sparsity (OMP), e.g. 0.5"
    )
    d.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")

    m = sub.add_parser("methods", help="list the unlearning methods, or show one")
    m.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    m.add_argument("name", nargs="?", help="method to show")

    t = sub.add_parser("train", help="train a model on a dataset's train split minus its validation split")
    t.add_argument("--dataset", required=True, help="registered dataset name (digits, cifar10, ...)")
    t.add_argument("--root", default=None, help="directory of the torchvision dataset files")
    t.add_argument("--download", action="store_true", help="let torchvision download missing files")
    t.add_argument("--model", default="cnn", help="registered model name (default: cnn)")
    t.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="architecture option, e.g. width=32")
    t.add_argument("--epochs", type=int, default=None, help="training epochs")
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--batch-size", type=int, default=None, help="batch size")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any TrainConfig field, e.g. schedule=cosine")
    t.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    t.add_argument("--val-fraction", type=float, default=0.1, help="share of each class held out (default: 0.1)")
    t.add_argument("--val-seed", type=int, default=0, help="seed of the held-out validation split (default: 0)")
    t.add_argument("--device", default="auto")
    t.add_argument("--record", action="store_true", help="keep the training recording (for sgu, amnesiac, verification error)")
    t.add_argument("--record-updates", action="store_true", help="also keep every step's parameter update (amnesiac)")
    t.add_argument("--out", required=True, help="run directory to create")

    u = sub.add_parser("unlearn", help="unlearn a scenario from a trained run")
    u.add_argument("run_dir", help="run directory of the trained model")
    u.add_argument("--scenario", required=True, help="class:C, class:C:n=K, random:F, random:n=K or subclass:NAME")
    u.add_argument("--method", required=True, help="registered method name")
    u.add_argument("--preset", default=None, help="start from a named preset of the method")
    u.add_argument("--set", action="append", metavar="KEY=VALUE", help="method hyperparameter, e.g. alpha=5")
    u.add_argument("--seed", type=int, default=0, help="seed of the method and of the forget draw")
    u.add_argument("--device", default="auto")
    u.add_argument("--out", required=True, help="run directory to create")

    st = sub.add_parser("study", help="reproduce a paper's analysis on the embedded data")
    studies = st.add_subparsers(dest="study", metavar="STUDY", parser_class=_Parser)
    studies.required = True
    su = studies.add_parser("unrolling", help="verification vs unlearning error of single-gradient unlearning (Thudi et al.)")
    su.add_argument("--out", default="runs/study-unrolling", help="output directory (default: runs/study-unrolling)")
    su.add_argument("--quick", action="store_true", help="a small grid (8 points instead of 24)")
    su.add_argument("--seed", type=int, default=0, help="seed of the model, batch order and shadow model (default: 0)")
    su.add_argument("--no-privacy", action="store_true", help="skip the privacy risk scores (no shadow model)")
    su.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")

    e = sub.add_parser("evaluate", help="evaluate a run, optionally against a retrained reference run")
    e.add_argument("run_dir", help="run directory to evaluate")
    e.add_argument("--reference", default=None, help="run directory of the retrained (oracle) model")
    e.add_argument("--scenario", default=None, help="scenario for a run without scenario.json (e.g. a trained model)")
    e.add_argument("--device", default="auto")

    # certified removal of linear models with a deletion ledger (obliviate.certified.run)
    c = sub.add_parser("certified", help="linear models with certified removal, a removal budget and a deletion ledger")
    csub = c.add_subparsers(dest="certified_command", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    cf = csub.add_parser("fit", help="train a certified-removal model and create its run directory and ledger")
    cf.add_argument("--dataset", default="digits", help="registered dataset (default: digits)")
    cf.add_argument("--root", default=None, help="directory of the torchvision dataset files")
    cf.add_argument("--classes", default=None, help="train on these classes only, e.g. 3,8 (default: all)")
    cf.add_argument("--features", default="raw", help="raw (default), dp (a DP-SGD extractor) or run:RUN_DIR (a trained model)")
    cf.add_argument("--estimator", choices=["logistic", "ridge"], default="logistic")
    cf.add_argument("--lam", type=float, default=None, help="L2 regularisation per sample (default: planned for --removals)")
    cf.add_argument("--sigma", type=float, default=None, help="std of the secret noise b (default: planned for --removals)")
    cf.add_argument(
        "--removals", type=int, default=None, help="removals the budget should hold; plans lam and sigma (default 10)"
    )
    cf.add_argument("--epsilon", type=float, default=None, help="target epsilon (default 1)")
    cf.add_argument("--delta", type=float, default=None, help="target delta (default 1e-4)")
    cf.add_argument("--mode", choices=["auto", "binary", "ovr"], default=None)
    cf.add_argument("--subsample", type=float, default=None, help="one-vs-rest negative sampling rate (default 1)")
    cf.add_argument("--no-auto-retrain", action="store_true", help="refuse (exit 1) instead of retraining when over budget")
    cf.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other estimator parameter, e.g. cg_tol=0.01")
    cf.add_argument("--dp-set", action="append", metavar="KEY=VALUE", help="DP-SGD setting for --features dp, e.g. epochs=5")
    cf.add_argument("--seed", type=int, default=None, help="seed of the noise b (default: secret, from the OS)")
    cf.add_argument("--out", required=True, help="run directory to create")
    cr = csub.add_parser("remove", help="remove training samples (train-split ids) and record the request")
    cr.add_argument("run_dir", help="certified run directory")
    cr.add_argument("--ids", action="append", help="comma-separated train-split sample ids")
    cr.add_argument("--ids-file", default=None, help="file of sample ids (commas or one per line)")
    cr.add_argument("--request-id", default=None, help="id of the request (default: generated)")
    cr.add_argument("--reason", default=None, help="free text recorded with the request")
    cs = csub.add_parser("status", help="certificate, budget, requests and consistency of a certified run")
    cs.add_argument("run_dir", help="certified run directory")
    cs.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``obliviate`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed in one line)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        from . import _commands

        return _commands.COMMANDS[args.command](args)
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
