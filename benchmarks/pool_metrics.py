"""Issue 16's per-example evaluation through ``obliviate bench`` on Ray: ε-score, U-LiRA, KLOM of every method.

For each spec (default: ``benchmarks/specs/pools-digits.toml``, random forgetting and the backdoor
corrective scenario on digits; ``benchmarks/specs/pools-memorisation.toml``, random forgetting in a
memorisation-heavy setting), runs ``obliviate bench SPEC --out DIR --pool POOL --backend ray`` as a
separate process on a fresh pool (cold: every original, oracle and unlearned member is made), then
the same spec again into a fresh ``--out`` sharing the pool (every member's outputs reused: nothing
trained, nothing unlearned). Reads the stored ``pool_metrics`` runs and the per-seed runs, and
writes ``benchmarks/results/pool_metrics.json``: the wall time and counts of both invocations, and
per scenario the methods ranked by ε-score (with F, the chance floor F of two independent retrained
pools of the same size, U-LiRA AUC and TPR at 1 % / 0.1 % FPR online and offline, KLOM P50/P95 on
forget, retain and validation samples with KLOM's floor, the pool's accuracies), beside each
method's avg-gap, Tug-of-War, Anamnesis Index (relearn time), and for the backdoor scenario attack
success rate, as means over the spec's seeds, the avg-gap rank and the Spearman correlation of the
two rankings.

    python benchmarks/pool_metrics.py [--specs A.toml B.toml] [--n 32]
    python benchmarks/pool_metrics.py --n 4 --epochs 2 --out /tmp/pool_metrics.json   # smoke test
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, provenance, write_result
from scipy.stats import spearmanr

from obliviate.bench.store import ResultStore
from obliviate.report import aggregate

ROOT = Path(__file__).resolve().parent.parent
SPECS = [ROOT / "benchmarks" / "specs" / "pools-digits.toml", ROOT / "benchmarks" / "specs" / "pools-memorisation.toml"]


def bench(spec: Path, out: Path, pool: Path, backend: str) -> dict:
    cmd = [sys.executable, "-m", "obliviate", "bench", str(spec), "--out", str(out), "--pool", str(pool), "--no-progress"]
    cmd += ["--backend", backend]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    m = re.search(r"(\d+) runs recorded, (\d+) already in the store, (\d+) models trained", done.stdout)
    return {
        "command": f"obliviate bench {spec.name} --out OUT --pool POOL --backend {backend}",
        "wall_seconds": seconds,
        "recorded": int(m.group(1)) if m else None,
        "models_trained": int(m.group(3)) if m else None,
    }


def rankings(records: list[dict]) -> dict:
    """Per (dataset, scenario): the pool metrics ranked by ε-score, the avg-gap ranking, their Spearman correlation."""
    out: dict[str, dict] = {}
    for r in records:
        sc = r["scenario"]
        key = f"{sc['dataset']} · {sc['name']}"
        out.setdefault(key, {"pool": [], "seeds": []})
        (out[key]["pool"] if r["bench"]["kind"] == "pool_metrics" else out[key]["seeds"]).append(r)
    result = {}
    for key, parts in out.items():
        extra = ("avg_gap", "tow", "anamnesis_index", "attack_success_rate", "forget_true_acc")
        rows = {row["method"]: row for row in aggregate(parts["seeds"], extra)}
        gap = {m: row["avg_gap"][0] for m, row in rows.items() if row.get("avg_gap")}
        table = []
        for r in sorted(parts["pool"], key=lambda r: -((r["metrics"] or {}).get("epsilon_score") or -1.0)):
            label = r.get("label") or r["method"]
            seeds = {f"{k}_3seeds": (rows.get(label) or {}).get(k, None) for k in extra[1:]}
            seeds = {k: v[0] for k, v in seeds.items() if v}
            table.append(
                {
                    **seeds,
                    "method": label,
                    "status": r["status"],
                    "members": r.get("members"),
                    **(r["metrics"] or {}),
                    "avg_gap_3seeds": gap.get(label),
                }
            )
        both = [t for t in table if t.get("epsilon_score") is not None and t.get("avg_gap_3seeds") is not None]
        rho = (
            spearmanr([-t["epsilon_score"] for t in both], [t["avg_gap_3seeds"] for t in both]).statistic
            if len(both) > 2
            else None
        )
        by_gap = sorted(both, key=lambda t: t["avg_gap_3seeds"])
        gap_rank = {t["method"]: i + 1 for i, t in enumerate(by_gap)}
        eps_rank = {t["method"]: i + 1 for i, t in enumerate(sorted(both, key=lambda t: -t["epsilon_score"]))}
        for t in table:
            t["rank_epsilon"], t["rank_avg_gap"] = eps_rank.get(t["method"]), gap_rank.get(t["method"])
        floors = {t.get("epsilon_floor") for t in table if t.get("epsilon_floor") is not None}
        result[key] = {
            "chance_floor_F": sorted(floors)[0] if len(floors) == 1 else sorted(floors),
            "spearman_epsilon_vs_avg_gap": None if rho is None or np.isnan(rho) else float(rho),
            "table": table,
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--specs", type=Path, nargs="+", default=SPECS)
    p.add_argument("--n", type=int, default=None, help="override the pool size (smoke tests)")
    p.add_argument("--epochs", type=int, default=None, help="override the training epochs (smoke tests)")
    p.add_argument("--backend", default="ray")
    p.add_argument("--out", type=Path, default=RESULTS / "pool_metrics.json")
    args = p.parse_args()
    doc: dict = {"benchmark": "pool_metrics", "description": __doc__.split("\n\n")[1].replace("\n", " "), "specs": {}}
    with tempfile.TemporaryDirectory(prefix="pool_metrics_") as tmp:
        tmp = Path(tmp)
        for spec in args.specs:
            text = spec.read_text()
            if args.n is not None:
                text = re.sub(r"^n = \d+", f"n = {args.n}", text, flags=re.M)
            if args.epochs is not None:
                text = re.sub(r"epochs = \d+", f"epochs = {args.epochs}", text)
            local = tmp / spec.name
            local.write_text(text)
            pool = tmp / f"{spec.stem}-pool"
            print(f"== {spec.name}: cold", flush=True)
            first = bench(local, tmp / f"{spec.stem}-1", pool, args.backend)
            print(f"   {first['wall_seconds']:.0f} s, {first['models_trained']} models trained", flush=True)
            second = bench(local, tmp / f"{spec.stem}-2", pool, args.backend)
            print(f"   again: {second['wall_seconds']:.0f} s, {second['models_trained']} models trained", flush=True)
            with ResultStore(tmp / f"{spec.stem}-1") as store:
                records = [r for r in store.records() if (r.get("bench") or {}).get("kind") != "pool_member"]
            n = int(re.search(r"^n = (\d+)", text, flags=re.M).group(1))
            doc["specs"][str(spec.resolve().relative_to(ROOT))] = {
                "n": n,
                "epochs_override": args.epochs,
                "first_invocation": first,
                "second_invocation_sharing_the_pool": second,
                "scenarios": rankings(records),
            }
    doc["provenance"] = provenance()
    write_result(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
