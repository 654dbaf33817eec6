"""Adversarial unlearning on the demo scenarios: quality, speedup vs retrain, cost per iteration.

Part 1, per seed and demo scenario (digits, cnn, the demo's 30-epoch recipe; class:3, random:0.1,
plus any ``--classes``): retrain the oracle with the original recipe, then run ``adversarial``
with its ``digits`` preset, ``finetune`` with its ``digits`` preset, and the adversarial
preset's schedule without the game (``adv_weight = bt_weight = 0``: what the game itself adds);
evaluate each against the oracle and time it against the oracle in the same process
(speedup = oracle seconds / method seconds). ``--mia-adversarial`` adds the opt-in learned
attack for the original model, the oracle and each method.

Part 2, in one process: the seconds of one iteration of the game (attacker step + forget,
validation and noisy forwards and backwards + the retain batch) against one ``finetune``
iteration on the same retain batches, at the digits preset's sizes and at the paper's (batches
of 256, 10 noisy copies, the 140k-parameter attacker); median of ``--repeats`` runs.

Writes ``benchmarks/results/adversarial.json`` (``--quick``: one seed, class:3 only, one repeat,
the digits sizes only, written to ``/tmp/adversarial_quick.json`` unless ``--out`` is given).
The full run takes a few minutes on 2 cores.

    python benchmarks/adversarial.py [--seeds 5] [--classes 3,5] [--repeats 3] [--mia-adversarial] [--threads 2] [--device cpu]
    python benchmarks/adversarial.py --quick  # smoke test
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from _common import RESULTS, provenance, write_result

import obliviate as ob
from obliviate import bench
from obliviate.bench import stat
from obliviate.demo import DEMO_RECIPE

METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")
NO_GAME = {"adv_weight": 0.0, "bt_weight": 0.0}


LABELS = ("original", "adversarial", "adversarial_without_game", "finetune")


def quality(seeds: int, specs: list[str], device: torch.device, mia_adversarial: bool) -> tuple[list[dict], dict]:
    extra = ["mia_adversarial"] if mia_adversarial else []
    variants = [
        ("adversarial", "adversarial", {"preset": "digits"}),
        ("adversarial_without_game", "adversarial", {"preset": "digits", **NO_GAME}),
        ("finetune", "finetune", {"preset": "digits"}),
    ]
    records = bench.run(
        specs, variants, seeds, dataset="digits", model="cnn", recipe=DEMO_RECIPE, device=device, metrics=[*METRICS, *extra]
    )
    runs: list[dict] = []
    for seed in range(seeds):
        for spec in specs:
            group = {r.get("label") or r["method"]: r for r in records if r["seed"] == seed and r["scenario"]["name"] == spec}
            oracle = group["retrain"]
            for label in LABELS:
                r = group[label]
                runs.append(
                    {
                        "seed": seed,
                        "scenario": spec,
                        "method": label,
                        "seconds": r["timings"]["seconds"],
                        "oracle_seconds": r["timings"]["oracle_seconds"],
                        "speedup": r["timings"]["speedup"],
                        "passes": r["diagnostics"].get("passes"),
                        "metrics": r["metrics"],
                        "oracle_metrics": {k: oracle["metrics"][k] for k in (*METRICS, *extra) if k in oracle["metrics"]},
                        **({"status": r["status"], "error": r["error"]} if r["status"] != "ok" else {}),
                    }
                )
            print(f"seed {seed} {spec} done", flush=True)
    summary: dict[str, dict[str, dict]] = {}
    for spec in specs:
        for label in LABELS:
            rows = [r for r in runs if r["scenario"] == spec and r["method"] == label]
            names = [*METRICS, *(["mia_adversarial"] if mia_adversarial else [])]
            entry = {k: stat(r["metrics"].get(k) for r in rows) for k in names}
            if label != "original":
                entry["seconds"] = stat(r["seconds"] for r in rows)
                entry["speedup"] = stat(r["speedup"] for r in rows)
                entry["passes"] = stat(r["passes"] for r in rows)
            summary.setdefault(spec, {})[label] = entry
        oracle_rows = [r for r in runs if r["scenario"] == spec and r["method"] == "original"]
        summary[spec]["retrain"] = {
            "seconds": stat(r["oracle_seconds"] for r in oracle_rows),
            **{k: stat(r["oracle_metrics"][k] for r in oracle_rows) for k in oracle_rows[0]["oracle_metrics"]},
        }
    return runs, summary


def iteration_cost(device: torch.device, repeats: int, paper_sizes: bool = True) -> dict[str, dict]:
    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, device=device, progress=False, **DEMO_RECIPE).model
    digits = ob.get_method("adversarial").presets["digits"]
    sizes = {
        "digits preset": {
            "game": {**digits, "stop_iter": None, "stop_lr": None, "attacker_warmup": 0, "epochs": 2},
            "batch_size": digits["batch_size"],
        },
        "paper sizes": {"game": {"stop_iter": None, "attacker_warmup": 0, "epochs": 2, "lr": 0.01}, "batch_size": 256},
    }
    if not paper_sizes:
        del sizes["paper sizes"]
    out: dict[str, dict] = {}
    for label, cfg in sizes.items():
        game, bs = cfg["game"], cfg["batch_size"]
        epochs = game["epochs"]
        iterations = epochs * math.ceil(len(sc.retain) / bs)
        t_game, t_ft = [], []
        for _ in range(repeats):
            t_ft.append(
                ob.unlearn(base, sc, "finetune", epochs=epochs, lr=0.01, batch_size=bs, device=device, progress=False).seconds
            )
            t_game.append(ob.unlearn(base, sc, "adversarial", device=device, progress=False, **game).seconds)
        g, f = float(np.median(t_game)) / iterations, float(np.median(t_ft)) / iterations
        out[label] = {
            "iterations": iterations,
            "seconds_per_game_iteration": g,
            "seconds_per_finetune_iteration": f,
            "game_over_finetune": g / f,
            "settings": game,
        }
        print(
            f"{label}: one game iteration = {g / f:.1f} finetune iterations ({1000 * g:.1f} ms vs {1000 * f:.1f} ms)", flush=True
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--classes", default="", help="extra class-wise scenarios, e.g. 0,5,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mia-adversarial", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="one seed, class:3 only, one repeat, digits sizes only")
    parser.add_argument("--out", default=None, help="default benchmarks/results/adversarial.json (quick: /tmp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out_path = args.out or ("/tmp/adversarial_quick.json" if args.quick else str(RESULTS / "adversarial.json"))
    specs = ["class:3", "random:0.1", *[f"class:{c}" for c in args.classes.split(",") if c and c != "3"]]
    if args.quick:
        args.seeds, args.repeats, specs = 1, 1, ["class:3"]
    runs, summary = quality(args.seeds, specs, device, args.mia_adversarial)
    cost = iteration_cost(device, args.repeats, paper_sizes=not args.quick)
    write_result(
        out_path,
        {
            "benchmark": "adversarial",
            "provenance": provenance(),
            "recipe": DEMO_RECIPE,
            "seeds": args.seeds,
            "quick": args.quick,
            "threads": args.threads,
            "preset": ob.get_method("adversarial").presets["digits"],
            "summary": summary,
            "iteration_cost": cost,
            "runs": runs,
        },
    )
    for spec, methods in summary.items():
        for label, entry in methods.items():
            cells = "  ".join(f"{k} {100 * entry[k]['mean']:.1f}" for k in METRICS if k in entry)
            timing = f"  {entry['seconds']['mean']:.2f} s" if "seconds" in entry else ""
            timing += f"  speedup {entry['speedup']['mean']:.2f}" if "speedup" in entry else ""
            print(f"{spec:10s} {label:25s} {cells}{timing}")


if __name__ == "__main__":
    main()
