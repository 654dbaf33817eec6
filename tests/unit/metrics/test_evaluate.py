"""``obliviate.evaluate``: which metrics it returns, and that each equals its definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.errors import InvalidConfigError, MissingDataError, UnknownNameError
from obliviate.evaluation import GAP_METRICS, Evaluation
from obliviate.metrics import METRICS
from obliviate.metrics import functional as MF
from obliviate.testing import toy_scenario
from obliviate.training import accuracy, predict

REFERENCE_METRICS = {"avg_gap", "weight_distance", "js_divergence", "kl_divergence", "activation_distance", "tow"}
# metrics of corrective scenarios (Scenario.corrupted): not available on the class-wise and random ones here
CORRECTIVE_METRICS = {n for n in METRICS.names() if {"corruption", "trigger"} & set(METRICS.get(n).requires)}
PLAIN_METRICS = {
    n for n in METRICS.names() if not METRICS.get(n).needs_reference and not METRICS.get(n).opt_in
} - CORRECTIVE_METRICS


def _mlp(sc: ob.Scenario, data, seed: int) -> nn.Module:
    model = ob.build_model("mlp", sc.dataset, seed=seed, hidden=(32,), dropout=0.1)
    return ob.train(model, data, epochs=5, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False).model


@pytest.fixture(scope="module")
def sc_class() -> ob.Scenario:
    return toy_scenario("classwise")


@pytest.fixture(scope="module")
def sc_random() -> ob.Scenario:
    return toy_scenario("random")


@pytest.fixture(scope="module")
def model(sc_class) -> nn.Module:
    """The "unlearned" model: here simply trained on all of D_r ∪ D_f."""
    return _mlp(sc_class, sc_class.train, seed=0)


@pytest.fixture(scope="module")
def oracle(sc_class) -> nn.Module:
    """The reference: trained on D_r only, from another seed."""
    return _mlp(sc_class, sc_class.retain, seed=1)


@pytest.fixture(scope="module")
def model_random(sc_random) -> nn.Module:
    return _mlp(sc_random, sc_random.train, seed=0)


@pytest.fixture(scope="module")
def ev(model, sc_class) -> Evaluation:
    return ob.evaluate(model, sc_class)


@pytest.fixture(scope="module")
def ev_oracle(oracle, sc_class) -> Evaluation:
    return ob.evaluate(oracle, sc_class)


@pytest.fixture(scope="module")
def ev_ref(model, sc_class, oracle) -> Evaluation:
    return ob.evaluate(model, sc_class, reference=oracle)


def _forget_probs_direct(net: nn.Module, sc: ob.Scenario) -> np.ndarray:
    """Softmax outputs on D_f computed without obliviate's inference helpers."""
    xs = torch.stack([torch.as_tensor(sc.forget[i][0]) for i in range(len(sc.forget))])
    was = net.training
    net.eval()
    with torch.no_grad():
        out = torch.softmax(net(xs).double(), dim=1).numpy()
    net.train(was)
    return out


def _probs(net: nn.Module, data) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = predict(net, data)
    return torch.softmax(logits.double(), dim=1).numpy(), labels.numpy()


# ---------------------------------------------------------------------------------- which metrics
def test_default_metrics_are_all_non_reference_metrics_of_the_registry(ev):
    assert set(ev.metrics) == PLAIN_METRICS
    assert REFERENCE_METRICS.isdisjoint(ev.metrics)
    assert all(math.isfinite(v) for v in ev.metrics.values())


def test_reference_adds_avg_gap_weight_distance_and_output_divergences(ev_ref, ev):
    assert set(ev_ref.metrics) == {n for n in METRICS.names() if not METRICS.get(n).opt_in} - CORRECTIVE_METRICS
    assert set(ev_ref.metrics) - set(ev.metrics) == REFERENCE_METRICS
    assert {n for n in METRICS.names() if METRICS.get(n).needs_reference} == REFERENCE_METRICS


@pytest.mark.parametrize("name", sorted(REFERENCE_METRICS))
def test_reference_only_metric_without_reference_raises_missing_data(model, sc_class, name):
    with pytest.raises(MissingDataError, match=f"Metric '{name}' needs the retrained model"):
        ob.evaluate(model, sc_class, metrics=[name, "forget_acc"])


def test_unknown_metric_name_raises_unknown_name_error_suggesting_close_name(model, sc_class):
    with pytest.raises(UnknownNameError, match=r"Unknown metric 'forget_ac'\. Did you mean 'forget_acc'") as info:
        ob.evaluate(model, sc_class, metrics=["forget_ac"])
    assert isinstance(info.value, KeyError)
    assert "Valid metrics:" in str(info.value) and "mia_efficacy_confidence" in str(info.value)


def test_requested_subset_returns_only_those_metrics_with_the_full_run_values(model, sc_class, oracle, ev_ref):
    sub = ob.evaluate(model, sc_class, reference=oracle, metrics=["avg_gap", "retain_acc", "mia_auc_loss"])
    assert set(sub.metrics) == {"avg_gap", "retain_acc", "mia_auc_loss"}
    for k, v in sub.metrics.items():
        assert v == ev_ref[k]
    single = ob.evaluate(model, sc_class, metrics="forget_acc")
    assert list(single.metrics) == ["forget_acc"]


