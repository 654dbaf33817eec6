"""The secret noise of certified removal stays secret and random (issue 11, items 11 and 12).

- Nothing in a public file (the model file, a run directory's spec, model and ledger) determines
  the noise ``b`` or the stream that draws the noise of later retrainings.
- Without a seed, ``b`` and the DP-SGD noise come from operating-system entropy: two unseeded fits
  differ.
- A seeded fit keeps its seed in the secret file only, and warns that its noise is reproducible.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler

from obliviate.certified import CertifiedLogisticRegression, SeededNoiseWarning
from obliviate.certified.run import fit_run

SEED = 913_577  # a distinctive number: it must not appear in any public file


@pytest.fixture(scope="module")
def cancer():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def header_integers(data: bytes) -> set[int]:
    """Every run of digits in a safetensors header (its JSON metadata), as integers."""
    (size,) = struct.unpack("<Q", data[:8])
    text = data[8 : 8 + size].decode()
    return {int(t) for t in re.findall(r"\d+", text) if int(t) < 2**63}


def regenerates(seed: object, b: np.ndarray, sigma: float) -> bool:
    """Whether ``sigma * default_rng(seed).standard_normal`` (the draw of ``fit``) gives ``b``."""
    return bool(np.allclose(sigma * np.random.default_rng(seed).standard_normal(b.shape), b))


def fit_seeded(x, y, **kw):
    with pytest.warns(SeededNoiseWarning, match="reproducible by anyone"):
        return CertifiedLogisticRegression(lam=1e-2, sigma=10.0, random_state=SEED, **kw).fit(x, y)


def test_the_public_model_file_does_not_determine_the_noise(tmp_path, cancer):
    x, y = cancer
    m = fit_seeded(x, y)
    assert regenerates(SEED, m._b, 10.0)  # the check below would catch the seed if it were there
    m.remove([3])
    path = m.save(tmp_path / "m.safetensors")
    data = path.read_bytes()
    candidates = header_integers(data)
    assert SEED not in candidates
    assert not any(regenerates(v, m._b, 10.0) for v in candidates)
    assert CertifiedLogisticRegression.load(path).random_state is None


def test_the_seed_lives_in_the_secret_file_and_the_post_load_stream_is_secret(tmp_path, cancer):
    x, y = cancer
    kw = dict(epsilon=1e-3)  # a tiny budget: the first removal retrains with fresh noise
    m = fit_seeded(x, y, **kw)
    path = m.save(tmp_path / "m.safetensors", secret_path=tmp_path / "secret.safetensors")
    assert str(SEED) in (tmp_path / "secret.safetensors").read_bytes().decode("latin-1")

    def retrained_noise(secret: bool) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SeededNoiseWarning)
            q = CertifiedLogisticRegression.load(path, x, y, secret_path=tmp_path / "secret.safetensors" if secret else None)
        assert q.remove([0]).retrained
        return q._b.copy()

    # from the public file alone, the retraining noise is fresh each time (OS entropy) ...
    a, b = retrained_noise(False), retrained_noise(False)
    assert not np.allclose(a, b)
    # ... while whoever holds the secret file (and so the seed) reproduces it
    np.testing.assert_array_equal(retrained_noise(True), retrained_noise(True))


def test_unseeded_fits_draw_different_noise_and_do_not_warn(cancer):
    x, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeededNoiseWarning)
        first = CertifiedLogisticRegression(lam=1e-2, sigma=10.0).fit(x, y)
        second = CertifiedLogisticRegression(lam=1e-2, sigma=10.0).fit(x, y)
    assert first._b.shape == second._b.shape and not np.allclose(first._b, second._b)
    assert abs(first._b.std() / 10.0 - 1.0) < 0.5  # b ~ N(0, sigma^2 I)


def test_no_public_file_of_a_seeded_run_directory_holds_the_seed(tmp_path):
    with pytest.warns(SeededNoiseWarning):
        run = fit_run(tmp_path / "run", classes=(3, 8), params={"lam": 0.01, "sigma": 10.0}, seed=SEED)
    run.remove([int(run.sample_ids[0])])
    for file in Path(tmp_path / "run").iterdir():
        assert str(SEED).encode() not in file.read_bytes(), file.name
    assert run.model.random_state is None


DP_SMALL = {"epochs": 1, "batch_size": 64, "options": {"hidden": [16]}}


def test_unseeded_dp_extractors_draw_fresh_noise_and_keep_opacus_warning(tmp_path):
    pytest.importorskip("opacus")
    weights = []
    for name in ("a", "b"):
        with pytest.warns(UserWarning, match="Secure RNG turned off"):  # Opacus' notice is not silenced
            fit_run(tmp_path / name, classes=(3, 8), features="dp", dp=dict(DP_SMALL), params={"lam": 0.01, "sigma": 10.0})
        weights.append(load_file(tmp_path / name / "extractor.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    # DP-SGD's sampling and noise differ (an epsilon with fixed noise means nothing); the initialisation is public
    assert any(not np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_seeded_dp_run_keeps_its_seed_out_of_the_public_files(tmp_path):
    pytest.importorskip("opacus")
    with pytest.warns(SeededNoiseWarning):
        fit_run(tmp_path / "s", classes=(3, 8), features="dp", dp=dict(DP_SMALL), params={"lam": 0.01, "sigma": 10.0}, seed=SEED)
    for file in Path(tmp_path / "s").iterdir():
        assert str(SEED).encode() not in file.read_bytes(), file.name
