"""Every unlearning result is health-checked against the input model (issue 14 item 1)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pytest
import torch

import obliviate as ob
from obliviate.errors import InvalidConfigError, UnlearningWarning
from obliviate.methods.base import COLLAPSE_DROP, UnlearningMethod
from obliviate.testing import toy_model, toy_scenario
from obliviate.training import accuracy


@dataclass(frozen=True, kw_only=True)
class ZeroHead(UnlearningMethod):
    """Wrecks the model without a blow-up: the head's weights become 0 (every input gets one class)."""

    name = "zero_head_for_tests"

    def _unlearn(self, model, scenario, ctx):
        with torch.no_grad():
            model.head.weight.zero_()
        return model


@dataclass(frozen=True, kw_only=True)
class Chatty(UnlearningMethod):
    """Changes nothing, warns twice with the same words."""

    name = "chatty_for_tests"

    def _unlearn(self, model, scenario, ctx):
        for _ in range(2):
            warnings.warn("momentum is ignored here", UnlearningWarning, stacklevel=2)
        return model


def test_a_wrecked_model_is_collapsed_with_a_warning_naming_the_fix() -> None:
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    with pytest.warns(UnlearningWarning, match=r"collapsed the model.*tuning it") as record:
        res = ob.unlearn(model, sc, ZeroHead())
    assert res.status == "collapsed"
    before = accuracy(model, sc.val_retain)
    after = accuracy(res.model, sc.val_retain)
    assert res.diagnostics["val_acc_drop"] == pytest.approx(100 * (before - after))
    assert res.diagnostics["val_acc_drop"] > COLLAPSE_DROP
    assert any("collapsed the model" in n for n in res.notes)
    assert sum("collapsed the model" in str(w.message) for w in record) == 1


def test_a_harmless_run_is_ok_and_the_check_is_timed_apart() -> None:
    sc, model = toy_scenario("random"), toy_model("random")
    res = ob.unlearn(model, sc, "finetune", epochs=1, lr=1e-4)
    assert res.status == "ok"
    assert abs(res.diagnostics["val_acc_drop"]) <= COLLAPSE_DROP
    assert res.diagnostics["health_seconds"] > 0
    assert res.diagnostics["val_acc_before"] == pytest.approx(accuracy(model, sc.val_retain))


def test_val_retain_leaves_out_the_forgotten_class_only() -> None:
    sc = toy_scenario("classwise")
    labels = sc.dataset.train_targets[sc.val_idx]
    assert len(sc.val_retain) == int((labels != 3).sum()) > 0
    assert 3 not in {int(y) for _, y in sc.val_retain}
    random = toy_scenario("random")
    assert len(random.val_retain) == len(random.val)


def test_collapse_drop_is_the_users_threshold() -> None:
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    assert ob.unlearn(model, sc, ZeroHead(), collapse_drop=100.0).status == "ok"
    with pytest.raises(InvalidConfigError, match="collapse_drop"):
        ob.unlearn(model, sc, ZeroHead(), collapse_drop=-1)


def test_warnings_of_a_run_are_kept_as_notes_once_and_still_issued() -> None:
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    with pytest.warns(UnlearningWarning, match="momentum is ignored"):
        res = ob.unlearn(model, sc, Chatty())
    assert res.notes == ["UnlearningWarning: momentum is ignored here"]


def test_without_a_validation_split_the_result_is_unchecked() -> None:
    ds = toy_scenario("classwise").dataset
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0, val_fraction=0.0)
    res = ob.unlearn(toy_model("classwise"), sc, ZeroHead())
    assert res.status == "unchecked" and "val_acc_drop" not in res.diagnostics


def test_the_warning_does_not_suggest_the_preset_that_collapsed() -> None:
    @dataclass(frozen=True, kw_only=True)
    class ZeroHeadWithPresets(ZeroHead):
        strength: float = 1.0
        presets = {"digits": {"strength": 1.0}, "other": {"strength": 2.0}}  # noqa: RUF012

    sc, model = toy_scenario("classwise"), toy_model("classwise")
    with pytest.warns(UnlearningWarning, match=r"Its digits preset does not suit this model; try a preset \(other;"):
        ob.unlearn(model, sc, ZeroHeadWithPresets())
