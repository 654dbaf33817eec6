"""Fisher forgetting and influence unlearning with their model-derived quantities cached, over a sweep.

Trains the demo's digits CNN (class:3 scenario, the demo recipe), then runs ``fisher`` (its digits
preset) and ``iu`` (its digits preset) for every value of a sweep of the hyperparameters
``ob.tune`` searches (alpha; for iu also the relative damping) twice in the same process: once
with the cache (``cache_fisher`` / ``cache_gradients``, the default: the first call computes the
Fisher diagonal or the gradients and the Gram matrix, the others reuse them) and once without
(every call recomputes them). Checks that both give bit-identical weights, and writes
``benchmarks/results/derived_cache.json``: per method the seconds of each call, the sweep totals
and the speedup of the cached sweep (recomputed total / cached total). The cache is emptied
before each sweep, so its first call is cold and the rest warm; both are reported.

    python benchmarks/derived_cache.py [--points 8] [--repeats 3] [--threads N]
    python benchmarks/derived_cache.py --quick --out /tmp/derived_cache.json   # smoke test
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _common import RESULTS, provenance, stat, write_result

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.methods._cache import IMPORTANCE_CACHE, clear_importance_cache

FLAGS = {"fisher": "cache_fisher", "iu": "cache_gradients"}


def grid(method: str, points: int) -> list[dict[str, float]]:
    """``points`` settings from the method's search space (log-spaced alphas; iu also varies the damping)."""
    if method == "fisher":
        return [{"alpha": float(a)} for a in np.logspace(-8, -5, points)]
    return [
        {"alpha": float(a), "relative_damping": float(d)}
        for a, d in zip(np.logspace(-2, 0.5, points), np.logspace(1, 3, points), strict=True)
    ]


def sweep(model, sc, method: str, settings: list[dict[str, float]], cache: bool) -> tuple[list[float], list[ob.UnlearningResult]]:
    clear_importance_cache()
    seconds, results = [], []
    for kw in settings:
        t0 = time.perf_counter()
        results.append(
            ob.unlearn(model, sc, method, preset="digits", device="cpu", progress=False, **kw, **{FLAGS[method]: cache})
        )
        seconds.append(time.perf_counter() - t0)  # the whole call: the cache saves work outside _unlearn's timer too
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="3 points, 1 repeat, 5 training epochs: checks the script")
    parser.add_argument("--out", default=str(RESULTS / "derived_cache.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore", ob.errors.UnlearningWarning)  # each result's status is recorded instead
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.points, args.repeats = 3, 1
    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    recipe = dict(DEMO_RECIPE, epochs=5) if args.quick else DEMO_RECIPE
    t0 = time.perf_counter()
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, progress=False, **recipe)
    train_seconds = time.perf_counter() - t0
    methods = {}
    for method in FLAGS:
        settings = grid(method, args.points)
        reps = []
        for _ in range(args.repeats):
            cached_s, cached_r = sweep(base, sc, method, settings, cache=True)
            hits = IMPORTANCE_CACHE.info()["hits"]
            cold_s, cold_r = sweep(base, sc, method, settings, cache=False)
            identical = all(
                all(torch.equal(a, b) for a, b in zip(x.model.state_dict().values(), y.model.state_dict().values(), strict=True))
                for x, y in zip(cached_r, cold_r, strict=True)
            )
            if not identical:
                raise SystemExit(f"{method}: the cached sweep's weights differ from the recomputed sweep's")
            reps.append(
                {
                    "cached": cached_s,
                    "recomputed": cold_s,
                    "hits": hits,
                    "speedup": sum(cold_s) / sum(cached_s),
                    "status": [r.status for r in cached_r],  # a sweep crosses settings that collapse the model
                }
            )
        methods[method] = {
            "settings": settings,
            "repeats": reps,
            "cached_total_seconds": stat(sum(r["cached"]) for r in reps),
            "recomputed_total_seconds": stat(sum(r["recomputed"]) for r in reps),
            "first_call_cold_seconds": stat(r["cached"][0] for r in reps),
            "later_calls_warm_seconds": stat(float(np.mean(r["cached"][1:])) for r in reps),
            "recomputed_call_seconds": stat(float(np.mean(r["recomputed"])) for r in reps),
            "speedup": stat(r["speedup"] for r in reps),
            "bit_identical": True,
        }
        m = methods[method]
        print(
            f"{method}: sweep of {len(settings)} cached {m['cached_total_seconds']['mean']:.2f} s vs recomputed "
            f"{m['recomputed_total_seconds']['mean']:.2f} s (x{m['speedup']['mean']:.2f}); warm call "
            f"{m['later_calls_warm_seconds']['mean']:.3f} s vs {m['recomputed_call_seconds']['mean']:.3f} s",
            flush=True,
        )
    doc = {
        "benchmark": "derived_cache",
        "provenance": provenance(),
        "quick": args.quick,
        "model": {"dataset": "digits", "model": "cnn", "recipe": recipe, "train_seconds": train_seconds},
        "scenario": sc.name,
        "methods": methods,
    }
    print("->", write_result(args.out, doc))


if __name__ == "__main__":
    main()
