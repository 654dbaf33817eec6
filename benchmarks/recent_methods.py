"""Issue 18's comparison: the newly added methods against the best existing ones, each tuned the same way.

Runs ``obliviate bench benchmarks/specs/recent.toml --out DIR --backend ray`` as a separate process
(cold: a fresh output directory and pool). The spec puts ``cf_k``, ``eu_k``, ``rum``, ``scar``,
``delete``, ``sfr_on`` and ``langevin`` beside ``neggrad_plus``, ``salun``, ``scrub``, ``ssd`` and ``finetune`` on digits
(``class:3`` and ``random:0.1``, 3 seeds), every method tuned from its digits preset by
:func:`obliviate.tune` with the oracle-free proxy objective under the same budget (10 trials), and
every run measured against the retrained oracle, with the per-run strong-evaluation metrics the
bench has for tuned runs (Tug-of-War, relearn time and its Anamnesis Index; the pool-based ε-score,
U-LiRA and KLOM need fixed hyperparameters and are in ``pool_metrics.json`` for the presets).

Writes ``benchmarks/results/recent_methods.json``: per scenario, every method's mean ± std over the
seeds of the forget, retain and test accuracy, avg gap to the oracle, MIA efficacy, ToW, Anamnesis
Index and seconds, its statuses, the tuned hyperparameters of each seed, and the ranking by avg gap.

    python benchmarks/recent_methods.py
    python benchmarks/recent_methods.py --spec /tmp/small.toml --out /tmp/recent.json   # smoke test
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, provenance, write_result

from obliviate.bench.store import ResultStore
from obliviate.report import aggregate

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "benchmarks" / "specs" / "recent.toml"
NEW = ("cf_k", "eu_k", "rum", "scar", "delete", "sfr_on", "langevin")
COLUMNS = ("forget_acc", "retain_acc", "test_acc", "avg_gap", "mia_efficacy", "tow", "anamnesis_index", "seconds")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", type=Path, default=SPEC)
    p.add_argument("--backend", default="ray")
    p.add_argument("--out", type=Path, default=RESULTS / "recent_methods.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recent"
        cmd = [sys.executable, "-m", "obliviate", "bench", str(args.spec), "--out", str(out), "--no-progress"]
        cmd += ["--backend", args.backend, "--threads", "1"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        m = re.search(r"(\d+) runs recorded, (\d+) already in the store, (\d+) models trained", done.stdout)
        with ResultStore(out) as store:
            records = list(store.records())
    scenarios: dict[str, dict] = {}
    for row in aggregate(records, COLUMNS):
        sc = scenarios.setdefault(row["scenario"], {"methods": {}})
        name = row["method"].replace(" (tuned)", "")
        runs = [
            r
            for r in records
            if (r.get("scenario") or {}).get("name") == row["scenario"] and (r.get("label") or r.get("method")) == row["method"]
        ]
        sc["methods"][name] = {
            "new": name in NEW,
            "n": row["n"],
            "status": row["status"],
            **{c: (None if row[c] is None else {"mean": row[c][0], "std": row[c][1]}) for c in COLUMNS},
            "tuned_params": [(r.get("tune") or {}).get("best_params") for r in runs],
            "notes": row["notes"][:5],
        }
    for sc in scenarios.values():
        ranked = [
            (n, v["avg_gap"]["mean"]) for n, v in sc["methods"].items() if v["avg_gap"] is not None and n not in ("retrain",)
        ]
        sc["ranking_by_avg_gap"] = [n for n, _ in sorted(ranked, key=lambda t: t[1])]
    doc = {
        "benchmark": "recent_methods",
        "command": "python benchmarks/recent_methods.py  (runs: "
        + " ".join(cmd[2:4])
        + f" {args.spec.name} --backend {args.backend} --threads 1)",
        "wall_seconds": wall,
        "runs_recorded": int(m.group(1)) if m else None,
        "models_trained": int(m.group(3)) if m else None,
        "setup": "digits CNN (30 epochs, lr 0.05), class:3 and random:0.1, seeds 0-2; every method tuned from its digits "
        "preset with ob.tune (proxy objective, 10 trials); metrics against the retrained oracle",
        "scenarios": scenarios,
        "provenance": provenance(),
    }
    write_result(args.out, doc)
    print(f"wrote {args.out} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
