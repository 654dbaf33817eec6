"""Timings of the demo: each method's seconds and speedup against the retrain oracle, same process.

Runs the full demo (digits, cnn; class:3, random:0.1 and subclass:3 on digits_coarse; the
30-epoch recipe) for several seeds and writes ``benchmarks/results/demo.json``: per scenario and
method the mean and spread over seeds of the method's seconds, its speedup (oracle seconds /
method seconds, measured in the same run), its cost in passes over the training set, and the
quality metrics; plus the wall time of the whole demo.

    python benchmarks/demo.py [--seeds 3] [--device cpu]
    python benchmarks/demo.py --quick --methods finetune,ssd --scenarios class:3 --out /tmp/demo.json  # smoke test
"""

from __future__ import annotations

import argparse
import time

from _common import RESULTS, provenance, write_result

from obliviate.bench import summarize
from obliviate.demo import DEMO_SCENARIOS, run_demo

METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "demo.json"))
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--scenarios", default=",".join(DEMO_SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 training epochs: checks the script, not for the record")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1

    start = time.perf_counter()
    result = run_demo(
        out=None,
        methods=args.methods.split(",") if args.methods else None,
        scenarios=args.scenarios.split(","),
        seeds=args.seeds,
        quick=args.quick,
        device=args.device,
        progress=False,
    )
    wall = time.perf_counter() - start

    groups: dict[str, dict[str, list[dict]]] = {}
    for r in result.records:
        groups.setdefault(r["scenario"]["name"], {}).setdefault(r["method"], []).append(r)
    summary = {
        scenario: {
            method: {
                **summarize(runs, ("seconds", "oracle_seconds", "speedup", "passes", *METRICS)),
                "status": sorted({r["status"] for r in runs}),
            }
            for method, runs in methods.items()
        }
        for scenario, methods in groups.items()
    }
    doc = {
        "benchmark": "demo",
        "provenance": provenance(),
        "seeds": args.seeds,
        "recipe": result.recipe,
        "demo_wall_seconds": wall,
        "summary": summary,
    }
    write_result(args.out, doc)
    print(f"demo wall time {wall:.1f} s over {args.seeds} seed(s); wrote {args.out}")
    for scenario, methods in summary.items():
        for method, s in methods.items():
            sp = s["speedup"]
            print(
                f"  {scenario:12s} {method:16s} seconds {s['seconds']['mean'] if s['seconds'] else float('nan'):6.3f}"
                f"  speedup {sp['mean'] if sp else float('nan'):6.1f} (min {sp['min'] if sp else float('nan'):5.1f})"
                f"  avg_gap {100 * s['avg_gap']['mean']:5.2f}"
            )


if __name__ == "__main__":
    main()
