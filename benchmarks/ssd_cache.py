"""SSD with a cached full-data importance against recomputing it, over an alpha sweep.

Trains the demo's digits CNN (class:3 scenario, the demo recipe), then runs SSD (and LFSSD) with
its ``digits`` preset for every alpha of a sweep twice in the same process: once with the
importance cache (the first call computes the importance over D, the others reuse it) and once
with ``cache_importance=False`` (every call recomputes it). Checks that both give bit-identical
weights and writes ``benchmarks/results/ssd_cache.json``: per method the seconds of each call,
the sweep totals, the speedup of the cached sweep (recomputed total / cached total), and the
cost in passes over the training set. The first call of the cached sweep is cold (cache emptied
before it), the others warm; both are reported side by side.

It also measures the effect the demo and the other benchmarks must not show: on one model, the
demo's class:3 request warms the cache over D for a later random:0.1 request. ``cross_scenario``
times random:0.1 cold (cache emptied) and warm (right after class:3), each against the retrain
oracle of random:0.1. Only this benchmark reports warm numbers; every other timing in
``benchmarks/results/`` is cold.

    python benchmarks/ssd_cache.py [--alphas 1,2,5,10,20,50,100] [--repeats 3] [--width 16] [--device cpu]
    python benchmarks/ssd_cache.py --quick   # smoke test: 3 alphas, 1 repeat, 5 training epochs

Short at the defaults: the training of the model dominates (its time is recorded as
``model.train_seconds``).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import RESULTS, provenance, stat, write_result

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.methods.ssd import IMPORTANCE_CACHE, clear_importance_cache


def sweep(model, sc, method: str, alphas: list[float], cache: bool, device: str) -> list[ob.UnlearningResult]:
    clear_importance_cache()
    return [ob.unlearn(model, sc, method, preset="digits", alpha=a, cache_importance=cache, device=device) for a in alphas]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="1,2,5,10,20,50,100")
    parser.add_argument("--repeats", type=int, default=3, help="sweeps per variant; the fastest is kept")
    parser.add_argument("--width", type=int, default=16, help="cnn width (16: the demo's model)")
    parser.add_argument("--epochs", type=int, default=DEMO_RECIPE["epochs"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "ssd_cache.json"))
    parser.add_argument("--quick", action="store_true", help="3 alphas, 1 repeat, 5 epochs: checks the script")
    args = parser.parse_args()
    if args.quick:
        args.alphas, args.repeats, args.epochs = "1,10,100", 1, 5
    alphas = [float(a) for a in args.alphas.split(",")]

    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    model = ob.build_model("cnn", ds, seed=0, width=args.width)
    base = ob.train(model, sc.train, seed=0, device=args.device, progress=False, **dict(DEMO_RECIPE, epochs=args.epochs))

    summary = {}
    for method in ("ssd", "lfssd"):
        best: dict[str, list] = {}
        for variant, cache in (("cached", True), ("recomputed", False)):
            for _ in range(args.repeats):
                runs = sweep(base, sc, method, alphas, cache, args.device)
                if variant not in best or sum(r.seconds for r in runs) < sum(r.seconds for r in best[variant]):
                    best[variant] = runs
        identical = all(
            all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True))
            for a, b in zip(best["cached"], best["recomputed"], strict=True)
        )
        cached, fresh = best["cached"], best["recomputed"]
        summary[method] = {
            "alphas": alphas,
            "identical_weights": identical,
            "cached_seconds": [r.seconds for r in cached],
            "recomputed_seconds": [r.seconds for r in fresh],
            "cached_total": sum(r.seconds for r in cached),
            "recomputed_total": sum(r.seconds for r in fresh),
            "speedup_sweep": sum(r.seconds for r in fresh) / sum(r.seconds for r in cached),
            "cold_call_seconds": cached[0].seconds,
            "warm_call_seconds_mean": stat(r.seconds for r in cached[1:])["mean"] if len(cached) > 1 else None,
            "recomputed_seconds_mean": stat(r.seconds for r in fresh)["mean"],
            "cached_passes": [r.diagnostics["passes"] for r in cached],
            "recomputed_passes": [r.diagnostics["passes"] for r in fresh],
            "importance_cached": [r.diagnostics.get("importance_cached") for r in cached],
        }
    # the demo's order on one model: class:3 first warms the importance over D for random:0.1
    rnd = ob.Scenario.random(ds, fraction=0.1, seed=0)
    oracle = ob.unlearn(base, rnd, "retrain", seed=0, device=args.device, progress=False, **base.config.to_dict())
    cross = {"scenario": rnd.name, "warmed_by": sc.name, "oracle_seconds": oracle.seconds}
    for method in ("ssd", "lfssd"):
        cold, warm = [], []
        for _ in range(args.repeats):
            clear_importance_cache()
            cold.append(ob.unlearn(base, rnd, method, preset="digits", device=args.device))
            clear_importance_cache()
            ob.unlearn(base, sc, method, preset="digits", device=args.device)
            warm.append(ob.unlearn(base, rnd, method, preset="digits", device=args.device))
        c, w = min(cold, key=lambda r: r.seconds), min(warm, key=lambda r: r.seconds)
        cross[method] = {
            "cold_seconds": c.seconds,
            "warm_seconds": w.seconds,
            "cold_passes": c.diagnostics["passes"],
            "warm_passes": w.diagnostics["passes"],
            "cold_speedup_vs_oracle": oracle.seconds / c.seconds,
            "warm_speedup_vs_oracle": oracle.seconds / w.seconds,
        }
    clear_importance_cache()
    doc = {
        "benchmark": "ssd_cache",
        "provenance": provenance(),
        "scenario": sc.summary(),
        "model": {"name": "cnn", "width": args.width, "train_seconds": base.seconds},
        "repeats": args.repeats,
        "quick": args.quick,
        "cache": IMPORTANCE_CACHE.info(),
        "summary": summary,
        "cross_scenario": cross,
    }
    write_result(args.out, doc)
    for method, s in summary.items():
        print(
            f"{method}: sweep of {len(alphas)} alphas, cached {s['cached_total']:.3f} s vs recomputed "
            f"{s['recomputed_total']:.3f} s ({s['speedup_sweep']:.2f}x); identical weights: {s['identical_weights']}"
        )
    for method in ("ssd", "lfssd"):
        x = cross[method]
        print(
            f"{method} on {rnd.name}: cold {x['cold_seconds']:.3f} s ({x['cold_speedup_vs_oracle']:.1f}x the oracle), "
            f"warm after {sc.name} {x['warm_seconds']:.3f} s ({x['warm_speedup_vs_oracle']:.1f}x)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"{time.perf_counter() - start:.1f} s")
