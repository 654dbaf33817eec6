"""``obliviate demo --sparsity S``: every scenario also runs on a pruned original model (issue 3)."""

import csv
import io
import json

import pytest

from obliviate.cli import main


def _run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_demo_with_sparsity_runs_every_method_on_the_dense_and_the_pruned_original(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = _run(
        capsys, "demo", "--quick", "--methods", "fisher,ft_prune", "--scenarios", "class:3", "--sparsity", "0.5", "--out", out_dir
    )
    assert code == 0, err
    runs = json.loads((out_dir / "results.json").read_text())["runs"]
    assert [(r["variant"], r["method"]) for r in runs] == [
        (variant, method) for variant in ("dense", "omp 50%") for method in ("retrain", "original", "fisher", "ft_prune")
    ]
    assert {r["status"] for r in runs} == {"ok"}
    sparse = [r for r in runs if r["variant"] == "omp 50%"]
    assert sparse[0]["params"]["epochs"] == 8  # the oracle retrains with the full (quick) recipe and the masks
    assert all(r["timings"]["oracle_seconds"] == sparse[0]["timings"]["seconds"] for r in sparse)
    assert "class:3 (omp 50%)" in out and "class:3 (dense)" in out
    rows = list(csv.DictReader(io.StringIO((out_dir / "results.csv").read_text())))
    assert [r["variant"] for r in rows] == [r["variant"] for r in runs]
    report = (out_dir / "report.md").read_text()
    assert "--sparsity 0.5" in report and "## class:3 (omp 50%)" in report


def test_demo_refuses_a_sparsity_outside_zero_one(tmp_path, capsys):
    code, _, err = _run(capsys, "demo", "--quick", "--sparsity", "1.5", "--out", tmp_path / "x")
    assert code == 2 and "sparsity" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_unlearn_keeps_the_masks_saved_beside_a_checkpoint(tmp_path, capsys):
    import torch

    import obliviate as ob
    from obliviate import pruning
    from obliviate.io import load_masks, load_weights, save_masks, save_model

    run = tmp_path / "base"
    code, _, err = _run(capsys, "train", "--dataset", "digits", "--epochs", "2", "--out", run)
    assert code == 0, err
    model = ob.build_model("cnn", ob.load_dataset("digits"), seed=0)
    load_weights(model, run / "model.safetensors")
    pruned = pruning.prune(model, 0.6)
    save_model(pruned.model, run / "model.safetensors")
    save_masks(pruned.masks, run / pruning.MASKS_FILE)
    code, _, err = _run(
        capsys, "unlearn", run, "--scenario", "class:3", "--method", "finetune", "--preset", "digits", "--out", tmp_path / "ft"
    )
    assert code == 0, err
    out = ob.build_model("cnn", ob.load_dataset("digits"), seed=0)
    load_weights(out, tmp_path / "ft" / "model.safetensors")
    saved = load_masks(tmp_path / "ft" / pruning.MASKS_FILE)
    assert pruning.sparsity(out) == pytest.approx(pruned.sparsity) and saved.keys() == pruned.masks.keys()
    assert not torch.equal(out.body[0].weight, pruned.model.body[0].weight)  # it did fine-tune
    save_masks({"head.weight": torch.ones(3, dtype=torch.bool)}, run / pruning.MASKS_FILE)  # does not fit the model
    code, _, err = _run(capsys, "unlearn", run, "--scenario", "class:3", "--method", "finetune", "--out", tmp_path / "bad")
    assert code == 2 and "head.weight" in err
