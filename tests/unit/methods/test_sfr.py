"""SFR-on (issue 18 item 3): fast forget step, remain step at the fast weights, slow-weight interpolation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import UncheckedTrainingSetWarning
from obliviate.methods.sfr import SFROn, cosine_alpha
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import accuracy


def _arrays(data):
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(xs).flatten(1), torch.as_tensor(ys)


def _linear_fisher(w, b, x, y):
    """Mean per-sample (∂ log p_y / ∂θ)² of a linear softmax classifier, by hand: ((p - e_y) x^T)²."""
    r = torch.softmax(x @ w.T + b, 1) - F.one_hot(y, w.shape[0]).float()
    return (r.square().T @ x.square()) / len(y), r.square().mean(0)


def test_contract_suite():
    report = check_method(SFROn)
    assert report["masks"] == "ok" and report["deterministic"] == "ok"


def test_one_iteration_follows_the_fast_slow_update_by_hand():
    """θ' = θ - η clip(M ⊙ ∇(-α Σ w_i ℓ_i)), θ'' = θ' - η ∇L_r(θ'), θ_new = θ + β (θ'' - θ).

    The remain gradient is taken at the fast weights θ' (the implicit remain-Hessian term); a loop
    that took it at θ, or skipped the saliency mask, the adaptive weights, the clip or the slow
    interpolation, lands elsewhere.
    """
    sc = toy_scenario("random")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    lr, alpha, lam, max_norm, beta = 0.5, 3.0, 0.5, 0.5, 0.5
    method = SFROn(
        epochs=1, lr=lr, momentum=0.0, weight_decay=0.0, schedule="constant", batch_size=10_000, forget_batch_size=10_000,
        forget_every=1, alpha=alpha, adaptive_lambda=lam, max_norm=max_norm, threshold=1.0, slow_beta=beta,
    )  # fmt: skip
    with pytest.warns(UncheckedTrainingSetWarning):
        out = method.unlearn(net, sc, seed=0, device="cpu", progress=False)
    got = [p.detach() for p in out.model[1].parameters()]

    w0, b0 = (p.detach().clone() for p in net[1].parameters())
    xf, yf = _arrays(sc.forget)
    xr, yr = _arrays(sc.retain)
    ff, fr = _linear_fisher(w0, b0, xf, yf), _linear_fisher(w0, b0, xr, yr)
    mask = [(f + 1e-15) / (r + 1e-15) >= 1.0 for f, r in zip(ff, fr, strict=True)]
    assert 0 < sum(int(m.sum()) for m in mask) < sum(m.numel() for m in mask)  # the mask does select

    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    losses = F.cross_entropy(xf @ w.T + b, yf, reduction="none")
    weights = losses.detach().pow(-lam) / losses.detach().pow(-lam).sum()
    assert (
        cosine_alpha(alpha, 0, 10) == alpha
        and cosine_alpha(alpha, 5, 10) == pytest.approx(alpha / 2)
        and cosine_alpha(alpha, 10, 10) < 1e-12
    )
    grads = [g * m for g, m in zip(torch.autograd.grad(-alpha * (weights * losses).sum(), (w, b)), mask, strict=True)]
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    assert norm > max_norm  # the clip binds
    fast = [p0 - lr * g * (max_norm / (norm + 1e-6)) for p0, g in zip((w0, b0), grads, strict=True)]

    def remain_step(at):
        w, b = (p.clone().requires_grad_(True) for p in at)
        return torch.autograd.grad(F.cross_entropy(xr @ w.T + b, yr), (w, b))

    slow = [p0 + beta * (f - lr * g - p0) for p0, f, g in zip((w0, b0), fast, remain_step(fast), strict=True)]
    for g, e in zip(got, slow, strict=True):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)
    # the remain gradient at the slow weights θ instead of the fast ones is a measurably different update
    naive = [p0 + beta * (f - lr * g - p0) for p0, f, g in zip((w0, b0), fast, remain_step((w0, b0)), strict=True)]
    assert max(float((g - n).abs().max()) for g, n in zip(got, naive, strict=True)) > 1e-3


def test_forgets_the_class_and_keeps_the_rest_on_the_toy_scenario():
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    out = ob.unlearn(model, sc, SFROn.from_preset("digits"), seed=0, device="cpu", progress=False)
    assert accuracy(model, sc.forget) > 0.9 and accuracy(out.model, sc.forget) <= 0.1
    assert accuracy(out.model, sc.val_retain) >= accuracy(model, sc.val_retain) - 0.1
    assert 0.0 < out.diagnostics["saliency_fraction"] < 1.0


@pytest.mark.slow
def test_digits_preset_health_check():
    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, progress=False, **DEMO_RECIPE)
    out = ob.unlearn(base, sc, "sfr_on", preset="digits", seed=0, progress=False)
    assert out.status == "ok"
    assert accuracy(base.model, sc.forget) > 0.95 and accuracy(out.model, sc.forget) < 0.1
