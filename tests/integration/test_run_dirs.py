"""Run directories under hostile-but-realistic use (issue 13, items 5, 6, 7 and 9).

- item 5: ``evaluate --reference`` refuses the run itself and the model it came from, records the
  reference (path and model digest) with the evaluation, and never overwrites the run's metrics;
- item 6: a run directory is claimed atomically before the compute, so two commands writing into
  the same ``--out`` cannot both succeed, and a crashed run's claim is reported;
- item 7: files of another run (``scenario.json``, a demo report) are never overwritten silently;
- item 9: ``run.json`` is checked against the run-record schema on load (one line, exit 2), and a
  scenario from another dataset is bad input, not a RuntimeError.

Commands run in-process through :func:`obliviate.cli.main`; one real race starts two processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import obliviate as ob
from obliviate.cli import main
from obliviate.errors import InvalidConfigError
from obliviate.testing import one_error_line, run_cli

# --------------------------------------------------------------------------- helpers


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (recursively, hidden ones included) and its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def quiet_main(*args: object) -> int:
    """Run a command for a fixture, its table output swallowed."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return main([str(a) for a in args])


UNLEARN = ("--scenario", "class:3", "--method", "finetune", "--set", "epochs=1")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained run (1 epoch), a finetune run unlearned from it and the retrained oracle."""
    root = tmp_path_factory.mktemp("run_dirs")
    out = {"train": root / "train", "ft": root / "ft", "oracle": root / "oracle"}
    assert quiet_main("train", "--dataset", "digits", "--epochs", 1, "--out", out["train"]) == 0
    assert quiet_main("unlearn", out["train"], *UNLEARN, "--out", out["ft"]) == 0
    assert quiet_main("unlearn", out["train"], "--scenario", "class:3", "--method", "retrain", "--out", out["oracle"]) == 0
    return out


@pytest.fixture
def ft_copy(runs: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of the finetune run (tests that may write into it leave the shared one alone)."""
    return Path(shutil.copytree(runs["ft"], tmp_path / "ft"))


# --------------------------------------------------------------------------- item 5: evaluate --reference


