"""Which methods collapse the demo's digits CNN with their default hyperparameters? (issue 14)

For every registered method that supports the scenario, run it with its defaults (no preset) on
the demo's original model (digits, the demo recipe) for ``class:3`` and ``random:0.1`` over three
seeds, and record the health check of :meth:`obliviate.methods.UnlearningMethod.unlearn`: the
status (``ok`` / ``collapsed``), the drop of the retained classes' validation accuracy and the
forget accuracy. Writes ``benchmarks/results/defaults_health.json``.

    python benchmarks/defaults_health.py [--seeds 3]
    python benchmarks/defaults_health.py --quick --out /tmp/defaults_health.json   # smoke test

No oracle is trained: the verdict is against the input model. ``retrain`` (the oracle itself,
with the original recipe) is left out; ``sgu`` and ``amnesiac`` get a recorded original.
"""

from __future__ import annotations

import argparse

from _common import RESULTS, provenance, write_result

from obliviate.bench import run
from obliviate.demo import DEMO_RECIPE
from obliviate.methods import METHODS

SCENARIOS = ["class:3", "random:0.1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 training epochs, three methods: checks the script")
    parser.add_argument("--out", default=str(RESULTS / "defaults_health.json"))
    args = parser.parse_args()
    recipe, names = DEMO_RECIPE, [n for n in METHODS.names() if n != "retrain"]
    if args.quick:
        args.seeds, recipe, names = 1, dict(DEMO_RECIPE, epochs=4), ["finetune", "ssd", "gradient_ascent"]
    records = run(
        SCENARIOS,
        [(n, n, {}) for n in names],
        args.seeds,
        dataset="digits",
        model="cnn",
        recipe=recipe,
        device="cpu",
        metrics=["forget_acc", "retain_acc"],
        oracle=False,
        on_record=lambda r: print(f"seed {r['seed']} {r['scenario']['name']} {r['method']}: {r['status']}", flush=True),
    )
    rows: dict[str, dict[str, list]] = {}
    for r in records:
        if r["method"] == "original":
            continue
        row = rows.setdefault(f"{r['method']} {r['scenario']['name']}", {"status": [], "val_acc_drop": [], "forget_acc": []})
        row["status"].append(r["status"])
        row["val_acc_drop"].append(r["diagnostics"].get("val_acc_drop"))
        row["forget_acc"].append(r["metrics"].get("forget_acc"))
    flagged = sorted(k for k, v in rows.items() if any(s != "ok" for s in v["status"]))
    doc = {
        "benchmark": "defaults_health",
        "command": "python benchmarks/" + __file__.rsplit("/", 1)[-1] + (" --quick" if args.quick else f" --seeds {args.seeds}"),
        "provenance": provenance(),
        "recipe": recipe,
        "seeds": args.seeds,
        "flagged_with_defaults": flagged,
        "rows": rows,
        "runs": records,
    }
    path = write_result(args.out, doc)
    print(f"{len(flagged)} of {len(rows)} (method, scenario) pairs not ok with defaults on some seed -> {path}")
    for k in flagged:
        print("  ", k, rows[k]["status"], [None if d is None else round(d, 1) for d in rows[k]["val_acc_drop"]])


if __name__ == "__main__":
    main()
