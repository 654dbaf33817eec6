"""Fisher forgetting and influence unlearning: seconds and quality against the retrain oracle.

On the demo scenarios (digits, ``cnn``, class:3 and random:0.1, the demo's 30-epoch recipe),
per seed: train the original model, retrain the oracle with the same recipe (timed), then run
``fisher`` and ``iu`` with their digits presets and with the seed code's variants (``fisher``
with the "batch" Fisher of Unlearn-Sparse at α 3e-8, ``iu`` with the heuristic recursion at
α 10), each timed in the same process. Records seconds, speedup (oracle seconds / method
seconds), passes, and forget / retain / test accuracy, MIA-efficacy and avg gap to the oracle,
in ``benchmarks/results/fisher_iu.json``.

    python benchmarks/fisher_iu.py [--seeds 3] [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import RESULTS, provenance

import obliviate as ob
from obliviate.data import parse_scenario
from obliviate.demo import DEMO_RECIPE, DEMO_SCENARIOS

VARIANTS = {
    "fisher (digits)": ("fisher", {"preset": "digits"}),
    "fisher (US batch, α 3e-8)": ("fisher", {"fisher": "batch", "alpha": 3e-8}),
    "iu (digits)": ("iu", {"preset": "digits"}),
    "iu (US heuristic, α 10)": ("iu", {"preset": "unlearn_sparse"}),
}
METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")


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
    ds = ob.load_dataset("digits")
    runs = []
    start = time.perf_counter()
    for seed in range(args.seeds):
        for spec in scenarios:
            sc = parse_scenario(spec, ds, seed=seed)
            base = ob.train(ob.build_model("cnn", ds, seed=seed), sc.train, seed=seed, device="cpu", progress=False, **recipe)
            oracle = ob.unlearn(base.model, sc, "retrain", seed=seed, device="cpu", **base.config.to_dict())
            reference = ob.evaluate(oracle.model, sc, oracle.model)
            for label, (method, kwargs) in VARIANTS.items():
                out = ob.unlearn(base.model, sc, method, seed=seed, device="cpu", **kwargs)
                ev = ob.evaluate(out.model, sc, reference)
                runs.append(
                    {
                        "scenario": spec,
                        "variant": label,
                        "seed": seed,
                        "seconds": out.seconds,
                        "oracle_seconds": oracle.seconds,
                        "speedup": oracle.seconds / out.seconds,
                        "passes": out.diagnostics.get("passes"),
                        "params": out.config,
                        **{m: ev.metrics.get(m) for m in METRICS},
                    }
                )
                r = runs[-1]
                print(
                    f"seed {seed} {spec:10s} {label:27s} {r['seconds']:6.2f} s (oracle {r['oracle_seconds']:6.2f} s, "
                    f"{r['speedup']:5.1f}x)  forget {100 * r['forget_acc']:5.1f}  retain {100 * r['retain_acc']:5.1f}  "
                    f"gap {100 * r['avg_gap']:5.2f}"
                )
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for spec in scenarios:
        for label in VARIANTS:
            sel = [r for r in runs if r["scenario"] == spec and r["variant"] == label]
            summary.setdefault(spec, {})[label] = {
                k: float(np.mean([r[k] for r in sel])) for k in ("seconds", "oracle_seconds", "speedup", *METRICS)
            } | {"speedup_min": float(np.min([r["speedup"] for r in sel]))}
    doc = {
        "benchmark": "fisher_iu",
        "provenance": provenance(),
        "seeds": args.seeds,
        "recipe": recipe,
        "wall_seconds": time.perf_counter() - start,
        "summary": summary,
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
