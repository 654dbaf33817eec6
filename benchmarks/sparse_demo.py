"""Dense vs pruned: the demo's methods on the original model and on its OMP-pruned version.

Runs :func:`obliviate.demo.run_demo` with ``sparsity`` (one-shot magnitude pruning of the
original's convolution weights, a short masked retraining, the oracle retrained with the masks;
Unlearn-Sparse's "prune first, then unlearn") and writes, per scenario, method and original
model ("dense" / "omp S"), the mean forget / retain / test accuracy, MIA-efficacy, avg gap to
that model's own oracle, seconds and speedup to ``benchmarks/results/sparse_demo.json``, with a
Markdown table. Unlearn-Sparse's claim to check: sparsity narrows the gap of approximate
methods (FT, GA, FF, IU) to retraining.

    python benchmarks/sparse_demo.py [--sparsity 0.5] [--seeds 2] [--methods fisher,iu,...] [--quick]
"""

from __future__ import annotations

import argparse

from _common import RESULTS, provenance, write_result

from obliviate.bench import summarize
from obliviate.demo import run_demo

DEFAULT_METHODS = "finetune,gradient_ascent,fisher,iu,l1_sparse,ga_l1,ft_prune,prune_lora,ssd,random_label"
METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--scenarios", default="class:3,random:0.1")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "sparse_demo.json"))
    args = parser.parse_args()
    result = run_demo(
        out=None,
        methods=args.methods.split(","),
        scenarios=args.scenarios.split(","),
        seeds=args.seeds,
        quick=args.quick,
        device="cpu",
        progress=False,
        sparsity=args.sparsity,
    )
    groups: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for r in result.records:
        if r["status"] == "ok":
            groups.setdefault(r["scenario"]["name"], {}).setdefault(r["method"], {}).setdefault(r["variant"], []).append(r)
    summary: dict = {}
    for scenario, methods in groups.items():
        for method, variants in methods.items():
            for variant, runs in variants.items():
                stats = summarize(runs, (*METRICS, "seconds", "speedup"))
                summary.setdefault(scenario, {}).setdefault(method, {})[variant] = {
                    **{k: s["mean"] if s else None for k, s in stats.items()},
                    "n": len(runs),
                }
    lines = []
    for scenario, methods in summary.items():
        lines += [
            f"## {scenario}",
            "",
            "| method | model | forget | retain | test | MIA-eff. | avg gap | seconds | speedup |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method, variants in methods.items():
            for variant, s in variants.items():
                cells = [("-" if s[m] is None else f"{100 * s[m]:.1f}") for m in METRICS]
                cells += ["-" if s[k] is None else f"{s[k]:.2f}" for k in ("seconds", "speedup")]
                lines.append(f"| {method} | {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    doc = {
        "benchmark": "sparse_demo",
        "provenance": provenance(),
        "sparsity": args.sparsity,
        "seeds": args.seeds,
        "quick": args.quick,
        "demo_wall_seconds": result.seconds,
        "summary": summary,
        "markdown": "\n".join(lines),
    }
    write_result(args.out, doc)
    print("\n".join(lines))
    print(f"demo wall time {result.seconds:.1f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
