"""obliviate.bench.curves: loss histograms on shared edges and the loss-attack ROC curve of one run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import obliviate as ob
from obliviate.bench.curves import FPR_GRID, LOSS_EDGES, loss_histogram, record_curves, roc_on_grid, sample_losses
from obliviate.evaluation import Evaluation
from obliviate.metrics.context import SplitOutputs
from obliviate.testing import toy_dataset, toy_scenario

pytestmark = pytest.mark.filterwarnings("ignore::obliviate.errors.UncheckedTrainingSetWarning")


def test_sample_losses_are_the_cross_entropy_with_clipping():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
    losses = sample_losses(probs, np.array([0, 1, 1]))
    np.testing.assert_allclose(losses, [np.log(2), -np.log(0.1), -np.log(1e-12)])


def test_histogram_folds_out_of_range_losses_into_the_end_bins():
    counts = loss_histogram(np.array([0.0, 1e-9, 1.0, 1e5, np.log(2)]))
    assert sum(counts) == 5 and len(counts) == len(LOSS_EDGES) - 1
    assert counts[0] == 2 and counts[-1] == 1


def test_roc_auc_equals_sklearn_and_runs_from_0_0_to_1_1():
    rng = np.random.default_rng(0)
    members, nonmembers = rng.normal(0.5, 1.0, 80), rng.normal(0.0, 1.0, 60)
    roc = roc_on_grid(members, nonmembers)
    y = np.r_[np.ones(80), np.zeros(60)]
    assert roc["auc"] == pytest.approx(roc_auc_score(y, np.r_[members, nonmembers]), abs=1e-12)
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
    assert len(roc["fpr"]) == len(roc["tpr"]) == len(FPR_GRID) <= 51
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["tpr"]) >= -1e-12)  # monotone curve
    # the area under the resampled curve is close to the exact AUC (the grid is 0.025 wide)
    assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(roc["auc"], abs=0.03)


def test_roc_of_a_perfect_and_a_useless_score():
    perfect = roc_on_grid(np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0]))
    assert perfect["auc"] == 1.0
    assert perfect["tpr"][1] == 1.0 and min(perfect["tpr"][1:]) == 1.0  # all members found before any false positive
    same = roc_on_grid(np.zeros(10), np.zeros(10))
    assert same["auc"] == 0.5
    np.testing.assert_allclose(same["tpr"][1:], same["fpr"][1:], atol=1e-12)  # the diagonal


SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def runs():
    """Per (kind, seed): the scenario, an MLP trained on its training set (it saw the forget set for 30 epochs: the
    no-op original) and one trained on the retain set only (the oracle), each evaluated.
    """
    out = {}
    ds = toy_dataset()
    for kind in ("classwise", "random"):
        for seed in SEEDS:
            sc = toy_scenario(kind, seed)
            recipe = {"epochs": 30, "lr": 0.1, "batch_size": 32, "seed": seed, "device": "cpu", "progress": False}
            original = ob.train(ob.build_model("mlp", ds, seed=seed), sc.train, **recipe)
            oracle = ob.train(ob.build_model("mlp", ds, seed=seed), sc.retain, **recipe).model
            metrics = ["forget_acc", "val_acc", "mia_efficacy"]
            out[kind, seed] = (
                sc,
                ob.evaluate(original, sc, metrics=metrics, device="cpu"),
                ob.evaluate(oracle, sc, metrics=metrics, device="cpu"),
            )
    return out


def _evaluation(runs, kind: str):
    sc, ev, _ = runs[kind, 0]
    return ev, sc


@pytest.mark.parametrize("kind", ["classwise", "random"])
def test_record_curves_of_a_memorising_model(runs, kind):
    ev, sc = _evaluation(runs, kind)
    curves = record_curves(ev, sc)
    hist = curves["loss_hist"]
    assert hist["edges"] == pytest.approx(list(LOSS_EDGES), rel=1e-5)
    assert sum(hist["forget"]) == len(sc.forget) and sum(hist["val"]) == len(sc.val) > 0
    roc = curves["mia_roc"]
    nonmembers = "test_forget" if kind == "classwise" else "test_retain"
    assert roc["members"] == "forget" and roc["nonmembers"] == nonmembers
    text = json.dumps(curves)
    assert json.loads(text) == curves and len(text) < 8000
    # the original saw the forget set for 30 epochs: its losses there are lower than on unseen samples of the same
    # distribution (mean AUC 0.69 class-wise, 0.66 random); the oracle never saw it (0.29 class-wise: the forgotten
    # class is unknown to it, and its 4 test samples happen to be easier)
    original = np.mean([record_curves(runs[kind, s][1], runs[kind, s][0])["mia_roc"]["auc"] for s in SEEDS])
    oracle = np.mean([record_curves(runs[kind, s][2], runs[kind, s][0])["mia_roc"]["auc"] for s in SEEDS])
    assert original > 0.6
    if kind == "classwise":
        assert original > oracle + 0.2


def test_missing_splits_are_computed_from_the_model_and_equal_the_stored_ones(runs):
    ev, sc = _evaluation(runs, "classwise")
    full = record_curves(ev, sc)
    bare = Evaluation(metrics={}, scenario=sc.name, model=ev.model)  # no stored outputs at all
    assert record_curves(bare, sc) == full


def test_histograms_of_different_runs_share_edges_and_can_be_summed(runs):
    ev_c, sc_c = _evaluation(runs, "classwise")
    ev_r, sc_r = _evaluation(runs, "random")
    a, b = record_curves(ev_c, sc_c)["loss_hist"], record_curves(ev_r, sc_r)["loss_hist"]
    assert a["edges"] == b["edges"]
    total = np.add(a["forget"], b["forget"])
    assert total.sum() == len(sc_c.forget) + len(sc_r.forget)


def test_no_roc_when_the_nonmember_side_is_empty(runs):
    ev, sc = _evaluation(runs, "classwise")
    splits = {**ev.splits, "test_forget": SplitOutputs(np.zeros((0, 0)), np.zeros(0, np.int64))}
    curves = record_curves(Evaluation(metrics={}, scenario=sc.name, model=ev.model, splits=splits), sc)
    assert "mia_roc" not in curves and sum(curves["loss_hist"]["forget"]) == len(sc.forget)
    assert "mia_roc" in record_curves(ev, sc)
