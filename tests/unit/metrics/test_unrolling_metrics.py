"""Verification error, the unlearning-error proxy, the privacy risk metric, and their place in evaluate."""

import math

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.errors import InvalidConfigError, MissingDataError
from obliviate.hessian import top_eigenvalue
from obliviate.metrics.functional import unlearning_error
from obliviate.metrics.privacy_risk import PrivacyRiskScorer
from obliviate.metrics.unrolling import unlearning_error_terms, verification_errors
from obliviate.recording import Recorder, logit_loss
from obliviate.testing import toy_dataset

PLAIN = dict(momentum=0.0, weight_decay=0.0, schedule="constant", device="cpu", progress=False)


@pytest.fixture(scope="module")
def run():
    toy = toy_dataset()
    sc = ob.Scenario.from_indices(toy, np.arange(0, 250, 10), val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=0, hidden=(16,))
    res = ob.train(model, sc.train, epochs=2, lr=0.1, batch_size=32, record=True, **PLAIN)
    return sc, model, res


def test_unlearning_error_formula():
    assert unlearning_error(0.1, 10, 2.0, 3.0) == pytest.approx(0.3)
    assert unlearning_error(0.1, 0, 2.0, 3.0) == 0.0
    assert math.isnan(unlearning_error(0.1, 10, 2.0, float("nan")))
    with pytest.raises(InvalidConfigError, match="lr"):
        unlearning_error(-0.1, 10, 2.0, 3.0)


def test_unlearning_error_terms_follow_the_recording(run):
    sc, model, res = run
    rec = res.recording
    terms = unlearning_error_terms(res.model, rec, sc)
    first = int(np.flatnonzero(rec.steps_holding(rec.positions(sc.forget_idx)))[0])
    assert terms["steps"] == rec.num_steps - 1 - first
    assert terms["lr"] == pytest.approx(0.1)
    drift = float(
        torch.cat([(a - b).detach().reshape(-1) for a, b in zip(res.model.parameters(), model.parameters(), strict=True)]).norm()
    )
    assert terms["drift"] == pytest.approx(drift, rel=1e-6)
    # σ̄ without measurements in the recording: |λ| at w_0 and at w_T on the first 256 training samples
    x, y = next(iter(ob.data.iterate_batches(rec.training_data(sc.dataset.train), 256, device=torch.device("cpu"))))
    sigmas = [abs(top_eigenvalue(m, x, y).eigenvalue) for m in (model, res.model)]
    assert terms["sigma_measurements"] == 2 and terms["sigma_bar"] == pytest.approx(np.mean(sigmas), rel=1e-9)
    assert terms["unlearning_error"] == pytest.approx(0.1**2 / 2 * terms["steps"] * drift * np.mean(sigmas), rel=1e-6)


def test_unlearning_error_uses_the_measurements_made_during_training():
    toy = toy_dataset()
    sc = ob.Scenario.from_indices(toy, [5, 6, 7], val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=0, hidden=(8,))
    rec = ob.train(
        model, sc.train, epochs=1, lr=0.1, batch_size=32, record=Recorder(hessian_every=3), std_reg=1.0, **PLAIN
    ).recording
    assert len(rec.hessian_eigenvalues) == 1 + rec.num_steps // 3
    terms = unlearning_error_terms(model, rec, sc)
    assert terms["sigma_bar"] == pytest.approx(np.mean(np.abs(rec.hessian_eigenvalues)))
    legacy = unlearning_error_terms(model, rec, sc, sigma_mode="sqrt_eig")
    if np.all(rec.hessian_eigenvalues > 0):
        assert legacy["sigma_bar"] == pytest.approx(np.mean(np.sqrt(rec.hessian_eigenvalues)))
    # the recorder measured the training loss: cross-entropy plus the SD penalty
    x, y = next(iter(ob.data.iterate_batches(rec.training_data(toy.train), 256, device=torch.device("cpu"))))
    net = ob.build_model("mlp", toy, seed=0, hidden=(8,))
    assert rec.hessian_eigenvalues[0] == pytest.approx(top_eigenvalue(net, x, y, loss=logit_loss(0.0, 1.0), seed=0).eigenvalue)


def test_evaluate_reports_the_verification_error_with_the_no_op_baseline(run):
    sc, model, res = run
    assert not {"verification_error", "unlearning_error", "privacy_risk"} & set(ob.evaluate(res.model, sc).metrics)
    ev = ob.evaluate(res.model, sc, metrics=["forget_acc", "verification_error", "unlearning_error"], recording=res.recording)
    assert ev["verification_error"] == pytest.approx(ev["verification_error_noop"])  # the original model is the no-op
    direct = verification_errors(res.model, res.recording, sc)
    assert direct["verification_error"] == ev["verification_error"] > 0
    assert ev["unlearning_error"] > 0
    with pytest.raises(MissingDataError, match="record=True"):
        ob.evaluate(res.model, sc, metrics=["verification_error"])
    with pytest.raises(MissingDataError, match="risk_scorer"):
        ob.evaluate(res.model, sc, metrics=["privacy_risk"])
    for name in ("verification_error", "verification_error_noop", "unlearning_error", "privacy_risk"):
        assert ob.METRICS.get(name).opt_in


def test_privacy_risk_is_higher_for_the_original_model_than_for_the_retrained_one(class3):
    toy = toy_dataset()
    sc = ob.Scenario.classwise(toy, forget_class=3, seed=0)
    recipe = ob.TrainConfig(epochs=15, lr=0.05, batch_size=32, schedule="cosine", weight_decay=0.0)
    model = ob.build_model("mlp", toy, seed=0, hidden=(32,))
    original = ob.train(model, sc.train, recipe, device="cpu", progress=False).model
    retrained = ob.unlearn(original, sc, "retrain", device="cpu", **recipe.to_dict()).model
    scorer = PrivacyRiskScorer.fit(model, sc, recipe=recipe, shadow_models=2, device="cpu")
    assert len(scorer.member_scores) == 2 * (len(sc.train) // 2)
    ev_orig = ob.evaluate(original, sc, metrics=["privacy_risk"], risk_scorer=scorer)
    ev_retr = ob.evaluate(retrained, sc, metrics=["privacy_risk"], risk_scorer=scorer)
    assert ev_orig["privacy_risk"] > ev_retr["privacy_risk"] + 0.1
    risks = scorer.risks(original, sc.forget)
    assert risks.shape == (len(sc.forget),) and np.all((risks >= 0) & (risks <= 1))
    legacy = PrivacyRiskScorer.fit(model, sc, recipe=recipe, legacy_unrolling_sgd=True, device="cpu")
    assert legacy.num_bins is None and legacy.legacy_unrolling_sgd
    with pytest.raises(MissingDataError, match="recipe"):
        PrivacyRiskScorer.fit(model, sc)