# ---------------------------------------------------------------------------------- accuracies
def test_classwise_accuracies_match_training_accuracy_on_the_right_splits(ev, model, sc_class):
    # obliviate.training.accuracy averages in float32, hence the float32-level tolerance
    assert len(sc_class.test_retain) < len(sc_class.test)  # the forgotten class has test samples
    assert ev["forget_acc"] == pytest.approx(accuracy(model, sc_class.forget), abs=1e-6)
    assert ev["retain_acc"] == pytest.approx(accuracy(model, sc_class.retain), abs=1e-6)
    assert ev["val_acc"] == pytest.approx(accuracy(model, sc_class.val), abs=1e-6)
    assert ev["test_acc"] == pytest.approx(accuracy(model, sc_class.test_retain), abs=1e-6)
    assert ev["test_forget_acc"] == pytest.approx(accuracy(model, sc_class.test_forget), abs=1e-6)
    assert ev["test_acc"] != pytest.approx(accuracy(model, sc_class.test), abs=1e-6)


def test_classwise_test_acc_excludes_forgotten_class_samples(ev, model, sc_class):
    test_labels = sc_class.dataset.test_targets[sc_class.test_idx]
    keep = test_labels != sc_class.params["forget_class"]
    logits, y = predict(model, sc_class.test)
    correct = (logits.argmax(1) == y).numpy()
    assert ev["test_acc"] == pytest.approx(correct[keep].mean(), abs=1e-12)
    assert ev["test_forget_acc"] == pytest.approx(correct[~keep].mean(), abs=1e-12)


def test_random_scenario_test_acc_uses_whole_test_set(model_random, sc_random):
    ev = ob.evaluate(model_random, sc_random, metrics=["test_acc", "forget_acc"])
    assert len(sc_random.test_retain) == len(sc_random.test)
    assert ev["test_acc"] == pytest.approx(accuracy(model_random, sc_random.test), abs=1e-6)
    logits, y = predict(model_random, sc_random.test)
    assert len(y) == len(sc_random.dataset.test)
    assert ev["test_acc"] == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-12)


def test_random_scenario_default_metrics_leave_out_test_forget_acc(model_random, sc_random):
    ev = ob.evaluate(model_random, sc_random)
    assert "test_forget_acc" not in ev.metrics
    assert set(ev.metrics) == PLAIN_METRICS - {"test_forget_acc"}


# ---------------------------------------------------------------------------------- attacks
def test_mia_efficacy_is_mia_efficacy_confidence(ev):
    assert ev["mia_efficacy"] == ev["mia_efficacy_confidence"]


@pytest.mark.parametrize("seed", [0, 3])
def test_attacks_use_retain_as_members_and_test_retain_as_nonmembers(model, sc_class, seed):
    ev = ob.evaluate(model, sc_class, seed=seed)
    p_r, y_r = _probs(model, sc_class.retain)
    p_t, y_t = _probs(model, sc_class.test_retain)
    p_f, y_f = _probs(model, sc_class.forget)
    for f in MF.FEATURES:
        fr, ft, ff = (MF.mia_feature(p, y, f) for p, y in ((p_r, y_r), (p_t, y_t), (p_f, y_f)))
        assert ev[f"mia_efficacy_{f}"] == pytest.approx(MF.mia_efficacy(fr, ft, ff, seed=seed), abs=1e-12), f
        expected_auc = MF.mia_auc(MF.member_score(ff, f), MF.member_score(ft, f))
        assert ev[f"mia_auc_{f}"] == pytest.approx(expected_auc, abs=1e-12), f
    ent = [MF.mia_feature(p, y, "entropy") for p, y in ((p_r, y_r), (p_t, y_t), (p_f, y_f))]
    assert ev["mia_entropy_lr"] == pytest.approx(MF.mia_entropy_lr(*ent), abs=1e-12)


