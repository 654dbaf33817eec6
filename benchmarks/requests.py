"""Drift of sequential deletion requests: 20 requests of 10 samples, served one after another, on digits.

For each seed (the original's seed and the draw of the requests): train the demo's digits CNN
(``obliviate.demo.DEMO_RECIPE``) on the ``random:0.1`` scenario's training rows, draw 20 disjoint
requests of 10 training rows, and serve them with :func:`obliviate.requests.apply` for each method:
``sisa``, ``certified`` (a certified-removal logistic regression on the raw pixels, planned for the
stream's 200 removals), ``finetune``, and two approximate methods, ``neggrad_plus`` and ``ssd``; each
with its ``digits`` preset. After every request the model is evaluated against the oracle retrained
from scratch without everything removed so far (the CNN ``retrain`` with the original recipe; for
``certified``, the same estimator refitted on what is left). Oracles are shared between the methods of a
seed (each is trained once per set of removed rows). Method times are per request, in the same
process; the oracle's retrain time is the baseline of the speedup. SISA's one-time sharded training
(``prepare_seconds``, in its first request's diagnostics) is reported apart from its per-request time.

Writes ``benchmarks/results/requests.json`` (per method: the mean ± std over seeds of each curve
point, per-request seconds, the final gap, the speedup over the oracle's retrain) and ``requests.png``
(avg gap, forget accuracy and validation accuracy against the number of requests).

    python benchmarks/requests.py [--seeds 3] [--requests 20] [--size 10] [--threads 1]
    python benchmarks/requests.py --seeds 1 --requests 2 --methods finetune --out /tmp/r.json   # smoke test
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, provenance, write_result

import obliviate as ob
from obliviate.data import parse_scenario
from obliviate.demo import DEMO_RECIPE

METHODS = ("sisa", "certified", "finetune", "neggrad_plus", "ssd")
CURVES = ("avg_gap", "forget_acc", "val_acc", "test_acc", "retain_acc")


def _mean_std(values: list[list[float]]) -> tuple[list[float], list[float]]:
    arr = np.asarray(values, dtype=float)
    return np.nanmean(arr, axis=0).tolist(), (np.nanstd(arr, axis=0) if arr.shape[0] > 1 else np.zeros(arr.shape[1])).tolist()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--size", type=int, default=10)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "requests.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    ds = ob.load_dataset("digits")
    per: dict[str, dict[str, list]] = {m: {c: [] for c in (*CURVES, "seconds", "oracle_seconds", "status")} for m in args.methods}
    prepare: dict[str, list[float]] = {m: [] for m in args.methods}
    wall: dict[str, list[float]] = {m: [] for m in args.methods}
    per_seed_retrain: dict[int, dict[str, float]] = {}  # the seed's median oracle retrain time (its first cnn method)
    for seed in range(args.seeds):
        sc = parse_scenario("random:0.1", ds, seed=seed)
        base = ob.train(ob.build_model("cnn", ds, seed=seed), sc.train, seed=seed, progress=False, **DEMO_RECIPE)
        draw = np.random.default_rng(1000 + seed).choice(sc.train_idx, args.requests * args.size, replace=False)
        reqs = draw.reshape(args.requests, args.size).tolist()
        oracles: dict = {}
        for method in args.methods:
            params = {"removals": args.requests * args.size} if method == "certified" else None
            preset = None if method == "certified" else "digits"
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = ob.requests.apply(
                    base, ds, reqs, method, out=Path(tmp) / "s", seed=seed, preset=preset, params=params, device="cpu",
                    progress=False, oracles=oracles,
                )  # fmt: skip
                wall[method].append(time.perf_counter() - t0)
            curve = res.curve()
            for c in CURVES:
                per[method][c].append(curve[c])
            per[method]["seconds"].append(curve["seconds"])
            per[method]["oracle_seconds"].append([r.oracle_seconds for r in res.results])
            if method != "certified" and "retrain" not in per_seed_retrain.get(seed, {}):
                per_seed_retrain.setdefault(seed, {})["retrain"] = float(np.median([r.oracle_seconds for r in res.results]))
            per[method]["status"].append([r.status for r in res.results])
            prepare[method].append(res.results[0].diagnostics.get("prepare_seconds", math.nan))
            print(f"seed {seed} {method}: final avg_gap {curve['avg_gap'][-1]:.4f}, {np.mean(curve['seconds']):.3f} s/request")
    retrain_s = [v["retrain"] for v in per_seed_retrain.values()]
    summary = {}
    for method in args.methods:
        d = per[method]
        curves = {c: dict(zip(("mean", "std"), _mean_std(d[c]), strict=True)) for c in CURVES}
        secs = np.asarray(d["seconds"], dtype=float)
        # speedup per seed (the method and its baseline timed in the same stretch of the run), then the mean over seeds;
        # certified's baseline is its own oracle: the estimator refitted on what is left
        ratios = []
        for i, seed in enumerate(range(args.seeds)):
            if method == "certified":
                base_s = float(np.median(d["oracle_seconds"][i]))
            else:
                base_s = per_seed_retrain.get(seed, {}).get("retrain", math.nan)
            ratios.append(base_s / float(np.mean(d["seconds"][i])))
        baseline = float(np.mean(ratios)) if ratios else math.nan
        summary[method] = {
            "curves": curves,
            "seconds_per_request": {"mean": float(secs.mean()), "std": float(secs.mean(axis=1).std())},
            "final_avg_gap": {"mean": curves["avg_gap"]["mean"][-1], "std": curves["avg_gap"]["std"][-1]},
            "mean_avg_gap": float(np.nanmean(np.asarray(d["avg_gap"], dtype=float))),
            "speedup_vs_retrain": {"mean": baseline, "per_seed": ratios} if math.isfinite(baseline) else None,
            "prepare_seconds": [None if math.isnan(x) else x for x in prepare[method]],
            "statuses": {s: int(sum(row.count(s) for row in d["status"])) for s in {x for row in d["status"] for x in row}},
            "stream_wall_seconds": wall[method],
            "per_seed": {c: d[c] for c in (*CURVES, "seconds", "oracle_seconds")},
        }
    doc = {
        "benchmark": "requests",
        "command": "python benchmarks/requests.py "
        + " ".join([f"--seeds {args.seeds}", f"--requests {args.requests}", f"--size {args.size}", f"--threads {args.threads}"]),
        "setup": {
            "dataset": "digits",
            "model": "cnn (obliviate.demo.DEMO_RECIPE)",
            "scenario_rows": "training rows of random:0.1 (its validation split held out)",
            "requests": args.requests,
            "size": args.size,
            "seeds": args.seeds,
            "presets": "digits (certified: removals = requests x size, lam and sigma planned)",
            "oracle": "retrain from scratch without everything removed so far (certified: the estimator refitted)",
            "timing": "per request, wall clock, in one process, cold (no cache kept between requests); speedup = the "
            "seed's median oracle time / the method's mean per-request time in that seed (cnn methods: the retrain of the "
            "seed's first cnn method, which trained every oracle; certified: its estimator's refit), mean over seeds",
        },
        "retrain_seconds_median_per_seed": retrain_s,
        "methods": summary,
        "provenance": provenance(),
    }
    write_result(args.out, doc)
    _plot(summary, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = (("avg_gap", "avg gap to the oracle"), ("forget_acc", "forget accuracy"), ("val_acc", "validation accuracy"))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for method, s in summary.items():
            mean, std = np.asarray(s["curves"][metric]["mean"]), np.asarray(s["curves"][metric]["std"])
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, marker="o", ms=3, label=method)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        ax.set_xlabel("requests served")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Sequential deletion requests on digits (mean ± std over seeds; see requests.json)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
