"""Fisher forgetting and influence unlearning: ablations against the no-op original and the retrain oracle.

On the demo scenarios (digits, ``cnn``, class:3 and random:0.1, the demo's 30-epoch recipe),
per seed: train the original model, retrain the oracle with the same recipe (timed), evaluate
the original itself (the no-op baseline: what doing nothing scores), then run each variant below,
timed in the same process. Records seconds, speedup (oracle seconds / method seconds), passes,
and forget / retain / test accuracy, MIA-efficacy and avg gap to the oracle, per run and as mean,
spread and the number of seeds on which the variant's avg gap is below the no-op's, in
``benchmarks/results/fisher_iu.json``.

Fisher forgetting is split into its two parts, so that the method is credited only with what
its noise does: on class-wise requests its ``class_zero`` step sets the forgotten class's head
row to zero, which alone forgets the class (``alpha=0``: no noise at all).

- ``fisher (noise + class-row zeroing)``: the ``digits`` preset as the demo runs it;
- ``fisher (noise only, class_zero=off)``: the same noise, no zeroing (Fisher forgetting proper);
- ``class-row zeroing only (alpha=0)``: the zeroing, no noise (not Fisher forgetting);
- ``fisher (noise only, α ...)``: larger noise scales, no zeroing;
- ``fisher (US batch, α 3e-8, noise only)``: Unlearn-Sparse's batch-gradient Fisher.

Influence unlearning: the defaults (λ derived from the Fisher's scale), two other relative
dampings, the seed code's absolute λ 1e-3 at α 1 (the old defaults), the ``digits`` preset and
the seed code's heuristic recursion (preset ``unlearn_sparse``).

    python benchmarks/fisher_iu.py [--seeds 3] [--quick] [--threads 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from _common import RESULTS, provenance, write_result

from obliviate.bench import run, stat
from obliviate.demo import DEMO_RECIPE, DEMO_SCENARIOS

NOOP, ORACLE = "original (no-op)", "retrain (oracle)"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "fisher (noise + class-row zeroing)": ("fisher", {"preset": "digits"}),
    "fisher (noise only, class_zero=off)": ("fisher", {"preset": "digits", "class_zero": "off"}),
    "class-row zeroing only (alpha=0)": ("fisher", {"preset": "digits", "alpha": 0.0}),
    "fisher (noise only, α 1e-5)": ("fisher", {"preset": "digits", "class_zero": "off", "alpha": 1e-5}),
    "fisher (noise only, α 3e-5)": ("fisher", {"preset": "digits", "class_zero": "off", "alpha": 3e-5}),
    "fisher (US batch, α 3e-8, noise only)": ("fisher", {"fisher": "batch", "alpha": 3e-8, "class_zero": "off"}),
    "iu (defaults: λ = 300 tr(F)/P, α 1)": ("iu", {}),
    "iu (λ = 30 tr(F)/P, α 1)": ("iu", {"relative_damping": 30.0}),
    "iu (λ = 1000 tr(F)/P, α 1)": ("iu", {"relative_damping": 1000.0}),
    "iu (old defaults: λ 1e-3, α 1)": ("iu", {"damping": 1e-3}),
    "iu (digits)": ("iu", {"preset": "digits"}),
    "iu (US heuristic, α 10)": ("iu", {"preset": "unlearn_sparse"}),
}
METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")
NOTES = (
    "Fisher forgetting is credited only with its noise: compare 'fisher (noise only, class_zero=off)' with "
    f"'{NOOP}'. On class:3 the forgetting of 'fisher (noise + class-row zeroing)' is that of 'class-row zeroing only "
    "(alpha=0)', a head-row reset that is not part of the noise. On random:0.1 class_zero='auto' zeroes nothing, so "
    "the first two rows coincide. 'gap_below_noop' counts the seeds whose avg gap is below the no-op original's."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 training epochs, one scenario (a smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "fisher_iu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipe = dict(DEMO_RECIPE, epochs=8 if args.quick else DEMO_RECIPE["epochs"])
    scenarios = DEMO_SCENARIOS[:1] if args.quick else tuple(s for s in DEMO_SCENARIOS if not s.startswith("subclass"))
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    names = {"retrain": ORACLE, "original": NOOP}

    def record(r: dict[str, Any]) -> None:
        """The script's run row (unchanged shape) from a run record of obliviate.bench.run."""
        label = r.get("label") or names.get(r["method"], r["method"])
        t = r["timings"]
        row = {
            "scenario": r["scenario"]["name"],
            "variant": label,
            "seed": r["seed"],
            "seconds": t["seconds"],
            "oracle_seconds": t["oracle_seconds"],
            "speedup": t["speedup"],
            "passes": r["diagnostics"].get("passes") if label != NOOP else None,
            "params": r["params"] if label != NOOP else None,
            **{m: r["metrics"].get(m) for m in METRICS},
        }
        if label not in names.values():
            diag = r["diagnostics"]
            row["diagnostics"] = {k: diag[k] for k in ("step_ratio", "damping", "zeroed_classes") if k in diag}
        if r["status"] != "ok":  # a failed or diverged variant (obliviate.bench.run catches UnlearningError)
            row |= {"status": r["status"], "error": r["error"]}
            runs.append(row)
            print(f"seed {row['seed']} {row['scenario']:10s} {label:40s} {r['status']}: {r['error']}", flush=True)
            return
        # the no-op first, then the oracle (the runner makes the oracle first: the no-op is evaluated against it)
        if label == NOOP and runs and runs[-1]["variant"] == ORACLE:
            runs.insert(len(runs) - 1, row)
        else:
            runs.append(row)
        timing = f"{row['seconds']:6.2f} s ({row['speedup']:5.1f}x)" if row["seconds"] else " " * 16
        print(
            f"seed {row['seed']} {row['scenario']:10s} {label:40s} {timing}  forget {100 * row['forget_acc']:5.1f}  "
            f"retain {100 * row['retain_acc']:5.1f}  test {100 * row['test_acc']:5.1f}  gap {100 * row['avg_gap']:5.2f}",
            flush=True,
        )

    variants = [(label, method, kwargs) for label, (method, kwargs) in VARIANTS.items()]
    # one original per seed (the scenarios share its training set), the oracle, the no-op, then the variants, each cold
    run(scenarios, variants, args.seeds, dataset="digits", model="cnn", recipe=recipe, device="cpu", on_record=record)

    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for spec in scenarios:
        noop = {r["seed"]: r["avg_gap"] for r in runs if r["scenario"] == spec and r["variant"] == NOOP}
        for label in (NOOP, ORACLE, *VARIANTS):
            sel = [r for r in runs if r["scenario"] == spec and r["variant"] == label]
            row: dict[str, Any] = {m: stat(r[m] for r in sel) for m in METRICS}
            if label != NOOP:
                row |= {k: stat(r[k] for r in sel) for k in ("seconds", "speedup")}
            row["gap_below_noop"] = sum(r["avg_gap"] is not None and r["avg_gap"] < noop[r["seed"]] for r in sel)
            summary.setdefault(spec, {})[label] = row
    doc = {
        "benchmark": "fisher_iu",
        "provenance": provenance(),
        "seeds": args.seeds,
        "recipe": recipe,
        "notes": NOTES,
        "wall_seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }
    write_result(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
