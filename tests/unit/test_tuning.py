"""ob.tune: search ranges, budgets, resumable studies, objectives, failed trials (issue 14, items 2-4)."""

from __future__ import annotations

import copy
import json
import sys
import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate._validation import Choice, Interval, IntRange, Linear, Log, Options, param
from obliviate.errors import DivergenceError, InvalidConfigError, MissingDataError, MissingDependencyError
from obliviate.methods import UnlearningMethod
from obliviate.testing import toy_model, toy_scenario
from obliviate.tuning import COLLAPSE_WEIGHT, KEEP_SLACK, _baseline_accuracy, _starting_points, proxy_objective, search_space

pytestmark = pytest.mark.filterwarnings("ignore::obliviate.errors.UncheckedTrainingSetWarning")

FORGET_CLASS = 3  # toy_scenario("classwise") forgets class 3


@dataclass(frozen=True, kw_only=True)
class Knob(UnlearningMethod):
    """Test method: lowers the forgotten class's output bias by ``20 * push``; fails when ``push > fail_above``.

    Args:
        push: How far to lower the bias (searched in [0, 1]).
        mode: An unused categorical, searched as a Choice.
        fail_above: ``push`` beyond which the run raises DivergenceError.
        sleep: Seconds to sleep per run.
    """

    push: float = param(0.0, Interval(float, 0.0), search=Linear(0.0, 1.0))
    mode: str = param("a", Options("a", "b"), search=Choice("a", "b"))
    fail_above: float = param(10.0, Interval(float))
    sleep: float = param(0.0, Interval(float, 0.0))

    def _unlearn(self, model, scenario, ctx):
        if self.push > self.fail_above:
            raise DivergenceError(f"push {self.push} is too large")
        time.sleep(self.sleep)
        with torch.no_grad():
            model.head.bias[FORGET_CLASS] -= 20.0 * self.push
        return model


Knob.name = "knob"  # not registered: passed as an instance


@pytest.fixture(scope="module")
def classwise():
    return toy_model("classwise"), toy_scenario("classwise")


# ------------------------------------------------------------------ search ranges
def test_ranges_validate_their_ends_and_give_points_inside():
    assert Log(1e-4, 1e-1).points()[0] == 1e-4 and Log(1e-4, 1e-1).points()[-1] == 1e-1
    assert all(1 <= p <= 20 and isinstance(p, int) for p in IntRange(1, 20, log=True).points())
    assert Choice("sgd", "adam").contains("adam") and not Choice("sgd", "adam").contains("rmsprop")
    assert Linear(0.0, 1.0).contains(0.5) and not Linear(0.0, 1.0).contains(1.5)
    with pytest.raises(InvalidConfigError, match="low > 0"):
        Log(0.0, 1.0)
    with pytest.raises(InvalidConfigError, match="low < high"):
        Linear(1.0, 1.0)
    with pytest.raises(InvalidConfigError, match="int"):
        IntRange(1, 2.5)


def test_param_refuses_a_range_that_leaves_the_constraint():
    with pytest.raises(InvalidConfigError, match="search"):
        param(0.5, Interval(float, 0.0, 1.0, closed="left"), search=Linear(0.0, 1.0))  # 1.0 is outside [0, 1)
    with pytest.raises(InvalidConfigError, match="Log, Linear"):
        param(0.5, Interval(float), search=(0.0, 1.0))


def test_search_space_is_the_declared_ranges_updated_by_space_minus_fixed():
    assert set(search_space(Knob)) == {"push", "mode"}
    assert set(search_space(Knob, fixed={"mode": "a"})) == {"push"}
    assert search_space(Knob, space={"sleep": Linear(0.0, 0.01)})["sleep"] == Linear(0.0, 0.01)
    with pytest.raises(InvalidConfigError, match="no hyperparameter left"):
        search_space(Knob, fixed={"push": 0.1, "mode": "a"})
    with pytest.raises(InvalidConfigError, match="no parameter 'nope'"):
        search_space(Knob, space={"nope": Linear(0.0, 1.0)})
    with pytest.raises(InvalidConfigError, match="sleep"):
        search_space(Knob, space={"sleep": Linear(-1.0, 1.0)})  # -1 is not a valid sleep


