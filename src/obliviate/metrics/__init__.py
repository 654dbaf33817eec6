"""Metric registry: every quality metric obliviate reports, as a registered :class:`Metric` class.

The logic lives in :mod:`obliviate.metrics.functional` (pure functions, tested against
scikit-learn and SciPy). Each metric is a small class (:mod:`obliviate.metrics.builtin`, one
module per family) that declares what it requires, its goal, whether it is a fraction and
whether it is opt-in, and whose ``compute`` calls its functional twin on a lazy
:class:`~obliviate.metrics.context.MetricContext`; :func:`obliviate.evaluate` builds that context
once and loops over the requested metrics. Definitions: the project's metric spec, one
definition per name. A new metric is one class decorated with :func:`register_metric`.
"""

from __future__ import annotations

import warnings
from typing import Any

from . import (
    builtin,  # noqa: F401  (importing it registers the shipped metrics)
    functional,
)
from .base import INPUTS, METRICS, Metric, MetricRegistry, register_metric
from .context import MetricContext, ReferenceOutputs, SplitOutputs

__all__ = [
    "INPUTS",
    "METRICS",
    "Metric",
    "MetricContext",
    "MetricRegistry",
    "ReferenceOutputs",
    "SplitOutputs",
    "functional",
    "register_metric",
]


def __getattr__(name: str) -> Any:
    if name == "MetricInfo":
        warnings.warn(
            "obliviate.metrics.MetricInfo is deprecated: the registry now holds Metric classes "
            "(obliviate.metrics.Metric), which carry the same attributes.",
            DeprecationWarning,
            stacklevel=2,
        )
        return Metric
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
