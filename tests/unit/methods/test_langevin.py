"""Langevin unlearning (issue 18 item 6): projected noisy gradient descent on D_r and its Rényi accounting."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import InvalidConfigError
from obliviate.methods.langevin import (
    Langevin,
    is_linear_model,
    langevin_certificate,
    langevin_learn,
    linear_constants,
    project_to_ball,
    rdp_to_dp,
    renyi_unlearning_epsilon,
)
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import accuracy

CONSTANTS = dict(lr=0.5, sigma=0.1, strong_convexity=0.01, lipschitz=2.0, n=1000, removed=10)


def _norm(model):
    return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))


def _linear_run(sc, seed=0):
    """A softmax regression (mlp without hidden layers) trained on the toy scenario."""
    model = ob.build_model("mlp", sc.dataset, seed=seed, hidden=())
    return ob.train(model, sc.train, epochs=5, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False)


def test_contract_suite():
    report = check_method(Langevin, preset=None)  # the defaults; the digits preset runs in the slow health test
    assert report["masks"] == "ok" and report["deterministic"] == "ok"


def test_epsilon_matches_the_theorem_by_hand():
    # eps(alpha) = exp(-m eta K / alpha) * 4 alpha S^2 M^2 / (m sigma^2 n^2), K = 100, alpha = 5:
    # exp(-0.01 * 0.5 * 100 / 5) = exp(-0.1); 4 * 5 * 100 * 4 / (0.01 * 0.01 * 1e6) = 80
    eps = renyi_unlearning_epsilon(steps=100, alpha=5.0, **CONSTANTS)
    assert eps == pytest.approx(80.0 * math.exp(-0.1), rel=1e-12)
    assert rdp_to_dp(eps, 5.0, 1e-3) == pytest.approx(80.0 * math.exp(-0.1) + math.log(1000.0) / 4.0, rel=1e-12)
    cert = langevin_certificate(steps=100, alpha=5.0, smoothness=2.0, **CONSTANTS)
    assert cert.renyi_epsilon == pytest.approx(eps) and cert.delta == pytest.approx(1e-3)  # default delta = 1/n
    assert cert.step_condition  # eta 0.5 <= 1/L = 0.5
    assert not langevin_certificate(steps=100, alpha=5.0, smoothness=2.1, **CONSTANTS).step_condition
    assert not langevin_certificate(steps=100, alpha=5.0, **CONSTANTS).step_condition  # L unknown
    assert renyi_unlearning_epsilon(steps=0, alpha=2.0, **{**CONSTANTS, "removed": 0}) == 0.0


def test_best_alpha_is_found():
    cert = langevin_certificate(steps=300, **CONSTANTS)
    grid = [1.0 + 10 ** (k / 1000) for k in range(-4000, 4001)]
    brute = min(
        rdp_to_dp(renyi_unlearning_epsilon(steps=300, alpha=a, **CONSTANTS), a, 1e-3) for a in grid
    )  # a finer grid than the method's
    assert brute * (1 - 1e-5) <= cert.epsilon <= brute * (1 + 1e-6)
    assert cert.alpha > 1.0 and cert.epsilon == pytest.approx(rdp_to_dp(cert.renyi_epsilon, cert.alpha, cert.delta))


def test_epsilon_falls_with_more_steps_and_more_noise():
    by_steps = [langevin_certificate(steps=k, **CONSTANTS).epsilon for k in (0, 10, 100, 1000, 10000)]
    assert all(a > b for a, b in itertools.pairwise(by_steps))
    by_sigma = [langevin_certificate(steps=100, **{**CONSTANTS, "sigma": s}).epsilon for s in (0.05, 0.1, 0.5, 2.0)]
    assert all(a > b for a, b in itertools.pairwise(by_sigma))
    at_alpha = [renyi_unlearning_epsilon(steps=k, alpha=3.0, **CONSTANTS) for k in (1, 10, 100)]
    assert at_alpha[0] > at_alpha[1] > at_alpha[2]
    with pytest.raises(InvalidConfigError):
        renyi_unlearning_epsilon(steps=1, alpha=1.0, **CONSTANTS)
    with pytest.raises(InvalidConfigError):
        renyi_unlearning_epsilon(steps=1, alpha=2.0, **{**CONSTANTS, "sigma": 0.0})


def test_projection_onto_the_ball_keeps_frozen_coordinates():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(5, generator=g)
    params = [torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())]
    project_to_ball(params, 1.0)
    assert math.sqrt(sum(float(p.pow(2).sum()) for p in params)) == pytest.approx(1.0, rel=1e-6)
    scale = 1.0 / math.sqrt(float(a.pow(2).sum() + b.pow(2).sum()))
    assert torch.allclose(params[0], a * scale) and torch.allclose(params[1], b * scale)  # a radial projection
    inside = [torch.nn.Parameter(a.clone())]
    project_to_ball(inside, 100.0)
    assert torch.equal(inside[0], a)  # inside the ball nothing moves
    mask = torch.rand(4, 3, generator=g) < 0.5
    masked = [torch.nn.Parameter(a.clone())]
    radius = float(a[~mask].norm()) + 0.1
    project_to_ball(masked, radius, {"w": mask}, ["w"])
    assert torch.equal(masked[0][~mask], a[~mask]) and float(masked[0].norm()) == pytest.approx(radius, rel=1e-5)
    with pytest.raises(InvalidConfigError):
        project_to_ball([torch.nn.Parameter(a.clone())], float(a[~mask].norm()) / 2, {"w": mask}, ["w"])


def test_the_run_stays_inside_the_radius():
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    radius = 0.5 * _norm(model)
    out = ob.unlearn(model, sc, Langevin(steps=3, lr=0.05, sigma=0.05, radius=radius), device="cpu", progress=False)
    assert _norm(out.model) <= radius * (1 + 1e-6)
    assert out.diagnostics["radius"] == pytest.approx(radius)
    free = ob.unlearn(model, sc, Langevin(steps=3, lr=0.05, sigma=0.05), device="cpu", progress=False)
    assert _norm(free.model) <= _norm(model) * (1 + 1e-6)  # default R: the input's norm


def test_one_step_is_gradient_descent_plus_gaussian_noise_of_the_paper_scale():
    """w1 - (w0 - eta * (grad of the mean CE on D_r + lam w0)) is N(0, 2 eta sigma^2) noise, coordinate by coordinate."""
    sc = toy_scenario("classwise")
    run = _linear_run(sc)
    lr, sigma, lam = 0.05, 0.02, 1.0  # a strong L2 term: a step without it leaves a residual along w0
    out = ob.unlearn(run, sc, Langevin(steps=1, lr=lr, sigma=sigma, weight_decay=lam, radius=1e6), device="cpu", progress=False)
    net = run.model
    x = torch.stack([sc.retain[i][0] for i in range(len(sc.retain))])
    y = torch.tensor([int(sc.retain[i][1]) for i in range(len(sc.retain))])
    params = list(net.parameters())
    grads = torch.autograd.grad(F.cross_entropy(net(x), y), params)
    residual = torch.cat(
        [
            (q.detach() - (p.detach() - lr * (g + lam * p.detach()))).flatten()
            for p, q, g in zip(params, out.model.parameters(), grads, strict=True)
        ]
    )
    expected = math.sqrt(2 * lr * sigma**2)
    assert residual.numel() > 600
    assert float(residual.std()) == pytest.approx(expected, rel=0.08)
    assert abs(float(residual.mean())) < 4 * expected / math.sqrt(residual.numel())
    start = torch.cat([p.detach().flatten() for p in params])
    assert abs(float(torch.corrcoef(torch.stack([residual, start]))[0, 1])) < 0.2  # independent of the weights


def test_secret_noise_differs_between_runs_and_seeded_noise_repeats():
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    method = Langevin(steps=2, lr=0.05, sigma=0.05)
    secret = Langevin(steps=2, lr=0.05, sigma=0.05, secret_noise=True)
    seeded = [ob.unlearn(model, sc, method, seed=0, device="cpu", progress=False).model for _ in range(2)]
    hidden = [ob.unlearn(model, sc, secret, seed=0, device="cpu", progress=False).model for _ in range(2)]
    w = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in seeded + hidden]
    assert torch.equal(w[0], w[1])  # the run's seed drives the noise: reproducible
    assert not torch.equal(w[2], w[3]) and not torch.equal(w[2], w[0]) and not torch.equal(w[3], w[0])
    gap = float((w[2] - w[3]).std())
    assert gap == pytest.approx(math.sqrt(2) * math.sqrt(2 * 2 * 0.05 * 0.05**2), rel=0.25)  # two independent draws


def test_assumptions_hold_only_for_a_linear_model_with_secret_noise_and_a_small_step():
    sc = toy_scenario("classwise")
    run = _linear_run(sc)
    assert is_linear_model(run.model) and not is_linear_model(toy_model("classwise"))
    method = Langevin(steps=5, lr=0.05, sigma=0.05, weight_decay=0.01, secret_noise=True)
    out = ob.unlearn(run, sc, method, device="cpu", progress=False)
    d = out.diagnostics
    b = max(float(sc.train[i][0].flatten().norm()) for i in range(len(sc.train)))
    smooth, m, lip = linear_constants(b, 0.01, d["radius"])
    assert d["smoothness"] == pytest.approx(b**2 / 2 + 0.5 + 0.01) == pytest.approx(smooth)
    assert d["lipschitz"] == pytest.approx(math.sqrt(2 * (b**2 + 1)) + 0.01 * d["radius"]) == pytest.approx(lip)
    assert m == 0.01 and d["assumptions_hold"] == 1.0
    expected = langevin_certificate(
        steps=5,
        lr=0.05,
        sigma=0.05,
        strong_convexity=0.01,
        lipschitz=lip,
        n=len(sc.train),
        removed=len(sc.forget),
        smoothness=smooth,
    )
    assert d["epsilon"] == pytest.approx(expected.epsilon) and d["delta"] == pytest.approx(1 / len(sc.train))
    seeded = ob.unlearn(run, sc, Langevin(steps=5, lr=0.05, sigma=0.05, weight_decay=0.01), device="cpu", progress=False)
    assert seeded.diagnostics["assumptions_hold"] == 0.0  # noise known from the seed
    big_step = ob.unlearn(run, sc, method, lr=1.5 / smooth, device="cpu", progress=False)
    assert big_step.diagnostics["assumptions_hold"] == 0.0  # eta > 1/L
    deep = ob.unlearn(toy_model("classwise"), sc, method, device="cpu", progress=False)
    assert deep.diagnostics["assumptions_hold"] == 0.0 and math.isnan(deep.diagnostics["smoothness"])
    assert math.isfinite(deep.diagnostics["epsilon"]) and deep.diagnostics["lipschitz"] == 1.0


def test_learning_is_the_same_chain_as_unlearning():
    """langevin_learn on a set is the unlearning update on that set: the same weights for the same seed."""
    sc = toy_scenario("classwise")
    run = _linear_run(sc)
    method = Langevin(steps=4, lr=0.05, sigma=0.05, weight_decay=0.01, radius=50.0)
    learned = langevin_learn(run.model, sc.retain, method, seed=3)
    unlearned = ob.unlearn(run, sc, method, seed=3, device="cpu", progress=False).model
    assert all(torch.equal(a, b) for a, b in zip(learned.parameters(), unlearned.parameters(), strict=True))
    assert not torch.equal(learned.head.weight, run.model.head.weight)
    with pytest.raises(InvalidConfigError):
        langevin_learn(run.model, sc.retain, "langevin")


@pytest.mark.slow
def test_digits_preset_forgets_a_class_and_keeps_the_rest():
    ds = ob.load_dataset("digits")
    scenarios = (ob.Scenario.classwise(ds, forget_class=3, seed=0), ob.Scenario.random(ds, fraction=0.1, seed=0))
    assert scenarios[0].training_set == scenarios[1].training_set  # one original serves both
    base = ob.train(ob.build_model("cnn", ds, seed=0), scenarios[0].train, seed=0, progress=False, device="cpu", **DEMO_RECIPE)
    for sc in scenarios:
        out = ob.unlearn(base, sc, "langevin", preset="digits", seed=0, device="cpu", progress=False)
        assert out.status == "ok"
        assert accuracy(out.model, sc.retain) > 0.9
        if sc.kind == "classwise":
            assert accuracy(base.model, sc.forget) > 0.95 and accuracy(out.model, sc.forget) < 0.3
