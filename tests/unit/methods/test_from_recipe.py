"""Defaults scaled from the original training recipe (issue 14 item 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import obliviate as ob
from obliviate.cli import main
from obliviate.errors import InvalidConfigError
from obliviate.methods.base import FromRecipe, make_method, recipe_of
from obliviate.runs import DIGITS_RECIPE
from obliviate.testing import run_cli, toy_dataset, toy_scenario
from obliviate.training import TrainConfig

RECIPE = {"epochs": 2, "lr": 0.05, "batch_size": 32, "schedule": "cosine"}


@pytest.fixture(scope="module")
def base() -> ob.TrainResult:
    sc = toy_scenario()
    return ob.train(ob.build_model("cnn", toy_dataset(), seed=0, width=8), sc.train, seed=0, progress=False, **RECIPE)


def test_retrain_given_the_train_result_repeats_the_original_training(base: ob.TrainResult) -> None:
    """The oracle's recipe is the original one, field for field, and its weights are an independent ob.train's."""
    sc = toy_scenario()
    out = ob.unlearn(base, sc, "retrain", progress=False)
    assert out.config == base.config.to_dict()
    assert out.from_recipe == base.config.to_dict()
    independent = ob.train(ob.build_model("cnn", toy_dataset(), seed=0, width=8), sc.retain, base.config, seed=0, progress=False)
    for (name, a), b in zip(out.model.state_dict().items(), independent.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_without_a_recipe_retrain_keeps_its_fixed_defaults(base: ob.TrainResult) -> None:
    method = make_method("retrain")
    assert (method.epochs, method.lr, method.batch_size) == (160, 0.1, 256)
    assert make_method("retrain", recipe=None).epochs == 160


def test_the_unlearn_sparse_family_scales_its_learning_rate(base: ob.TrainResult) -> None:
    out = ob.unlearn(base, toy_scenario(), "finetune", epochs=1, progress=False)
    assert out.config["lr"] == pytest.approx(0.1 * RECIPE["lr"])
    assert out.from_recipe == {"lr": pytest.approx(0.005)}
    expected = {"finetune": 0.1, "l1_sparse": 0.1, "ft_prune": 0.1, "random_label": 0.1, "gradient_ascent": 1e-3, "ga_l1": 1e-3}
    for name, factor in expected.items():
        assert make_method(name, recipe=RECIPE).lr == pytest.approx(factor * RECIPE["lr"]), name
    assert make_method("salun", recipe={"lr": 0.2}).lr == pytest.approx(0.026)


@pytest.mark.parametrize(
    ("kwargs", "lr"),
    [
        ({"lr": 0.2}, 0.2),  # an explicit value is never changed
        ({"preset": "digits"}, 0.1),  # nor a preset's
        ({"recipe": False}, 0.01),  # recipe=False: the fixed default
    ],
)
def test_explicit_values_presets_and_opting_out_win(base: ob.TrainResult, kwargs: dict, lr: float) -> None:
    out = ob.unlearn(base, toy_scenario(), "finetune", progress=False, **{"epochs": 1, **kwargs})
    assert out.config["lr"] == pytest.approx(lr)
    assert out.from_recipe == {}


def test_a_learning_rate_ratio_is_not_carried_across_optimisers() -> None:
    adam = {"optimizer": "adam", "lr": 1e-3, "epochs": 5}
    assert make_method("finetune", recipe=adam).lr == 0.01  # SGD default: an Adam lr says nothing about it
    assert make_method("finetune", recipe=adam, optimizer="adam").lr == pytest.approx(1e-4)
    retrain = make_method("retrain", recipe=adam)
    assert (retrain.optimizer, retrain.lr, retrain.epochs) == ("adam", 1e-3, 5)


def test_a_partial_recipe_scales_only_what_it_gives() -> None:
    method = make_method("retrain", recipe={"lr": 0.05})
    assert method.lr == 0.05 and method.epochs == 160 and method.milestones == (91, 136)
    assert method._from_recipe == {"lr": 0.05}


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        ({"lr": -1.0}, "'lr'"),
        ({"epoch": 3}, "'epoch'"),
        ([("lr", 0.1)], "TrainConfig or a mapping"),
        ("sgd", "TrainConfig or a mapping"),
    ],
)
def test_a_bad_recipe_is_refused(recipe, words: str) -> None:
    with pytest.raises(InvalidConfigError, match=words):
        make_method("finetune", recipe=recipe)


def test_recipe_true_is_refused(base: ob.TrainResult) -> None:
    with pytest.raises(InvalidConfigError, match="recipe"):
        ob.unlearn(base, toy_scenario(), "finetune", recipe=True, progress=False)


def test_recipe_of_reads_train_results_and_run_directories(base: ob.TrainResult, tmp_path: Path) -> None:
    assert recipe_of(base) == base.config.to_dict()
    assert recipe_of(base.model) is None
    assert recipe_of(tmp_path / "not-a-run") is None


@pytest.mark.parametrize("name", ob.METHODS.names())
def test_every_rule_names_a_training_field_and_gives_valid_values(name: str) -> None:
    """Each method's rules name TrainConfig fields that are its own; the digits recipe scales into valid values."""
    cls = ob.METHODS.get(name)
    for field, rule in cls.from_recipe.items():
        assert field in cls.field_names(), field
        assert rule.field in TrainConfig.field_names(), rule.field
        assert rule.describe()
    for recipe in (DIGITS_RECIPE, TrainConfig().to_dict(), {"epochs": 1, "lr": 1e-6}):
        method = make_method(name, recipe=recipe)  # validated on construction
        assert set(method._from_recipe) <= set(cls.from_recipe)


