"""The result store of ``obliviate bench``: SQLite in WAL mode, one row per run key.

``DIR/results.sqlite`` holds one row per run (its key is the primary key, so a second write of a
key is ignored, never duplicated): the run record as JSON, its status and timings, and the
provenance of the process that made it (package versions, git hash and dirty flag of the
package's checkout, device, host, torch thread count). A row is committed as soon as its run
ends, so a grid killed at any point keeps every finished run, and the same command resumes it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "STORE_FILE", "provenance", "git_state"]

STORE_FILE = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    spec TEXT,
    kind TEXT NOT NULL,
    dataset TEXT,
    scenario TEXT,
    method TEXT,
    label TEXT,
    seed INTEGER,
    status TEXT NOT NULL,
    seconds REAL,
    oracle_seconds REAL,
    record TEXT NOT NULL,
    provenance TEXT NOT NULL,
    pool_keys TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL
)
"""


@cache
def git_state() -> tuple[str | None, bool | None]:
    """``(commit hash, dirty)`` of the git checkout holding the obliviate package; ``(None, None)`` outside one."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=30
        )
        return head.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def provenance(device: Any = None, threads: int | None = None) -> dict[str, Any]:
    """Where a record was made: versions, git hash + dirty flag (None outside a checkout), device, host, threads."""
    import torch

    from .._utils import versions

    commit, dirty = git_state()
    return {
        "versions": versions(),
        "git": {"commit": commit, "dirty": dirty},
        "device": str(device) if device is not None else None,
        "host": socket.gethostname(),
        "torch_threads": torch.get_num_threads() if threads is None else threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


class ResultStore:
    """``DIR/results.sqlite``: write once per run key, read for reports.

    Args:
        directory: The bench output directory (created when missing).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / STORE_FILE
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal``)."""
        return self._db.execute("PRAGMA journal_mode").fetchone()[0]

    def add(
        self,
        key: str,
        record: dict[str, Any],
        *,
        kind: str,
        provenance: dict[str, Any],
        spec: str | None = None,
        label: str | None = None,
        pool_keys: list[str] | None = None,
    ) -> bool:
        """Insert the record of run ``key``; False (and nothing written) when the key is stored already."""
        sc = record.get("scenario") or {}
        timings = record.get("timings") or {}
        cur = self._db.execute(
            "INSERT OR IGNORE INTO runs (key, spec, kind, dataset, scenario, method, label, seed, status, seconds, "
            "oracle_seconds, record, provenance, pool_keys, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                spec,
                kind,
                sc.get("dataset"),
                sc.get("name"),
                record.get("method"),
                label or record.get("label") or record.get("method"),
                record.get("seed"),
                record.get("status", "ok"),
                timings.get("seconds"),
                timings.get("oracle_seconds"),
                json.dumps(record, sort_keys=True, default=str),
                json.dumps(provenance, sort_keys=True, default=str),
                json.dumps(sorted(pool_keys or [])),
                time.time(),
            ),
        )
        return cur.rowcount == 1

    def keys(self) -> set[str]:
        """The run keys stored."""
        return {k for (k,) in self._db.execute("SELECT key FROM runs")}

    def __contains__(self, key: object) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def threads(self, keys: set[str] | None = None) -> set[int]:
        """The torch thread counts the stored runs (those of ``keys`` when given) were made with."""
        out = set()
        for key, text in self._db.execute("SELECT key, provenance FROM runs"):
            if keys is None or key in keys:
                n = json.loads(text).get("torch_threads")
                if n is not None:
                    out.add(int(n))
        return out

    def pool_keys(self) -> set[str]:
        """Every model-pool key a stored run used."""
        out: set[str] = set()
        for (text,) in self._db.execute("SELECT pool_keys FROM runs"):
            out.update(json.loads(text))
        return out

    def rows(
        self, *, scenario: str | None = None, method: str | None = None, kind: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The stored rows (oldest first), optionally only one scenario / method (registry name or label) / kind.

        Each row: ``key``, ``spec``, ``kind``, ``dataset``, ``scenario``, ``method``, ``label``, ``seed``,
        ``status``, ``seconds``, ``oracle_seconds``, ``record`` (dict), ``provenance`` (dict), ``pool_keys``, ``created``.
        """
        where, args = [], []
        if scenario is not None:
            where.append("scenario = ?")
            args.append(scenario)
        if method is not None:
            where.append("(method = ? OR label = ?)")
            args += [method, method]
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, rowid"
        cur = self._db.execute(sql, args)
        names = [d[0] for d in cur.description]
        for row in cur:
            out = dict(zip(names, row, strict=True))
            out["record"] = json.loads(out["record"])
            out["provenance"] = json.loads(out["provenance"])
            out["pool_keys"] = json.loads(out["pool_keys"])
            yield out

    def records(self, **filters: Any) -> list[dict[str, Any]]:
        """The run records (``obliviate.results/1`` runs), each with its ``key`` and ``provenance``, filtered as :meth:`rows`."""
        return [{**r["record"], "key": r["key"], "provenance": r["provenance"]} for r in self.rows(**filters)]