# ------------------------------------------------------------------ tune
def test_tune_with_n_trials_returns_params_inside_the_ranges(classwise):
    model, sc = classwise
    tr = ob.tune(model, sc, Knob(), n_trials=3, progress=False)
    assert len(tr.trials) == 3 and [t["number"] for t in tr.trials] == [0, 1, 2]
    for t in tr.trials:
        assert 0.0 <= t["params"]["push"] <= 1.0 and t["params"]["mode"] in ("a", "b")
        assert t["status"] in ("ok", "collapsed") and t["value"] is not None
    assert Linear(0.0, 1.0).contains(tr.best_params["push"]) and tr.best_params["mode"] in ("a", "b")
    assert tr.best_value == min(t["value"] for t in tr.trials)
    # the first trial of a new study is the method's defaults
    assert tr.trials[0]["params"] == {"push": 0.0, "mode": "a"}


def test_best_result_is_the_best_trials_own_run_not_a_rerun(classwise):
    model, sc = classwise
    tr = ob.tune(model, sc, Knob(), n_trials=4, progress=False)
    best = tr.best
    assert tr.best_result.seconds == best["seconds"]  # the same timed run
    assert tr.best_result.config["push"] == tr.best_params["push"]
    assert tr.seconds >= sum(t["seconds"] for t in tr.trials)
    # the proxy of the returned model is the best trial's value
    assert best["value"] == pytest.approx(
        proxy_objective(
            tr.best_result.model, sc, original_retained_val_acc=_baseline_accuracy(model, sc, torch.device("cpu"), 512)
        ).value
    )


@dataclass(frozen=True, kw_only=True)
class KnobWithPresets(Knob):
    """Knob with presets (one outside the space, one a duplicate of the defaults).

    Args:
        push: As Knob.
        mode: As Knob.
        fail_above: As Knob.
        sleep: As Knob.
    """

    presets: ClassVar[dict] = {
        "far": {"push": 5.0},
        "same": {"push": 0.0},
        "slow": {"push": 0.9, "sleep": 0.01},  # differs in a field that is not searched: a trial could not run it
        "strong": {"push": 0.7, "mode": "b"},
    }


KnobWithPresets.name = "knob_with_presets"


def test_a_new_study_starts_from_the_defaults_then_the_presets_inside_the_space(classwise):
    model, sc = classwise
    tr = ob.tune(model, sc, KnobWithPresets(), n_trials=3, progress=False)
    # "far" lies outside the push range, "same" repeats the defaults, "slow" sets an unsearched field: not starts
    assert [t["params"] for t in tr.trials[:2]] == [{"push": 0.0, "mode": "a"}, {"push": 0.7, "mode": "b"}]
    assert tr.trials[2]["params"] not in ({"push": 0.0, "mode": "a"}, {"push": 0.7, "mode": "b"})
    # a fixed value applies to the presets too; the preset that contradicts nothing stays
    assert _starting_points(KnobWithPresets(mode="b"), search_space(KnobWithPresets, fixed={"mode": "b"}), {"mode": "b"}) == [
        {"push": 0.0},
        {"push": 0.7},
    ]


def test_starting_points_the_budget_did_not_reach_are_left_out_and_run_on_resume(classwise, tmp_path):
    model, sc = classwise
    db = tmp_path / "study.db"
    first = ob.tune(model, sc, KnobWithPresets(), n_trials=1, storage=db, study_name="s", progress=False)
    assert [t["params"] for t in first.trials] == [{"push": 0.0, "mode": "a"}]  # the preset's start is still waiting
    second = ob.tune(model, sc, KnobWithPresets(), n_trials=1, storage=db, study_name="s", progress=False)
    assert [t["params"] for t in second.trials] == [{"push": 0.0, "mode": "a"}, {"push": 0.7, "mode": "b"}]
    assert second.best == second.trials[1] and second.best_params == {"push": 0.7, "mode": "b"}


