"""The fresh noise of a budget-triggered retraining is secret (issue 13, item 1).

The retraining's ``b`` used to be drawn from ``[seed, 1 + retrain_count, n_removed]``: a seed
anyone can guess (or brute-force against the public weights) and two public counters. Now it comes
from operating-system entropy, or, for a model seeded on purpose, from the seed *and* a random
secret drawn at fit and stored only in the secret file, so the run stays reproducible for whoever
holds that file and for nobody else.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from obliviate.certified import CertifiedLogisticRegression, SeededNoiseWarning

SEED = 913_577
KW = dict(lam=1e-2, sigma=10.0, epsilon=1e-3)  # a tiny budget: the first removal retrains


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def fit(x, y, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededNoiseWarning)
        return CertifiedLogisticRegression(**KW, random_state=seed).fit(x, y)


def load(tmp_path, x, y, secret=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeededNoiseWarning)
        return CertifiedLogisticRegression.load(
            tmp_path / "m.safetensors", x, y, secret_path=tmp_path / "secret.safetensors" if secret else None
        )


def retrain(model) -> np.ndarray:
    """Remove rows 0, 1, ... until one removal retrains; the fresh noise it drew."""
    for row in range(20):
        if model.remove([row]).retrained:
            return model._b.copy()
    raise AssertionError("no retraining in 20 removals")


def test_the_post_retrain_noise_cannot_be_rebuilt_from_the_seed_and_public_counters(tmp_path, cancer):
    x, y = cancer
    m = fit(x, y, SEED)
    m.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    q = load(tmp_path, x, y)
    count, removed, sigma = q.retrain_count_, q.n_removed_, q.sigma_  # all in the public model file
    assert q.remove([0]).retrained  # the budget is tiny: the first removal retrains
    b = q._b.copy()
    # the old rule: whoever guesses the seed rebuilds the "fresh" noise from public values
    rebuilt = sigma * np.random.default_rng([SEED, 1 + count, removed]).standard_normal(b.shape)
    assert not np.allclose(rebuilt, b)
    # nor is it the seed's own stream continued (what the in-memory model used to draw)
    stream = np.random.default_rng(SEED)
    first = sigma * stream.standard_normal(b.shape)
    np.testing.assert_allclose(first, m._b)  # the fit's b is the seed's, as documented
    in_memory = retrain(m)
    assert not np.allclose(sigma * stream.standard_normal(b.shape), in_memory)
    assert not np.allclose(rebuilt, in_memory)


def test_the_same_seed_alone_does_not_fix_the_retraining_noise(cancer):
    x, y = cancer
    a, b = fit(x, y, SEED), fit(x, y, SEED)
    np.testing.assert_array_equal(a._b, b._b)  # the seed still fixes the fit's noise ...
    assert not np.allclose(retrain(a), retrain(b))  # ... but not a retraining's: that needs the secret too


def test_unseeded_models_draw_different_retraining_noise(tmp_path, cancer):
    x, y = cancer
    first, second = retrain(fit(x, y, None)), retrain(fit(x, y, None))
    assert not np.allclose(first, second)
    fit(x, y, None).save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    assert not np.allclose(retrain(load(tmp_path, x, y)), retrain(load(tmp_path, x, y)))


def test_a_seeded_run_is_reproducible_from_its_secret_file(tmp_path, cancer):
    x, y = cancer
    m = fit(x, y, SEED)
    m.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    again = retrain(load(tmp_path, x, y))
    np.testing.assert_array_equal(again, retrain(load(tmp_path, x, y)))
    np.testing.assert_array_equal(again, retrain(m))  # the same noise as the model that never left memory
    # without the secret file: operating-system entropy
    assert not np.allclose(retrain(load(tmp_path, x, y, secret=False)), again)
    assert m._noise_secret.hex().encode() not in (tmp_path / "m.safetensors").read_bytes()
    assert m._noise_secret.hex().encode() in (tmp_path / "secret.safetensors").read_bytes()


def test_a_binary_model_refuses_to_lose_a_whole_class(cancer):
    """Issue 13, item 15, at the model level: nothing changes, and the caller may override."""
    x, y = cancer
    m = CertifiedLogisticRegression(lam=1e-2, sigma=10.0, epsilon=100.0).fit(x[:60], y[:60])
    zeros = np.flatnonzero(y[:60] == 0)
    with pytest.raises(ValueError, match="class 0.*one class"):
        m.remove(zeros)
    assert m.n_removed_ == 0
    m.remove(zeros[:-1])
    with pytest.raises(ValueError, match="one class"):
        m.remove(zeros[-1:])
    assert m.remove(zeros[-1:], allow_single_class=True) is not None and m.n_removed_ == len(zeros)
