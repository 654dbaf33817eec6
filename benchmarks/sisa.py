"""SISA on digits: per-request removal time against a full retrain, and the accuracy cost against a single model.

For S = 1, 4, 8, 16 shards (R = 4 slices each, ``epochs_per_slice`` = the digits recipe's 30
epochs / R, so every shard model sees its data for as many epochs in all as the single model), over
3 seeds: fit a :class:`~obliviate.sisa.SISAEnsemble` (MLP shard models, the digits recipe
otherwise) on the training rows of the ``random:0.1`` scenario's split, then remove ``--requests``
single rows one after another, timing each ``remove`` (cold: nothing cached between requests). The
baseline, in the same process and seed: retraining one MLP from scratch with the full recipe on
the rows left (what ``retrain`` does per request). One untimed training runs first, so every timing
is warm (the process's one-time costs would otherwise land on the first retrain). Writes ``benchmarks/results/sisa.json`` (per S:
the mean removal seconds, stages retrained per request, the speedup over the retrain, the test
accuracy of the ensemble against the single model's) and ``benchmarks/results/sisa.png``.

    python benchmarks/sisa.py [--seeds 3] [--requests 5] [--threads 1]
    python benchmarks/sisa.py --seeds 1 --requests 2 --shards 1 4 --out /tmp/sisa.json   # smoke test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, provenance, stat, write_result

import obliviate as ob
from obliviate.data import parse_scenario
from obliviate.runs import DIGITS_RECIPE
from obliviate.sisa import SISAEnsemble

SLICES = 4


def test_acc(model, sc) -> float:
    return float(ob.evaluate(model, sc, metrics=["test_acc"])["test_acc"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--requests", type=int, default=5)
    p.add_argument("--shards", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "sisa.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import warnings

    warnings.simplefilter("ignore")
    ds = ob.load_dataset("digits")
    recipe = {k: v for k, v in DIGITS_RECIPE.items() if k != "epochs"}
    per_slice = DIGITS_RECIPE["epochs"] // SLICES
    # one untimed training first: the process's one-time costs (allocator, kernels) would land on the first baseline
    # retrain and inflate the speedups; every timing below is warm, and labelled so
    warm = parse_scenario("random:0.1", ds, seed=0)
    ob.train(ob.build_model("mlp", ds, seed=0), warm.train, progress=False, **{**DIGITS_RECIPE, "epochs": 2})
    rows: dict[int, dict[str, list[float]]] = {s: {"remove_s": [], "stages": [], "acc": [], "fit_s": []} for s in args.shards}
    baseline: dict[str, list[float]] = {"retrain_s": [], "acc": []}
    for seed in range(args.seeds):
        sc = parse_scenario("random:0.1", ds, seed=seed)
        train_rows = sc.train_idx
        requests = np.random.default_rng(1000 + seed).choice(train_rows, size=args.requests, replace=False)
        t0 = time.perf_counter()
        single = ob.train(ob.build_model("mlp", ds, seed=seed), sc.train, seed=seed, progress=False, **DIGITS_RECIPE)
        baseline["retrain_s"].append(time.perf_counter() - t0)
        baseline["acc"].append(test_acc(single.model, sc))
        for s in args.shards:
            sisa = SISAEnsemble(
                lambda k, seed=seed: ob.build_model("mlp", ds, seed=seed * 1000 + k),
                s,
                SLICES,
                recipe,
                epochs_per_slice=per_slice,
                seed=seed,
            )
            t0 = time.perf_counter()
            sisa.fit(ds.train, rows=train_rows)
            rows[s]["fit_s"].append(time.perf_counter() - t0)
            rows[s]["acc"].append(test_acc(sisa, sc))
            for rid in requests:
                t0 = time.perf_counter()
                report = sisa.remove([int(rid)])
                rows[s]["remove_s"].append(time.perf_counter() - t0)
                rows[s]["stages"].append(report.stages_trained)
            print(
                f"seed {seed} S={s}: acc {rows[s]['acc'][-1]:.3f}, remove {np.mean(rows[s]['remove_s'][-args.requests :]):.2f} s",
                flush=True,
            )
    retrain = float(np.mean(baseline["retrain_s"]))
    table = []
    for s in args.shards:
        r = rows[s]
        table.append(
            {
                "shards": s,
                "slices": SLICES,
                "remove_seconds": stat(r["remove_s"]),
                "stages_retrained_per_request": stat(r["stages"]),
                "speedup_over_retrain": retrain / float(np.mean(r["remove_s"])),
                "fit_seconds": stat(r["fit_s"]),
                "test_acc": stat(r["acc"]),
                "accuracy_cost_points": 100 * (float(np.mean(baseline["acc"])) - float(np.mean(r["acc"]))),
            }
        )
    doc = {
        "benchmark": "sisa",
        "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "timing": "warm: one untimed training first; removals and retrains timed in the same process, one thread",
        "requests_per_seed": args.requests,
        "seeds": args.seeds,
        "baseline_single_model": {"retrain_seconds": stat(baseline["retrain_s"]), "test_acc": stat(baseline["acc"])},
        "table": table,
        "provenance": provenance(),
    }
    write_result(args.out, doc)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = [t["shards"] for t in table]
    a.plot(xs, [t["speedup_over_retrain"] for t in table], "o-")
    a.set(xscale="log", xlabel="shards S", ylabel="removal speedup over a full retrain", title="per-request removal")
    b.errorbar(
        xs, [100 * t["test_acc"]["mean"] for t in table], yerr=[100 * (t["test_acc"]["std"] or 0) for t in table], fmt="o-"
    )
    b.axhline(100 * float(np.mean(baseline["acc"])), color="grey", ls="--", label="single model")
    b.set(xscale="log", xlabel="shards S", ylabel="test accuracy (%)", title="accuracy cost")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    for t in table:
        print(
            t["shards"],
            f"{t['speedup_over_retrain']:.1f}x",
            f"{100 * t['test_acc']['mean']:.1f}%",
            f"cost {t['accuracy_cost_points']:.1f}",
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