def test_fixed_hyperparameters_are_not_searched_and_come_back_in_best_params(classwise):
    model, sc = classwise
    tr = ob.tune(model, sc, Knob(), n_trials=3, progress=False, mode="b")
    assert all(set(t["params"]) == {"push"} for t in tr.trials)
    assert tr.best_params["mode"] == "b" and tr.best_result.config["mode"] == "b"


def test_the_same_seed_gives_the_same_trials(classwise):
    model, sc = classwise
    a = ob.tune(model, sc, Knob(), n_trials=4, seed=3, progress=False)
    b = ob.tune(model, sc, Knob(), n_trials=4, seed=3, progress=False)
    c = ob.tune(model, sc, Knob(), n_trials=4, seed=4, progress=False)
    assert [t["params"] for t in a.trials] == [t["params"] for t in b.trials]
    assert [t["params"] for t in a.trials] != [t["params"] for t in c.trials]


def test_a_stored_study_resumes_and_adds_trials(classwise, tmp_path):
    model, sc = classwise
    db = tmp_path / "study.db"
    first = ob.tune(model, sc, Knob(), n_trials=2, storage=db, study_name="s", progress=False)
    second = ob.tune(model, sc, Knob(), n_trials=1, storage=db, study_name="s", progress=False)
    assert db.is_file() and len(first.trials) == 2 and len(second.trials) == 3
    assert [t["params"] for t in second.trials[:2]] == [t["params"] for t in first.trials]
    assert second.trials[0]["seconds"] == first.trials[0]["seconds"]  # what tune measured survives in the store
    # another objective or method under the same name is refused, not mixed in
    with pytest.raises(InvalidConfigError, match="stored study"):
        ob.tune(model, toy_scenario("random"), Knob(), n_trials=1, storage=db, study_name="s", progress=False)


def test_a_resumed_study_whose_best_trial_is_older_reruns_it_once(classwise, tmp_path):
    model, sc = classwise
    db = tmp_path / "study.db"
    # the first session finds push near 1 (good); the second may only try pushes below 0.05 (worse)
    first = ob.tune(model, sc, Knob(), n_trials=1, storage=db, study_name="s", progress=False, space={"push": Linear(0.9, 1.0)})
    second = ob.tune(model, sc, Knob(), n_trials=1, storage=db, study_name="s", progress=False, space={"push": Linear(0.0, 0.05)})
    assert second.best_trial == 0 and second.best_params["push"] == first.best_params["push"]
    assert second.best_result.config["push"] == first.best_params["push"]


def test_oracle_objective_requires_a_reference(classwise):
    model, sc = classwise
    with pytest.raises(MissingDataError, match="reference="):
        ob.tune(model, sc, Knob(), n_trials=1, objective="oracle", progress=False)


def test_oracle_objective_is_the_avg_gap_to_the_reference(classwise):
    model, sc = classwise
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.head.bias[FORGET_CLASS] -= 20.0  # a stand-in "oracle" that never predicts the class
    ref_eval = ob.evaluate(reference, sc, metrics=["forget_acc", "retain_acc", "test_acc", "mia_efficacy"])
    tr = ob.tune(model, sc, Knob(), n_trials=2, objective="oracle", reference=ref_eval, progress=False)
    for t in tr.trials:
        assert t["value"] == t["true_gap"] and t["value"] >= 0.0
    out = ob.evaluate(tr.best_result, sc, reference=ref_eval, metrics=["avg_gap"])
    assert out["avg_gap"] == pytest.approx(tr.best_value)


