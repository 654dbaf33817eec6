"""Timings of the demo: each method's seconds and speedup against the retrain oracle, same process.

Runs the full demo (digits, cnn; class:3, random:0.1 and subclass:3 on digits_coarse; the
30-epoch recipe) for several seeds and writes ``benchmarks/results/demo.json``: per scenario and
method the mean and spread over seeds of the method's seconds, its speedup (oracle seconds /
method seconds, measured in the same run), its cost in passes over the training set, and the
quality metrics; plus the wall time of the whole demo.

    python benchmarks/demo.py [--seeds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import RESULTS, provenance

from obliviate.demo import DEMO_RECIPE, run_demo

METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "demo.json"))
    args = parser.parse_args()

    start = time.perf_counter()
    result = run_demo(out=None, seeds=args.seeds, device=args.device, progress=False)
    wall = time.perf_counter() - start

    table: dict[str, dict[str, dict[str, object]]] = {}
    for r in result.records:
        scenario, method = r["scenario"]["name"], r["method"]
        table.setdefault(scenario, {}).setdefault(method, {"runs": []})["runs"].append(r)
    summary: dict[str, dict[str, dict[str, object]]] = {}
    for scenario, methods in table.items():
        for method, entry in methods.items():
            runs = entry["runs"]

            def stat(values: list[float | None]) -> dict[str, float] | None:
                vals = [v for v in values if v is not None]
                return (
                    {
                        "mean": float(np.mean(vals)),
                        "std": float(np.std(vals)),
                        "min": float(np.min(vals)),
                        "max": float(np.max(vals)),
                    }
                    if vals
                    else None
                )

            summary.setdefault(scenario, {})[method] = {
                "seconds": stat([r["timings"]["seconds"] for r in runs]),
                "oracle_seconds": stat([r["timings"]["oracle_seconds"] for r in runs]),
                "speedup": stat([r["timings"]["speedup"] for r in runs]),
                "passes": stat([r["diagnostics"].get("passes") for r in runs]),
                **{m: stat([r["metrics"].get(m) for r in runs]) for m in METRICS},
                "status": sorted({r["status"] for r in runs}),
            }
    doc = {
        "benchmark": "demo",
        "provenance": provenance(),
        "seeds": args.seeds,
        "recipe": DEMO_RECIPE,
        "demo_wall_seconds": wall,
        "summary": summary,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
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
