"""``obliviate certified fit|remove|status``: the command-line layer over :mod:`obliviate.certified.run`.

Linear models with certified removal, a removal budget and a deletion ledger. This module only
builds the parser and turns parsed arguments into calls; the logic lives in :mod:`obliviate.certified`.

``status`` needs only read access to the run directory and exits 0 whenever it can report: a
ledger that fails its checks (edited outside obliviate, an older version, a pending request, a
model file that disagrees with it) is reported as ``ledger_consistent: false`` with its ``reason``.
``remove`` refuses such a run (exit 1). A directory a stopped fit left behind is "an incomplete
certified fit" to ``fit``, ``status`` and ``remove`` alike (exit 2: delete it and fit again).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InvalidConfigError
from ._common import Parser, console, parse_sets


def add_parser(sub: Any) -> None:
    """Register the ``certified`` command and its actions."""
    c = sub.add_parser("certified", help="linear models with certified removal, a removal budget and a deletion ledger")
    csub = c.add_subparsers(dest="certified_command", metavar="ACTION", parser_class=Parser)
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
    cr.add_argument(
        "--allow-single-class",
        action="store_true",
        help="let a binary model lose every training row of one class (refused by default)",
    )
    cs = csub.add_parser(
        "status", help="certificate, budget, requests and consistency of a certified run (needs only read access)"
    )
    cs.add_argument("run_dir", help="certified run directory")
    cs.add_argument("--json", action="store_true", help="print JSON")


def _classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidConfigError(f"--classes expects comma-separated class indices, e.g. 3,8; got {text!r}.") from None


def _read_ids_file(name: str) -> str:
    """The text of ``--ids-file`` (a regular file, or a pipe such as ``<(...)`` or ``/dev/stdin``)."""
    path = Path(name)
    if path.is_dir():
        raise InvalidConfigError(f"--ids-file {name!r} is a directory, not a file of sample ids.")
    try:
        with open(path, "rb") as fh:  # not is_file(): a pipe is not a regular file but reads the same
            data = fh.read()
    except FileNotFoundError:
        raise InvalidConfigError(f"--ids-file {name!r} does not exist.") from None
    except PermissionError:
        raise InvalidConfigError(f"--ids-file {name!r} cannot be read by this user.") from None
    except OSError as e:
        raise InvalidConfigError(f"--ids-file {name!r} cannot be read ({e.strerror or type(e).__name__}).") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidConfigError(f"--ids-file {name!r} is not a text file of sample ids.") from None


def _parse_ids(text: str, where: str, *, echo: bool) -> list[int]:
    ids: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        for tok in line.split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                ids.append(int(tok))
            except ValueError:
                if echo:  # the user typed it on the command line
                    raise InvalidConfigError(f"Sample ids must be integers; got {tok!r}.") from None
                # never echo a file's content: it may be any file the user can read (/etc/passwd)
                raise InvalidConfigError(f"{where}: line {number} is not a list of integer sample ids.") from None
    return ids


def _ids(args: argparse.Namespace) -> list[int]:
    ids: list[int] = []
    for text in args.ids or []:
        ids += _parse_ids(text, "--ids", echo=True)
    if args.ids_file:
        ids += _parse_ids(_read_ids_file(args.ids_file), f"--ids-file {args.ids_file!r}", echo=False)
    if not ids:
        raise InvalidConfigError("Give the samples to remove with --ids 1,2,3 or --ids-file FILE.")
    return ids


def _print_status(status: dict[str, Any], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in status.items():
        if key in ("recovered", "reason") and not value:
            continue
        text = (
            f"{value:.6g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        )
        table.add_row(key, text)
    console().print(table)


def fit(args: argparse.Namespace) -> int:
    from ..certified.run import fit_run
    from ..runs import load_run

    params = parse_sets(args.set)
    for flag, key in (
        (args.lam, "lam"),
        (args.sigma, "sigma"),
        (args.epsilon, "epsilon"),
        (args.delta, "delta"),
        (args.mode, "mode"),
        (args.subsample, "subsample"),
        (getattr(args, "removals", None), "removals"),  # --removals K (also --set removals=K)
    ):
        if flag is not None:
            params[key] = flag
    if args.no_auto_retrain:
        params["auto_retrain"] = False
    features, feature_model, dp = args.features, None, None
    if features.startswith("run:"):
        trained = load_run(features[4:])
        feature_model = (trained.record["origin"]["model"], trained.model)
        features = "model"
    elif features == "dp":
        dp = parse_sets(args.dp_set, "--dp-set")
    elif features != "raw":
        raise InvalidConfigError(f"--features must be raw, dp or run:RUN_DIR; got {args.features!r}.")
    run = fit_run(
        args.out,
        dataset=args.dataset,
        root=args.root,
        classes=_classes(args.classes),
        features=features,
        feature_model=feature_model,
        dp=dp,
        estimator=args.estimator,
        params=params,
        seed=args.seed,
    )
    status = run.status()
    _print_status(status, f"certified {status['estimator']} on {status['dataset']} -> {args.out}")
    return 0


def remove(args: argparse.Namespace) -> int:
    from ..certified.run import CertifiedRun

    ids = _ids(args)
    run = CertifiedRun.open(args.run_dir)
    req, report = run.remove(ids, request_id=args.request_id, reason=args.reason, allow_single_class=args.allow_single_class)
    for line in run.recovered:
        print(f"recovered: {line}")
    print(
        f"request {req.request_id}: removed {len(req.sample_ids)} sample(s) in {report.seconds * 1000:.1f} ms; "
        + ("retrained with fresh noise (budget exhausted); " if report.retrained else f"charged {report.charged:.4g}; ")
        + f"beta {report.beta:.4g} of {run.model.budget_.budget:.4g}, certified epsilon {report.epsilon:.4g} "
        f"at delta {run.model.budget_.delta:g}; the certificate covers {run.certificate_scope}"
    )
    return 0


def status(args: argparse.Namespace) -> int:
    from ..certified.run import CertifiedRun

    run = CertifiedRun.open(args.run_dir, read_only=True)
    st = run.status()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        _print_status(st, f"certified run {args.run_dir}")
        if not st["ledger_consistent"]:
            print(f"ledger inconsistent: {st['reason']}")
    return 0  # a report, not a failure: an inconsistent ledger is what status exists to tell


def run(args: argparse.Namespace) -> int:
    """Dispatch ``obliviate certified ACTION``."""
    return {"fit": fit, "remove": remove, "status": status}[args.certified_command](args)