def test_bad_arguments_are_refused(classwise):
    model, sc = classwise
    with pytest.raises(InvalidConfigError, match="budget_s"):
        ob.tune(model, sc, Knob(), progress=False)
    with pytest.raises(InvalidConfigError, match="objective"):
        ob.tune(model, sc, Knob(), n_trials=1, objective="best", progress=False)
    with pytest.raises(InvalidConfigError, match="n_trials"):
        ob.tune(model, sc, Knob(), n_trials=0, progress=False)
    with pytest.raises(InvalidConfigError, match="no parameter 'alpha'"):
        ob.tune(model, sc, Knob(), n_trials=1, progress=False, alpha=1.0)
    with pytest.raises(InvalidConfigError, match="supports classwise"):
        ob.tune(model, toy_scenario("random"), "unsir", n_trials=1, progress=False)


def test_a_failed_trial_is_recorded_not_raised(classwise):
    model, sc = classwise
    tr = ob.tune(model, sc, Knob(fail_above=0.5), n_trials=8, seed=1, progress=False)
    failed = [t for t in tr.trials if t["status"] == "failed"]
    done = [t for t in tr.trials if t["status"] != "failed"]
    assert failed and done
    for t in failed:
        assert t["params"]["push"] > 0.5 and t["value"] is None and "DivergenceError" in t["error"]
    assert tr.best_params["push"] <= 0.5


def test_every_trial_failing_raises_with_the_trials(classwise):
    model, sc = classwise
    with pytest.raises(DivergenceError, match="Every one of the 2 trials") as info:
        ob.tune(model, sc, Knob(fail_above=-1.0), n_trials=2, progress=False)
    assert len(info.value.trials) == 2 and all(t["status"] == "failed" for t in info.value.trials)


def test_budget_s_stops_the_search(classwise):
    model, sc = classwise
    budget = 0.5
    tr = ob.tune(model, sc, Knob(sleep=0.05), budget_s=budget, progress=False)
    last = tr.trials[-1]
    # the search ran until the budget was spent: the budget is checked between trials, after each one's
    # bookkeeping (not in trial_seconds), so the last trial ends within one trial's length of it; and no
    # trial started after it (Optuna checks the budget before creating a trial; the margin covers that bookkeeping)
    assert tr.seconds >= budget
    assert last["started"] + last["trial_seconds"] >= budget - 0.05
    assert max(t["started"] for t in tr.trials) < budget + 0.25


def test_a_budget_that_fits_one_trial_says_the_result_is_no_search(classwise):
    model, sc = classwise
    with pytest.warns(ob.errors.UnlearningWarning, match="only 1 trial fit in budget_s=0.05"):
        tr = ob.tune(model, sc, Knob(sleep=0.3), budget_s=0.05, progress=False)
    assert len(tr.trials) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ob.tune(model, sc, Knob(), budget_s=0.5, progress=False)  # many trials: no such warning
    assert not [w for w in caught if "trial fit in budget" in str(w.message)]


@dataclass(frozen=True, kw_only=True)
class NoConv(Knob):
    """Fails on every model alike, whatever its hyperparameters (like ft_prune on an MLP)."""

    calls: ClassVar[list[int]] = []

    def _unlearn(self, model, scenario, ctx):
        NoConv.calls.append(1)
        raise ob.errors.IncompatibleModelError("the model has no 'conv' weights to prune")


NoConv.name = "noconv"


def test_a_search_whose_first_trials_fail_alike_stops_and_raises_that_error(classwise):
    from obliviate.tuning import SAME_FAILURES

    model, sc = classwise
    NoConv.calls.clear()
    with pytest.raises(ob.errors.IncompatibleModelError, match="no 'conv' weights"):
        ob.tune(model, sc, NoConv(), budget_s=30, progress=False)
    assert len(NoConv.calls) == SAME_FAILURES  # not hundreds of identical failures until the budget runs out
    # failures that differ (they depend on the searched value) are a search failure, as before
    with pytest.raises(DivergenceError, match="Every one of the 4 trials"):
        ob.tune(model, sc, Knob(fail_above=-1.0), n_trials=4, space={"push": Linear(0.1, 1.0)}, progress=False)


