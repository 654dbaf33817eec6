"""obliviate.bench.store: SQLite in WAL mode, one row per run key, provenance, filtered reads."""

from __future__ import annotations

import sqlite3

import pytest

from obliviate.bench.store import ResultStore, git_state, provenance
from obliviate.report import run_record


def _record(scenario: str, method: str, seed: int = 0, acc: float = 0.5) -> dict:
    sc = {"name": scenario, "kind": "classwise", "dataset": "digits", "forget_size": 10, "seed": seed, "hash": "h"}
    return run_record(scenario=sc, method=method, seed=seed, metrics={"forget_acc": acc}, seconds=1.0, oracle_seconds=4.0)


def test_wal_one_row_per_key_and_a_second_write_is_ignored(tmp_path):
    prov = provenance("cpu", 1)
    with ResultStore(tmp_path) as store:
        assert store.journal_mode == "wal"
        assert store.add("k1", _record("class:3", "ssd"), kind="unlearn", provenance=prov, pool_keys=["a", "b"])
        assert not store.add("k1", _record("class:3", "ssd", acc=0.9), kind="unlearn", provenance=prov)
        assert len(store) == 1
        assert store.records()[0]["metrics"]["forget_acc"] == 0.5  # the first write stays
    # a second connection (another invocation) sees the same row, and duplicates are impossible at the SQL level too
    with ResultStore(tmp_path) as again:
        assert again.keys() == {"k1"} and "k1" in again and "k2" not in again
    db = sqlite3.connect(tmp_path / "results.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO runs (key, kind, status, record, provenance, created) VALUES ('k1', 'x', 'ok', '{}', '{}', 0)")
    db.close()


def test_rows_carry_record_timings_and_provenance_and_filter(tmp_path):
    prov = provenance("cpu", 3)
    with ResultStore(tmp_path) as store:
        store.add("a", _record("class:3", "ssd"), kind="unlearn", provenance=prov, pool_keys=["p1", "p2"])
        store.add("b", _record("random:0.1", "ssd", seed=1), kind="unlearn", provenance=prov, pool_keys=["p3", "p2"])
        rec = _record("class:3", "finetune")
        rec["label"] = "finetune lr=0.01"
        store.add("c", rec, kind="unlearn", provenance=prov, label="finetune lr=0.01")
        assert {r["key"] for r in store.rows(scenario="class:3")} == {"a", "c"}
        assert {r["key"] for r in store.rows(method="ssd")} == {"a", "b"}
        assert [r["key"] for r in store.rows(method="finetune lr=0.01")] == ["c"]
        assert [r["key"] for r in store.rows(scenario="random:0.1", method="ssd")] == ["b"]
        row = next(store.rows(scenario="random:0.1"))
        assert (row["seed"], row["status"], row["seconds"], row["oracle_seconds"]) == (1, "ok", 1.0, 4.0)
        assert row["record"]["timings"]["speedup"] == 4.0
        assert store.pool_keys() == {"p1", "p2", "p3"}
        p = store.records(method="ssd")[0]["provenance"]
    assert p["device"] == "cpu" and p["torch_threads"] == 3 and p["host"]
    assert {"obliviate", "torch", "python"} <= set(p["versions"])
    assert set(p["git"]) == {"commit", "dirty"}


def test_git_state_is_none_outside_a_checkout(tmp_path, monkeypatch):
    import obliviate.bench.store as store_mod

    git_state.cache_clear()
    monkeypatch.setattr(store_mod, "__file__", str(tmp_path / "store.py"))
    try:
        assert git_state() == (None, None)
    finally:
        git_state.cache_clear()
