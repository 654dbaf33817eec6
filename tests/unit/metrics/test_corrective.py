"""attack_success_rate and forget_true_acc: the metrics of corrective scenarios, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.errors import MissingDataError
from obliviate.metrics.functional.corrective import attack_success_rate
from obliviate.testing import toy_dataset


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


def _model(sc, seed=0, epochs=10):
    model = ob.build_model("mlp", sc.dataset, seed=seed, hidden=(32,))
    return ob.train(model, sc.train, epochs=epochs, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False)


def test_attack_success_rate_counts_triggered_predictions_of_the_target(toy):
    # the function: the share of arg-max predictions equal to the target
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5]])
    assert attack_success_rate(probs, 0) == 0.5 and attack_success_rate(probs, 1) == 0.25
    assert attack_success_rate(np.array([2, 2, 0]), 2) == pytest.approx(2 / 3)
    assert np.isnan(attack_success_rate(np.zeros((0, 3)), 0))
    # the metric: stamp the test samples of other classes by hand and count the target's predictions
    sc = ob.Scenario.corrupted(toy, 0.1, "backdoor", seed=0, target=4, patch=2)
    res = _model(sc)
    value = ob.evaluate(res, sc, metrics=["attack_success_rate"]).metrics["attack_success_rate"]
    keep = toy.test.targets != 4
    x = toy.test.inputs[torch.as_tensor(keep)].clone()
    x[..., -2:, -2:] = toy.train.inputs.max()
    with torch.no_grad():
        pred = res.model.eval()(x).argmax(1).numpy()
    assert value == pytest.approx(np.mean(pred == 4))
    assert value > 0.5  # the backdoor was learnt (and the count above is not trivially 0)


def test_forget_true_acc_scores_clean_inputs_against_true_labels(toy):
    for kind in ("label_flip", "backdoor"):
        sc = ob.Scenario.corrupted(toy, 0.1, kind, seed=1)
        res = _model(sc)
        ev = ob.evaluate(res, sc, metrics=["forget_true_acc", "forget_acc"]).metrics
        with torch.no_grad():
            pred = res.model.eval()(toy.train.inputs[sc.forget_idx]).argmax(1).numpy()
        assert ev["forget_true_acc"] == pytest.approx(np.mean(pred == toy.train_targets[sc.forget_idx]))
        if kind == "label_flip":  # the same inputs scored against labels that differ: no prediction is right for both
            assert ev["forget_true_acc"] + ev["forget_acc"] <= 1.0 + 1e-12, ev
        else:  # the stamped rows go to the target, their clean inputs to their true classes
            assert ev["forget_acc"] > 0.8 and ev["forget_true_acc"] > 0.5, ev


def test_the_corrective_metrics_are_computed_only_where_the_scenario_has_what_they_read(toy):
    plain = ob.Scenario.random(toy, fraction=0.1, seed=0)
    flip = ob.Scenario.corrupted(toy, 0.1, "label_flip", seed=0)
    door = ob.Scenario.corrupted(toy, 0.1, "backdoor", seed=0)
    for sc, present in ((plain, set()), (flip, {"forget_true_acc"}), (door, {"forget_true_acc", "attack_success_rate"})):
        res = _model(sc, epochs=1)
        got = set(ob.evaluate(res, sc).metrics) & {"forget_true_acc", "attack_success_rate"}
        assert got == present, sc.name
        for name in {"forget_true_acc", "attack_success_rate"} - present:
            with pytest.raises(MissingDataError, match="corrective scenario|backdoor scenario"):
                ob.evaluate(res, sc, metrics=[name])