def test_missing_optuna_names_the_extra(classwise, monkeypatch):
    model, sc = classwise
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(MissingDependencyError, match=r"pip install obliviate\[tune\]"):
        ob.tune(model, sc, Knob(), n_trials=1, progress=False)


def test_progress_prints_trials_with_an_eta(classwise, capsys):
    model, sc = classwise
    ob.tune(model, sc, Knob(), n_trials=2, progress=True)
    err = capsys.readouterr().err
    assert "trial 2/2" in err and "ETA" in err and "best" in err


# ------------------------------------------------------------------ the proxy
def _wrecked(model):
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in out.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * p.std().clamp_min(1e-3))
    return out


@pytest.mark.parametrize("kind", ["classwise", "random"])
def test_proxy_ranks_a_wrecked_model_worse_than_a_good_one(kind):
    # both toy scenarios (seed 0) hold out the same val split, so the class-wise toy model was trained on the
    # random scenario's training set too
    model, sc = toy_model("classwise"), toy_scenario(kind)
    assert sc.training_set == toy_scenario("classwise").training_set
    a0 = _baseline_accuracy(model, sc, torch.device("cpu"), 512)
    good = copy.deepcopy(model)
    if kind == "classwise":  # never predicts the forgotten class: forget accuracy 0, retained classes untouched
        with torch.no_grad():
            good.head.bias[FORGET_CLASS] -= 100.0
    wrecked = _wrecked(model)
    p_good = proxy_objective(good, sc, original_retained_val_acc=a0)
    p_bad = proxy_objective(wrecked, sc, original_retained_val_acc=a0)
    assert p_bad.value > p_good.value + 0.5
    assert p_bad.val_acc_drop > 0.3 and p_good.val_acc_drop == 0.0
    if kind == "classwise":
        assert p_good.forget == 0.0 and p_good.value == 0.0
    else:
        assert p_good.mia_auc is not None and 0.0 <= p_good.mia_auc <= 1.0


def test_proxy_formula():
    model, sc = toy_model("classwise"), toy_scenario("classwise")
    a0 = _baseline_accuracy(model, sc, torch.device("cpu"), 512)
    t = proxy_objective(model, sc, original_retained_val_acc=a0 + 0.2)  # pretend the input was 20 points better
    assert t.val_acc_drop == pytest.approx(0.2)
    assert t.keep == pytest.approx(0.2 + COLLAPSE_WEIGHT * (0.2 - KEEP_SLACK))
    assert t.value == pytest.approx(t.forget + t.keep) and t.forget == t.forget_acc


def test_proxy_reads_val_and_forget_once():
    model, sc = toy_model("classwise"), toy_scenario("classwise")
    seen = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        proxy_objective(model, sc, original_retained_val_acc=1.0)
    finally:
        handle.remove()
    assert sum(seen) == len(sc.val) + len(sc.forget)


def test_the_input_models_accuracy_is_computed_once_per_model_and_scenario():
    model, sc = toy_model("classwise"), toy_scenario("classwise")
    with torch.no_grad():
        model.head.bias.add_(float(np.pi))  # weights no other test uses: not in the cache yet
    seen = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        a = _baseline_accuracy(model, sc, torch.device("cpu"), 512)
        b = _baseline_accuracy(model, sc, torch.device("cpu"), 512)
    finally:
        handle.remove()
    assert a == b and sum(seen) == len(sc.val)


