"""SalUn's Avg. Gap: the mean absolute gap to the retrained oracle over a set of metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ...errors import InvalidConfigError

__all__ = ["GAP_METRICS", "avg_gap"]

GAP_METRICS: tuple[str, ...] = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
"""The metrics ``avg_gap`` averages over (SalUn's: forget, retain and test accuracy, MIA-efficacy)."""


def avg_gap(values: Mapping[str, float], oracle: Mapping[str, float], names: Sequence[str] = GAP_METRICS) -> float:
    """Mean over ``names`` of ``|values[name] - oracle[name]|``.

    Args:
        values: The model's metrics.
        oracle: The retrained model's metrics.
        names: Which metrics to average over (default :data:`GAP_METRICS`).

    Raises:
        InvalidConfigError: a name is missing from either side, or ``names`` is empty.

    Example:
        >>> avg_gap({"a": 0.5, "b": 0.9}, {"a": 0.1, "b": 1.0}, names=("a", "b"))
        0.25
    """
    names = list(names)
    missing = [n for n in names if n not in values or n not in oracle]
    if not names or missing:
        raise InvalidConfigError(f"avg_gap needs the metrics {names} on both sides; missing {missing}.")
    return float(np.mean([abs(values[n] - oracle[n]) for n in names]))
