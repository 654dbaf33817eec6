"""Statistics over seeds shared by the runner, the demo and the benchmark scripts.

:func:`stat` (mean, std, min, max) and :func:`record_value` live in :mod:`obliviate.report`,
beside :func:`~obliviate.report.aggregate`, which uses them; this module re-exports them and adds
:func:`summarize`, the per-key summary of a group of run records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..report import record_value, stat

__all__ = ["stat", "record_value", "summarize"]


def summarize(records: Iterable[dict[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, float] | None]:
    """``{key: stat(values)}`` over ``records`` for each key (see :func:`record_value` for the lookup).

    Example:
        >>> from obliviate.report import run_record
        >>> runs = [run_record(scenario=None, method="m", seed=s, metrics={"forget_acc": a}) for s, a in enumerate([0.1, 0.3])]
        >>> summarize(runs, ["forget_acc", "seconds"])["forget_acc"]["mean"]
        0.2
    """
    records = list(records)
    return {k: stat(record_value(r, k) for r in records) for k in keys}
