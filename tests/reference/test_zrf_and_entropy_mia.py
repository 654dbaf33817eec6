"""ZRF and the SSD system's entropy MIA against SciPy / scikit-learn, end to end (issue 4).

ZRF (metric spec): 1 - mean over D_f of JS(p_model, p_rand), natural log, p_rand from a randomly
initialised model of the same architecture in eval mode, seeded. The entropy MIA: a
class-balanced logistic regression on the entropy of D_r (members) against the test split
without the forgotten class (non-members); the share of D_f predicted member.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch
from sklearn.linear_model import LogisticRegression

import obliviate as ob
from obliviate.errors import IncompatibleModelError
from obliviate.metrics import functional as MF
from obliviate.testing import toy_scenario

LN2 = float(np.log(2.0))


def _probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    p = rng.dirichlet(np.full(c, 0.5), size=n)
    p[rng.random((n, c)) < 0.2] = 0.0
    p[:, 0] += 1e-3
    return p / p.sum(axis=1, keepdims=True)


def _softmax_direct(net: torch.nn.Module, data, *, train_mode: bool = False) -> np.ndarray:
    """Softmax outputs computed item by item, without obliviate's inference helpers."""
    x = torch.stack([torch.as_tensor(data[i][0]) for i in range(len(data))])
    net.train(train_mode)
    with torch.no_grad():
        out = torch.softmax(net(x).double(), dim=1).numpy()
    net.eval()
    return out


def _labels(data) -> np.ndarray:
    return np.array([int(data[i][1]) for i in range(len(data))])


def _mlp(sc: ob.Scenario, data, seed: int) -> torch.nn.Module:
    model = ob.build_model("mlp", sc.dataset, seed=seed, hidden=(32,))
    return ob.train(model, data, epochs=8, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False).model


@pytest.fixture(scope="module")
def sc() -> ob.Scenario:
    return toy_scenario("classwise")


@pytest.fixture(scope="module")
def original(sc) -> torch.nn.Module:
    return _mlp(sc, sc.train, seed=0)


@pytest.fixture(scope="module")
def retrained(sc) -> torch.nn.Module:
    return _mlp(sc, sc.retain, seed=1)


# ---------------------------------------------------------------------------------- ZRF
def test_zrf_is_one_minus_the_mean_squared_scipy_jensenshannon_distance():
    rng = np.random.default_rng(0)
    p, q = _probs(rng, 40, 6), _probs(rng, 40, 6)
    assert (p == 0).any()
    expected = 1.0 - np.mean([scipy.spatial.distance.jensenshannon(a, b, base=np.e) ** 2 for a, b in zip(p, q, strict=True)])
    assert MF.zrf(p, q) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_zrf_bounds_and_not_the_ssd_codes_formula():
    assert MF.zrf([[0.2, 0.8]], [[0.2, 0.8]]) == pytest.approx(1.0, abs=1e-12)
    assert MF.zrf([[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]) == pytest.approx(1.0 - LN2, abs=1e-12)
    rng = np.random.default_rng(1)
    p, q = _probs(rng, 30, 10), _probs(rng, 30, 10)
    m = 0.5 * (p + q)
    # the SSD code: 0.5 KL(m || p) + 0.5 KL(m || q) with a 'mean' reduction (divided by C)
    ssd_code = np.mean(
        [0.5 * scipy.stats.entropy(a, b) + 0.5 * scipy.stats.entropy(a, c) for a, b, c in zip(m, p, q, strict=True)]
    )
    assert abs(MF.zrf(p, q) - (1.0 - ssd_code / 10)) > 0.05


def test_evaluate_zrf_equals_a_direct_computation_with_a_seeded_random_model_in_eval_mode(sc, original):
    seed = 7
    got = ob.evaluate(original, sc, metrics=["zrf"], seed=seed).metrics["zrf"]
    random_model = ob.build_model("mlp", sc.dataset, seed=seed, hidden=(32,))  # the architecture, initialised from seed
    p_model = _softmax_direct(original, sc.forget)
    p_rand = _softmax_direct(random_model, sc.forget)
    expected = 1.0 - np.mean(
        [scipy.spatial.distance.jensenshannon(a, b, base=np.e) ** 2 for a, b in zip(p_model, p_rand, strict=True)]
    )
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert ob.evaluate(random_model, sc, metrics=["zrf"], seed=seed).metrics["zrf"] == pytest.approx(1.0, abs=1e-12)
    assert ob.evaluate(original, sc, metrics=["zrf"], seed=seed + 1).metrics["zrf"] != pytest.approx(got, abs=1e-6)


def test_evaluate_zrf_uses_the_random_model_in_eval_mode_not_batch_statistics():
    sc = toy_scenario("classwise")
    model = ob.build_model("cnn", sc.dataset, seed=0, width=8)  # BatchNorm: train mode would use batch statistics
    trained = ob.train(model, sc.train, epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False).model
    got = ob.evaluate(trained, sc, metrics=["zrf"], seed=3).metrics["zrf"]
    random_model = ob.build_model("cnn", sc.dataset, seed=3, width=8)
    p_model = _softmax_direct(trained, sc.forget)
    eval_value = MF.zrf(p_model, _softmax_direct(random_model, sc.forget))
    train_value = MF.zrf(p_model, _softmax_direct(random_model, sc.forget, train_mode=True))
    assert got == pytest.approx(eval_value, rel=1e-9)
    assert abs(got - train_value) > 1e-4


def test_zrf_is_nan_by_default_and_an_error_by_name_for_a_model_that_cannot_be_reinitialised(sc):
    class Scaled(torch.nn.Module):  # a parameter outside any module with reset_parameters
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.inner(x) * self.scale

    model = Scaled().eval()
    assert np.isnan(ob.evaluate(model, sc, metrics=None).metrics["zrf"])
    with pytest.raises(IncompatibleModelError):
        ob.evaluate(model, sc, metrics=["zrf"])


# ---------------------------------------------------------------------------------- entropy MIA
@pytest.mark.parametrize("which", ["original", "retrained"])
def test_evaluate_mia_entropy_lr_equals_direct_scipy_entropy_and_sklearn_logistic_regression(sc, original, retrained, which):
    model = original if which == "original" else retrained
    got = ob.evaluate(model, sc, metrics=["mia_entropy_lr"]).metrics["mia_entropy_lr"]
    ent = {
        split: scipy.stats.entropy(_softmax_direct(model, data), axis=1)
        for split, data in (("members", sc.retain), ("nonmembers", sc.test_retain), ("targets", sc.forget))
    }
    x = np.concatenate([ent["members"], ent["nonmembers"]])[:, None]
    y = np.concatenate([np.ones(len(ent["members"])), np.zeros(len(ent["nonmembers"]))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs").fit(x, y)
    expected = float(np.mean(clf.predict(ent["targets"][:, None]) == 1))
    assert got == pytest.approx(expected, abs=1e-12)
    assert len(ent["nonmembers"]) == int((_labels(sc.test) != 3).sum())  # the forgotten class is not a non-member


def test_entropy_mia_finds_the_forget_set_in_the_original_model_more_than_in_the_retrained_one(sc, original, retrained):
    a = ob.evaluate(original, sc, metrics=["mia_entropy_lr"]).metrics["mia_entropy_lr"]
    b = ob.evaluate(retrained, sc, metrics=["mia_entropy_lr"]).metrics["mia_entropy_lr"]
    assert a > b + 0.3