# ---------------------------------------------------------------------------------- reference metrics
def test_avg_gap_is_mean_absolute_gap_over_forget_retain_test_and_mia_efficacy(ev_ref, ev_oracle):
    assert GAP_METRICS == ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")
    gaps = [abs(ev_ref[m] - ev_oracle[m]) for m in ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")]
    assert ev_ref["avg_gap"] == pytest.approx(float(np.mean(gaps)), abs=1e-12)
    assert ev_ref["avg_gap"] > 0.1  # the oracle never saw class 3: a real gap


def test_weight_and_output_distances_match_functional_definitions(ev_ref, model, oracle, sc_class):
    assert ev_ref["weight_distance"] == pytest.approx(MF.weight_distance(model, oracle), rel=1e-12)
    p_model, p_oracle = _forget_probs_direct(model, sc_class), _forget_probs_direct(oracle, sc_class)
    assert ev_ref["js_divergence"] == pytest.approx(MF.js_divergence(p_model, p_oracle), rel=1e-6)
    assert ev_ref["activation_distance"] == pytest.approx(MF.activation_distance(p_model, p_oracle), rel=1e-6)
    # KL(p_oracle || p_model), not the other way round
    kl = MF.kl_divergence(p_oracle, p_model)
    assert ev_ref["kl_divergence"] == pytest.approx(kl, rel=1e-6)
    assert abs(kl - MF.kl_divergence(p_model, p_oracle)) > 1e-3
    assert 0.0 < ev_ref["js_divergence"] <= math.log(2)


def test_reference_against_itself_gives_zero_gap_and_distances(oracle, sc_class):
    ev = ob.evaluate(oracle, sc_class, reference=oracle)
    assert ev["avg_gap"] == 0.0
    assert ev["weight_distance"] == 0.0
    assert ev["js_divergence"] == pytest.approx(0.0, abs=1e-15)
    assert ev["kl_divergence"] == pytest.approx(0.0, abs=1e-15)
    assert ev["activation_distance"] == 0.0


def test_evaluation_of_reference_gives_same_numbers_as_reference_model(model, sc_class, oracle, ev_ref, ev_oracle):
    via_evaluation = ob.evaluate(model, sc_class, reference=ev_oracle)
    assert via_evaluation.metrics == ev_ref.metrics
    assert list(via_evaluation.metrics) == list(ev_ref.metrics)


def test_reference_evaluation_lacking_gap_metrics_raises_missing_data(model, sc_class, oracle):
    partial = ob.evaluate(oracle, sc_class, metrics=["forget_acc"])
    with pytest.raises(MissingDataError, match="lacks"):
        ob.evaluate(model, sc_class, reference=partial, metrics=["avg_gap"])


# ---------------------------------------------------------------------------------- ranges, modes, determinism
def test_fraction_metrics_lie_in_unit_interval_and_others_are_non_negative(ev_ref):
    for name, value in ev_ref.metrics.items():
        if METRICS.get(name).fraction:
            assert 0.0 <= value <= 1.0, name
        else:
            assert math.isfinite(value) and value >= 0.0, name
    assert ev_ref["weight_distance"] > 0.0


def test_two_evaluate_calls_give_identical_metrics(model, sc_class, oracle, ev_ref):
    again = ob.evaluate(model, sc_class, reference=oracle)
    assert again.metrics == ev_ref.metrics


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_leaves_model_and_reference_train_eval_mode_as_it_was(sc_class, training):
    net = ob.build_model("cnn", sc_class.dataset, seed=0, width=4, dropout=0.3)
    ref = ob.build_model("cnn", sc_class.dataset, seed=1, width=4, dropout=0.3)
    net.train(training)
    ref.train(training)
    ob.evaluate(net, sc_class, reference=ref, metrics=["forget_acc", "avg_gap", "js_divergence"])
    assert all(m.training is training for m in net.modules())
    assert all(m.training is training for m in ref.modules())


def test_evaluate_restores_mixed_per_module_modes(sc_class):
    net = ob.build_model("cnn", sc_class.dataset, seed=0, width=4)
    net.train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    bns[0].eval()  # e.g. a frozen BatchNorm during fine-tuning
    before = [m.training for m in net.modules()]
    ob.evaluate(net, sc_class, metrics=["forget_acc"])
    assert [m.training for m in net.modules()] == before


def test_evaluate_runs_model_in_eval_mode_even_if_it_is_training(sc_class):
    net = ob.build_model("cnn", sc_class.dataset, seed=0, width=4, dropout=0.5)
    net.eval()
    in_eval = ob.evaluate(net, sc_class, metrics=["forget_acc", "retain_acc", "test_acc", "mia_auc_entropy"])
    net.train()
    in_train = ob.evaluate(net, sc_class, metrics=["forget_acc", "retain_acc", "test_acc", "mia_auc_entropy"])
    assert in_train.metrics == in_eval.metrics


# ---------------------------------------------------------------------------------- bad input
def test_evaluate_rejects_non_module_model_and_bad_reference(model, sc_class):
    with pytest.raises(InvalidConfigError, match="'model' argument of evaluate must be a torch.nn.Module"):
        ob.evaluate("not a model", sc_class)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="'scenario' argument of evaluate must be a Scenario"):
        ob.evaluate(model, "class:3")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="'reference' argument of evaluate must be a model or an Evaluation"):
        ob.evaluate(model, sc_class, reference={"forget_acc": 1.0})  # type: ignore[arg-type]


def test_evaluate_with_empty_forget_set_raises_missing_data(model, sc_class):
    empty = ob.Scenario(
        dataset=sc_class.dataset,
        forget_idx=np.zeros(0, np.int64),
        retain_idx=sc_class.retain_idx,
        val_idx=sc_class.val_idx,
        test_idx=sc_class.test_idx,
        name="empty",
    )
    with pytest.raises(MissingDataError, match="empty forget set"):
        ob.evaluate(model, empty, metrics=["retain_acc"])
