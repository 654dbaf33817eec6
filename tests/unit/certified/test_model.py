"""CertifiedLogisticRegression / CertifiedRidgeClassifier: API, removal maths, budget, persistence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler

from obliviate.certified import CertifiedLogisticRegression, CertifiedRidgeClassifier
from obliviate.errors import (
    BudgetExhaustedError,
    ConvergenceWarning,
    DuplicateRequestError,
    IncompatibleModelError,
    InvalidConfigError,
    UnknownSampleError,
)

# the seeds here are deliberate (reproducible tests): the warning is tested in test_secrecy.py
pytestmark = pytest.mark.filterwarnings("ignore::obliviate.certified.SeededNoiseWarning")


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data, d.target


def dense_newton_step(model, rows):
    """The certified-removal step written out densely: Delta and H on the remaining rows at w."""
    x, y, a, w = model._x, model._y, model._active, model._w
    lam = model.lam
    steps = []
    for k in range(w.shape[1]):
        r = [i for i in rows if a[i, k] > 0]
        z = x @ w[:, k]
        delta = sum((expit(y[i, k] * z[i]) - 1) * y[i, k] * x[i] for i in r) + len(r) * lam * w[:, k]
        keep = a[:, k].copy()
        keep[rows] = 0
        s = expit(y[:, k] * z)
        h = x.T @ (x * (keep * s * (1 - s))[:, None]) + lam * keep.sum() * np.eye(x.shape[1])
        steps.append(np.linalg.solve(h, delta) if r else np.zeros(x.shape[1]))
    return np.stack(steps, 1)


def test_fit_reaches_a_verified_optimum_and_charges_its_residual(cancer):
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, random_state=0).fit(x, y)
    assert m.training_residual_ <= m.tol
    assert m.gradient_residual() == pytest.approx(m.training_residual_, rel=1e-3, abs=1e-12)
    assert m.residual_bound_ == m.training_residual_ and m.budget_.spent == m.training_residual_
    assert m.score(x, y) > 0.9


def test_prediction_api_is_consistent(cancer, digits):
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, random_state=0).fit(x, y)
    f = m.decision_function(x)
    assert f.shape == (len(y),) and m.coef_.shape == (1, 30) and m.intercept_.shape == (1,)
    np.testing.assert_array_equal(m.predict(x), m.classes_[(f > 0).astype(int)])
    # coef_ / intercept_ on raw features give the same signs (rows are only rescaled)
    np.testing.assert_array_equal(np.sign(x @ m.coef_[0] + m.intercept_[0]), np.sign(f))
    p = m.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[:, 1], expit(f))
    xd, yd = digits
    o = CertifiedLogisticRegression(lam=1e-2, sigma=1.0, random_state=0).fit(xd, yd)
    assert o.mode_ == "ovr" and o.coef_.shape == (10, 64)
    scores = o.decision_function(xd)
    np.testing.assert_array_equal(o.predict(xd), o.classes_[scores.argmax(1)])
    np.testing.assert_array_equal(np.argmax(xd @ o.coef_.T + o.intercept_, 1), scores.argmax(1))
    np.testing.assert_allclose(o.predict_proba(xd).sum(1), 1.0)
    assert o.score(xd, yd) > 0.85
    with pytest.raises(InvalidConfigError, match="64 features"):
        o.predict(xd[:, :10])


def test_removal_is_the_newton_step_on_the_remaining_data_at_the_current_weights(cancer):
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, cg_tol=1e-9, random_state=0).fit(x, y)
    for rows in ([5], [40, 41, 300], [7]):  # single rows and a batch (one step, Delta summed)
        expected = m._w + dense_newton_step(m, rows)
        report = m.remove(rows)
        np.testing.assert_allclose(m._w, expected, rtol=1e-8, atol=1e-10)
        assert report.indices == tuple(sorted(rows)) and not report.retrained
        assert report.data_dependent <= report.worst_case
    assert m.n_removed_ == 5 and list(m.removed_) == [5, 7, 40, 41, 300]


def test_removal_on_sparse_rows_takes_the_same_newton_step(cancer):
    x, y = cancer
    sparse = np.abs(x) * (np.random.default_rng(0).random(x.shape) < 0.15)  # sparse non-negative rows
    m = CertifiedLogisticRegression(lam=1e-2, sigma=1.0, cg_tol=1e-9, fit_intercept=False, random_state=0).fit(sparse, y)
    assert sp.issparse(m._x_op)  # the Hessian-vector products read a CSR copy
    for rows in ([5], [40, 41]):
        expected = m._w + dense_newton_step(m, rows)
        m.remove(rows)
        np.testing.assert_allclose(m._w, expected, rtol=1e-8, atol=1e-10)


def test_one_vs_rest_takes_each_removed_row_out_of_each_class_model_once(digits):
    x, y = digits
    m = CertifiedLogisticRegression(lam=1e-2, sigma=1.0, cg_tol=1e-9, random_state=0).fit(x, y)
    counts = m._active.sum(0).copy()
    expected = m._w + dense_newton_step(m, [0, 1])
    m.remove([0, 1])
    np.testing.assert_array_equal(m._active.sum(0), counts - 2)  # the seed code down-dated K times
    np.testing.assert_allclose(m._w, expected, rtol=1e-8, atol=1e-10)


def test_subsampling_keeps_every_positive_and_removes_only_from_member_classes(digits):
    x, y = digits
    m = CertifiedLogisticRegression(lam=1e-2, subsample=0.3, random_state=0).fit(x, y)
    member = m._member
    assert np.all(member[m._y > 0] == 1)
    neg_rate = member[m._y < 0].mean()
    assert 0.25 < neg_rate < 0.35
    row = int(np.flatnonzero(member.sum(1) < member.shape[1])[0])
    untouched = np.flatnonzero(member[row] == 0)
    before = m._w[:, untouched].copy()
    m.remove([row])
    np.testing.assert_array_equal(m._w[:, untouched], before)
    with pytest.raises(InvalidConfigError, match="one-vs-rest"):
        CertifiedLogisticRegression(subsample=0.5).fit(x[y < 2], y[y < 2])


def test_bad_indices_are_refused_and_change_nothing(cancer):
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, random_state=0)
    with pytest.raises(NotFittedError):
        m.remove([0])
    m.fit(x, y)
    m.remove([3])
    w = m._w.copy()
    for bad, err, text in [
        ([len(y)], UnknownSampleError, "not in the training data"),
        ([-1], UnknownSampleError, "not in the training data"),
        ([4, 4], DuplicateRequestError, "more than once"),
        ([3], DuplicateRequestError, "already removed"),
        ([1.0], InvalidConfigError, "integer"),
        ([True], InvalidConfigError, "integer"),
        ([], InvalidConfigError, "non-empty"),
    ]:
        with pytest.raises(err, match=text):
            m.remove(bad)
    np.testing.assert_array_equal(m._w, w)
    assert m.n_removed_ == 1


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"lam": 0.0}, "'lam'"),
        ({"sigma": -1.0}, "'sigma'"),
        ({"delta": 2.0}, "'delta'"),
        ({"mode": "multinomial"}, "'mode'"),
        ({"gamma": "loose"}, "'gamma'"),
        ({"bound": "exact"}, "'bound'"),
        ({"cg_tol": 0.0}, "'cg_tol'"),
        ({"auto_retrain": 1}, "'auto_retrain'"),
        ({"random_state": -3}, "'random_state'"),
        ({"random_state": "seed"}, "'random_state'"),
        ({"mode": "binary"}, "exactly two classes"),
    ],
)
def test_invalid_parameters_are_refused_at_fit(digits, kwargs, text):
    x, y = digits
    with pytest.raises(InvalidConfigError, match=text):
        CertifiedLogisticRegression(**kwargs).fit(x, y)


def test_worst_case_bound_needs_a_bounded_gradient_and_rows_must_fit_the_unit_ball(cancer):
    x, y = cancer
    with pytest.raises(InvalidConfigError, match="unbounded gradient"):
        CertifiedRidgeClassifier(bound="worst").fit(x, y)
    with pytest.raises(InvalidConfigError, match="norm <= 1"):
        CertifiedLogisticRegression(normalize=False).fit(x, y)
    small = x / (np.linalg.norm(x, axis=1, keepdims=True) * 2)
    m = CertifiedLogisticRegression(normalize=False, fit_intercept=False, bound="worst", lam=0.1, random_state=0).fit(small, y)
    report = m.remove([0])
    assert report.charged == pytest.approx(report.worst_case + report.linear_residual)
    with pytest.raises(InvalidConfigError, match="NaN"):
        CertifiedLogisticRegression().fit(np.full((4, 2), np.nan), [0, 1, 0, 1])


def test_not_converging_warns_and_the_residual_is_charged(cancer):
    x, y = cancer
    with pytest.warns(ConvergenceWarning, match="charged to the certificate"):
        m = CertifiedLogisticRegression(lam=1e-3, tol=1e-30, max_iter=8, random_state=0).fit(x, y)
    assert m.training_residual_ > m.tol
    assert m.residual_bound_ == m.training_residual_ == pytest.approx(m.gradient_residual(), rel=0.5)
    with pytest.raises(InvalidConfigError, match="alone exceeds the removal budget"), pytest.warns(ConvergenceWarning):
        CertifiedLogisticRegression(lam=1e-3, max_iter=1, random_state=0).fit(x, y)


def test_over_budget_retrains_with_fresh_noise_or_raises(cancer):
    x, y = cancer
    kw = dict(lam=1e-2, sigma=1.0, epsilon=0.05, random_state=0)  # a budget of 0.011
    m = CertifiedLogisticRegression(**kw).fit(x, y)
    b0 = m._b.copy()
    reports = [m.remove([i]) for i in range(12)]
    retrained = [r for r in reports if r.retrained]
    assert retrained, "the budget should run out within 12 removals"
    for r in retrained:  # the certificate restarts at the retrained model's training residual
        assert r.charged == 0.0 and r.beta <= m.tol
    assert m.retrain_count_ == len(retrained) and not np.allclose(m._b, b0)  # fresh noise
    assert m.gradient_residual() <= m.residual_bound_
    assert np.array_equal(CertifiedLogisticRegression(**kw).fit(x, y)._b, b0)  # a seed draws the same first b

    strict = CertifiedLogisticRegression(**kw, auto_retrain=False).fit(x, y)
    done = 0
    with pytest.raises(BudgetExhaustedError, match="retrain"):
        for i in range(12):
            strict.remove([i])
            done += 1
    assert done == reports.index(retrained[0])  # refused exactly where the other model retrained
    w, beta, removed = strict._w.copy(), strict.residual_bound_, strict.removed_.copy()
    with pytest.raises(BudgetExhaustedError):
        strict.remove([done])
    np.testing.assert_array_equal(strict._w, w)
    assert strict.residual_bound_ == beta and list(strict.removed_) == list(removed)


def test_fitting_is_deterministic_for_a_seed(cancer):
    x, y = cancer
    a = CertifiedLogisticRegression(lam=1e-2, random_state=3).fit(x, y)
    b = CertifiedLogisticRegression(lam=1e-2, random_state=3).fit(x, y)
    a.remove([1, 2])
    b.remove([1, 2])
    np.testing.assert_array_equal(a._w, b._w)
    c = CertifiedLogisticRegression(lam=1e-2, random_state=4).fit(x, y)
    assert not np.allclose(c._w, b._w)


def test_save_load_keeps_b_out_of_the_model_file(tmp_path, cancer):
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, random_state=0).fit(x, y)
    m.remove([10])
    path = m.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    from safetensors.numpy import load_file

    assert set(load_file(path)) == {"weights", "removed", "member", "sq_norm"}
    raw = path.read_bytes()
    assert m._b.astype("<f8").tobytes()[:64] not in raw
    # prediction only
    p = CertifiedLogisticRegression.load(path)
    np.testing.assert_array_equal(p.predict(x), m.predict(x))
    assert p.residual_bound_ == m.residual_bound_ and p.history_ == m.history_
    with pytest.raises(InvalidConfigError, match="without its training data"):
        p.remove([11])
    with pytest.raises(InvalidConfigError, match="secret_path"):
        p.gradient_residual()
    # resumable with the training data; removes the same way as the original (to the CG tolerance)
    q = CertifiedLogisticRegression.load(path, x, y, secret_path=tmp_path / "secret.safetensors")
    assert q.gradient_residual() == pytest.approx(m.gradient_residual())
    rm, rq = m.remove([11]), q.remove([11])
    # both are within ||Delta - H s|| / (lam n') of the exact Newton step (their preconditioners differ)
    assert np.linalg.norm(q._w - m._w) <= (rm.linear_residual + rq.linear_residual) / (m.lam * (len(y) - 2)) * 1.001
    with pytest.raises(DuplicateRequestError):
        q.remove([10])
    with pytest.raises(IncompatibleModelError, match="training data"):
        CertifiedLogisticRegression.load(path, x[:-1], y[:-1])
    with pytest.raises(IncompatibleModelError, match="CertifiedLogisticRegression"):
        CertifiedRidgeClassifier.load(path)
    (tmp_path / "junk").write_bytes(b"\x00" * 20)
    with pytest.raises(IncompatibleModelError):
        CertifiedLogisticRegression.load(tmp_path / "junk")


def test_ridge_removal_is_exact(cancer):
    x, y = cancer
    m = CertifiedRidgeClassifier(lam=1e-2, random_state=0).fit(x, y)
    report = m.remove([3, 9])
    assert report.data_dependent == 0.0 and report.linear_residual <= 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.remove([4])
