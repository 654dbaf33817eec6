"""Hessian spectrum by power iteration and Lanczos, against eigvalsh of the explicit Hessian."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from obliviate.errors import InvalidConfigError, UnlearningWarning
from obliviate.hessian import hessian_matrix, hvp_operator, lanczos, sigma_of, top_eigenvalue


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    return model, x, y


def _explicit(model, x, y, loss):
    """The Hessian of the loss of the flattened parameters by autograd's double backward (an
    independent route; torch.func.hessian is wrong for BatchNorm in torch 2.14, see below).
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(v):
        params, start = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = math.prod(s)
            params[n] = v[start : start + k].reshape(s)
            start += k
        return loss(functional_call(model, params, (x,)), y)

    return torch.autograd.functional.hessian(f, flat)


def _ce(logits, y):
    return nn.functional.cross_entropy(logits, y)


def _concave(logits, y):
    return -(logits**2).mean() + 0.1 * nn.functional.cross_entropy(logits, y)


@pytest.mark.parametrize("loss", [_ce, _concave], ids=["cross_entropy", "negative_dominant"])
def test_power_iteration_and_lanczos_match_eigvalsh(loss):
    model, x, y = _tiny()
    h = _explicit(model, x, y, loss)
    torch.testing.assert_close(hessian_matrix(model, x, y, loss=loss), h, atol=1e-10, rtol=1e-8)
    ev = np.linalg.eigvalsh(h.numpy())
    by_magnitude = ev[np.argsort(-np.abs(ev))]
    top = top_eigenvalue(model, x, y, loss=loss, tol=1e-12, max_iter=3000)
    assert top.converged and top.eigenvalue == pytest.approx(by_magnitude[0], rel=1e-6)
    assert top.sigma == pytest.approx(abs(by_magnitude[0]), rel=1e-6)
    lz = lanczos(model, x, y, loss=loss, k=4)
    np.testing.assert_allclose(lz.eigenvalues, by_magnitude[:4], rtol=1e-7, atol=1e-10)
    la = lanczos(model, x, y, loss=loss, k=3, which="LA", num_iter=h.shape[0])
    np.testing.assert_allclose(la.eigenvalues, np.sort(ev)[::-1][:3], rtol=1e-7, atol=1e-10)
    if by_magnitude[0] < 0:
        assert top.eigenvalue < 0
        with pytest.warns(UnlearningWarning, match="NaN"):
            legacy = top_eigenvalue(model, x, y, loss=loss, tol=1e-12, max_iter=3000, sigma_mode="sqrt_eig")
        assert math.isnan(legacy.sigma)
    else:
        legacy = top_eigenvalue(model, x, y, loss=loss, tol=1e-12, max_iter=3000, sigma_mode="sqrt_eig")
        assert legacy.sigma == pytest.approx(math.sqrt(by_magnitude[0]), rel=1e-6)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.head(self.drop(self.body(x)))


def test_modes_buffers_and_random_state_are_left_as_they_were():
    torch.manual_seed(0)
    model = _Net().double()
    model.train()
    model.body[1].eval()  # a frozen BatchNorm inside a training model
    with torch.no_grad():
        model.body[1].running_mean.fill_(0.3)
    x = torch.randn(16, 1, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (16,))
    modes = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    top_eigenvalue(model, x, y)
    lanczos(model, x, y, k=2)
    batch = top_eigenvalue(model, x, y, train_mode=True, tol=1e-10, max_iter=2000)
    assert torch.equal(torch.rand(2), expected)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # train_mode: BatchNorm on batch statistics, dropout off
    ref = copy.deepcopy(model)
    torch.func.replace_all_batch_norm_modules_(ref)
    ref.train()
    ref.drop.eval()
    ev = np.linalg.eigvalsh(_explicit(ref, x, y, _ce).numpy())
    assert batch.eigenvalue == pytest.approx(ev[np.argmax(np.abs(ev))], rel=1e-5)


def test_frozen_parameters_are_left_out_and_bad_arguments_refused():
    model, x, y = _tiny()
    model[0].weight.requires_grad_(False)
    op = hvp_operator(model, x, y)
    assert op.size == sum(p.numel() for p in model.parameters() if p.requires_grad)
    with pytest.raises(InvalidConfigError, match="max_iter"):
        top_eigenvalue(model, x, y, max_iter=0)
    with pytest.raises(InvalidConfigError, match="sigma_mode"):
        top_eigenvalue(model, x, y, sigma_mode="sqrt")
    with pytest.raises(InvalidConfigError, match="'k'"):
        lanczos(model, x, y, k=0)
    with pytest.raises(InvalidConfigError, match="which"):
        lanczos(model, x, y, which="SM")
    assert sigma_of(-4.0) == 4.0 and sigma_of(9.0, "sqrt_eig") == 3.0


def test_the_double_backward_fallback_matches_forward_mode_with_normalisation_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2)).double()
    x, y = torch.randn(12, 3, dtype=torch.float64), torch.randint(0, 2, (12,))
    forward = hvp_operator(model, x, y)
    backward = hvp_operator(model, x, y)
    backward._forward_mode = False
    v = torch.randn(forward.size, dtype=torch.float64)
    torch.testing.assert_close(forward(v), backward(v), atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(forward(v), _explicit(model, x, y, _ce) @ v, atol=1e-10, rtol=1e-8)


def test_old_module_path_still_works_with_a_deprecation_warning():
    import obliviate.hessian as new
    import obliviate.metrics.hessian as old

    with pytest.warns(DeprecationWarning, match="obliviate.hessian"):
        assert old.top_eigenvalue is new.top_eigenvalue
    with pytest.raises(AttributeError):
        old.not_a_name  # noqa: B018
