"""``obliviate certified fit|remove|status``: the command-line layer over :mod:`obliviate.certified.run`.

The argument parser lives in :mod:`obliviate.cli` (kept import-light); this module only turns
parsed arguments into calls and prints the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InvalidConfigError


def _console() -> Any:
    from .._utils import console

    return console()


def _classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidConfigError(f"--classes expects comma-separated class indices, e.g. 3,8; got {text!r}.") from None


def _ids(args: argparse.Namespace) -> list[int]:
    texts = list(args.ids or [])
    if args.ids_file:
        path = Path(args.ids_file)
        if not path.is_file():
            raise InvalidConfigError(f"--ids-file {args.ids_file!r} does not exist.")
        texts.append(path.read_text().replace("\n", ","))
    ids: list[int] = []
    for text in texts:
        for tok in text.split(","):
            tok = tok.strip()
            if not tok:
                continue
            try:
                ids.append(int(tok))
            except ValueError:
                raise InvalidConfigError(f"Sample ids must be integers; got {tok!r}.") from None
    if not ids:
        raise InvalidConfigError("Give the samples to remove with --ids 1,2,3 or --ids-file FILE.")
    return ids


def _print_status(status: dict[str, Any], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("field")
    table.add_column("value", justify="right")
    for key, value in status.items():
        if key in ("recovered",) and not value:
            continue
        text = (
            f"{value:.6g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        )
        table.add_row(key, text)
    _console().print(table)


def fit(args: argparse.Namespace) -> int:
    from ..cli import _parse_sets
    from ..runs import load_run
    from .run import fit_run

    params = _parse_sets(args.set)
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
        dp = _parse_sets(args.dp_set, "--dp-set")
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
    from .run import CertifiedRun

    ids = _ids(args)
    run = CertifiedRun.open(args.run_dir)
    req, report = run.remove(ids, request_id=args.request_id, reason=args.reason)
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
    from .run import CertifiedRun

    run = CertifiedRun.open(args.run_dir)
    st = run.status()
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        _print_status(st, f"certified run {args.run_dir}")
    return 0 if st["ledger_consistent"] else 1


def certified_command(args: argparse.Namespace) -> int:
    """Dispatch ``obliviate certified ACTION``."""
    return {"fit": fit, "remove": remove, "status": status}[args.certified_command](args)
