"""The unrolling study (issue 6) and the cost of single-gradient unlearning against retraining.

1. Runs ``obliviate study unrolling`` (the full 24-point grid, or ``--quick``) and records its
   wall time, the Spearman correlation of verification and unlearning error, and its summary;
   the study's own ``points.json`` and ``ve_vs_ue.png`` go to ``benchmarks/results/unrolling_study/``
   (beside ``--out``: ``--out /tmp/u.json`` writes them to ``/tmp/u/``).
2. On the paper's setting (plain-SGD fine-tuning of the digits MLP for 2 epochs, B* = the first
   batch) times ``sgu`` and ``amnesiac`` against the naive retrain (the exact replay without B*)
   in the same process, as ratios.

Writes ``benchmarks/results/unrolling_study.json``.

    python benchmarks/unrolling_study.py [--quick] [--repeats 5] [--out PATH.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, provenance, write_result

import obliviate as ob
from obliviate._utils import Timer
from obliviate.errors import UnlearningWarning
from obliviate.recording import replay
from obliviate.studies.unrolling import FINETUNE_BATCH, HIDDEN, PRETRAIN_RECIPE, run_unrolling_study


def cost_ratios(repeats: int) -> dict:
    ds = ob.load_dataset("digits")
    val = ob.data.validation_split(ds, fraction=0.1, seed=0)
    pool = np.setdiff1d(np.arange(len(ds.train)), val)
    data = ob.data.Subset(ds.train, pool, train_split_of=ds.name)
    model = ob.build_model("mlp", ds, seed=0, hidden=HIDDEN)
    w0 = ob.train(model, data, device="cpu", progress=False, **PRETRAIN_RECIPE).model
    plain = dict(momentum=0.0, weight_decay=0.0, schedule="constant", device="cpu", progress=False)
    run = ob.train(w0, data, epochs=2, lr=0.1, batch_size=FINETUNE_BATCH, record=True, record_updates=True, **plain)
    rec = run.recording
    sc = ob.Scenario.from_indices(ds, rec.ids[rec.batch(0)], val_fraction=0.1, val_seed=0)
    forget = rec.positions(sc.forget_idx)
    timings: dict[str, list[float]] = {"naive_retrain": [], "sgu": [], "amnesiac": []}
    for _ in range(repeats):
        with Timer() as t:
            replay(run.model, rec, rec.training_data(ds.train), exclude=forget, device="cpu")
        timings["naive_retrain"].append(t.seconds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnlearningWarning)
            timings["sgu"].append(ob.unlearn(run, sc, "sgu", recording=rec, device="cpu").seconds)
            timings["amnesiac"].append(ob.unlearn(run, sc, "amnesiac", recording=rec, device="cpu").seconds)
    med = {k: float(np.median(v)) for k, v in timings.items()}
    return {
        "setting": "digits MLP (hidden 32), plain SGD lr 0.1, 2 epochs x 41 steps, B* = first batch (32 samples)",
        "median_seconds": med,
        "speedup_sgu_vs_naive_retrain": med["naive_retrain"] / med["sgu"],
        "speedup_amnesiac_vs_naive_retrain": med["naive_retrain"] / med["amnesiac"],
        "recording_nbytes": rec.nbytes(),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 8-point grid")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "unrolling_study.json"), help="the JSON; the study's files go beside it")
    args = parser.parse_args()
    out = Path(args.out)
    study_dir = out.with_suffix("")  # benchmarks/results/unrolling_study/ for the default --out
    started = time.perf_counter()
    study = run_unrolling_study(out=study_dir, quick=args.quick, progress=True)
    study_seconds = time.perf_counter() - started
    doc = {
        "benchmark": "unrolling_study",
        "provenance": provenance(),
        "study": {
            "command": "obliviate study unrolling" + (" --quick" if args.quick else ""),
            "wall_seconds": study_seconds,
            "torch_threads": torch.get_num_threads(),
            "points": len(study.points),
            "spearman_ve_ue": study.spearman,
            "spearman_pvalue": study.spearman_pvalue,
            "summary": study.summary,
            "files": [str(study_dir / "points.json")] + ([str(study.plot)] if study.plot else []),
        },
        "cost": cost_ratios(args.repeats),
    }
    write_result(out, doc, indent=1)
    print(json.dumps({k: doc[k] for k in ("study", "cost")}, indent=1))


if __name__ == "__main__":
    main()
