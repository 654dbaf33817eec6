"""obliviate.bench.spec: the issue's example expands to the right runs with stable keys; bad specs are refused."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from obliviate.bench.spec import load_spec, parse_spec
from obliviate.errors import InvalidConfigError

EXAMPLE = Path(__file__).parents[3] / "benchmarks" / "specs" / "digits-small.toml"


@pytest.fixture(scope="module")
def doc():
    return tomllib.loads(EXAMPLE.read_text())


@pytest.fixture(scope="module")
def spec():
    return load_spec(EXAMPLE)


def test_example_expands_to_twelve_unlearning_runs(spec):
    runs = spec.unlearning_runs
    assert len(runs) == 12
    grid = {(r.seed, r.scenario, r.label) for r in runs}
    labels = {"ssd", "finetune lr=0.01", "finetune lr=0.05"}
    assert grid == {(s, sc, lab) for s in (0, 1) for sc in ("class:3", "random:0.1") for lab in labels}
    # plus one oracle (retrain) and one no-op original per seed and scenario
    assert sorted(r.kind for r in spec.runs if r.kind != "unlearn") == ["original"] * 4 + ["retrain"] * 4
    assert len({r.key for r in spec.runs}) == len(spec.runs) == 20
    ssd = next(r for r in runs if r.method == "ssd")
    assert ssd.preset == "digits" and ssd.params["alpha"] == 10.0  # the preset's resolved values
    assert {r.params["lr"] for r in runs if r.method == "finetune"} == {0.01, 0.05}
    assert spec.datasets[0].recipe["epochs"] == 30 and spec.datasets[0].recipe["batch_size"] == 64  # over the digits recipe


def test_keys_are_stable_and_change_only_with_the_run(doc, spec):
    again = parse_spec(copy.deepcopy(doc), "other-name.toml")
    assert [r.key for r in again.runs] == [r.key for r in spec.runs]  # same content, same keys (the path is no part)

    changed = copy.deepcopy(doc)
    changed["method"][1]["sweep"]["lr"] = [0.01, 0.07]
    moved = parse_spec(changed, "x.toml")
    before = {r.key: r for r in spec.runs}
    after = {r.key for r in moved.runs}
    gone = [before[k] for k in before if k not in after]
    assert len(gone) == 4 and {(r.method, r.params["lr"]) for r in gone} == {("finetune", 0.05)}
    assert len(after - set(before)) == 4

    ssd_alpha = copy.deepcopy(doc)
    ssd_alpha["method"][0]["params"] = {"alpha": 5.0}
    keys = {r.key for r in parse_spec(ssd_alpha, "x.toml").runs}
    assert {k for k in before if k not in keys} == {r.key for r in spec.runs if r.method == "ssd"}

    recipe = copy.deepcopy(doc)
    recipe["dataset"][0]["train"]["epochs"] = 31  # the recipe defines every run (originals and oracles change)
    assert not {r.key for r in parse_spec(recipe, "x.toml").runs} & set(before)


def test_params_preset_sweep_and_tune(doc):
    d = copy.deepcopy(doc)
    d["method"] = [
        {"name": "finetune", "params": {"epochs": 2}, "sweep": {"lr": [0.01, 0.02], "batch_size": [32, 64]}},
        {"name": "ssd", "tune": {"budget": "15s", "objective": "proxy"}},
    ]
    s = parse_spec(d, "x.toml")
    ft = [r for r in s.unlearning_runs if r.method == "finetune" and r.seed == 0 and r.scenario == "class:3"]
    assert {(r.params["lr"], r.params["batch_size"], r.params["epochs"]) for r in ft} == {
        (lr, b, 2) for lr in (0.01, 0.02) for b in (32, 64)
    }
    tuned = [r for r in s.unlearning_runs if r.method == "ssd"]
    assert len(tuned) == 4 and all(r.tune == {"budget": "15s", "objective": "proxy"} for r in tuned)


BAD = [
    (lambda d: d.update(sedes=[0]), "'sedes' is not a known field"),
    (lambda d: d.update(seeds="0"), "'seeds' must be a non-empty list"),
    (lambda d: d.update(seeds=[0, -1]), "'seeds[1]' must be an integer"),
    (lambda d: d["dataset"][0].update(name="nodata"), "'dataset[0].name'"),
    (lambda d: d["dataset"][0].update(model="resnet9000"), "'dataset[0].model'"),
    (lambda d: d["dataset"][0]["train"].update(epoch=3), "'dataset[0].train.epoch' is not a training-recipe field"),
    (lambda d: d["dataset"][0]["train"].update(lr="fast"), "'dataset[0].train'"),
    (lambda d: d["scenario"][1].update(spec="sideways:3"), "'scenario[1].spec'"),
    (lambda d: d["method"][0].update(name="sdd"), "'method[0].name' names no registered method"),
    (lambda d: d["method"][0].update(preset="cifar99"), "'method[0].preset'"),
    (lambda d: d["method"][0].update(params={"alpha": -1.0}), "'method[0].params' is not valid for ssd"),
    (lambda d: d["method"][0].update(params={"alhpa": 1.0}), "'method[0].params' is not valid for ssd"),
    (lambda d: d["method"][1]["sweep"].update(lr=[]), "'method[1].sweep.lr' must be a non-empty list"),
    (lambda d: d["method"][1]["sweep"].update(lr=[0.1, -2.0]), "'method[1].sweep' is not valid for finetune"),
    (lambda d: d["method"][1].update(sweeps={}), "'method[1].sweeps' is not a known field"),
    (lambda d: d["method"][0].update(tune={"budget": "soon"}), "'method[0].tune.budget'"),
    (lambda d: d["method"][0].update(tune={"objective": "vibes"}), "'method[0].tune.objective'"),
    (lambda d: d["method"].append({"name": "ssd", "preset": "digits"}), "two variants the label 'ssd'"),
    (lambda d: d.pop("method"), "'method' is missing"),
    (lambda d: d["scenario"][0].update(datasets=["cifar10"]), "'scenario[0].datasets' names 'cifar10', which no [[dataset]]"),
    (lambda d: d["scenario"][0].update(datasets=[]), "'scenario[0].datasets' must be a non-empty list"),
    (lambda d: d.update(skip_inapplicable="yes"), "'skip_inapplicable' must be true or false"),
    (lambda d: d["method"].append({"name": "retrain"}), "'method[2].name' is the oracle"),
]


@pytest.mark.parametrize(("edit", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_specs_are_refused_naming_file_and_field(doc, edit, expected):
    d = copy.deepcopy(doc)
    edit(d)
    with pytest.raises(InvalidConfigError) as err:
        parse_spec(d, "grid.toml")
    assert "'grid.toml' is not a valid bench spec" in str(err.value)
    assert expected in str(err.value)


def test_a_method_that_does_not_support_the_scenario_kind_is_refused(doc, monkeypatch):
    from obliviate.methods import METHODS

    monkeypatch.setattr(METHODS.get("ssd"), "kinds", frozenset({"classwise"}))
    with pytest.raises(
        InvalidConfigError, match=r"field 'method\[0\]\.name' names ssd, which supports classwise scenarios, not 'random:0.1'"
    ):
        parse_spec(copy.deepcopy(doc), "grid.toml")


def test_skip_inapplicable_leaves_out_only_the_pairs_a_method_does_not_cover(doc, monkeypatch):
    from obliviate.methods import METHODS

    monkeypatch.setattr(METHODS.get("ssd"), "kinds", frozenset({"classwise"}))
    d = copy.deepcopy(doc)
    d["skip_inapplicable"] = True
    spec = parse_spec(d, "grid.toml")
    pairs = {(r.scenario, r.label) for r in spec.unlearning_runs}
    assert ("class:3", "ssd") in pairs and ("random:0.1", "ssd") not in pairs
    assert ("random:0.1", "finetune lr=0.01") in pairs and len(spec.unlearning_runs) == 10  # 12 less ssd on random, 2 seeds


def test_a_scenario_runs_on_the_datasets_it_names(doc):
    d = copy.deepcopy(doc)
    d["dataset"].append({"name": "digits_coarse", "train": {"epochs": 1}})
    d["scenario"].append({"spec": "subclass:3", "datasets": ["digits_coarse"]})
    d["scenario"][0]["datasets"] = ["digits"]
    d["scenario"][1]["datasets"] = ["digits"]
    spec = parse_spec(d, "grid.toml")
    assert {(r.dataset.name, r.scenario) for r in spec.runs} == {
        ("digits", "class:3"),
        ("digits", "random:0.1"),
        ("digits_coarse", "subclass:3"),
    }
    del d["scenario"][2]["datasets"]  # sub-class forgetting on plain digits (no super-classes) is refused
    with pytest.raises(InvalidConfigError, match=r"'scenario\[2\]\.spec' is not a scenario of dataset 'digits'"):
        parse_spec(d, "grid.toml")


def test_recording_based_methods_are_accepted():
    spec = load_spec(EXAMPLE.parent / "demo.toml")
    methods = {r.method for r in spec.unlearning_runs}
    assert {"sgu", "amnesiac"} <= methods and "retrain" not in methods
    assert len(spec.seeds) == 3 and {r.scenario for r in spec.runs} == {"class:3", "random:0.1", "subclass:3"}
    assert {r.dataset.name for r in spec.runs if r.scenario == "subclass:3"} == {"digits_coarse"}
    # unsir and the boundary methods are not run where their papers do not reach
    assert not any(r.method.startswith("boundary") and r.scenario != "class:3" for r in spec.runs)


def test_files_that_are_missing_or_not_toml(tmp_path):
    with pytest.raises(InvalidConfigError, match="Cannot read the bench spec"):
        load_spec(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(InvalidConfigError, match="bad.toml' is not a valid bench spec: not TOML"):
        load_spec(bad)