def test_proxy_with_a_reference_records_the_true_gap_and_its_cost_apart(classwise):
    model, sc = classwise
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference.head.bias[FORGET_CLASS] -= 20.0
    ref_eval = ob.evaluate(reference, sc, metrics=["forget_acc", "retain_acc", "test_acc", "mia_efficacy"])
    tr = ob.tune(model, sc, Knob(), n_trials=2, reference=ref_eval, progress=False)
    assert all(t["true_gap"] is not None for t in tr.trials)
    assert tr.trials[0]["params"]["push"] == 0.0 and tr.trials[0]["true_gap"] > 0.0  # the unchanged model is far from it
    assert tr.comparison_seconds == pytest.approx(sum(t["gap_seconds"] for t in tr.trials)) and tr.comparison_seconds > 0
    assert tr.seconds > tr.comparison_seconds


# ------------------------------------------------------------------ the command line's budget
def test_parse_budget_reads_seconds_minutes_and_trials():
    from obliviate.cli.tune import parse_budget

    assert parse_budget("60s") == (60.0, None)
    assert parse_budget("90") == (90.0, None)
    assert parse_budget("1.5m") == (90.0, None)
    assert parse_budget("20trials") == (None, 20)
    assert parse_budget("30s,10trials") == (30.0, 10)
    for bad in ("", "0s", "abc", "5x", "1.5trials", "0trials", "10s,20s", "1,2,3"):
        with pytest.raises(InvalidConfigError, match="--budget"):
            parse_budget(bad)


# ------------------------------------------------------------------ obliviate tune / unlearn --tune
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from obliviate.cli import main

    path = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--out", str(path)]) == 0
    return path


