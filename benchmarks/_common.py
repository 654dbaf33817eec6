"""Shared by the benchmark scripts: provenance (versions, machine, git state, the command) and writing a result.

The statistics over seeds (``stat``: mean, std, min, max; ``summarize`` over run records) come
from :mod:`obliviate.bench.stats`, the run records from :func:`obliviate.bench.run` and
:func:`obliviate.report.run_record`; they are re-exported here for the scripts that time one component.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import obliviate
from obliviate.bench.stats import record_value, stat, summarize

__all__ = ["RESULTS", "provenance", "write_result", "stat", "summarize", "record_value"]

RESULTS = Path(__file__).resolve().parent / "results"


def provenance() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0], root), *sys.argv[1:]]),
        "obliviate": obliviate.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "git": {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))},
    }


def write_result(path: str | os.PathLike[str], doc: dict[str, Any], indent: int = 2) -> Path:
    """Write a benchmark's result document as JSON (numpy scalars as plain numbers)."""
    path = Path(path)
    path.write_text(json.dumps(doc, indent=indent, default=float))
    return path
