"""``obliviate requests apply|status``: a stream of deletion requests on a trained run, and its drift curve.

``requests apply RUN --ids-file F [--batch m] --method M --out DIR`` serves the requests of ``F`` (one
per line, or every id cut into requests of ``m``) one after another (:func:`obliviate.requests.apply`);
run again after a crash or Ctrl-C, the same command resumes after the last committed request.
``requests status DIR [--json]`` prints what was served, with the drift curve.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the ``requests`` command."""
    from ._common import Parser

    p = sub.add_parser("requests", help="apply a stream of deletion requests to a trained run, and show its drift")
    cmds = p.add_subparsers(dest="requests_command", metavar="apply|status", parser_class=Parser)
    cmds.required = True
    a = cmds.add_parser("apply", help="serve the requests one after another (resumes a stopped stream)")
    a.add_argument("run_dir", metavar="RUN", help="run directory of the trained model (obliviate train --out)")
    a.add_argument("--ids-file", required=True, help="sample ids (train-split rows): one request per line")
    a.add_argument("--batch", type=int, default=None, metavar="M", help="cut every id of the file into requests of M ids")
    a.add_argument("--method", required=True, help="a registered method, or 'certified'")
    a.add_argument("--preset", default=None, help="the method's preset")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="method hyperparameter (certified: estimator's)")
    a.add_argument("--seed", type=int, default=None, help="seed of the stream (default: the run's model seed)")
    a.add_argument("--no-oracle", action="store_true", help="do not retrain the oracle after each request (no avg gap)")
    a.add_argument("--device", default="auto")
    a.add_argument("--out", required=True, help="the stream directory (created; the same one resumes it)")
    s = cmds.add_parser("status", help="what a stream directory has served, and its drift curve")
    s.add_argument("dir", metavar="DIR", help="the stream directory")
    s.add_argument("--json", action="store_true", help="print the whole result as JSON")


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _line(r: Any, total: int) -> str:
    m = r.metrics
    return (
        f"[{r.index + 1}/{total}] {len(r.ids)} ids in {r.seconds:.2f} s, status {r.status}; avg_gap {_fmt(m.get('avg_gap'))}, "
        f"forget_acc {_fmt(m.get('forget_acc'))}, val_acc {_fmt(m.get('val_acc'))}"
    )


def run(args: argparse.Namespace) -> int:
    """Apply the stream, or print its status."""
    from .. import requests as streams

    if args.requests_command == "status":
        res = streams.status(args.dir)
        if args.json:
            print(json.dumps({**res.to_dict(), "pending": res.pending}, indent=1, default=str))
            return 0
        print(f"{res.method}: {len(res.results)} of {res.total} requests served in {res.path}")
        if res.pending:
            print(f"{res.pending} request pending (a killed run); 'obliviate requests apply' with the same arguments resolves it")
        for r in res.results:
            print(_line(r, res.total))
        return 0

    from ..methods.base import get_method
    from ..runs import RunDir
    from ._common import parse_sets

    source = RunDir(args.run_dir)
    run_ = source.load()
    reqs = streams.read_ids_file(args.ids_file, args.batch)
    seed = args.seed if args.seed is not None else int((source.origin.get("model") or {}).get("seed", 0))
    recording = None
    if args.method != "certified" and get_method(args.method).needs_recording:
        recording = source.recording()
    res = streams.apply(
        source.path,
        run_.dataset,
        reqs,
        args.method,
        out=args.out,
        seed=seed,
        preset=args.preset,
        params=parse_sets(args.set),
        device=args.device,
        oracle=not args.no_oracle,
        progress=False,
        recording=recording,
        on_request=lambda r: print(_line(r, len(reqs)), flush=True),
    )
    for line in res.recovered:
        print(f"recovered: {line}")
    if res.resumed_at:
        print(f"resumed after request {res.resumed_at} (already served)")
    print(f"{args.method}: {len(res.results)} of {res.total} requests served -> {res.path}")
    return 0
