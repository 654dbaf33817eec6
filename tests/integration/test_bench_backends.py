"""``obliviate bench --backend ray``: one Ray task per run, the same records as the local backend.

The grid holds a method that unrolls the recorded training (``sgu``), so the pool's recordings
travel to the Ray workers too.
"""

from __future__ import annotations

import sys

import pytest

from obliviate.bench.store import ResultStore
from obliviate.testing import one_error_line, run_cli

SPEC = """name = "backends"
seeds = [0, 1]

[[dataset]]
name = "digits"
train = { epochs = 2 }

[[scenario]]
spec = "class:3"

[[method]]
name = "finetune"
params = { epochs = 1 }

[[method]]
name = "ssd"
preset = "digits"

[[method]]
name = "sgu"
preset = "digits"
"""


def _records(out):
    with ResultStore(out) as store:
        return {r["bench"]["key"]: r for r in store.records()}, {row["key"]: row for row in store.rows()}


@pytest.mark.slow
def test_ray_and_local_backends_give_identical_metrics(capsys, tmp_path):
    pytest.importorskip("ray")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    code, stdout, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "local", "--no-progress")
    assert code == 0, err
    assert "10 runs recorded, 0 already in the store, 4 models trained" in stdout
    code, stdout, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "ray", "--backend", "ray", "--no-progress")
    assert code == 0, err
    assert "10 runs recorded, 0 already in the store, 4 models trained" in stdout  # the tasks' trainings are counted
    local, _ = _records(tmp_path / "local")
    ray, rows = _records(tmp_path / "ray")
    assert local.keys() == ray.keys() and len(ray) == 10
    for key, rec in local.items():
        assert rec["status"] == ray[key]["status"], rec["method"]
        assert rec["metrics"] == ray[key]["metrics"], rec["method"]  # exactly, not approximately
        assert rec.get("curves") == ray[key].get("curves"), rec["method"]
    assert {r["method"] for r in ray.values()} == {"retrain", "original", "finetune", "ssd", "sgu"}
    for row in rows.values():  # the worker's provenance: one torch thread, pinned
        assert row["provenance"]["torch_threads"] == 1 and row["provenance"]["omp_num_threads"] == "1"
    # the same command again on Ray: nothing to run, nothing trained
    code, stdout, _ = run_cli(capsys, "bench", spec, "--out", tmp_path / "ray", "--backend", "ray", "--no-progress")
    assert code == 0 and "0 runs recorded, 10 already in the store, 0 models trained" in stdout


def test_ray_backend_without_ray_is_a_clear_error(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--backend", "ray", "--no-progress")
    assert code != 0 and "pip install obliviate[ray]" in one_error_line(err)
    with ResultStore(tmp_path / "o") as store:
        assert len(store) == 0  # nothing ran, nothing was trained
    assert not any((tmp_path / "o" / "pool").glob("*.safetensors"))


def test_ray_options_without_the_ray_backend_are_refused(capsys, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--address", "auto", "--no-progress")
    assert code == 2 and "--address and --gpus-per-run go with --backend ray" in one_error_line(err)


@pytest.mark.slow
def test_ctrl_c_on_ray_keeps_finished_runs_and_the_same_command_resumes(capsys, tmp_path, monkeypatch):
    real_ray = pytest.importorskip("ray")
    from obliviate.bench import grid as grid_mod

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("seeds = [0, 1]", "seeds = [0]"))

    class Interrupted:  # the real Ray, except that the third wait is a Ctrl-C
        waits = 0

        def __getattr__(self, name):
            return getattr(real_ray, name)

        def wait(self, *args, **kw):
            Interrupted.waits += 1
            if Interrupted.waits == 3:
                raise KeyboardInterrupt
            return real_ray.wait(*args, **kw)

    monkeypatch.setattr(grid_mod, "_ray", lambda: Interrupted())
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--backend", "ray", "--no-progress")
    assert code == 130 and "2 of 5 runs" in err.strip().splitlines()[-1]
    assert not real_ray.is_initialized()  # the instance the command started is shut down
    monkeypatch.undo()
    code, stdout, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--backend", "ray", "--no-progress")
    assert code == 0 and "3 runs recorded, 2 already in the store, 0 models trained" in stdout, err
