"""The ``obliviate`` command line end to end: train -> unlearn -> evaluate, methods, demo.

Commands run in-process through :func:`obliviate.cli.main` (fast, output through capsys); two
smoke tests start real processes (the console script and ``python -m obliviate``). One trained
run directory (3 epochs on digits) and the runs unlearned from it are made once per module.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.cli import main
from obliviate.data import Subset, validation_split
from obliviate.io import load_weights
from obliviate.testing import one_error_line, run_cli
from obliviate.training import accuracy

TRAIN_EPOCHS = 3
RUN_FILES = ("model.safetensors", "run.json")
RECORD_KEYS = {"scenario", "method", "params", "seed", "status", "error", "metrics", "timings", "versions"}


# --------------------------------------------------------------------------- helpers


PRINTED: dict[Path, str] = {}  # what each fixture's command printed, by run directory


def run_main(*args: object, out: Path) -> Path:
    """Run a command for a module fixture (no capsys there); keep its stdout; fail loudly unless it succeeds."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main([str(a) for a in args] + ["--out", str(out)])
    assert code == 0, f"obliviate {' '.join(map(str, args))} exited {code}"
    PRINTED[out] = buffer.getvalue()
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def read_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def check_record(record: dict) -> None:
    """The run-record schema shared by run.json and results.json (DESIGN.md §2)."""
    assert RECORD_KEYS <= set(record), sorted(RECORD_KEYS - set(record))
    assert record["status"] == "ok"
    assert record["error"] is None
    assert isinstance(record["params"], dict)
    assert isinstance(record["metrics"], dict)
    assert set(record["timings"]) >= {"seconds", "oracle_seconds", "speedup"}
    assert record["versions"]["obliviate"] == ob.__version__
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["python"] == platform.python_version()


