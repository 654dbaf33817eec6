"""``[pools]`` in a bench spec: pools of models per scenario, their outputs kept in the model pool, and the
per-example metrics (ε-score with its chance floor, U-LiRA, KLOM) computed from them and reported.
"""

from __future__ import annotations

import json

import pytest

from obliviate.bench import pool as pool_mod
from obliviate.bench.pools import outputs_dir
from obliviate.bench.spec import load_spec
from obliviate.bench.store import ResultStore
from obliviate.testing import run_cli

SPEC = """name = "pools"
seeds = [0]

[[dataset]]
name = "digits"
train = {{ epochs = 1 }}

[[scenario]]
spec = "random:0.1"

[[method]]
name = "finetune"
params = {{ epochs = 1 }}

[[method]]
name = "ssd"
preset = "digits"

[pools]
n = {n}
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The spec with n = 3 run once: (spec path, out dir, pool dir, trainings)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from obliviate.cli import main

    tmp = tmp_path_factory.mktemp("pools")
    spec = tmp / "spec.toml"
    spec.write_text(SPEC.format(n=3))
    before = pool_mod.trainings()
    text = io.StringIO()
    with redirect_stdout(text), redirect_stderr(text):
        code = main(["bench", str(spec), "--out", str(tmp / "out"), "--pool", str(tmp / "pool"), "--no-progress"])
    assert code == 0, text.getvalue()
    return spec, tmp / "out", tmp / "pool", pool_mod.trainings() - before


def test_the_pools_members_and_metrics_are_runs_of_the_grid(grid):
    spec_path, out, pool, trained = grid
    spec = load_spec(spec_path)
    kinds = [r.kind for r in spec.runs]
    # per-seed runs: retrain, original, 2 variants; members: 6 oracles (3 + 3 for the floor), 3 originals, 2 x 3 unlearned
    assert kinds.count("pool_member") == 15 and kinds.count("pool_metrics") == 3 and len(spec.runs) == 22
    # oracles of seeds 0..5 and originals of seeds 0..2 (seed 0's serve the per-seed runs too)
    assert trained == 9
    with ResultStore(out) as store:
        records = {r["bench"]["key"]: r for r in store.records()}
    assert set(records) == {r.key for r in spec.runs}
    assert len(list(outputs_dir(pool).glob("*.safetensors"))) == 15
    metrics = {r["method"]: r for r in records.values() if r["bench"]["kind"] == "pool_metrics"}
    assert set(metrics) == {"original", "finetune", "ssd"}
    for rec in metrics.values():
        assert rec["status"] == "ok" and rec["members"] == {"unlearned": 3, "retrained": 3, "n": 3, "floor": 3, "collapsed": 0}
        m = rec["metrics"]
        assert 0.0 <= m["epsilon_F"] <= 1.0 and 0.0 <= m["epsilon_floor"] <= 1.0
        assert 0.0 <= m["ulira_auc"] <= 1.0 and m["klom_forget_p95"] >= m["klom_forget_p50"] >= 0.0
    # the same floor for every variant of the scenario: it is the retrained pools' own
    assert len({rec["metrics"]["epsilon_floor"] for rec in metrics.values()}) == 1
    json.dumps(list(records.values()))


def test_a_second_invocation_sharing_the_pool_trains_and_unlearns_nothing(grid, capsys, tmp_path, monkeypatch):
    spec_path, _, pool, _ = grid
    from obliviate.bench import pools as pools_mod

    calls = []
    real = pools_mod.confidences
    monkeypatch.setattr(pools_mod, "confidences", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, stdout, err = run_cli(capsys, "bench", spec_path, "--out", tmp_path / "again", "--pool", pool, "--no-progress")
    assert code == 0, err
    assert "22 runs recorded, 0 already in the store, 0 models trained" in stdout
    assert calls == []  # every member's outputs came from the pool
    with ResultStore(tmp_path / "again") as store:
        members = [r for r in store.records() if r["bench"]["kind"] == "pool_member"]
    assert len(members) == 15 and all(r.get("reused") for r in members)


def test_a_larger_pool_reuses_the_smaller_ones_members(grid, capsys, tmp_path):
    _, _, pool, _ = grid
    bigger = tmp_path / "n4.toml"
    bigger.write_text(SPEC.format(n=4))
    before = pool_mod.trainings()
    code, stdout, err = run_cli(capsys, "bench", bigger, "--out", tmp_path / "o4", "--pool", pool, "--no-progress")
    assert code == 0, err
    # new: oracles of seeds 6, 7 (the floor pool is seeds 4..7 now) and the original of seed 3
    assert pool_mod.trainings() - before == 3


def test_the_reports_show_the_pool_metrics(grid, capsys, tmp_path):
    _, out, _, _ = grid
    code, _, err = run_cli(capsys, "report", out, "--out", tmp_path / "r")
    assert code == 0, err
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Per-example metrics over pools of 3 models" in md and "ε-score" in md and "F floor" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert 'data-table="pool"' in html and "U-LiRA AUC" in html
    csv = (tmp_path / "r" / "results.csv").read_text()
    assert csv.count("\n") - 1 == 4 + 3  # the per-seed runs and the pool metrics; not the 15 members


def test_relearn_time_gives_the_anamnesis_index_against_the_oracle(capsys, tmp_path):
    spec = tmp_path / "relearn.toml"
    spec.write_text(
        'name = "relearn"\nseeds = [0]\nrelearn = true\n[[dataset]]\nname = "digits"\nmodel = "mlp"\ntrain = { epochs = 3 }\n'
        '[[scenario]]\nspec = "class:3"\n[[method]]\nname = "finetune"\nparams = { epochs = 1 }\n'
        '[[method]]\nname = "gradient_ascent"\npreset = "digits"\n'
    )
    code, _, err = run_cli(capsys, "bench", spec, "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    with ResultStore(tmp_path / "o") as store:
        by = {r["method"]: r["metrics"] for r in store.records()}
    assert by["retrain"]["anamnesis_index"] == 1.0  # the oracle against itself
    for m in by.values():
        assert m["relearn_steps"] >= 1 and m["anamnesis_index"] == m["relearn_steps"] / by["retrain"]["relearn_steps"]
    # the original still knows class 3: it is at the target at once, far sooner than the oracle that never saw it
    assert by["original"]["relearn_steps"] == 1 and by["original"]["anamnesis_index"] < 0.5
    code, _, err = run_cli(capsys, "report", tmp_path / "o", "--out", tmp_path / "r")
    assert code == 0 and "| AIN |" in (tmp_path / "r" / "report.md").read_text()


def test_pool_gc_keeps_the_outputs_of_stored_members_and_removes_the_others(grid, capsys, tmp_path):
    import shutil

    _, out, pool, _ = grid
    copy = tmp_path / "pool"
    shutil.copytree(pool, copy)
    stray = outputs_dir(copy) / ("f" * 64)
    shutil.copy(next(outputs_dir(copy).glob("*.json")), stray.with_suffix(".json"))
    shutil.copy(next(outputs_dir(copy).glob("*.safetensors")), stray.with_suffix(".safetensors"))
    with ResultStore(out) as store:
        stored = store.keys()
    outputs = {p.stem for p in outputs_dir(copy).glob("*.json")}
    kept = outputs & stored  # (other tests of this module may have added members of a larger pool)
    assert len(kept) == 15 and stray.name in outputs
    code, stdout, _ = run_cli(capsys, "pool", "gc", out, "--pool", copy, "--yes")
    assert code == 0 and f"{len(outputs) - 15} of {len(outputs)} pool-member outputs removed" in stdout
    assert {p.stem for p in outputs_dir(copy).glob("*.json")} == kept and not stray.with_suffix(".safetensors").exists()


def test_a_pool_of_mostly_collapsed_members_is_collapsed_not_ok(grid, capsys, tmp_path):
    import shutil

    from obliviate.io import read_json, write_json

    spec_path, _, pool, _ = grid
    copy = tmp_path / "pool"
    shutil.copytree(pool, copy)
    spec = load_spec(spec_path)
    ssd = [r.key for r in spec.runs if r.kind == "pool_member" and r.method == "ssd"]
    for i, key in enumerate(ssd):  # as if the health check had flagged two of the three ssd members
        meta = read_json(outputs_dir(copy) / f"{key}.json")
        write_json(outputs_dir(copy) / f"{key}.json", {**meta, "status": "collapsed" if i < 2 else "ok"})
    code, _, err = run_cli(capsys, "bench", spec_path, "--out", tmp_path / "o", "--pool", copy, "--no-progress")
    assert code == 0, err
    with ResultStore(tmp_path / "o") as store:
        metrics = {r["method"]: r for r in store.records() if r["bench"]["kind"] == "pool_metrics"}
    assert metrics["ssd"]["status"] == "collapsed" and metrics["ssd"]["members"]["collapsed"] == 2
    assert "2 of 3 unlearned members collapsed" in metrics["ssd"]["notes"][0]
    assert metrics["finetune"]["status"] == "ok"
