"""``obliviate bench`` and ``obliviate pool``: the issue's example spec end to end (1 training epoch),
pool reuse counted in trainings, dry runs, Ctrl-C, and kill -9 then resume with a real subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.bench import grid as grid_mod
from obliviate.bench import pool as pool_mod
from obliviate.bench.spec import load_spec
from obliviate.bench.store import ResultStore
from obliviate.testing import one_error_line, run_cli

EXAMPLE = Path(__file__).parents[2] / "benchmarks" / "specs" / "digits-small.toml"


def _spec(tmp: Path, epochs: int = 1, name: str = "spec.toml", extra: str = "") -> Path:
    text = EXAMPLE.read_text().replace("epochs = 30", f"epochs = {epochs}") + extra
    assert f"epochs = {epochs}" in text
    path = tmp / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The example spec (1 training epoch) run once: (spec path, out dir, trainings, exit status, output)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from obliviate.cli import main

    tmp = tmp_path_factory.mktemp("bench")
    spec = _spec(tmp)
    before = pool_mod.trainings()
    text = io.StringIO()  # a module-scoped fixture has no capsys
    with redirect_stdout(text), redirect_stderr(text):
        code = main(["bench", str(spec), "--out", str(tmp / "out"), "--no-progress"])
    return spec, tmp / "out", pool_mod.trainings() - before, code, text.getvalue()


def test_example_grid_records_every_run_once_with_provenance(first):
    spec_path, out, trained, code, text = first
    assert code == 0, text
    assert trained == 6  # 2 originals (one per seed, shared by class:3 and random:0.1) + 4 oracles
    spec = load_spec(spec_path)
    with ResultStore(out) as store:
        rows = list(store.rows())
        assert store.journal_mode == "wal"
    assert sorted(r["key"] for r in rows) == sorted(r.key for r in spec.runs) and len(rows) == 20
    unlearning = [r for r in rows if r["kind"] == "unlearn"]
    assert len(unlearning) == 12
    assert {(r["seed"], r["scenario"], r["label"]) for r in unlearning} == {
        (s, sc, lab)
        for s in (0, 1)
        for sc in ("class:3", "random:0.1")
        for lab in ("ssd", "finetune lr=0.01", "finetune lr=0.05")
    }
    for r in rows:
        rec = r["record"]
        assert rec["status"] in ("ok", "collapsed", "unchecked"), rec.get("error")
        assert rec["metrics"]["forget_acc"] is not None and rec["bench"]["threads"] == 1
        assert r["provenance"]["torch_threads"] == 1 and r["provenance"]["omp_num_threads"] == "1"
        assert {"commit", "dirty"} == set(r["provenance"]["git"]) and r["provenance"]["host"]
    ft = next(r["record"] for r in unlearning if r["label"] == "finetune lr=0.05")
    assert ft["params"]["lr"] == 0.05 and ft["label"] == "finetune lr=0.05"
    oracle = next(r["record"] for r in rows if r["kind"] == "retrain" and r["seed"] == 0 and r["scenario"] == "class:3")
    assert oracle["metrics"]["avg_gap"] == 0.0  # the oracle against itself
    assert "20 runs recorded, 0 already in the store, 6 models trained" in text


def test_second_invocation_trains_nothing(first, capsys):
    spec_path, out, *_ = first
    before = pool_mod.trainings()
    code, stdout, _ = run_cli(capsys, "bench", spec_path, "--out", out, "--no-progress")
    assert code == 0 and pool_mod.trainings() == before
    assert "0 runs recorded, 20 already in the store, 0 models trained" in stdout
    with ResultStore(out) as store:
        assert len(store) == 20


def test_a_shared_pool_serves_another_spec_and_output_directory(first, capsys, tmp_path):
    _, out, *_ = first
    other = tmp_path / "other.toml"  # another spec over the same data, recipe and seed: the same originals and oracles
    other.write_text(
        'name = "other"\nseeds = [0]\n[[dataset]]\nname = "digits"\nmodel = "cnn"\ntrain = { epochs = 1, lr = 0.05 }\n'
        '[[scenario]]\nspec = "random:0.1"\n[[method]]\nname = "ssd"\npreset = "digits"\n'
    )
    before = pool_mod.trainings()
    code, stdout, _ = run_cli(capsys, "bench", other, "--out", tmp_path / "o", "--pool", out / "pool", "--no-progress")
    assert code == 0 and pool_mod.trainings() == before, stdout
    assert "3 runs recorded, 0 already in the store, 0 models trained" in stdout
    code, stdout, _ = run_cli(capsys, "bench", other, "--out", tmp_path / "o2", "--no-progress")  # its own pool: trains
    assert code == 0 and pool_mod.trainings() == before + 2 and "2 models trained" in stdout


def test_dry_run_trains_nothing_and_says_what_is_held(first, capsys, tmp_path):
    spec_path, out, *_ = first
    before = pool_mod.trainings()
    code, stdout, _ = run_cli(capsys, "bench", spec_path, "--out", tmp_path / "fresh", "--dry-run")
    assert code == 0 and pool_mod.trainings() == before
    assert not (tmp_path / "fresh").exists()  # nothing created
    assert "20 runs (12 unlearning), 20 to run" in stdout and "0 of 6 models held" in stdout
    lines = [ln for ln in stdout.splitlines() if re.match(r"[0-9a-f]{12}  ", ln)]
    assert len(lines) == 20 and all(ln.rstrip().endswith("train, train") for ln in lines)
    code, stdout, _ = run_cli(capsys, "bench", spec_path, "--out", out, "--dry-run")
    assert code == 0 and "20 runs (12 unlearning), 0 to run" in stdout and "6 of 6 models held" in stdout
    assert pool_mod.trainings() == before


def test_pool_ls_and_gc(first, capsys, tmp_path):
    spec_path, out, *_ = first
    code, stdout, _ = run_cli(capsys, "pool", "ls", out)
    assert code == 0 and stdout.count(" original ") == 2 and stdout.count(" oracle ") == 4 and "6 models" in stdout
    # an entry no record uses: the pool of the second seed only, in a copy of the pool
    import shutil

    pool = tmp_path / "pool"
    shutil.copytree(out / "pool", pool)
    with ResultStore(out) as store:
        used = store.pool_keys()
    assert len(used) == 6
    extra = next(iter(used))
    for suffix in (".json", ".safetensors"):
        shutil.copy(pool / f"{extra}{suffix}", pool / f"{'0' * 64}{suffix}")
    stale = pool / f".{extra}.abc123.safetensors"  # a write that a kill -9 cut short, two hours ago
    stale.write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = pool / f".{extra}.def456.json"  # maybe another process writing right now: kept
    fresh.write_text("{")
    code, stdout, _ = run_cli(capsys, "pool", "gc", out, "--pool", pool)
    assert code == 0 and "would remove 000000000000" in stdout and (pool / f"{'0' * 64}.json").exists()
    assert f"would remove leftover file {stale.name}" in stdout and stale.exists()
    code, stdout, _ = run_cli(capsys, "pool", "gc", out, "--pool", pool, "--yes")
    assert code == 0 and "1 of 7 models removed" in stdout and not stale.exists()
    fresh.unlink()
    assert sorted(p.name for p in pool.iterdir()) == sorted(f"{k}{s}" for k in used for s in (".json", ".safetensors"))
    code, _, err = run_cli(capsys, "pool", "ls", "--pool", tmp_path / "nothing")
    assert code == 2 and "No model pool" in one_error_line(err)


def test_bad_specs_exit_2_with_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('name = "ssd"', 'name = "sdd"'))
    code, _, err = run_cli(capsys, "bench", bad, "--out", tmp_path / "o")
    line = one_error_line(err)
    assert code == 2 and "bad.toml" in line and "'method[0].name'" in line
    assert not (tmp_path / "o").exists()


def test_ctrl_c_keeps_finished_runs_and_the_same_command_resumes(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "small.toml"
    spec.write_text(
        'name = "small"\nseeds = [0]\n[[dataset]]\nname = "digits"\ntrain = { epochs = 1 }\n'
        '[[scenario]]\nspec = "class:3"\n[[method]]\nname = "finetune"\nsweep = { lr = [0.01, 0.02, 0.03] }\n'
        "params = { epochs = 1 }\n"
    )
    real = grid_mod._one_run
    calls = []

    def interrupted(*args, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(grid_mod, "_one_run", interrupted)
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 130
    line = err.strip().splitlines()[-1]
    assert line.startswith("obliviate: interrupted; 3 of 5 runs") and "run the same command again to resume" in line
    monkeypatch.setattr(grid_mod, "_one_run", real)
    code, stdout, _ = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 0 and "2 runs recorded, 3 already in the store, 0 models trained" in stdout
    with ResultStore(tmp_path / "o") as store:
        assert sorted(store.keys()) == sorted(r.key for r in load_spec(spec).runs)


@pytest.mark.slow
def test_kill_9_mid_grid_then_the_same_command_records_every_run_once(tmp_path):
    spec = _spec(tmp_path, epochs=3)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), *sys.path]),
    }
    cmd = [sys.executable, "-m", "obliviate", "bench", str(spec), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = out / "results.sqlite"
    deadline = time.monotonic() + 240
    done = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                con = sqlite3.connect(db, timeout=30)
                try:
                    done = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
                except sqlite3.OperationalError:
                    done = 0
                finally:
                    con.close()
                if done >= 7:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, "the grid ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    with ResultStore(out) as store:
        held = len(store)
    assert 7 <= held < 20
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{20 - held} runs recorded, {held} already in the store" in again.stdout
    con = sqlite3.connect(db)
    keys = [k for (k,) in con.execute("SELECT key FROM runs")]
    con.close()
    assert sorted(keys) == sorted(r.key for r in load_spec(spec).runs)  # every run exactly once


SMALL = 'name = "small"\nseeds = [0]\n[[dataset]]\nname = "digits"\ntrain = { epochs = 1 }\n[[scenario]]\nspec = "class:3"\n'


def test_threads_are_pinned_recorded_and_not_mixed_within_a_grid(capsys, tmp_path, monkeypatch):
    import torch

    spec = tmp_path / "t.toml"
    spec.write_text(SMALL + '[[method]]\nname = "finetune"\nsweep = { lr = [0.01, 0.02] }\nparams = { epochs = 1 }\n')
    seen = []
    real = grid_mod._one_run

    def spy(*args, **kw):
        seen.append((torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(grid_mod, "_one_run", spy)
    torch.set_num_threads(2)
    code, _, _ = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")  # the default: 1 thread
    assert code == 130 and seen == [(1, "1"), (1, "1")]
    assert torch.get_num_threads() == 2  # the caller's setting comes back
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--threads", "2", "--no-progress")
    assert code == 2 and "made with 1 torch thread(s)" in one_error_line(err) and "--threads 1" in err
    assert len(seen) == 2  # refused before any run
    monkeypatch.setattr(grid_mod, "_one_run", real)
    code, stdout, _ = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--threads", "1", "--no-progress")
    assert code == 0 and "3 runs recorded, 1 already in the store" in stdout
    with ResultStore(tmp_path / "o") as store:
        assert store.threads() == {1} and {r["bench"]["threads"] for r in store.records()} == {1}


def test_a_tuned_variant_records_the_search(capsys, tmp_path):
    spec = tmp_path / "tune.toml"
    spec.write_text(SMALL + '[[method]]\nname = "finetune"\nparams = { epochs = 1 }\ntune = { budget = "2trials" }\n')
    code, stdout, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    with ResultStore(tmp_path / "o") as store:
        (rec,) = store.records(kind="unlearn")
    assert rec["label"] == "finetune (tuned)" and rec["tune"]["objective"] == "proxy" and rec["tune"]["trials"] == 2
    assert rec["params"]["epochs"] == 1 and rec["tune"]["best_params"]["epochs"] == 1
    assert rec["params"]["lr"] == rec["tune"]["best_params"]["lr"]  # the record is the best trial's run
    assert rec["metrics"]["forget_acc"] is not None


def test_progress_lines_carry_an_eta(capsys):
    bar = grid_mod.GridProgress(4, None, "g")  # stderr is no terminal under pytest: one line per finished run
    for i in range(4):
        bar.finish(f"run {i}")
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("[1/4] run 0 (ETA ") and lines[-1] == "[4/4] run 3 (ETA 0 s)"
    quiet = grid_mod.GridProgress(2, False, "g")
    quiet.finish("x")
    assert capsys.readouterr().err == ""


def test_a_second_bench_into_the_same_directory_is_refused(capsys, tmp_path):
    from obliviate.bench.pool import exclusive

    spec = _spec(tmp_path)
    (tmp_path / "o").mkdir()
    with exclusive(tmp_path / "o" / grid_mod.LOCK_FILE):  # a grid running into o
        code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 2 and "Another 'obliviate bench' is writing to" in one_error_line(err)
    with ResultStore(tmp_path / "o") as store:
        assert len(store) == 0


def test_report_writes_one_table_per_scenario_with_every_variant(first, capsys, tmp_path):
    _, out, _, code, text = first
    assert code == 0, text
    rc, stdout, err = run_cli(capsys, "report", out, "--out", tmp_path / "rep")
    assert rc == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    for heading in ("## digits · class:3 (2 seeds)", "## digits · random:0.1 (2 seeds)", "## Provenance"):
        assert heading in md
    for variant in ("retrain", "original", "ssd", "finetune lr=0.01", "finetune lr=0.05"):
        assert md.count(f"| {variant}") >= 2, variant  # a row in both scenarios' tables
    assert "digits · class:3" in stdout and "digits · random:0.1" in stdout and "ssd" in stdout  # the terminal tables
    assert "avg gap" in md and "- threads: 1" in md
    with ResultStore(out) as store:
        n = len(store.records())
    csv = (tmp_path / "rep" / "results.csv").read_text().strip().splitlines()
    assert len(csv) == n + 1  # a header and one line per stored run
    # an earlier report is not overwritten without --force
    rc, _, err = run_cli(capsys, "report", out, "--out", tmp_path / "rep")
    assert rc == 2 and "already holds report.md" in one_error_line(err)
    assert run_cli(capsys, "report", out, "--out", tmp_path / "rep", "--force")[0] == 0


def test_report_of_a_directory_without_a_store_exits_2(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "report", tmp_path, "--out", tmp_path / "rep")
    assert rc == 2 and "holds no results.sqlite" in one_error_line(err)
    assert not (tmp_path / "results.sqlite").exists() and not (tmp_path / "rep").exists()
