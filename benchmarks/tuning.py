"""Issue 14: ob.tune by the proxy vs by the oracle, against each method's preset and defaults.

For every registered method (``retrain`` is the reference; ``sgu``/``amnesiac`` get a recorded
training run), every scenario it supports among ``--scenarios`` and every seed, on digits (the demo's
CNN and 30-epoch recipe) and, with one seed, on a second dataset that is not derived from digits
(``synthetic``: scikit-learn's ``make_classification``, 8 classes, 24 features, with the zoo's MLP),
this script measures four settings against the retrained oracle of the same seed:

* ``proxy``: ``ob.tune(..., objective="proxy", budget_s=BUDGET)`` (no oracle); the reference is
  given only to record each trial's true avg gap, and that measuring time is reported apart
  (``comparison_seconds``) and does not use up the budget;
* ``oracle``: ``ob.tune(..., objective="oracle", reference=oracle, budget_s=BUDGET)``;
* ``preset``: the method's ``digits`` preset (digits only; none elsewhere);
* ``defaults``: the method's defaults.

For each it records the true avg gap to the oracle (``avg_gap``), the health check's status and
retained-class validation drop (collapsed: more than 10 points), and the seconds: for a tuned
setting the whole search plus its final run (the best trial's run, kept, not rerun) beside the
final run alone; the oracle's seconds beside them. Over the proxy search's trials it records Spearman's rank
correlation between the proxy and the true avg gap, and the regret: the true gap of the proxy's
choice minus the best true gap among the trials.

Results are written after every method, to ``--out``; a rerun skips what the file already holds,
so the benchmark can run in parts (``--methods``, ``--scenarios``, ``--datasets``, ``--seeds``).
The summary (mean over seeds per dataset, scenario and method) is rebuilt at every write.

    python benchmarks/tuning.py [--seeds 3] [--budget 15] [--methods a,b] [--scenarios class:3,random:0.1]
                                [--datasets digits,synthetic] [--threads N] [--out benchmarks/results/tuning.json]
    python benchmarks/tuning.py --quick --out /tmp/tuning.json   # smoke test: not for the record
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, provenance, stat, write_result
from scipy.stats import spearmanr

import obliviate as ob
from obliviate.errors import UnlearningError
from obliviate.methods._cache import clear_importance_cache
from obliviate.metrics.functional.gap import GAP_METRICS
from obliviate.runs import DIGITS_RECIPE

SCHEMA = "obliviate.bench.tuning/1"
SETTINGS = ("proxy", "oracle", "preset", "defaults")
SYNTHETIC_RECIPE: dict[str, Any] = {"epochs": 30, "lr": 0.05, "batch_size": 64, "schedule": "cosine"}
QUICK_EPOCHS = 3


def synthetic_dataset() -> ob.DatasetSplits:
    """2,400 samples of 8 classes in 24 features (16 informative), a stratified 80/20 split, standardised."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    x, y = make_classification(
        n_samples=2400,
        n_features=24,
        n_informative=16,
        n_redundant=4,
        n_classes=8,
        n_clusters_per_class=2,
        class_sep=1.5,
        random_state=0,
    )
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-8
    return ob.from_arrays(
        ((xtr - mean) / std).astype(np.float32), ytr, ((xte - mean) / std).astype(np.float32), yte, name="synthetic"
    )


def setup(dataset: str, scenario: str, seed: int, quick: bool) -> dict[str, Any]:
    """The dataset, scenario, original model (recorded), the oracle and its evaluation for one seed."""
    from obliviate.data.scenario import parse_scenario

    if dataset == "digits":
        ds, model_name, recipe = ob.load_dataset("digits"), "cnn", dict(DIGITS_RECIPE)
    else:
        ds, model_name, recipe = synthetic_dataset(), "mlp", dict(SYNTHETIC_RECIPE)
    if quick:
        recipe["epochs"] = QUICK_EPOCHS
    sc = parse_scenario(scenario, ds, seed=seed)
    base = ob.train(
        ob.build_model(model_name, ds, seed=seed), sc.train, seed=seed, progress=False, record=True, record_updates=True, **recipe
    )
    oracle = ob.unlearn(base, sc, "retrain", seed=seed, progress=False, **recipe)
    ref = ob.evaluate(oracle, sc, metrics=list(GAP_METRICS), seed=seed)
    return {"ds": ds, "sc": sc, "base": base, "oracle": oracle, "ref": ref, "recipe": recipe}


def score(result: ob.UnlearningResult, ctx: dict[str, Any]) -> dict[str, Any]:
    """True avg gap to the oracle, and the health check's verdict (retained-class validation drop, points)."""
    sc = ctx["sc"]
    gap = ob.evaluate(result, sc, reference=ctx["ref"], metrics=["avg_gap"], seed=sc.seed)["avg_gap"]
    return {
        "avg_gap": float(gap),
        "val_acc_drop": result.diagnostics.get("val_acc_drop"),
        "health": result.status,
        "collapsed": result.status == "collapsed",
    }