def test_evaluate_refuses_the_run_itself_as_reference(ft_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(ft_copy)
    code, out, err = run_cli(capsys, "evaluate", ft_copy, "--reference", ft_copy)
    assert code == 2
    line = one_error_line(err)
    assert "--reference" in line and "itself" in line
    assert snapshot(ft_copy) == before


def test_evaluate_refuses_a_copy_of_the_run_as_reference(
    ft_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = Path(shutil.copytree(ft_copy, tmp_path / "twin"))
    before = snapshot(ft_copy)
    code, _, err = run_cli(capsys, "evaluate", ft_copy, "--reference", twin)
    assert code == 2
    line = one_error_line(err)
    assert "same model" in line and sha256(ft_copy / "model.safetensors")[:12] in line
    assert snapshot(ft_copy) == before


def test_evaluate_refuses_the_original_model_as_reference(
    ft_copy: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(ft_copy)
    code, _, err = run_cli(capsys, "evaluate", ft_copy, "--reference", runs["train"])
    assert code == 2
    line = one_error_line(err)
    assert "original" in line
    assert snapshot(ft_copy) == before
    # the parent's digest is recorded, so a copy of the original elsewhere is refused too
    assert read_record(ft_copy)["parent_model_sha256"] == sha256(runs["train"] / "model.safetensors")


def test_evaluate_records_the_reference_beside_the_metrics(
    ft_copy: Path, runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = read_record(ft_copy)
    code, _, err = run_cli(capsys, "evaluate", ft_copy, "--reference", runs["oracle"])
    assert code == 0, err
    after = read_record(ft_copy)
    # the run's own metrics and timings stay exactly as unlearn wrote them
    assert after["metrics"] == before["metrics"] and after["timings"] == before["timings"]
    [entry] = after["evaluations"]
    ref = entry["reference"]
    assert ref["path"] == str(runs["oracle"].resolve())
    assert ref["model_sha256"] == sha256(runs["oracle"] / "model.safetensors")
    assert ref["method"] == "retrain"
    assert entry["scenario_hash"] == before["scenario"]["hash"]
    assert 0.0 <= entry["metrics"]["avg_gap"] <= 1.0 and entry["metrics"]["weight_distance"] > 0
    oracle_seconds = read_record(runs["oracle"])["timings"]["seconds"]
    assert entry["timings"]["oracle_seconds"] == pytest.approx(oracle_seconds)
    assert entry["timings"]["speedup"] == pytest.approx(oracle_seconds / before["timings"]["seconds"])

    # a second evaluation is appended; the first one is kept as written
    code, _, err = run_cli(capsys, "evaluate", ft_copy)
    assert code == 0, err
    again = read_record(ft_copy)
    assert again["evaluations"][0] == entry
    assert len(again["evaluations"]) == 2 and again["evaluations"][1]["reference"] is None
    assert again["metrics"] == before["metrics"]


# --------------------------------------------------------------------------- item 6: claiming --out


def test_a_run_directory_being_written_is_refused(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from obliviate.runs import RunDir

    out = tmp_path / "out"
    claimed = RunDir.create(out)  # another writer holds the directory (same API as the commands)
    try:
        before = snapshot(out)
        for command in (
            ("unlearn", runs["train"], *UNLEARN),
            ("train", "--dataset", "digits", "--epochs", "1"),
            ("demo", "--quick", "--methods", "finetune", "--scenarios", "class:3"),
        ):
            code, _, err = run_cli(capsys, *command, "--out", out)
            assert code == 2, command
            line = one_error_line(err)
            assert "another obliviate process" in line and str(os.getpid()) in line, line
            assert snapshot(out) == before
    finally:
        claimed.release()
    assert not any(out.iterdir())  # released: nothing left behind


def test_a_crashed_runs_claim_is_reported(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from obliviate.runs import CLAIM_FILE

    out = tmp_path / "out"
    out.mkdir()
    (out / CLAIM_FILE).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": "2026-01-01T00:00:00Z"}))
    before = snapshot(out)
    code, _, err = run_cli(capsys, "unlearn", runs["train"], *UNLEARN, "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert "unfinished" in line and "4242" in line and "remove" in line
    assert snapshot(out) == before


def test_claims_are_exclusive_released_by_save_and_undone_on_failure(digits: ob.DatasetSplits, tmp_path: Path) -> None:
    from obliviate.runs import CLAIM_FILE, RunDir, make_origin

    out = tmp_path / "new" / "run"
    first = RunDir.create(out)
    assert (out / CLAIM_FILE).is_file()
    with pytest.raises(InvalidConfigError, match="another obliviate process"):
        RunDir.create(out)
    model = ob.build_model("mlp", digits, seed=0)
    first.save(model, {"kind": "train", "seed": 0, "origin": make_origin(digits, "mlp")}, extra={"tune.json": {"a": 1}})
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "run.json", "tune.json"]  # no claim or temp file
    assert json.loads((out / "tune.json").read_text()) == {"a": 1}
    with pytest.raises(InvalidConfigError, match="already holds a run"):
        RunDir.create(out)

    # a failure inside the claim removes the directory it created, and only that
    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError, match="boom"), RunDir.create(failed):
        raise RuntimeError("boom")
    assert not failed.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="boom"), RunDir.create(kept):
        raise RuntimeError("boom")
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


_RACER = """
import sys, time
from pathlib import Path
from obliviate.cli import main
import obliviate.cli.unlearn, obliviate.evaluation, obliviate.methods  # the imports done before the start line
run_dir, out, seed, gate = sys.argv[1:]
Path(gate, "ready-" + seed).touch()
while not Path(gate, "go").exists():
    time.sleep(0.01)
sys.exit(main(["unlearn", run_dir, "--scenario", "class:3", "--method", "finetune", "--set", "epochs=4",
               "--seed", seed, "--device", "cpu", "--out", out]))
"""


@pytest.mark.slow
def test_two_processes_unlearning_into_the_same_out(runs: dict[str, Path], tmp_path: Path) -> None:
    """The real race of the issue: exactly one of two concurrent commands wins, the other is refused.

    Both processes import everything first and then start the command at the same moment (a
    start line), so both pass any check made before the computation at the same time.
    """
    import time

    out, gate = tmp_path / "raced", tmp_path / "gate"
    gate.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(runs["train"]), str(out), str(seed), str(gate)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    deadline = time.monotonic() + 240
    while not all((gate / f"ready-{seed}").exists() for seed in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a racer did not start"
        time.sleep(0.05)
    (gate / "go").touch()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_err = next(err for code, err in results if code != 0)
    line = one_error_line(loser_err)
    assert str(out) in line and ("another obliviate process" in line or "already holds a run" in line), line
    winner_seed = (1, 2)[[code for code, _ in results].index(0)]
    # the directory holds the winner's files, complete and consistent with each other
    record = read_record(out)
    assert record["seed"] == winner_seed and record["status"] == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "run.json", "scenario.json"]
    sc = ob.Scenario.load(out / "scenario.json", ob.load_dataset("digits"))
    assert sc.hash == record["scenario"]["hash"] and sc.seed == winner_seed
    from obliviate.runs import load_run
    from obliviate.training import accuracy

    assert accuracy(load_run(out).model, sc.forget) == pytest.approx(record["metrics"]["forget_acc"], abs=1e-6)


# --------------------------------------------------------------------------- item 7: never overwrite silently


def test_unlearn_refuses_an_out_dir_holding_a_scenario(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(runs["ft"] / "scenario.json", out / "scenario.json")
    before = snapshot(out)
    code, _, err = run_cli(capsys, "unlearn", runs["train"], "--scenario", "random:0.1", "--method", "finetune", "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert "scenario.json" in line and "overwrite" in line
    assert snapshot(out) == before


def test_demo_refuses_to_overwrite_an_earlier_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("# an earlier report\n")
    before = snapshot(out)
    code, _, err = run_cli(capsys, "demo", "--quick", "--methods", "finetune", "--scenarios", "class:3", "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert "report.md" in line and "--force" in line
    assert snapshot(out) == before


def test_demo_force_allows_overwriting_but_not_a_directory_being_written(tmp_path: Path) -> None:
    from obliviate.demo import claim_output
    from obliviate.runs import RunDir

    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with pytest.raises(InvalidConfigError, match="results.json"):
        claim_output(out, force=False)
    claim = claim_output(out, force=True)
    claim.release()
    other = RunDir.create(tmp_path / "busy")
    try:
        with pytest.raises(InvalidConfigError, match="another obliviate process"):
            claim_output(tmp_path / "busy", force=True)
    finally:
        other.release()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "obliviate demo"),
        ({"methods": ["ssd", "finetune"]}, "obliviate demo --methods ssd,finetune"),
        (
            {"methods": ["ssd"], "scenarios": ["class:3"], "seeds": 3, "quick": True, "sparsity": 0.5, "device": "cpu"},
            "obliviate demo --methods ssd --scenarios class:3 --seeds 3 --quick --sparsity 0.5 --device cpu",
        ),
        ({"out": "my runs/demo"}, "obliviate demo --out 'my runs/demo'"),
    ],
)
def test_demo_command_line_names_every_option_given(kwargs: dict, expected: str) -> None:
    from obliviate.cli import build_parser
    from obliviate.demo import DEMO_SCENARIOS, demo_command

    defaults = {"methods": None, "scenarios": DEMO_SCENARIOS, "seeds": 1, "quick": False, "sparsity": None, "device": "auto"}
    command = demo_command(**{**defaults, "out": "runs/demo", **kwargs})
    assert command == expected
    # the command parses back into the same options
    import shlex

    args = build_parser().parse_args(shlex.split(command)[1:])
    given = {**defaults, "out": "runs/demo", **kwargs}
    assert (args.methods, args.seeds, args.quick, args.sparsity, args.device, args.out) == (
        given["methods"],
        given["seeds"],
        given["quick"],
        given["sparsity"],
        given["device"],
        given["out"],
    )
    assert tuple(args.scenarios or DEMO_SCENARIOS) == tuple(given["scenarios"])


# --------------------------------------------------------------------------- item 9: run.json schema


def _set(path: str, value: object) -> Callable[[dict], None]:
    def edit(record: dict) -> None:
        *parents, last = path.split(".")
        node = record
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


BAD_RECORDS = {
    "origin missing fields": (_set("origin", {"dataset": "digits"}), "origin.dataset"),
    "origin without model": (_set("origin", {"dataset": {"name": "digits"}, "val_fraction": 0.1, "val_seed": 0}), "origin.model"),
    "model as a string": (_set("origin.model", "mlp"), "origin.model"),
    "model options a list": (_set("origin.model.options", [1, 2]), "origin.model.options"),
    "model options with seed": (_set("origin.model.options", {"seed": 3}), "origin.model.options"),
    "seed not a number": (_set("seed", "zz"), "'seed'"),
    "model seed not a number": (_set("origin.model.seed", "zz"), "origin.model.seed"),
    "val_fraction out of range": (_set("origin.val_fraction", 1.5), "origin.val_fraction"),
    "dataset name a number": (_set("origin.dataset.name", 7), "origin.dataset.name"),
    "metrics a list": (_set("metrics", [1]), "'metrics'"),
    "record a list": (None, "JSON object"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
@pytest.mark.parametrize("command", ["unlearn", "evaluate"])
def test_a_malformed_run_record_is_one_line_of_bad_input(
    case: str, command: str, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit, field = BAD_RECORDS[case]
    run_dir = Path(shutil.copytree(runs["train"], tmp_path / "bad"))
    record = read_record(run_dir)
    if edit is None:
        record = [record]
    else:
        edit(record)
    (run_dir / "run.json").write_text(json.dumps(record))
    before = snapshot(tmp_path)
    args = (
        ("unlearn", run_dir, *UNLEARN, "--out", tmp_path / "out")
        if command == "unlearn"
        else ("evaluate", run_dir, "--scenario", "class:3")
    )
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    line = one_error_line(err)
    assert str(run_dir / "run.json") in line and field in line, line
    assert snapshot(tmp_path) == before


def test_load_run_checks_the_record_schema(runs: dict[str, Path], tmp_path: Path) -> None:
    from obliviate.runs import RunDir, load_run

    run_dir = Path(shutil.copytree(runs["train"], tmp_path / "bad"))
    record = read_record(run_dir)
    record["origin"]["model"]["options"] = {"seed": 3}
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(InvalidConfigError, match=r"origin\.model\.options.*'seed'"):
        load_run(run_dir)
    with pytest.raises(InvalidConfigError, match=r"origin\.model\.options"):
        _ = RunDir(run_dir).origin
    # the good record passes (a minimal library record included)
    assert RunDir(runs["train"]).origin["model"]["name"] == "cnn"


def test_a_reference_with_a_malformed_record_is_refused(
    ft_copy: Path, runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = Path(shutil.copytree(runs["oracle"], tmp_path / "ref"))
    record = read_record(ref)
    record["origin"]["model"] = "cnn"
    (ref / "run.json").write_text(json.dumps(record))
    before = snapshot(ft_copy)
    code, _, err = run_cli(capsys, "evaluate", ft_copy, "--reference", ref)
    assert code == 2
    assert "origin.model" in one_error_line(err)
    assert snapshot(ft_copy) == before


# --------------------------------------------------------------------------- item 9: a scenario of another dataset


def test_a_scenario_file_of_another_dataset_names_the_file(
    ft_copy: Path, digits: ob.DatasetSplits, capsys: pytest.CaptureFixture[str]
) -> None:
    coarse = ob.load_dataset("digits_coarse")
    ob.Scenario.classwise(coarse, forget_class=1, seed=0).save(ft_copy / "scenario.json")
    before = snapshot(ft_copy)
    code, _, err = run_cli(capsys, "evaluate", ft_copy)
    assert code == 2
    line = one_error_line(err)
    assert str(ft_copy / "scenario.json") in line and "digits_coarse" in line
    assert snapshot(ft_copy) == before


@pytest.fixture(scope="module")
def wine() -> ob.DatasetSplits:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    x = x.astype(np.float32)
    return ob.data.from_arrays(x[::2], y[::2], x[1::2], y[1::2], name="wine")


@pytest.mark.parametrize("call", ["unlearn", "evaluate"])
def test_a_scenario_of_another_dataset_is_bad_input_not_a_runtime_error(
    call: str, digits: ob.DatasetSplits, wine: ob.DatasetSplits
) -> None:
    model = ob.build_model("cnn", digits, seed=0)  # a bare module: its training set is unknown
    sc = ob.Scenario.classwise(wine, forget_class=1, seed=0)
    with warnings.catch_warnings(), pytest.raises(InvalidConfigError, match=r"'wine'.*\(13,\)") as info:
        warnings.simplefilter("ignore")
        if call == "unlearn":
            ob.unlearn(model, sc, method="finetune", epochs=1, device="cpu", progress=False)
        else:
            ob.evaluate(model, sc, device="cpu")
    assert "dataset the model was built for" in str(info.value)
