"""Run records, results files, and the tables made from them (terminal, Markdown, CSV).

A run record is the same everywhere (``run.json``, the demo's ``results.json``, benchmarks)::

    scenario{name, kind, dataset, forget_size, seed, hash}, method, params, seed,
    status (ok | failed | diverged), error, metrics, timings{seconds, oracle_seconds, speedup},
    versions{obliviate, torch, python}

A run directory's ``run.json`` adds its ``origin`` (see :mod:`obliviate.runs`, whose
:func:`~obliviate.runs.check_run_record` checks it on load) and, once evaluated, ``evaluations``: a
list that only grows, one entry per ``obliviate evaluate`` with its reference's path and model
SHA-256; the record's own ``metrics`` are never overwritten. A results file is
``{"schema": "obliviate.results/1", "runs": [...]}``. Tables aggregate runs
over seeds (mean, and the standard deviation when there are several) and print fractions as
percentages.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._utils import versions
from .errors import InvalidConfigError
from .metrics import METRICS

__all__ = [
    "RESULTS_SCHEMA",
    "run_record",
    "record_value",
    "stat",
    "results_document",
    "aggregate",
    "format_cell",
    "markdown_table",
    "csv_text",
    "rich_table",
    "TABLE_COLUMNS",
]

RESULTS_SCHEMA = "obliviate.results/1"
TABLE_COLUMNS: tuple[str, ...] = (
    "forget_acc",
    "retain_acc",
    "test_acc",
    "test_forget_acc",
    "mia_efficacy",
    "avg_gap",
    "seconds",
    "speedup",
)
_HEADERS = {
    "forget_acc": "forget acc",
    "retain_acc": "retain acc",
    "test_acc": "test acc",
    "test_forget_acc": "test forget acc",
    "mia_efficacy": "MIA-eff.",
    "avg_gap": "avg gap",
    "seconds": "seconds",
    "speedup": "speedup",
    "tow": "ToW",
    "forget_true_acc": "forget true acc",
    "attack_success_rate": "ASR",
    "anamnesis_index": "AIN",
}


STATUSES = ("ok", "collapsed", "unchecked", "failed", "diverged")
"""A run record's status: the first three hold a result (and metrics), the last two do not."""
RESULT_STATUSES = STATUSES[:3]


