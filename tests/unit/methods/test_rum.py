"""RUM (Zhao et al., NeurIPS 2024, arXiv:2406.01257): the memorisation split, the sequence of per-subset
deletion requests through the base methods' ``_unlearn``, validation, the contract suite and the digits preset.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import InvalidConfigError
from obliviate.methods.neggrad_plus import NegGradPlus
from obliviate.methods.rum import RUM, confidence_memorisation, memorisation_subsets
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import accuracy, predict


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([v.detach().flatten().double() for v in model.state_dict().values()])


@pytest.mark.slow  # about 20 s on 2 shared cores
def test_contract_suite() -> None:
    report = check_method(RUM)
    assert report["masks"] == report["deterministic"] == report["sanity"] == "ok"


def test_proxy_is_one_minus_the_softmax_probability_of_the_label() -> None:
    sc, model = toy_scenario("random"), toy_model("random")
    scores = confidence_memorisation(model, sc.forget)
    logits, y = predict(model, sc.forget)
    expected = 1.0 - torch.softmax(logits, 1)[torch.arange(len(y)), y].double().numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert scores.shape == (len(sc.forget_idx),) and scores.min() >= 0 and scores.max() <= 1


def test_subsets_are_score_terciles_disjoint_and_cover_the_forget_set() -> None:
    idx = np.arange(100, 111)  # 11 rows
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.0, 0.6, 0.4, 1.0])
    low, mid, high = memorisation_subsets(idx, scores, 3, "increasing")
    assert [len(low), len(mid), len(high)] == [4, 4, 3]
    s = dict(zip(idx.tolist(), scores.tolist(), strict=True))
    assert max(s[i] for i in low) < min(s[i] for i in mid) and max(s[i] for i in mid) < min(s[i] for i in high)
    assert np.array_equal(np.sort(np.concatenate([low, mid, high])), idx)
    first = memorisation_subsets(idx, scores, 3, "decreasing")[0]  # the most memorised come first
    assert np.array_equal(first, np.sort(idx[np.argsort(-scores)[:4]]))


@pytest.mark.parametrize("step_retain", ["retain", "remaining"])
def test_each_step_is_its_own_deletion_request_in_order_on_the_previous_steps_model(monkeypatch, step_retain: str) -> None:
    """The base method's ``_unlearn`` sees each memorisation subset in turn, least memorised first, with the
    right retain set, the scenario's kind, and the model the previous step returned.
    """
    sc, model = toy_scenario("random"), toy_model("random")
    calls: list[dict] = []
    original = NegGradPlus._unlearn

    def spy(self, net, scenario, ctx):
        entry = _flat(net)
        out = original(self, net, scenario, ctx)
        calls.append(
            {
                "forget": scenario.forget_idx.copy(),
                "retain": scenario.retain_idx.copy(),
                "kind": scenario.kind,
                "entry": entry,
                "exit": _flat(out),
                "epochs": self.epochs,
            }
        )
        return out

    monkeypatch.setattr(NegGradPlus, "_unlearn", spy)
    scores = confidence_memorisation(model, sc.forget)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bare nn.Module: unchecked training set
        res = ob.unlearn(model, sc, "rum", preset="digits", step_retain=step_retain, device="cpu", progress=False)
    assert len(calls) == 3
    order = np.argsort(scores, kind="stable")
    expected = [np.sort(part) for part in np.array_split(sc.forget_idx[order], 3)]
    for i, call in enumerate(calls):
        assert np.array_equal(call["forget"], expected[i])
        later = np.concatenate([np.zeros(0, np.int64), *expected[i + 1 :]])
        want = sc.retain_idx if step_retain == "retain" else np.union1d(sc.retain_idx, later)
        assert np.array_equal(call["retain"], want)
        assert call["kind"] == "random" and call["epochs"] == NegGradPlus.presets["digits"]["epochs"]
    mean = [scores[np.searchsorted(sc.forget_idx, e)].mean() for e in expected]
    assert mean[0] < mean[1] < mean[2]
    assert [res.diagnostics[f"step{i}_memorisation"] for i in (1, 2, 3)] == pytest.approx(mean)
    assert torch.equal(calls[1]["entry"], calls[0]["exit"]) and torch.equal(calls[2]["entry"], calls[1]["exit"])
    assert torch.equal(_flat(res.model), calls[2]["exit"])
    assert not torch.equal(calls[0]["entry"], calls[0]["exit"])


def test_rum_forgets_a_class_on_the_toy_model_and_keeps_the_rest() -> None:
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ob.unlearn(model, sc, "rum", preset="digits", device="cpu", progress=False)
    assert accuracy(model, sc.forget) > 0.9
    assert accuracy(res.model, sc.forget) < 0.5 * accuracy(model, sc.forget)
    assert accuracy(res.model, sc.retain) > 0.8
    assert res.diagnostics["passes"] > 0 and {"step1_size", "step2_size", "step3_size"} <= set(res.diagnostics)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"base_methods": ("finetun",)}, "Did you mean 'finetune'"),
        ({"base_methods": ("finetune", "scrub")}, "one method or n_subsets=3 methods"),
        ({"base_methods": ("rum",)}, "cannot name 'rum'"),
        ({"base_methods": ("sgu",)}, "needs_recording"),
        ({"base_methods": ("sisa",)}, "prepares its own model"),
        ({"base_preset": "no_such_preset"}, "does not have"),
        ({"base_methods": "finetune"}, "a tuple"),
    ],
)
def test_invalid_base_methods_are_clear_errors(values: dict, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        RUM(**values)


def test_a_base_method_that_does_not_support_the_scenario_kind_is_refused() -> None:
    sc = toy_scenario("random")
    with pytest.raises(InvalidConfigError, match="boundary_shrink"):
        ob.unlearn(toy_model("random"), sc, "rum", base_methods=("boundary_shrink",), device="cpu", progress=False)


@pytest.mark.slow
def test_digits_preset_forgets_a_class_and_keeps_the_others(digits: ob.DatasetSplits) -> None:
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", digits, seed=0), sc.train, seed=0, device="cpu", progress=False, **DEMO_RECIPE)
    out = ob.unlearn(base, sc, "rum", preset="digits", seed=0, device="cpu", progress=False)
    assert out.status == "ok"
    assert accuracy(base.model, sc.forget) > 0.95
    assert accuracy(out.model, sc.forget) < 0.3
    assert accuracy(out.model, sc.retain) > 0.95


def test_a_corrupted_request_keeps_each_steps_rows_corrupted() -> None:
    """A step of a backdoor request forgets its rows as the model saw them (triggered, target label)."""
    sc = toy_scenario("backdoor")
    subsets = memorisation_subsets(sc.forget_idx, np.arange(len(sc.forget_idx), dtype=float), 3, "increasing")
    step = RUM()._step_scenario(sc, subsets, 1)
    assert step.kind == "corrupted" and np.array_equal(step.forget_idx, subsets[1])
    assert np.array_equal(step.retain_idx, sc.retain_idx) and step.training_set != sc.training_set
    rows = np.searchsorted(sc.forget_idx, subsets[1])
    for j, r in enumerate(rows):
        x_step, y_step = step.forget[j]
        x_all, y_all = sc.forget[int(r)]
        assert torch.equal(torch.as_tensor(x_step), torch.as_tensor(x_all)) and int(y_step) == int(y_all)
    untrained = ob.build_model("cnn", sc.dataset, seed=0, width=4)  # refused before any training
    with warnings.catch_warnings(), pytest.raises(InvalidConfigError, match="step_retain='retain'"):
        warnings.simplefilter("ignore")  # a bare nn.Module: unchecked training set
        ob.unlearn(untrained, sc, "rum", step_retain="remaining", device="cpu", progress=False)
