"""Issue 4's baselines on the demo scenarios: seconds and speedup vs retrain, and the quality targets.

Runs the demo (digits / digits_coarse, cnn, the 30-epoch recipe) for the SSD suite and the
leading baselines (bad teacher, UNSIR, boundary shrink/expand, SCRUB, SalUn, NegGrad+, SSD,
LFSSD, and random labelling; each with its ``digits`` preset) over several seeds, and writes
``benchmarks/results/baselines.json``: per scenario and method, for every seed, the seconds of
the method alone, the oracle's seconds and the speedup (both measured in the same process), the
cost in passes, forget / retain / test accuracy, the MIAs, ZRF, the gaps to the oracle, and
whether the issue's target holds (forget accuracy within 5 points of the oracle's, retain
accuracy within 5 points of the original model's); plus mean and spread over seeds. Methods
whose paper rules a scenario kind out (UNSIR on random, boundary on random and sub-class) are
not run on it. Where a method misses the target for a reason its docstring explains (its
paper's objective or this model's scale, not a bug), ``known_limits`` quotes that reason next
to the measured numbers. The run's wall time is recorded as ``demo_wall_seconds``.

    python benchmarks/baselines.py [--seeds 3] [--device cpu] [--scenarios class:3,random:0.1,subclass:3]
    python benchmarks/baselines.py --quick   # smoke test: 1 seed, 8 training epochs, not for the record
"""

from __future__ import annotations

import argparse
import time

from _common import RESULTS, provenance, write_result

from obliviate.bench import stat
from obliviate.demo import DEMO_SCENARIOS, run_demo

METHODS = (
    "bad_teacher",
    "unsir",
    "boundary_shrink",
    "boundary_expand",
    "scrub",
    "salun",
    "neggrad_plus",
    "ssd",
    "lfssd",
    "random_label",
)
# The reasons documented in the methods' docstrings (Note sections) for the scenarios where they
# miss the target on this model; the numbers next to them are measured, never taken from here.
KNOWN_LIMITS = {
    "subclass": {
        "bad_teacher": "matches a random network on D_f: near-uniform outputs over 5 super-classes leave forget "
        "accuracy decided by near-ties, with a large spread, while the oracle confidently files most 3s under another "
        "super-class",
        "ssd": "the 3s and 8s share nearly every filter of the 6k-parameter CNN: no alpha / importance batch both "
        "forgets and keeps retain accuracy (CIFAR-20 sub-class results not reproduced at this scale)",
        "lfssd": "as ssd",
    },
    "random": {
        "bad_teacher": "lowers the confidence on D_f towards a random network's while the oracle stays confident "
        "on D_f: the confidence MIA calls a far larger share of D_f non-members than for the oracle",
    },
}
METRICS = ("forget_acc", "retain_acc", "test_acc", "test_forget_acc", "mia_efficacy", "mia_entropy_lr", "zrf", "avg_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenarios", default=",".join(DEMO_SCENARIOS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(RESULTS / "baselines.json"))
    parser.add_argument("--quick", action="store_true", help="1 seed, 8 training epochs: checks the script, not for the record")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1

    start = time.perf_counter()
    result = run_demo(
        out=None,
        methods=args.methods.split(","),
        scenarios=args.scenarios.split(","),
        seeds=args.seeds,
        quick=args.quick,
        device=args.device,
        progress=False,
    )
    wall = time.perf_counter() - start

    by: dict[tuple[str, int], dict[str, dict]] = {}
    for r in result.records:
        by.setdefault((r["scenario"]["name"], r["seed"]), {})[r["method"]] = r
    summary: dict[str, dict[str, dict]] = {}
    for (scenario, seed), runs in sorted(by.items()):
        oracle, original = runs["retrain"]["metrics"], runs["original"]["metrics"]
        for method, r in runs.items():
            if method in ("retrain", "original"):
                continue
            m = r["metrics"]
            entry = summary.setdefault(scenario, {}).setdefault(method, {"kind": r["scenario"]["kind"], "per_seed": []})
            ok = r["status"] == "ok"
            entry["per_seed"].append(
                {
                    "seed": seed,
                    "status": r["status"],
                    "seconds": r["timings"]["seconds"],
                    "oracle_seconds": r["timings"]["oracle_seconds"],
                    "speedup": r["timings"]["speedup"],
                    "passes": r["diagnostics"].get("passes"),
                    **{k: m.get(k) for k in METRICS},
                    "forget_gap_to_oracle": m["forget_acc"] - oracle["forget_acc"] if ok else None,
                    "retain_drop_from_original": original["retain_acc"] - m["retain_acc"] if ok else None,
                    "target_met": ok
                    and abs(m["forget_acc"] - oracle["forget_acc"]) <= 0.05
                    and m["retain_acc"] >= original["retain_acc"] - 0.05,
                }
            )
    for methods in summary.values():
        for method, entry in methods.items():
            rows = entry["per_seed"]
            for key in ("seconds", "speedup", "passes", "forget_gap_to_oracle", "retain_drop_from_original", *METRICS):
                entry[key] = stat([row[key] for row in rows])
            met = sum(bool(row["target_met"]) for row in rows)
            entry["target_met"] = f"{met}/{len(rows)}"
            limit = KNOWN_LIMITS.get(entry["kind"], {}).get(method)
            if limit and met < len(rows):
                entry["why_missed"] = limit
    references = {
        f"{scenario}/seed{seed}": {k: runs[k]["metrics"]["forget_acc"] for k in ("retrain", "original")}
        for (scenario, seed), runs in by.items()
    }
    doc = {
        "benchmark": "baselines",
        "provenance": provenance(),
        "seeds": args.seeds,
        "quick": args.quick,
        "recipe": result.recipe,
        "demo_wall_seconds": wall,
        "oracle_and_original_forget_acc": references,
        "summary": summary,
        "known_limits": KNOWN_LIMITS,
    }
    write_result(args.out, doc)
    print(f"wall time {wall:.1f} s over {args.seeds} seed(s); wrote {args.out}")
    for scenario, methods in summary.items():
        for method, s in methods.items():
            if s["seconds"] is None:
                print(f"  {scenario:11s} {method:16s} failed: {[row['status'] for row in s['per_seed']]}")
                continue
            print(
                f"  {scenario:11s} {method:16s} target {s['target_met']:>4s}"
                f"  forget gap {100 * s['forget_gap_to_oracle']['mean']:+6.1f}"
                f"  retain drop {100 * s['retain_drop_from_original']['mean']:5.1f}  seconds {s['seconds']['mean']:6.3f}"
                f"  speedup {s['speedup']['mean']:6.1f}x" + (f"  ({s['why_missed'][:60]}...)" if "why_missed" in s else "")
            )


if __name__ == "__main__":
    main()
