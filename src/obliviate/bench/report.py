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

__all__ = ["REPORT_COLUMNS", "group_records", "markdown_report"]

REPORT_COLUMNS: tuple[str, ...] = TABLE_COLUMNS
"""The columns of each table: the demo's (metrics, seconds, speedup); those no run has are left out."""


def group_records(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records by (dataset, scenario name), in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        sc = r.get("scenario") or {}
        groups.setdefault((str(sc.get("dataset", "?")), str(sc.get("name", "?"))), []).append(r)
    return groups


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
    for (dataset, scenario), runs in group_records(records).items():
        seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None})
        lines += [f"## {dataset} · {scenario} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})", ""]
        lines += [markdown_table(aggregate(runs, REPORT_COLUMNS), REPORT_COLUMNS), ""]
    prov = _provenance(records)
    if prov:
        lines += ["## Provenance", "", *prov, ""]
    return "\n".join(lines)
