"""Scenarios must split exactly the data a model was trained on (issue 11, item 1).

The validation split no longer moves with the forget seed; ``TrainResult``, ``UnlearningResult``
and run directories carry the training set; ``unlearn`` and ``evaluate`` refuse a mismatch.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import obliviate as ob
from obliviate.cli import main
from obliviate.errors import TrainingSetMismatchError, UncheckedTrainingSetWarning
from obliviate.runs import load_run

FT = {"epochs": 1, "lr": 0.01, "batch_size": 128, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def base(digits: ob.DatasetSplits) -> ob.TrainResult:
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    model = ob.build_model("mlp", digits, seed=0)
    return ob.train(model, sc.train, epochs=2, lr=0.05, batch_size=64, seed=0, device="cpu", progress=False)


def test_validation_split_does_not_move_with_the_forget_seed(digits: ob.DatasetSplits) -> None:
    a = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    b = ob.Scenario.random(digits, fraction=0.1, seed=1)
    c = ob.Scenario.from_indices(digits, b.forget_idx[:5], seed=7)
    np.testing.assert_array_equal(a.val_idx, b.val_idx)
    np.testing.assert_array_equal(a.val_idx, c.val_idx)
    np.testing.assert_array_equal(a.train_idx, b.train_idx)
    assert a.training_set == b.training_set == c.training_set
    assert a.val_seed == b.val_seed == 0
    # an explicit val_seed still draws another split
    d = ob.Scenario.random(digits, fraction=0.1, seed=1, val_seed=1)
    assert not np.array_equal(d.val_idx, a.val_idx)


def test_train_result_records_the_rows_it_trained_on(base: ob.TrainResult, digits: ob.DatasetSplits) -> None:
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    assert base.training_set == sc.training_set
    np.testing.assert_array_equal(base.training_set.indices, sc.train_idx)
    assert base.training_set.dataset == "digits" and base.training_set.size == len(sc.train)
    # data that is not a view of a named train split has no known training set
    other = ob.train(ob.build_model("mlp", digits, seed=0), digits.train, epochs=1, progress=False, device="cpu")
    assert other.training_set is None


def test_unlearn_and_evaluate_refuse_a_scenario_over_other_rows(base: ob.TrainResult, digits: ob.DatasetSplits) -> None:
    other = ob.Scenario.random(digits, fraction=0.1, seed=1, val_seed=1)
    with pytest.raises(TrainingSetMismatchError, match="never trained on") as info:
        ob.unlearn(base, other, "finetune", **FT)
    assert "held-out validation rows were trained on" in str(info.value)
    with pytest.raises(TrainingSetMismatchError):
        ob.evaluate(base, other, metrics=["forget_acc"])
    # the same rows under another forget draw are fine, without a warning
    same = ob.Scenario.random(digits, fraction=0.1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncheckedTrainingSetWarning)
        out = ob.unlearn(base, same, "finetune", **FT)
        ob.evaluate(out, same, metrics=["forget_acc"])


def test_a_bare_module_is_accepted_with_a_warning(base: ob.TrainResult, digits: ob.DatasetSplits) -> None:
    sc = ob.Scenario.random(digits, fraction=0.1, seed=0, val_seed=3)  # other rows: unknowable from a bare module
    with pytest.warns(UncheckedTrainingSetWarning, match="could not be"):
        ob.unlearn(base.model, sc, "finetune", **FT)
    with pytest.warns(UncheckedTrainingSetWarning):
        ob.evaluate(base.model, sc, metrics=["forget_acc"])


def test_an_unlearned_model_is_trained_on_the_retain_set(base: ob.TrainResult, digits: ob.DatasetSplits) -> None:
    sc = ob.Scenario.random(digits, fraction=0.1, seed=0)
    out = ob.unlearn(base, sc, "finetune", **FT)
    assert out.training_set == sc.retain_set
    ob.evaluate(out, sc, metrics=["forget_acc"])  # evaluated on its own scenario: fine
    with pytest.raises(TrainingSetMismatchError):
        ob.unlearn(out, sc, "finetune", **FT)  # its forget rows are gone from its training set
    nxt = sc.then(sc.retain_idx[:7])
    assert nxt.training_set == sc.retain_set and len(nxt.forget) == 7
    again = ob.unlearn(out, nxt, "finetune", **FT)
    assert again.training_set == nxt.retain_set
    with pytest.raises(ob.errors.InvalidConfigError, match="not in the retain set"):
        sc.then(sc.forget_idx[:1])
    # the oracle given as the reference must be trained on the retain set
    oracle = ob.unlearn(base, sc, "retrain", epochs=1, batch_size=128, progress=False, device="cpu")
    ob.evaluate(out, sc, reference=oracle, metrics=["avg_gap"])
    with pytest.raises(TrainingSetMismatchError, match="reference"):
        ob.evaluate(out, sc, reference=base, metrics=["avg_gap"])


def test_run_directories_carry_and_check_their_training_set(tmp_path, digits: ob.DatasetSplits) -> None:
    run = tmp_path / "base"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--out", str(run)]) == 0
    record = json.loads((run / "run.json").read_text())
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    assert record["train_set"]["hash"] == sc.training_set.digest
    loaded = load_run(run)
    assert loaded.training_set == sc.training_set
    with pytest.raises(TrainingSetMismatchError):
        ob.unlearn(str(run), ob.Scenario.random(digits, fraction=0.1, seed=0, val_seed=5), "finetune", **FT)
    ob.unlearn(run, sc, "finetune", **FT)
    # a record written before the training set was stored: derived from its validation split
    del record["train_set"]
    (run / "run.json").write_text(json.dumps(record))
    assert load_run(run).training_set == sc.training_set
    # an unlearned run is trained on its scenario's retain set, and says so
    out = tmp_path / "ft"
    args = ["unlearn", str(run), "--scenario", "class:3", "--method", "finetune", "--set", "epochs=1", "--out", str(out)]
    assert main(args) == 0
    assert load_run(out).training_set == sc.retain_set
    assert json.loads((out / "run.json").read_text())["train_set"]["hash"] == sc.retain_set.digest


def test_cli_train_with_another_validation_seed_is_refused_on_the_default_split(tmp_path, digits) -> None:
    run = tmp_path / "base"
    args = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--val-seed", "4", "--out", str(run)]
    assert main(args) == 0
    with pytest.raises(TrainingSetMismatchError):
        ob.unlearn(run, ob.Scenario.classwise(digits, forget_class=3), "finetune", **FT)
    ob.unlearn(run, ob.Scenario.classwise(digits, forget_class=3, val_seed=4), "finetune", **FT)
