"""Reference checks of the adversarial method's building blocks against direct NumPy formulas."""

import numpy as np
import pytest
import torch

from obliviate.methods.adversarial import barlow_twins_loss
from obliviate.metrics.attacks import attack_features


def _barlow_twins_numpy(a: np.ndarray, b: np.ndarray, off_diagonal: float, eps: float) -> float:
    """The spec's formula, written out with loops: standardise per dimension (unbiased variance
    plus eps), M_de = (1/N) Σ_i â_id b̂_ie, L = Σ_d (M_dd - 1)² + λ Σ_{d≠e} M_de².
    """
    n, d = a.shape

    def standardise(x):
        out = np.empty_like(x)
        for j in range(d):
            col = x[:, j]
            out[:, j] = (col - col.mean()) / np.sqrt(np.var(col, ddof=1) + eps)
        return out

    sa, sb = standardise(a), standardise(b)
    loss = 0.0
    for p in range(d):
        for q in range(d):
            m = sum(sa[i, p] * sb[i, q] for i in range(n)) / n
            loss += (m - 1.0) ** 2 if p == q else off_diagonal * m**2
    return loss


@pytest.mark.parametrize(
    ("n", "d", "off_diagonal", "eps"), [(2, 1, 5e-3, 0.0), (5, 3, 5e-3, 1e-5), (8, 4, 0.3, 1e-2), (16, 6, 1.0, 1e-5)]
)
def test_barlow_twins_matches_the_formula(n, d, off_diagonal, eps):
    rng = np.random.default_rng(n * 10 + d)
    a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 3 + 1
    got = barlow_twins_loss(torch.from_numpy(a), torch.from_numpy(b), off_diagonal=off_diagonal, eps=eps).item()
    assert got == pytest.approx(_barlow_twins_numpy(a, b, off_diagonal, eps), rel=1e-10, abs=1e-12)


def test_attack_features_of_a_linear_model_match_the_formula():
    """For f(x) = Wx + c the sensitivity is (1/m) Σ_r |W ε_r| exactly (the σ cancels)."""
    gen = torch.Generator().manual_seed(0)
    w, c = torch.randn(4, 6, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    x, y = torch.randn(5, 6, generator=gen, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    m, sigma = 7, 1e-2
    noise_gen = torch.Generator().manual_seed(11)
    feats = attack_features(lambda v: v @ w.T + c, x, y, 4, noise_samples=m, noise_std=sigma, generator=noise_gen)
    eps = torch.randn((m, 5, 6), generator=torch.Generator().manual_seed(11), dtype=torch.float64).numpy()
    wn = w.numpy()
    expected_s = np.mean([np.abs(eps[r] @ wn.T) for r in range(m)], axis=0)
    np.testing.assert_allclose(feats[:, :4].numpy(), (x @ w.T + c).numpy())
    np.testing.assert_array_equal(feats[:, 4:8].numpy(), np.eye(4)[y.numpy()])
    np.testing.assert_allclose(feats[:, 8:].numpy(), expected_s, rtol=1e-8)
    zero = attack_features(lambda v: v @ w.T + c, x, y, 4, noise_samples=0, noise_std=sigma, generator=noise_gen)
    assert torch.all(zero[:, 8:] == 0)
