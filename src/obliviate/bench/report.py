"""The markdown report of a result store: per dataset and scenario, the method x metric table.

``obliviate report DIR --out R`` writes it (``R/report.md``, with ``R/results.csv``) from the runs
``obliviate bench`` stored in ``DIR/results.sqlite``. Each table has one row per variant: mean ±
std over seeds of the metrics and of the seconds, the avg gap to the retrained oracle, and the
runs that were not ``ok`` beside the name (``collapsed 1/3``); the notes runs raised are numbered
under the table. The provenance of the runs (package versions, git commits, devices, hosts, torch
threads) closes the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..report import TABLE_COLUMNS, aggregate, markdown_table

__all__ = ["REPORT_COLUMNS", "group_records", "markdown_report", "split_records", "pool_rows", "POOL_HEADERS"]

REPORT_COLUMNS: tuple[str, ...] = (
    *TABLE_COLUMNS[:-2],
    "tow",
    "forget_true_acc",
    "attack_success_rate",
    "anamnesis_index",
    *TABLE_COLUMNS[-2:],
)
"""The columns of each table: the demo's (metrics, seconds, speedup), Tug-of-War, the corrective scenarios'
recovery and attack success rate, and the relearn time's Anamnesis Index; those no run has are left out."""


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records by (dataset, scenario name), in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        sc = r.get("scenario") or {}
        groups.setdefault((str(sc.get("dataset", "?")), str(sc.get("name", "?"))), []).append(r)
    return groups


POOL_HEADERS: dict[str, str] = {
    "epsilon_score": "ε-score",
    "epsilon_F": "F",
    "epsilon_floor": "F floor",
    "ulira_auc": "U-LiRA AUC",
    "ulira_tpr_1": "TPR@1%",
    "ulira_tpr_01": "TPR@0.1%",
    "ulira_auc_offline": "AUC offline",
    "klom_forget_p50": "KLOM f P50",
    "klom_forget_p95": "KLOM f P95",
    "klom_forget_p95_floor": "floor",
    "klom_retain_p95": "KLOM r P95",
    "klom_val_p95": "KLOM v P95",
    "retain_acc": "retain acc",
    "test_acc": "test acc",
}
"""The per-example (pool) metrics of a report and their column headers (:mod:`obliviate.bench.pools`)."""


def split_records(records: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(the per-seed runs, the pool_metrics runs)``; pool members (the pools' raw material) are in neither."""
    classic, pools = [], []
    for r in records:
        kind = (r.get("bench") or {}).get("kind")
        if kind == "pool_metrics":
            pools.append(r)
        elif kind != "pool_member":
            classic.append(r)
    return classic, pools


def pool_rows(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a scenario's pool-metrics table, best ε-score first; values as text."""
    header = ["method", "pool", *POOL_HEADERS.values()]
    ordered = sorted(runs, key=lambda r: -((r.get("metrics") or {}).get("epsilon_score") or -1.0))
    rows = []
    for r in ordered:
        m, members = r.get("metrics") or {}, r.get("members") or {}
        size = f"{members.get('unlearned', '?')}/{members.get('n', '?')}"
        cells = [str(r.get("label") or r.get("method")), size]
        for key in POOL_HEADERS:
            v = m.get(key)
            cells.append("-" if v is None else f"{100 * v:.1f}" if key in ("retain_acc", "test_acc") else f"{v:.3f}")
        if r.get("status") != "ok":
            cells[0] += f" ({r.get('status')})"
        rows.append(cells)
    return header, rows


def _provenance(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, set[str]] = {name: set() for name in ("obliviate", "torch", "git", "device", "host", "threads")}
    for r in records:
        p = r.get("provenance") or {}
        versions = p.get("versions") or r.get("versions") or {}
        for name in ("obliviate", "torch"):
            if versions.get(name):
                seen[name].add(str(versions[name]))
        git = p.get("git") or {}
        if git.get("commit"):
            seen["git"].add(str(git["commit"])[:12] + (" (dirty)" if git.get("dirty") else ""))
        for name, key in (("device", "device"), ("host", "host"), ("threads", "torch_threads")):
            if p.get(key) is not None:
                seen[name].add(str(p[key]))
    return [f"- {name}: {', '.join(sorted(values))}" for name, values in seen.items() if values]


def _pool_markdown(runs: Sequence[dict[str, Any]]) -> list[str]:
    header, rows = pool_rows(runs)
    n = max(((r.get("members") or {}).get("n") or 0) for r in runs)
    out = [
        f"Per-example metrics over pools of {n} models (one forget draw; originals over {n} seeds). ε-score: higher is better, "
        "1 = indistinguishable from retraining; F floor = the F of two independent retrained pools at this pool size "
        "(KLOM's floor likewise). "
        "U-LiRA: 0.5 AUC and low TPR are ideal. KLOM (nats): lower is better. Accuracies in %.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def markdown_report(records: Sequence[dict[str, Any]], *, title: str = "obliviate bench report") -> str:
    """The report as markdown: one table per (dataset, scenario), then the runs' provenance."""
    specs = sorted({str((r.get("bench") or {}).get("spec")) for r in records if (r.get("bench") or {}).get("spec")})
    lines = [f"# {title}", ""]
    if specs:
        lines += [f"Spec: {', '.join(specs)}. {len(records)} runs.", ""]
    lines += [
        "Mean ± std over seeds; accuracies, MIA and avg gap in %. `avg gap` is the mean absolute difference to the retrained",
        "oracle of the same seed (0 is the oracle itself); `original` is the model before unlearning. A method's runs",
        "that are not `ok` are counted beside its name.",
        "",
    ]
    classic, pools = split_records(records)
    pool_groups = group_records(pools)
    for (dataset, scenario), runs in group_records(classic).items():
        seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
        lines += [f"## {dataset} · {scenario} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})", ""]
        lines += [markdown_table(aggregate(runs, REPORT_COLUMNS), REPORT_COLUMNS), ""]
        if (dataset, scenario) in pool_groups:
            lines += _pool_markdown(pool_groups[dataset, scenario])
    for key, runs in pool_groups.items():  # pools of scenarios without per-seed runs
        if key not in group_records(classic):
            lines += [f"## {key[0]} · {key[1]}", "", *_pool_markdown(runs)]
    prov = _provenance(records)
    if prov:
        lines += ["## Provenance", "", *prov, ""]
    return "\n".join(lines)