def run_method(
    method: str, ctx: dict[str, Any], budget: float, seed: int, dataset: str, settings: tuple[str, ...] = SETTINGS
) -> dict[str, Any]:
    """The ``settings`` (default: all four) of one method on one (dataset, scenario, seed)."""
    cls = ob.METHODS.get(method)
    recording = ctx["base"].recording if cls.needs_recording else None
    common = {"seed": seed, "progress": False, "recording": recording}
    out: dict[str, Any] = {"oracle_seconds": ctx["oracle"].seconds}

    def fixed_run(**kw: Any) -> dict[str, Any]:
        clear_importance_cache()  # timed cold: no SSD importance, Fisher diagonal or IU gradients from an earlier run
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = ob.unlearn(ctx["base"], ctx["sc"], method, **common, **kw)
        except UnlearningError as err:
            return {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        return {"status": "ok", "seconds": res.seconds, "final_run_seconds": res.seconds, "params": res.config, **score(res, ctx)}

    if "defaults" in settings:
        out["defaults"] = fixed_run()
    if "preset" in settings:
        out["preset"] = fixed_run(preset="digits") if dataset == "digits" and "digits" in cls.presets else None
    for objective in [s for s in ("proxy", "oracle") if s in settings]:
        try:
            clear_importance_cache()  # each search starts cold (its own trials then share what they compute)
            tr = ob.tune(ctx["base"], ctx["sc"], method, budget_s=budget, objective=objective, reference=ctx["ref"], **common)
        except UnlearningError as err:
            out[objective] = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            continue
        entry = {
            "status": "ok",
            "seconds": tr.seconds - tr.comparison_seconds,  # the search (every trial) and its final run
            "final_run_seconds": tr.best_result.seconds,
            "comparison_seconds": tr.comparison_seconds,
            "params": tr.best_params,
            "trials": len(tr.trials),
            "failed_trials": sum(t["status"] == "failed" for t in tr.trials),
            **score(tr.best_result, ctx),
        }
        if objective == "proxy":
            done = [t for t in tr.trials if t["value"] is not None and t["true_gap"] is not None]
            proxy = [t["value"] for t in done]
            gaps = [t["true_gap"] for t in done]
            rho = spearmanr(proxy, gaps).statistic if len(done) >= 3 and len(set(proxy)) > 1 and len(set(gaps)) > 1 else None
            entry["spearman"] = None if rho is None or math.isnan(rho) else float(rho)
            entry["regret"] = float(tr.best["true_gap"] - min(gaps)) if gaps else None
            entry["trial_table"] = [
                {k: t[k] for k in ("number", "params", "value", "true_gap", "val_acc_drop", "seconds", "status")}
                for t in tr.trials
            ]
        out[objective] = entry
    return out


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset, scenario and method: each setting's avg gap and seconds over seeds, Spearman and regret."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["scenario"], r["method"]), []).append(r)
    rows = []
    for (dataset, scenario, method), items in sorted(groups.items()):
        row: dict[str, Any] = {"dataset": dataset, "scenario": scenario, "method": method, "seeds": len(items)}
        for setting in SETTINGS:
            cells = [r[setting] for r in items if r.get(setting) and r[setting].get("status") == "ok"]
            row[setting] = {
                "avg_gap": stat(c["avg_gap"] for c in cells),
                "seconds": stat(c["seconds"] for c in cells),
                "final_run_seconds": stat(c["final_run_seconds"] for c in cells),
                "collapsed": sum(bool(c["collapsed"]) for c in cells),
                "runs": len(cells),
            }
        row["oracle_seconds"] = stat(r["oracle_seconds"] for r in items)
        row["spearman"] = stat((r.get("proxy") or {}).get("spearman") for r in items)
        row["regret"] = stat((r.get("proxy") or {}).get("regret") for r in items)
        rows.append(row)
    return rows


def redo_runs(doc: dict[str, Any], out: Path, settings: tuple[str, ...], methods: list[str], args: Any) -> None:
    """Measure ``settings`` again for every stored run of ``methods``, in place (same setup per seed)."""
    commit = provenance()["git"]
    keys = sorted({(r["dataset"], r["scenario"], r["seed"]) for r in doc["runs"] if r["method"] in methods})
    for dataset, scenario, seed in keys:
        if dataset not in args.datasets.split(",") or scenario not in args.scenarios.split(","):
            continue
        ctx = setup(dataset, scenario, seed, args.quick)
        for record in doc["runs"]:
            same = (record["dataset"], record["scenario"], record["seed"]) == (dataset, scenario, seed)
            if not same or record["method"] not in methods:
                continue
            record.update(run_method(record["method"], ctx, args.budget, seed, dataset, settings))
            record.setdefault("redone", {}).update({s: commit for s in settings})
            doc.update(summary=summarize(doc["runs"]), redo_provenance=provenance())
            write_result(out, doc)
            gap = {s: (record.get(s) or {}).get("avg_gap") for s in settings}
            print(f"redo {dataset} {scenario} seed {seed} {record['method']}: {gap}", flush=True)


def markdown(doc: dict[str, Any]) -> str:
    """The summary as a markdown table: avg gap (mean ± std over seeds) and seconds per setting."""

    def cell(st: dict[str, Any] | None, digits: int = 3) -> str:
        if not st:
            return "-"
        return f"{st['mean']:.{digits}f}" + (f" ± {st['std']:.{digits}f}" if st["std"] else "")

    head = [
        "dataset", "scenario", "method", "seeds",
        "gap proxy", "gap oracle", "gap preset", "gap defaults",
        "s proxy (search+final / final)", "s oracle-tuned", "s defaults", "s retrain",
        "collapsed p/o/pr/d", "Spearman", "regret",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in doc["summary"]:
        tuned = row["proxy"]
        seconds = "-" if not tuned["seconds"] else f"{tuned['seconds']['mean']:.1f} / {tuned['final_run_seconds']['mean']:.2f}"
        collapsed = "/".join(f"{row[s]['collapsed']}" if row[s]["runs"] else "-" for s in SETTINGS)
        lines.append(
            "| "
            + " | ".join(
                [
                    row["dataset"],
                    row["scenario"],
                    row["method"],
                    str(row["seeds"]),
                    *(cell(row[s]["avg_gap"]) for s in SETTINGS),
                    seconds,
                    cell(row["oracle"]["seconds"], 1),
                    cell(row["defaults"]["seconds"], 2),
                    cell(row["oracle_seconds"], 1),
                    collapsed,
                    cell(row["spearman"], 2),
                    cell(row["regret"]),
                ]
            )  # fmt: skip
            + " |"
        )
    return "\n".join(lines)


def supports(method: str, scenario: str) -> bool:
    kind = {"class": "classwise", "random": "random", "subclass": "subclass"}[scenario.split(":")[0]]
    return kind in ob.METHODS.get(method).kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds on digits (the second dataset gets one)")
    parser.add_argument("--budget", type=float, default=15.0, help="seconds of search per tuned setting")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method but retrain)")
    parser.add_argument("--scenarios", default="class:3,random:0.1")
    parser.add_argument("--datasets", default="digits,synthetic")
    parser.add_argument("--out", default=str(RESULTS / "tuning.json"))
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} training epochs, 1 seed: checks the script only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every run (recorded in provenance)")
    parser.add_argument(
        "--redo",
        default=None,
        help="comma-separated settings (defaults,preset,proxy,oracle) to measure again for the runs the file holds, "
        "with the current code (e.g. after a change of defaults); the record keeps the commit that redid them",
    )
    parser.add_argument("--table", action="store_true", help="print the stored summary as a markdown table and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    methods = args.methods.split(",") if args.methods else [m for m in ob.METHODS.names() if m != "retrain"]
    for m in methods:
        ob.METHODS.get(m)  # unknown names fail before any training
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() else {"schema": SCHEMA, "runs": []}
    if doc.get("schema") != SCHEMA:
        raise SystemExit(f"{out} is not a {SCHEMA} file")
    if doc.get("quick", args.quick) != args.quick:
        raise SystemExit(f"{out} was written {'with' if doc.get('quick') else 'without'} --quick; use another --out")
    done = {(r["dataset"], r["scenario"], r["seed"], r["method"]) for r in doc["runs"]}
    redo = tuple(args.redo.split(",")) if args.redo else ()
    if set(redo) - set(SETTINGS):
        raise SystemExit(f"--redo takes {', '.join(SETTINGS)}; got {args.redo}")
    if redo:
        redo_runs(doc, out, redo, methods, args)
        return
    start = time.perf_counter()
    for dataset in args.datasets.split(","):
        seeds = range(1 if (args.quick or dataset != "digits") else args.seeds)
        for scenario in args.scenarios.split(","):
            for seed in seeds:
                todo = [m for m in methods if supports(m, scenario) and (dataset, scenario, seed, m) not in done]
                if not todo:
                    continue
                ctx = setup(dataset, scenario, seed, args.quick)
                for method in todo:
                    t0 = time.perf_counter()
                    record = {"dataset": dataset, "scenario": scenario, "seed": seed, "method": method}
                    record.update(run_method(method, ctx, args.budget, seed, dataset))
                    record["wall_seconds"] = time.perf_counter() - t0
                    doc["runs"].append(record)
                    doc.update(
                        schema=SCHEMA,
                        quick=args.quick,
                        budget_s=args.budget,
                        provenance=provenance(),
                        summary=summarize(doc["runs"]),
                    )
                    write_result(out, doc)
                    gap = {s: (record.get(s) or {}).get("avg_gap") for s in SETTINGS}
                    shown = ", ".join(f"{s} {g:.3f}" if g is not None else f"{s} -" for s, g in gap.items())
                    print(f"{dataset} {scenario} seed {seed} {method}: {shown} ({record['wall_seconds']:.0f} s)", flush=True)
    print(f"done in {time.perf_counter() - start:.0f} s -> {out}")


if __name__ == "__main__":
    main()
