"""Oracles of certified removal (theory-seeds.md §5, oracles 1-3).

1. Ridge (squared) loss: the Newton removal is exact, so removing equals retraining with the same
   noise to 1e-10.
2. Logistic regression on digits 3-vs-8 and breast cancer: after every removal the true gradient
   residual (recomputed from scratch, ``+ b`` included) is below the accumulated bound; each
   data-dependent bound is below the worst-case one; the removed model is within
   ``residual / (lam n')`` of the model retrained with the same noise, and closer for larger lam.
3. Budget: the accumulated bound and the certified epsilon are monotone between retrains, a
   retrain happens exactly when the next removal would exceed ``sigma epsilon / c``, and it draws a
   fresh noise vector.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.preprocessing import StandardScaler

from obliviate.certified import CertifiedLogisticRegression, CertifiedRidgeClassifier, c_from_delta

# the seeds here are deliberate (reproducible tests): the warning is tested in test_secrecy.py
pytestmark = pytest.mark.filterwarnings("ignore::obliviate.certified.SeededNoiseWarning")


def digits_3_vs_8():
    d = load_digits()
    keep = np.isin(d.target, [3, 8])
    return d.data[keep], d.target[keep]


def breast_cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def all_digits():
    d = load_digits()
    return d.data, d.target


@pytest.mark.parametrize(("data", "mode"), [(breast_cancer, "binary"), (all_digits, "ovr")])
def test_ridge_newton_removal_equals_retraining(data, mode):
    x, y = data()
    kw = dict(lam=1e-2, sigma=1.0, random_state=7, mode=mode)
    model = CertifiedRidgeClassifier(**kw).fit(x, y)
    removed: list[int] = []
    for batch in ([10], [3], [50, 51, 52, 400], [0]):
        model.remove(batch)
        removed += batch
        keep = np.setdiff1d(np.arange(len(y)), removed)
        retrained = CertifiedRidgeClassifier(**kw).fit(x[keep], y[keep])  # the same seed draws the same b
        assert np.abs(model._w - retrained._w).max() <= 1e-10
        assert model.gradient_residual() <= 1e-9


@pytest.mark.parametrize(("data", "lam"), [(digits_3_vs_8, 1e-2), (breast_cancer, 1e-2), (breast_cancer, 1e-3)])
def test_true_residual_stays_under_the_accumulated_bound(data, lam):
    x, y = data()
    kw = dict(lam=lam, sigma=10.0, epsilon=1e6, random_state=0)  # a budget too large to retrain: pure accumulation
    model = CertifiedLogisticRegression(**kw).fit(x, y)
    order = np.random.default_rng(0).permutation(len(y))[:40]
    batches = [[int(i)] for i in order[:30]] + [list(map(int, order[30:40]))]  # 30 single removals, one batch of 10
    ratios = []
    for batch in batches:
        report = model.remove(batch)
        true = model.gradient_residual()
        assert true <= model.residual_bound_, (true, model.residual_bound_)
        assert report.data_dependent <= report.worst_case
        ratios.append(model.residual_bound_ / true)
    assert min(ratios) > 1.0
    keep = np.setdiff1d(np.arange(len(y)), model.removed_)
    retrained = CertifiedLogisticRegression(**kw).fit(x[keep], y[keep])
    gap = np.linalg.norm(model._w - retrained._w)
    # strong convexity (modulus lam n'): ||w - w*|| <= ||grad L(w)|| / (lam n')
    assert gap <= model.gradient_residual() / (lam * len(keep)) * (1 + 1e-6)


def test_the_removed_model_gets_closer_to_retraining_as_lam_grows():
    x, y = breast_cancer()
    gaps = []
    for lam in (1e-3, 1e-2, 1e-1):
        kw = dict(lam=lam, sigma=10.0, epsilon=1e6, random_state=0)
        model = CertifiedLogisticRegression(**kw).fit(x, y)
        for i in range(20):
            model.remove([i])
        retrained = CertifiedLogisticRegression(**kw).fit(x[20:], y[20:])
        gaps.append(np.linalg.norm(model._w - retrained._w))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] < 0.2


def test_one_vs_rest_with_subsampling_stays_under_the_bound():
    x, y = all_digits()
    model = CertifiedLogisticRegression(lam=1e-2, sigma=1.0, epsilon=1e6, subsample=0.5, random_state=1).fit(x, y)
    for i in np.random.default_rng(1).permutation(len(y))[:25]:
        report = model.remove([int(i)])
        assert model.gradient_residual() <= model.residual_bound_
        assert report.data_dependent <= report.worst_case


def _charges(kw, x, y, k):
    twin = CertifiedLogisticRegression(**{**kw, "epsilon": 1e6, "auto_retrain": False}).fit(x, y)
    betas = [twin.residual_bound_]
    for i in range(k):
        betas.append(twin.remove([i]).beta)
    return betas


def test_budget_is_monotone_and_the_retrain_happens_exactly_at_the_threshold():
    x, y = digits_3_vs_8()
    kw = dict(lam=1e-2, sigma=10.0, delta=1e-4, random_state=3)
    betas = _charges(kw, x, y, 8)  # the accumulated bound after 0..8 removals, without any retrain
    assert betas == sorted(betas)
    c = c_from_delta(1e-4)
    # a budget between beta_5 and beta_6: removals 1-5 are charged, removal 6 retrains
    model = CertifiedLogisticRegression(**kw, epsilon=c * 0.5 * (betas[5] + betas[6]) / 10.0).fit(x, y)
    b0 = model._b.copy()
    reports = [model.remove([i]) for i in range(6)]
    assert [r.retrained for r in reports] == [False] * 5 + [True]
    np.testing.assert_allclose([r.beta for r in reports[:5]], betas[1:6], rtol=1e-12)
    eps = [r.epsilon for r in reports[:5]]
    assert eps == sorted(eps)
    assert not np.allclose(model._b, b0) and model.retrain_count_ == 1  # fresh noise
    assert reports[5].beta == model.training_residual_ <= model.tol
    assert model.gradient_residual() <= model.tol  # the retrained model is the exact minimiser on D'
    # exactly at the threshold (<=) the removal is still charged; just above it retrains
    at = CertifiedLogisticRegression(**kw, epsilon=1.0).fit(x, y)
    at.budget_.budget = betas[5]
    assert [at.remove([i]).retrained for i in range(6)] == [False] * 5 + [True]
    assert at.history_[4].beta == pytest.approx(betas[5], rel=1e-12)
