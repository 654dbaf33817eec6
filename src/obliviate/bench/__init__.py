"""The one experiment runner: methods (or variants of one method) on scenarios over seeds.

:func:`run` trains one original model per (dataset, seed), retrains the oracle with the original
recipe, evaluates the no-op original and every variant against it, each timed cold, and returns
run records in the ``obliviate.results/1`` schema (:mod:`obliviate.report`). The demo and the
method-comparing scripts of ``benchmarks/`` go through it; :mod:`obliviate.bench.stats` holds
the statistics over seeds that every benchmark shares.
"""

from __future__ import annotations

from .grid import plan_grid, run_grid
from .pool import ModelPool
from .runner import Variant, run
from .spec import BenchRun, BenchSpec, load_spec, parse_spec
from .stats import record_value, stat, summarize
from .store import ResultStore

__all__ = [
    "Variant",
    "run",
    "stat",
    "summarize",
    "record_value",
    "BenchSpec",
    "BenchRun",
    "load_spec",
    "parse_spec",
    "ModelPool",
    "ResultStore",
    "run_grid",
    "plan_grid",
]
