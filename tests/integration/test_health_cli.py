"""The CLI carries the health check: a collapsed result says so on stderr and in run.json (issue 14 item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.testing import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("health") / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "15", "--out", str(out)]) == 0
    return out


def test_ssd_defaults_on_a_digits_run_are_reported_collapsed(trained: Path, tmp_path: Path, capsys) -> None:
    """The issue's repro: ssd with its defaults leaves retain accuracy near chance; it must not read as ok."""
    code, out, err = run_cli(capsys, "unlearn", trained, "--scenario", "class:3", "--method", "ssd", "--out", tmp_path / "ssd")
    assert code == 0
    record = json.loads((tmp_path / "ssd" / "run.json").read_text())
    assert record["status"] == "collapsed"
    assert record["diagnostics"]["val_acc_drop"] > 10
    assert any("collapsed the model" in n for n in record["notes"])
    assert "WARNING, status collapsed" in err and "--preset" in err and "--tune" in err
    assert "(status collapsed)" in out


def test_the_digits_preset_is_ok(trained: Path, tmp_path: Path, capsys) -> None:
    args = ["unlearn", trained, "--scenario", "class:3", "--method", "ssd", "--preset", "digits", "--out", tmp_path / "ok"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    record = json.loads((tmp_path / "ok" / "run.json").read_text())
    assert record["status"] == "ok" and record["diagnostics"]["val_acc_drop"] <= 10
    assert "WARNING" not in err


@pytest.mark.slow
def test_ssd_tuned_for_30_seconds_forgets_the_class_and_keeps_the_rest(tmp_path: Path, capsys) -> None:
    """The issue's done-when, as written: --tune 30s on a model from 'obliviate train --dataset digits'."""
    pytest.importorskip("optuna")
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--out", str(run)]) == 0
    args = ["unlearn", run, "--scenario", "class:3", "--method", "ssd", "--tune", "30s", "--out", tmp_path / "ssd"]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    record = json.loads((tmp_path / "ssd" / "run.json").read_text())
    assert record["status"] == "ok"
    assert record["metrics"]["forget_acc"] <= 0.05
    assert record["diagnostics"]["val_acc_drop"] <= 3.0
    assert record["timings"]["seconds"] >= 29.0  # the whole search is the cost of the tuned result
    assert record["tune"]["trials"] >= 2
