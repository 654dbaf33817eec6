"""Feature extractors: raw, frozen torch modules, the DP-SGD extractor and its accounting."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.certified.features import RawFeatures, TorchFeatures, dp_epsilon, group_privacy, train_dp_extractor
from obliviate.data import Subset


def test_raw_features_flatten_datasets_and_tensors(digits):
    x = RawFeatures().transform(Subset(digits.train, np.arange(20)))
    assert x.shape == (20, 64) and x.dtype == np.float64
    first = digits.train[0][0].reshape(-1).double().numpy()
    np.testing.assert_array_equal(x[0], first)
    np.testing.assert_array_equal(RawFeatures().transform(torch.ones(3, 2, 2)), np.ones((3, 4)))


def test_torch_features_are_the_adapter_features_and_leave_the_module_alone(digits):
    net = ob.build_model("cnn", digits, seed=0).train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rows = Subset(digits.train, np.arange(30))
    feats = TorchFeatures(net).transform(rows)
    xb = torch.stack([rows[i][0] for i in range(30)])
    with torch.no_grad():
        expected = ob.ModelAdapter(copy.deepcopy(net).eval()).features(xb)
    np.testing.assert_allclose(feats, expected.double().numpy(), rtol=1e-6, atol=1e-6)
    assert net.training and all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    logits = TorchFeatures(net, penultimate=False).transform(xb)
    assert logits.shape == (30, digits.num_classes)


def test_rdp_accounting_reproduces_the_papers_svhn_extractor():
    # theory-seeds.md 3.8: q = 500/604388, T = 24180, sigma 6, delta 1e-5 -> 0.104 (integer orders), 0.105 (repo orders)
    q, steps = 500 / 604388, 24180
    integer_orders = list(range(2, 400))  # the optimum is at 222; Opacus' series cost grows with the order
    repo_orders = list(np.arange(1.25, 4.51, 0.25)) + list(range(5, 64)) + [128, 256, 512, 1024, 2048, 4096]
    classic_int = dp_epsilon(
        noise_multiplier=6, sample_rate=q, steps=steps, delta=1e-5, orders=integer_orders, conversion="classic"
    )
    classic_repo = dp_epsilon(
        noise_multiplier=6, sample_rate=q, steps=steps, delta=1e-5, orders=repo_orders, conversion="classic"
    )
    assert classic_int == pytest.approx(0.104, abs=5e-4)
    assert classic_repo == pytest.approx(0.105, abs=5e-4)
    improved = dp_epsilon(noise_multiplier=6, sample_rate=q, steps=steps, delta=1e-5, orders=integer_orders)
    assert 0 < improved < classic_int  # Opacus' conversion is tighter, and still a valid guarantee


def test_group_privacy():
    assert group_privacy(0.1, 1e-5, 3) == pytest.approx((0.3, 3 * np.exp(0.2) * 1e-5))


@pytest.mark.slow
def test_dp_extractor_trains_privately_and_reports_its_epsilon(digits):
    rows = Subset(digits.train, np.arange(256))
    net = ob.build_model("cnn", digits, seed=0, width=4)  # has BatchNorm: replaced by GroupNorm
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ext = train_dp_extractor(net, rows, epochs=1, batch_size=64, noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's model is untouched
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in ext.module.modules())
    assert ext.steps == 4 and ext.sample_rate == pytest.approx(1 / 4)
    assert ext.epsilon == pytest.approx(dp_epsilon(noise_multiplier=1.0, sample_rate=0.25, steps=4, delta=1e-5), rel=1e-9)
    assert 0 < ext.epsilon < 10 and ext.group_privacy(2)[0] == pytest.approx(2 * ext.epsilon)
    feats = ext.transform(rows)
    assert feats.shape[0] == 256 and np.all(np.isfinite(feats))
    again = train_dp_extractor(net, rows, epochs=1, batch_size=64, noise_multiplier=1.0, seed=0)
    np.testing.assert_array_equal(again.transform(rows), feats)  # seeded: sampling and noise reproduce
    assert ext.describe()["kind"] == "dp"