def test_int_fields_round_and_stay_positive() -> None:
    rule = FromRecipe("epochs", 0.05)
    assert rule.value({"epochs": 30}, None) == 2
    assert rule.value({"epochs": 3}, None) == 1
    assert rule.value({"lr": 0.1}, None) is not None  # dataclasses.MISSING: the recipe does not give it
    assert FromRecipe("milestones").value({"milestones": None}, None) is None  # None is a value to copy


def test_tune_starts_from_the_recipe_scaled_defaults(base: ob.TrainResult) -> None:
    pytest.importorskip("optuna")
    tr = ob.tune(base, toy_scenario(), "finetune", n_trials=1, progress=False, epochs=1)
    assert tr.trials[0]["params"]["lr"] == pytest.approx(0.005)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("recipe") / "run"
    args = ["train", "--dataset", "digits", "--epochs", "2", "--lr", "0.04", "--out", str(out)]
    assert main(args) == 0
    return out


def test_the_cli_finds_the_recipe_in_the_run_directory(digits_run: Path, tmp_path: Path, capsys) -> None:
    recipe = json.loads((digits_run / "run.json").read_text())["origin"]["recipe"]
    code, out, err = run_cli(
        capsys, "unlearn", digits_run, "--scenario", "class:3", "--method", "retrain", "--out", tmp_path / "oracle"
    )
    assert code == 0, err
    record = json.loads((tmp_path / "oracle" / "run.json").read_text())
    assert record["params"]["epochs"] == recipe["epochs"] == 2 and record["params"]["lr"] == 0.04
    assert record["from_recipe"]["epochs"] == 2
    assert "defaults from the run's training recipe" in out
    args = ["unlearn", digits_run, "--scenario", "class:3", "--method", "finetune", "--set", "epochs=1"]
    code, out, err = run_cli(capsys, *args, "--out", tmp_path / "ft")
    assert code == 0, err
    record = json.loads((tmp_path / "ft" / "run.json").read_text())
    assert record["params"]["lr"] == pytest.approx(0.004) and record["from_recipe"] == {"lr": pytest.approx(0.004)}