def metric_rows(out: str) -> dict[str, str]:
    """``metric -> printed value`` from a metrics table printed by train/unlearn/evaluate."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^\s*[│|]\s*([a-z_]+)\s*[│|]\s*(.+?)\s*[│|]\s*$", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def digits() -> ob.DatasetSplits:
    return ob.load_dataset("digits")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def train_dir(workdir: Path) -> Path:
    return run_main("train", "--dataset", "digits", "--model", "cnn", "--epochs", TRAIN_EPOCHS, out=workdir / "train")


@pytest.fixture(scope="module")
def ssd_dir(workdir: Path, train_dir: Path) -> Path:
    """SSD from its digits preset, with one hyperparameter overridden by --set."""
    return run_main(
        "unlearn",
        train_dir,
        "--scenario",
        "class:3",
        "--method",
        "ssd",
        "--preset",
        "digits",
        "--set",
        "alpha=5",
        out=workdir / "ssd",
    )


@pytest.fixture(scope="module")
def oracle_dir(workdir: Path, train_dir: Path) -> Path:
    return run_main("unlearn", train_dir, "--scenario", "class:3", "--method", "retrain", out=workdir / "oracle")


# --------------------------------------------------------------------------- train
def test_train_writes_a_run_directory(train_dir: Path, digits: ob.DatasetSplits) -> None:
    assert sorted(p.name for p in train_dir.iterdir()) == sorted(RUN_FILES)
    record = read_record(train_dir)
    check_record(record)
    assert record["scenario"] is None and record["method"] is None
    assert record["seed"] == 0
    assert record["params"]["epochs"] == TRAIN_EPOCHS
    assert record["timings"]["seconds"] > 0
    assert record["timings"]["oracle_seconds"] is None and record["timings"]["speedup"] is None
    metrics = record["metrics"]
    for name in ("train_acc", "val_acc", "test_acc"):
        assert 0.0 <= metrics[name] <= 1.0, (name, metrics[name])
    assert metrics["test_acc"] > 0.5  # 3 epochs on digits learn something
    printed = PRINTED[train_dir]
    assert "trained cnn on digits" in printed
    assert {"train_acc", "val_acc", "test_acc"} <= set(metric_rows(printed))

    origin = record["origin"]
    assert origin["dataset"]["name"] == "digits"
    assert origin["model"] == {"name": "cnn", "options": {}, "seed": 0}
    assert origin["val_fraction"] == 0.1
    assert origin["val_seed"] == 0
    assert origin["recipe"]["epochs"] == TRAIN_EPOCHS
    assert origin["recipe"] == record["params"]

    # The checkpoint is the model the metrics were measured on, trained without the val split.
    model = load_weights(ob.build_model("cnn", digits, seed=0), train_dir / "model.safetensors").eval()
    val = validation_split(digits, fraction=0.1, seed=0)
    pool = np.setdiff1d(np.arange(len(digits.train)), val)
    assert accuracy(model, digits.test) == pytest.approx(metrics["test_acc"], abs=1e-6)
    assert accuracy(model, Subset(digits.train, val)) == pytest.approx(metrics["val_acc"], abs=1e-6)
    assert accuracy(model, Subset(digits.train, pool)) == pytest.approx(metrics["train_acc"], abs=1e-6)


# --------------------------------------------------------------------------- unlearn
def test_unlearn_ssd_writes_model_scenario_and_record(ssd_dir: Path, train_dir: Path, digits: ob.DatasetSplits) -> None:
    assert {"model.safetensors", "scenario.json", "run.json"} <= {p.name for p in ssd_dir.iterdir()}
    record = read_record(ssd_dir)
    check_record(record)
    assert record["method"] == "ssd"
    assert set(record["params"]) == {"alpha", "dampening", "batch_size", "per_sample", "cache_importance"}
    assert record["params"]["alpha"] == 5.0 and isinstance(record["params"]["alpha"], float)  # --set alpha=5
    assert record["params"]["batch_size"] == 8  # the rest comes from the digits preset
    assert record["params"]["dampening"] == 1.0 and record["params"]["per_sample"] is False
    assert record["params"]["cache_importance"] is True
    assert record["preset"] == "digits"
    assert 0.0 <= record["metrics"]["forget_acc"] <= 1.0
    assert record["origin"] == read_record(train_dir)["origin"]

    # scenario.json loads, matches the record's hash, and was built over the trained set.
    sc = ob.Scenario.load(ssd_dir / "scenario.json", digits)
    assert sc.hash == record["scenario"]["hash"]
    assert record["scenario"]["name"] == sc.name == "class:3"
    assert record["scenario"]["forget_size"] == len(sc.forget_idx)
    expected = ob.Scenario.classwise(digits, forget_class=3, seed=0, val_fraction=0.1, val_seed=0)
    assert sc.hash == expected.hash
    assert np.all(digits.train_targets[sc.forget_idx] == 3)

    # The saved model is the unlearned one: it differs from the trained checkpoint, and its
    # forget accuracy is the recorded one.
    trained = load_weights(ob.build_model("cnn", digits), train_dir / "model.safetensors")
    unlearned = load_weights(ob.build_model("cnn", digits), ssd_dir / "model.safetensors").eval()
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), unlearned.state_dict().values(), strict=True))
    assert accuracy(unlearned, sc.forget) == pytest.approx(record["metrics"]["forget_acc"], abs=1e-6)

    printed = PRINTED[ssd_dir]
    assert "ssd on class:3" in printed
    rows = metric_rows(printed)
    assert rows["forget_acc"] == f"{100 * record['metrics']['forget_acc']:.2f} %"
    assert "avg_gap" not in rows  # no reference yet


def test_unlearn_retrain_without_set_uses_the_training_recipe(oracle_dir: Path, train_dir: Path) -> None:
    record = read_record(oracle_dir)
    check_record(record)
    assert record["method"] == "retrain"
    recipe = read_record(train_dir)["origin"]["recipe"]
    assert record["params"]["epochs"] == TRAIN_EPOCHS
    assert record["params"] == recipe  # every field of the original recipe, not retrain's defaults


# --------------------------------------------------------------------------- evaluate
def test_evaluate_against_reference_records_the_evaluation_beside_the_metrics(
    workdir: Path, ssd_dir: Path, oracle_dir: Path, digits: ob.DatasetSplits, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = workdir / "ssd_evaluated"
    shutil.copytree(ssd_dir, run_dir)  # leave the shared ssd run as unlearn wrote it
    before = read_record(run_dir)
    assert before["timings"]["oracle_seconds"] is None and "avg_gap" not in before["metrics"]

    code, out, err = run_cli(capsys, "evaluate", run_dir, "--reference", oracle_dir)
    assert code == 0, err
    rows = metric_rows(out)
    assert {"avg_gap", "forget_acc", "retain_acc", "weight_distance"} <= set(rows), sorted(rows)

    after = read_record(run_dir)
    check_record(after)
    # issue 13 item 5: the run's own metrics and timings are never overwritten; the evaluation is appended
    assert after["metrics"] == before["metrics"] and after["timings"] == before["timings"]
    [entry] = after["evaluations"]
    assert entry["reference"]["path"] == str(oracle_dir.resolve())
    metrics = entry["metrics"]
    assert 0.0 <= metrics["avg_gap"] <= 1.0
    assert metrics["weight_distance"] > 0
    assert metrics["forget_acc"] == pytest.approx(before["metrics"]["forget_acc"])
    oracle_seconds = read_record(oracle_dir)["timings"]["seconds"]
    assert entry["timings"]["oracle_seconds"] == pytest.approx(oracle_seconds)
    assert entry["timings"]["seconds"] == pytest.approx(before["timings"]["seconds"])
    assert entry["timings"]["speedup"] == pytest.approx(oracle_seconds / before["timings"]["seconds"])
    assert rows["avg_gap"] == f"{100 * metrics['avg_gap']:.2f} %"  # printed as a percentage

    # The recorded gap is what the API computes for the two saved models.
    sc = ob.Scenario.load(run_dir / "scenario.json", digits)
    model = load_weights(ob.build_model("cnn", digits), run_dir / "model.safetensors").eval()
    oracle = load_weights(ob.build_model("cnn", digits), oracle_dir / "model.safetensors").eval()
    ev = ob.evaluate(model, sc, reference=oracle, metrics=["avg_gap"])
    assert ev.metrics["avg_gap"] == pytest.approx(metrics["avg_gap"], abs=1e-9)


def test_evaluate_trained_run_on_a_given_scenario(train_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(train_dir)
    code, out, err = run_cli(capsys, "evaluate", train_dir, "--scenario", "class:3")
    assert code == 0, err
    rows = metric_rows(out)
    assert {"forget_acc", "retain_acc", "test_acc", "test_forget_acc"} <= set(rows), sorted(rows)
    assert "avg_gap" not in rows  # no reference given
    assert "class:3" in out
    assert snapshot(train_dir) == before  # a run without scenario.json is not rewritten


def test_evaluate_trained_run_without_scenario_is_bad_input(train_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(train_dir)
    code, out, err = run_cli(capsys, "evaluate", train_dir)
    assert code == 2
    line = one_error_line(err)
    assert "--scenario" in line and "scenario.json" in line
    assert snapshot(train_dir) == before


# --------------------------------------------------------------------------- methods
def test_methods_lists_every_registered_method(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "methods")
    assert code == 0, err
    names = ob.METHODS.names()
    assert len(names) >= 6
    for name in names:
        assert re.search(rf"^\s*[│|]\s*{re.escape(name)}\s*[│|]", out, re.M), f"{name!r} missing from:\n{out}"


def test_methods_show_prints_doc_hyperparameters_and_presets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "methods", "show", "ssd")
    assert code == 0, err
    assert "Selective Synaptic Dampening" in out
    hyper = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 5}
    for name in ("alpha", "dampening", "batch_size", "per_sample"):
        assert name in hyper, f"{name!r} missing from the hyperparameter table:\n{out}"
    assert "10.0" in hyper["alpha"] and "(0, inf)" in hyper["alpha"]
    assert "Log(0.1, 100)" in hyper["alpha"] and "Log(" not in hyper["per_sample"]  # the range --tune searches
    assert "preset 'digits'" in out and "'batch_size': 8" in out


@pytest.mark.parametrize(("name", "hint"), [("nonexistent", "Valid methods:"), ("ssdd", "Did you mean 'ssd'")])
def test_methods_show_unknown_name_exits_2_with_a_suggestion(name: str, hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "methods", "show", name)
    assert code == 2
    line = one_error_line(err)
    assert repr(name) in line and hint in line
    for registered in ob.METHODS.names():
        assert registered in line
    assert out == ""


def test_methods_show_without_a_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "methods", "show")
    assert code == 2
    assert "method name" in one_error_line(err)


@pytest.mark.parametrize("command", [[], ["demo"], ["methods"], ["train"], ["unlearn"], ["evaluate"]])
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *command, "--help")
    assert code == 0, err
    assert out.startswith("usage: obliviate")
    expected = {"train": "--dataset", "unlearn": "--scenario", "evaluate": "--reference", "demo": "--quick", "methods": "show"}
    assert expected.get(command[0] if command else "", "COMMAND") in out


# --------------------------------------------------------------------------- demo
def test_demo_quick_writes_results_csv_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--quick", "--methods", "ssd,finetune", "--scenarios", "class:3", "--out", out_dir)
    assert code == 0, err

    doc = json.loads((out_dir / "results.json").read_text())
    assert doc["schema"] == "obliviate.results/1"
    runs = doc["runs"]
    assert [r["method"] for r in runs] == ["retrain", "original", "ssd", "finetune"]
    for r in runs:
        check_record(r)
        assert r["scenario"]["name"] == "class:3"
        assert r["scenario"]["dataset"] == "digits"
        assert 0.0 <= r["metrics"]["forget_acc"] <= 1.0
    hashes = {r["scenario"]["hash"] for r in runs}
    assert len(hashes) == 1  # every method ran on the same scenario
    oracle = runs[0]
    assert oracle["params"]["epochs"] == 8  # --quick: the original recipe with 8 epochs
    assert oracle["metrics"]["avg_gap"] == pytest.approx(0.0)
    assert runs[2]["params"]["batch_size"] == 8  # ssd ran with its digits preset
    for r in runs[2:]:
        assert r["timings"]["oracle_seconds"] == pytest.approx(oracle["timings"]["seconds"])
        assert r["timings"]["speedup"] == pytest.approx(r["timings"]["oracle_seconds"] / r["timings"]["seconds"])
        assert 0.0 <= r["metrics"]["avg_gap"] <= 1.0

    rows = list(csv.reader(io.StringIO((out_dir / "results.csv").read_text())))
    assert rows[0][:4] == ["scenario", "method", "seed", "status"]
    assert len(rows) == 1 + len(runs)
    assert [row[1] for row in rows[1:]] == [r["method"] for r in runs]
    assert all(row[0] == "class:3" and row[3] == "ok" for row in rows[1:])

    report = (out_dir / "report.md").read_text()
    # the recorded command reproduces the run: every option given, --methods included (issue 13 item 7)
    assert f"Command: `obliviate demo --methods ssd,finetune --scenarios class:3 --quick --out {out_dir}`" in report
    table = [line for line in report.splitlines() if line.startswith("|")]
    assert table[0].startswith("| method |") and re.fullmatch(r"\|---\|(---:\|)+", table[1]), table[:2]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["retrain", "original", "ssd", "finetune"]

    for method in ("retrain", "original", "ssd", "finetune"):
        assert re.search(rf"^\s*[│|]\s*{method}\s*[│|]", out, re.M), f"{method!r} missing from the table:\n{out}"
    assert "class:3" in out


# --------------------------------------------------------------------------- existing run directories
def test_train_into_an_existing_run_directory_is_refused(train_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(train_dir)
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1", "--out", train_dir)
    assert code == 2
    line = one_error_line(err)
    assert str(train_dir) in line and "already" in line
    assert snapshot(train_dir) == before


def test_unlearn_into_an_existing_run_directory_is_refused(
    train_dir: Path, ssd_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before_ssd, before_train = snapshot(ssd_dir), snapshot(train_dir)
    code, _, err = run_cli(capsys, "unlearn", train_dir, "--scenario", "random:0.1", "--method", "finetune", "--out", ssd_dir)
    assert code == 2
    assert "already" in one_error_line(err)
    assert snapshot(ssd_dir) == before_ssd
    code, _, err = run_cli(capsys, "unlearn", train_dir, "--scenario", "class:3", "--method", "ssd", "--out", train_dir)
    assert code == 2
    assert "already" in one_error_line(err)
    assert snapshot(train_dir) == before_train


# --------------------------------------------------------------------------- real processes
def _console_script() -> str:
    beside = Path(sys.executable).parent / "obliviate"
    found = str(beside) if beside.exists() else shutil.which("obliviate")
    assert found, "the obliviate console script is not installed"
    return found


def test_console_script_help() -> None:
    proc = subprocess.run([_console_script(), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: obliviate")
    for command in ("demo", "methods", "train", "unlearn", "evaluate"):
        assert command in proc.stdout


def test_python_dash_m_methods() -> None:
    proc = subprocess.run([sys.executable, "-m", "obliviate", "methods"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ob.METHODS.names():
        assert re.search(rf"^\s*[│|]\s*{re.escape(name)}\s*[│|]", proc.stdout, re.M), name


def test_unlearn_refuses_an_ensemble_method_and_names_the_requests_command(train_dir: Path, workdir: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "unlearn", train_dir, "--scenario", "class:3", "--method", "sisa", "--out", workdir / "sisa")
    assert code == 2 and "obliviate requests apply" in err and not (workdir / "sisa").exists()


def test_requests_apply_and_status_on_a_run(train_dir: Path, workdir: Path, capsys) -> None:
    rows = ob.runs.RunDir(train_dir)
    seen = ob.requests._rows_of_run(train_dir, rows.training_set, rows.dataset()).indices
    ids = workdir / "ids.txt"
    ids.write_text(f"{seen[0]} {seen[5]}\n{seen[9]}\n")
    out = workdir / "stream"
    args = ("--ids-file", ids, "--method", "finetune", "--preset", "digits", "--set", "epochs=1", "--no-oracle", "--out", out)
    code, stdout, err = run_cli(capsys, "requests", "apply", train_dir, *args)
    assert code == 0, err
    assert "[1/2] 2 ids" in stdout and "2 of 2 requests served" in stdout
    code, stdout, _ = run_cli(capsys, "requests", "status", out, "--json")
    doc = json.loads(stdout)
    assert code == 0 and doc["served"] == 2 and doc["pending"] == 0 and doc["requests"][1]["ids"] == [int(seen[9])]
    ids.write_text(f"{seen[0]}\n")  # another stream over the same run is fine, but not into the same directory
    code, _, err = run_cli(capsys, "requests", "apply", train_dir, "--ids-file", ids, "--method", "finetune", "--out", out)
    assert code == 2 and "holds another stream" in err