def run_record(
    *,
    scenario: dict[str, Any] | None,
    method: str | None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    status: str = "ok",
    error: str | None = None,
    metrics: dict[str, Any] | None = None,
    seconds: float | None = None,
    oracle_seconds: float | None = None,
    diagnostics: dict[str, Any] | None = None,
    notes: Sequence[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one run record; ``speedup`` is derived from the two timings.

    ``status`` is one of :data:`STATUSES`: a result's health-check verdict (``ok``, ``collapsed``,
    ``unchecked``) or why there is no result (``failed``, ``diverged``). ``notes`` are the warnings
    the run raised.
    """
    if status not in STATUSES:
        raise InvalidConfigError(f"A run's status must be one of {', '.join(map(repr, STATUSES))}; got {status!r}.")
    speedup = None
    if seconds is not None and oracle_seconds is not None and seconds > 0:
        speedup = oracle_seconds / seconds
    record = {
        "scenario": scenario,
        "method": method,
        "params": params or {},
        "seed": seed,
        "status": status,
        "error": error,
        "metrics": metrics or {},
        "timings": {"seconds": seconds, "oracle_seconds": oracle_seconds, "speedup": speedup},
        "diagnostics": diagnostics or {},
        "notes": list(notes or []),
        "versions": versions(),
    }
    record.update(extra)
    return record


def results_document(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The results-file wrapper around run records."""
    return {"schema": RESULTS_SCHEMA, "runs": list(records)}


def stat(values: Iterable[float | None]) -> dict[str, float] | None:
    """Mean, standard deviation (population), minimum and maximum of the values that are not None.

    The one statistics helper of the benchmarks and of :func:`aggregate` (seeds are summarised
    this way everywhere). Returns None when no value is given.

    Example:
        >>> stat([1.0, None, 3.0])
        {'mean': 2.0, 'std': 1.0, 'min': 1.0, 'max': 3.0}
    """
    vals = np.asarray([float(v) for v in values if v is not None], dtype=float)
    if vals.size == 0:
        return None
    return {"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()), "max": float(vals.max())}


def record_value(record: dict[str, Any], key: str) -> float | None:
    """One number of a run record by name; None when absent or NaN.

    ``seconds``, ``oracle_seconds`` and ``speedup`` are read from the timings, any other name from
    the metrics, else from the diagnostics (e.g. ``passes``).
    """
    if key in ("seconds", "speedup", "oracle_seconds"):
        v = (record.get("timings") or {}).get(key)
    elif key in (record.get("metrics") or {}):
        v = record["metrics"][key]
    else:
        v = (record.get("diagnostics") or {}).get(key)
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return None if math.isnan(v) else float(v)


def aggregate(records: Iterable[dict[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> list[dict[str, Any]]:
    """Group records by (scenario, method) in first-seen order; mean, std and count per column.

    Records with a ``variant`` (the demo's "dense" / "omp 50%" original models) are grouped
    by it too; their rows' ``scenario`` reads e.g. ``"class:3 (omp 50%)"``. Records with a
    ``label`` (:func:`obliviate.bench.run`'s variants of one method) are grouped by the label,
    which is the row's ``method``. Each cell is ``(mean, std)`` of :func:`stat` over the ``ok``
    runs (std None for a single run).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        name = (r.get("scenario") or {}).get("name", "")
        key = (f"{name} ({r['variant']})" if r.get("variant") else name, r.get("label") or r.get("method") or "")
        groups.setdefault(key, []).append(r)
    rows = []
    for (scenario, method), runs in groups.items():
        row: dict[str, Any] = {
            "scenario": scenario,
            "method": method,
            "n": len(runs),
            "status": ",".join(sorted({r.get("status", "ok") for r in runs})),
            "flags": _flags(runs),
            "notes": list(dict.fromkeys(n for r in runs for n in r.get("notes") or [])),
        }
        for c in columns:
            vals = [v for v in (record_value(r, c) for r in runs if r.get("status", "ok") in RESULT_STATUSES) if v is not None]
            s = stat(vals)
            row[c] = (s["mean"], s["std"] if len(vals) > 1 else None) if s else None
        rows.append(row)
    return rows


def _flags(runs: Sequence[dict[str, Any]]) -> str:
    """What a row's method cell adds to its name: the runs that are not ``ok``, e.g. ``collapsed 1/3``."""
    counts: dict[str, int] = {}
    for r in runs:
        st = r.get("status", "ok")
        if st != "ok":
            counts[st] = counts.get(st, 0) + 1
    return ", ".join(f"{st} {n}/{len(runs)}" for st, n in sorted(counts.items()))


def format_cell(column: str, cell: tuple[float, float | None] | None) -> str:
    """Text of one aggregated cell: percentages for fractions, ``mean ± std`` over seeds."""
    if cell is None:
        return "-"
    mean, std = cell
    if column == "speedup":
        text, spread = f"{mean:.1f}x", (f" ± {std:.1f}" if std is not None else "")
    elif column == "seconds":
        text, spread = f"{mean:.2f}", (f" ± {std:.2f}" if std is not None else "")
    elif column in METRICS and METRICS.get(column).fraction:
        text, spread = f"{100 * mean:.1f}", (f" ± {100 * std:.1f}" if std is not None else "")
    else:
        text, spread = f"{mean:.4g}", (f" ± {std:.2g}" if std is not None else "")
    return text + spread


def _columns_present(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    return [c for c in columns if any(r.get(c) is not None for r in rows)]


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A Markdown table of aggregated rows (fractions as percentages)."""
    cols = _columns_present(rows, columns)
    head = "| method | " + " | ".join(_HEADERS.get(c, c) for c in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [head, sep]
    notes: list[str] = []
    for r in rows:
        mark = ""
        for n in r.get("notes") or []:
            if n not in notes:
                notes.append(n)
            mark += f" [{notes.index(n) + 1}]"
        lines.append(f"| {r['method']}{_status_text(r)}{mark} | " + " | ".join(format_cell(c, r.get(c)) for c in cols) + " |")
    if notes:
        lines += ["", *(f"[{i}] {n}" for i, n in enumerate(notes, 1))]
    return "\n".join(lines)


def _status_text(row: dict[str, Any]) -> str:
    """`` (collapsed 1/3)`` after a method whose runs are not all ``ok`` (nothing otherwise)."""
    flags = row.get("flags")
    if flags is None:  # a row built by hand, without aggregate()
        return "" if row.get("status", "ok") == "ok" else f" ({row['status']})"
    return f" ({flags})" if flags else ""


def rich_table(rows: Sequence[dict[str, Any]], title: str, columns: Sequence[str] = TABLE_COLUMNS) -> Any:
    """A :class:`rich.table.Table` of aggregated rows."""
    from rich.table import Table

    cols = _columns_present(rows, columns)
    table = Table(title=title, title_justify="left")
    table.add_column("method")
    for c in cols:
        table.add_column(_HEADERS.get(c, c), justify="right")
    for r in rows:
        table.add_row(r["method"] + _status_text(r), *(format_cell(c, r.get(c)) for c in cols))
    return table


def csv_text(records: Sequence[dict[str, Any]]) -> str:
    """One CSV line per run: scenario, method, seed, status, timings and every metric."""
    metric_names = sorted({k for r in records for k in r.get("metrics", {})}, key=lambda n: (n not in TABLE_COLUMNS, n))
    variant = any(r.get("variant") for r in records)  # the demo's dense / pruned original models
    header = ["scenario", *(["variant"] if variant else []), "method", "seed", "status", "seconds", "oracle_seconds", "speedup"]
    header += metric_names
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in records:
        t = r.get("timings", {})
        writer.writerow(
            [
                (r.get("scenario") or {}).get("name"),
                *([r.get("variant")] if variant else []),
                r.get("method"),
                r.get("seed"),
                r.get("status"),
                t.get("seconds"),
                t.get("oracle_seconds"),
                t.get("speedup"),
            ]
            + [r.get("metrics", {}).get(m) for m in metric_names]
        )
    return out.getvalue()
