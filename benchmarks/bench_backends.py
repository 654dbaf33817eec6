"""The demo's full grid through ``obliviate bench``, on the local backend and on Ray: wall times and identical metrics.

Runs ``obliviate bench SPEC --out DIR`` (default spec: ``benchmarks/specs/demo.toml``, every method
on the demo's three scenarios over 3 seeds) twice as separate processes, each cold: a fresh output
directory and a fresh model pool, so each trains its originals and oracles itself. First the local
backend, then ``--backend ray`` (a Ray instance started by the command on this machine's cores,
one task per run, each with ``--threads`` torch threads). Then compares every stored record of the
two: the same run keys, statuses and metric values (exact equality, not a tolerance) and the same
report curves. Writes ``benchmarks/results/bench_backends.json``: per backend the wall time, the
runs, the models trained, the status counts; the comparison; the command and provenance.

    python benchmarks/bench_backends.py [--spec benchmarks/specs/demo.toml] [--threads 1]
    python benchmarks/bench_backends.py --epochs 2 --out /tmp/bench_backends.json   # smoke test
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, provenance, write_result

from obliviate.bench.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent


def bench(spec: Path, out: Path, backend: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "obliviate", "bench", str(spec), "--out", str(out), "--threads", str(threads), "--no-progress"]
    if backend != "local":
        cmd += ["--backend", backend]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    m = re.search(r"(\d+) runs recorded, (\d+) already in the store, (\d+) models trained", done.stdout)
    with ResultStore(out) as store:
        records = {r["bench"]["key"]: r for r in store.records()}
    return {
        "command": "obliviate " + " ".join(cmd[3:]).replace(str(out), "OUT"),
        "wall_seconds": seconds,
        "recorded": int(m.group(1)) if m else None,
        "models_trained": int(m.group(3)) if m else None,
        "statuses": dict(collections.Counter(r["status"] for r in records.values())),
        "records": records,
    }


def compare(a: dict, b: dict) -> dict:
    keys_equal = a.keys() == b.keys()
    common = a.keys() & b.keys()
    metric_diffs = sorted(k for k in common if a[k]["metrics"] != b[k]["metrics"])
    status_diffs = sorted(k for k in common if a[k]["status"] != b[k]["status"])
    curve_diffs = sorted(k for k in common if a[k].get("curves") != b[k].get("curves"))
    values = sum(sum(v is not None for v in a[k]["metrics"].values()) for k in common)
    return {
        "same_run_keys": keys_equal,
        "runs_compared": len(common),
        "metric_values_compared": values,
        "runs_with_different_metrics": [f"{a[k]['method']} {a[k]['scenario']['name']} seed {a[k]['seed']}" for k in metric_diffs],
        "runs_with_different_status": len(status_diffs),
        "runs_with_different_curves": len(curve_diffs),
        "identical": keys_equal and not metric_diffs and not status_diffs and not curve_diffs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "specs" / "demo.toml")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every run (both backends)")
    p.add_argument("--epochs", type=int, default=None, help="override the spec's training epochs (smoke tests)")
    p.add_argument("--out", type=Path, default=RESULTS / "bench_backends.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        tmp = Path(tmp)
        spec = args.spec
        if args.epochs is not None:
            spec = tmp / args.spec.name
            spec.write_text(re.sub(r"epochs = \d+", f"epochs = {args.epochs}", args.spec.read_text()))
        runs = {}
        for backend in ("local", "ray"):
            print(f"== {backend}", flush=True)
            runs[backend] = bench(spec, tmp / backend, backend, args.threads)
            print(f"   {runs[backend]['wall_seconds']:.1f} s, {runs[backend]['recorded']} runs", flush=True)
    comparison = compare(runs["local"]["records"], runs["ray"]["records"])
    print(comparison)
    doc = {
        "benchmark": "bench_backends",
        "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "spec": os.path.relpath(args.spec, ROOT),
        "epochs_override": args.epochs,
        "threads": args.threads,
        "backends": {k: {kk: vv for kk, vv in v.items() if kk != "records"} for k, v in runs.items()},
        "ray_over_local_wall_time": runs["ray"]["wall_seconds"] / runs["local"]["wall_seconds"],
        "comparison": comparison,
        "provenance": provenance(),
    }
    write_result(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