def test_cli_tune_writes_the_best_run_and_the_trials_table(trained_run, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "best"
    code = main(
        [
            "tune",
            str(trained_run),
            "--scenario",
            "class:3",
            "--method",
            "ssd",
            "--budget",
            "3trials",
            "--set",
            "batch_size=16",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((out / "run.json").read_text())
    table = json.loads((out / "tune.json").read_text())
    assert (out / "model.safetensors").is_file() and (out / "scenario.json").is_file()
    assert len(table["trials"]) == 3 and record["tune"]["trials"] == 3 and record["tune"]["objective"] == "proxy"
    assert record["params"]["batch_size"] == 16 and record["params"]["alpha"] == table["best_params"]["alpha"]
    assert record["timings"]["seconds"] >= record["diagnostics"]["final_run_seconds"]  # the whole search, then the run alone
    assert "ETA" in captured.err and "trial 3/3" in captured.err


def test_cli_tune_refuses_bad_input(trained_run, tmp_path, capsys):
    from obliviate.cli import main

    base = ["tune", str(trained_run), "--scenario", "class:3", "--method", "ssd"]
    assert main([*base, "--objective", "oracle", "--out", str(tmp_path / "a")]) == 2
    assert "--reference" in capsys.readouterr().err
    assert main([*base, "--budget", "5x", "--out", str(tmp_path / "b")]) == 2
    assert "--budget" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_unlearn_tune(trained_run, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "tuned"
    code = main(
        [
            "unlearn",
            str(trained_run),
            "--scenario",
            "class:3",
            "--method",
            "ssd",
            "--tune",
            "2trials",
            "--set",
            "batch_size=16",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    assert record["tune"]["trials"] == 2 and (out / "tune.json").is_file()


@dataclass(frozen=True, kw_only=True)
class Counted(Knob):
    """Knob that counts its runs (a class attribute: instances are frozen and copied per trial)."""

    runs: ClassVar[list[dict]] = []

    def _unlearn(self, model, scenario, ctx):
        Counted.runs.append({"push": self.push, "mode": self.mode})
        return super()._unlearn(model, scenario, ctx)


Counted.name = "counted"


def test_a_point_proposed_again_takes_its_earlier_value_without_running(classwise):
    """TPE proposes repeated points on small categorical spaces; a trial is deterministic, so none runs twice."""
    model, sc = classwise
    Counted.runs.clear()
    space = {"push": Choice(0.0, 0.5, 1.0), "mode": Choice("a", "b")}
    tr = ob.tune(model, sc, Counted(), n_trials=40, space=space, progress=False)
    points = {(t["params"]["push"], t["params"]["mode"]) for t in tr.trials}
    assert len(Counted.runs) == len(points) == 6  # each of the 6 points ran exactly once ...
    assert len(tr.trials) < 40  # ... and the search stopped once the finite space was covered
    for t in tr.trials:
        if t["duplicate_of"] is not None:
            first = tr.trials[t["duplicate_of"]]
            assert t["params"] == first["params"] and t["value"] == first["value"] and t["trial_seconds"] == 0.0
    assert tr.best_value == min(t["value"] for t in tr.trials)


def test_a_continuous_space_is_not_cut_short(classwise):
    model, sc = classwise
    assert len(ob.tune(model, sc, Knob(), n_trials=8, progress=False).trials) == 8


@dataclass(frozen=True, kw_only=True)
class Gradual(Knob):
    """Knob that lowers the forgotten class's bias a quarter of the way per epoch of the shared training loop."""

    epochs_run: ClassVar[list[int]] = []

    def _unlearn(self, model, scenario, ctx):
        done = 0

        def step(_epoch, net):
            nonlocal done
            with torch.no_grad():
                net.head.bias[FORGET_CLASS] -= 5.0 * self.push
            done += 1
            return False

        config = ob.training.TrainConfig(epochs=4, lr=1e-12, batch_size=64, schedule="constant")
        try:
            ctx.fit(model, scenario.forget, config, epoch_end=step)
        finally:
            Gradual.epochs_run.append(done)
        return model


Gradual.name = "gradual"


def test_prune_stops_trials_that_lag_the_median_after_an_epoch(classwise):
    model, sc = classwise
    Gradual.epochs_run.clear()
    tr = ob.tune(model, sc, Gradual(), n_trials=16, prune=True, progress=False, space={"push": Linear(0.0, 1.0)})
    pruned = [t for t in tr.trials if t["status"] == "pruned"]
    assert pruned and all(t["value"] is None and t["error"].startswith("pruned") for t in pruned)
    assert min(Gradual.epochs_run) < 4  # a pruned trial stopped before its last epoch ...
    assert len(Gradual.epochs_run) == len(tr.trials)  # ... and nothing ran twice
    complete = [t for t in tr.trials if t["value"] is not None]
    assert tr.best_value == min(t["value"] for t in complete) and tr.best_result.config["push"] == tr.best_params["push"]


def test_without_prune_every_trial_runs_to_the_end(classwise):
    model, sc = classwise
    Gradual.epochs_run.clear()
    tr = ob.tune(model, sc, Gradual(), n_trials=8, progress=False)
    assert all(t["status"] == "ok" for t in tr.trials) and set(Gradual.epochs_run) == {4}


def test_prune_needs_the_proxy(classwise):
    model, sc = classwise
    with pytest.raises(InvalidConfigError, match="prune"):
        ob.tune(model, sc, Knob(), n_trials=1, prune=True, objective="oracle", reference=model, progress=False)
    with pytest.raises(InvalidConfigError, match="prune"):
        ob.tune(model, sc, Knob(), n_trials=1, prune="yes", progress=False)


def test_the_epoch_report_hook_sees_every_epoch_of_the_shared_loop(classwise):
    from obliviate.methods.base import EPOCH_REPORT

    model, sc = classwise
    seen = []
    token = EPOCH_REPORT.set(lambda epoch, net: seen.append((epoch, net.training)))
    try:
        ob.unlearn(model, sc, "finetune", epochs=3, batch_size=64, device="cpu", progress=False)
    finally:
        EPOCH_REPORT.reset(token)
    assert [e for e, _ in seen] == [0, 1, 2] and all(training for _, training in seen)
