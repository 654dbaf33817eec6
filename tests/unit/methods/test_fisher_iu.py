"""Fisher forgetting and influence unlearning: quality on class-wise digits, head selection, masks, memory cap."""

import copy

import pytest
import torch

import obliviate as ob
from obliviate.errors import UnlearningWarning
from obliviate.methods.base import RunContext
from obliviate.methods.fisher import classes_to_zero
from obliviate.testing import toy_model, toy_recording, toy_scenario
from obliviate.training import accuracy


def test_influence_forgets_a_class_of_digits_and_keeps_retain_accuracy(trained_cnn, class3):
    """Issue 3: forget accuracy drops on class-wise digits; retain accuracy stays within 5 points."""
    out = ob.unlearn(trained_cnn, class3, "iu", preset="digits", device="cpu")
    before_f, before_r = accuracy(trained_cnn, class3.forget), accuracy(trained_cnn, class3.retain)
    after_f, after_r = accuracy(out.model, class3.forget), accuracy(out.model, class3.retain)
    assert before_f > 0.95 and after_f <= before_f - 0.5, (before_f, after_f)
    assert after_r >= before_r - 0.05, (before_r, after_r)


def test_fisher_forgets_a_class_by_its_head_row_zeroing_not_by_its_noise(trained_cnn, class3):
    """Issue 11: the digits preset forgets class 3 because ``class_zero`` resets the class's head
    row; without any noise (α = 0) it forgets as much, and the noise alone (``class_zero="off"``)
    leaves the class remembered. Fisher forgetting is credited only with what its noise does.
    """
    before_f, before_r = accuracy(trained_cnn, class3.forget), accuracy(trained_cnn, class3.retain)
    results = {}
    for label, kwargs in {"both": {}, "zeroing only": {"alpha": 0.0}, "noise only": {"class_zero": "off"}}.items():
        out = ob.unlearn(trained_cnn, class3, "fisher", preset="digits", device="cpu", **kwargs)
        results[label] = (accuracy(out.model, class3.forget), accuracy(out.model, class3.retain))
        assert results[label][1] >= before_r - 0.05, (label, results[label], before_r)
    assert before_f > 0.95
    assert results["both"][0] <= 0.05 and results["zeroing only"][0] <= 0.05, results
    assert results["noise only"][0] >= before_f - 0.1, results


def test_fisher_zeroes_the_head_found_by_the_adapter_not_a_conv_with_c_channels(class3):
    """The seed code's `p.size(0) == num_classes` also matches this conv (10 output channels)."""
    model = ob.build_model("cnn", class3.dataset, seed=0, width=5)  # block 2 has 2*5 = 10 channels
    assert model.body[4].weight.shape[0] == 10 == class3.dataset.num_classes
    out = ob.unlearn(model, class3, "fisher", alpha=0.0, class_zero="on", device="cpu")
    assert torch.equal(out.model.body[4].weight, model.body[4].weight)
    head, old = out.model.head.weight.detach(), model.head.weight.detach()
    assert head[3].abs().max() < 0.1 and head[3].abs().max() > 0  # mean 0, variance 10 * 1e-4
    assert torch.equal(head[[0, 1, 2, 4, 5, 6, 7, 8, 9]], old[[0, 1, 2, 4, 5, 6, 7, 8, 9]])
    assert out.diagnostics["zeroed_classes"] == 1


def test_class_zeroing_auto_only_for_whole_classes(class3, digits):
    assert classes_to_zero(class3, "auto") == [3]
    random = ob.Scenario.random(digits, fraction=0.1, seed=0)
    assert classes_to_zero(random, "auto") == [] and classes_to_zero(random, "off") == []
    partial = ob.Scenario.classwise(digits, forget_class=3, count=20, seed=0)
    assert classes_to_zero(partial, "auto") == [] and classes_to_zero(partial, "on") == [3]


def test_fisher_noise_grows_with_alpha_and_leaves_buffers_alone():
    sc, model = toy_scenario("random"), toy_model("random")
    small = ob.unlearn(model, sc, "fisher", alpha=1e-8, device="cpu").model
    large = ob.unlearn(model, sc, "fisher", alpha=1e-5, device="cpu").model
    w = model.body[0].weight
    assert (small.body[0].weight - w).norm() < (large.body[0].weight - w).norm()
    assert torch.equal(large.body[1].running_mean, model.body[1].running_mean)


def _strict(method, model, sc, masks):
    """Run ``_unlearn`` on a copy without the base class's restore of frozen coordinates."""
    ctx = RunContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), seed=0, masks=masks)
    return method._unlearn(copy.deepcopy(model), sc, ctx)


@pytest.mark.parametrize("method", ["fisher", "iu"])
def test_perturbations_never_touch_masked_or_frozen_coordinates(method):
    sc, model = toy_scenario(), toy_model()
    model.body[1].weight.requires_grad_(False)  # a frozen parameter
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters()}
    instance = ob.get_method(method).from_preset("digits", alpha=1e-4 if method == "fisher" else 0.5)
    out = _strict(instance, model, sc, masks)
    params = dict(model.named_parameters())
    moved = 0
    for name, p in out.named_parameters():
        assert torch.equal(p[~masks[name]], params[name][~masks[name]]), name
        moved += int((p != params[name]).sum())
    assert torch.equal(out.body[1].weight, model.body[1].weight)
    assert moved > 0


def test_fisher_subsample_and_batch_variants_run():
    sc, model = toy_scenario(), toy_model()
    for kw in ({"max_samples": 20}, {"fisher": "batch"}, {"fisher": "empirical"}):
        out = ob.unlearn(model, sc, "fisher", device="cpu", **kw)
        assert accuracy(out.model, sc.forget) == 0.0  # class zeroing, whatever the Fisher


def test_influence_caps_the_per_sample_matrix_to_the_memory_budget():
    sc, model = toy_scenario(), toy_model()
    size = sum(p.numel() for p in model.parameters())
    budget = 10 * size * 4 / 2**30  # room for 10 gradients
    with pytest.warns(UnlearningWarning, match="using 10 samples"):
        out = ob.unlearn(model, sc, "iu", max_memory_gb=budget, device="cpu")
    assert out.diagnostics["ihvp_samples"] == 10
    assert ob.unlearn(model, sc, "iu", num_samples=30, device="cpu").diagnostics["ihvp_samples"] == 30


SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def random_runs():
    """Random forgetting (10 %) of the toy CNN, seeds 0-2: the scenario, the original (the no-op),
    the retrained oracle's evaluation (the reference) and the no-op's evaluation against it.
    """
    runs = []
    for seed in SEEDS:
        sc, model = toy_scenario("random", seed), toy_model("random", seed)
        recipe = toy_recording("random", seed).train_config.to_dict()
        oracle = ob.unlearn(model, sc, "retrain", seed=seed, device="cpu", **recipe).model
        reference = ob.evaluate(oracle, sc, oracle)
        runs.append((seed, sc, model, reference, ob.evaluate(model, sc, reference)))
    return runs


@pytest.mark.slow
def test_influence_defaults_keep_the_model_and_approach_the_oracle_on_random_forgetting(random_runs):
    """Issue 11: α = 1 with an absolute damping of 1e-3 scaled the directions outside the span of
    the sampled gradients by 1000 and dropped retain accuracy to ~10 %. With the damping derived
    from the Fisher's scale, over 3 seeds: retain accuracy within 3 points of the original's on
    every seed, and the mean avg gap to the oracle below the no-op original's.
    """
    gaps, noop_gaps = [], []
    for seed, sc, model, reference, noop in random_runs:
        out = ob.unlearn(model, sc, "iu", seed=seed, device="cpu")
        ev = ob.evaluate(out.model, sc, reference)
        assert ev["retain_acc"] >= noop["retain_acc"] - 0.03, (seed, ev["retain_acc"], noop["retain_acc"])
        assert out.diagnostics["step_norm"] > 0  # the step is taken
        gaps.append(ev["avg_gap"])
        noop_gaps.append(noop["avg_gap"])
    assert sum(gaps) < sum(noop_gaps), (gaps, noop_gaps)


def _spec_variance(fisher, alpha, is_head, zero_rows):
    """The noise variance of method-zoo-seeds.md §4.7 (fisher_new / FisherForgetting), written from the spec.

    var = min(1/(F + 1e-8), 1e3), or 1e2 for the head; × α; mean over dim 1 for tensors of
    two or more dimensions (one variance per row); zeroed head rows: variance 1e-4; × 10 for
    the head and for 1-D tensors.
    """
    var = torch.minimum(1.0 / (fisher.double() + 1e-8), torch.tensor(1e2 if is_head else 1e3, dtype=torch.float64))
    var = alpha * var
    if var.dim() > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(fisher).clone()
    if is_head:
        var[zero_rows] = 1e-4
    if is_head or var.dim() == 1:
        var = var * 10.0
    return var


def test_fisher_noise_variance_follows_the_formula_per_row(monkeypatch):
    """Issue 11: the noise itself. A stand-in Fisher with known values: each hidden row mixes two
    Fisher values 100x apart (so the per-row mean matters), rows and head rows span the clamps,
    and the empirical variance of the perturbation over many seeds matches the spec's formula
    for every coordinate (the zeroed head row: mean 0, variance 10 · 1e-4).
    """
    from obliviate.methods import fisher as fisher_module

    sc = toy_scenario("classwise")  # class 3 is zeroed
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 6), torch.nn.ReLU(), torch.nn.Linear(6, 10))
    row = 10.0 ** torch.arange(-5.0, 1.0)  # hidden rows: 1e-5 ... 1; larger Fisher in later rows
    hidden = row[:, None] * torch.cat([torch.ones(32), 100 * torch.ones(32)])[None, :]
    head_rows = 10.0 ** torch.linspace(-4.0, 1.0, 10)
    stand_in = {
        "1.weight": hidden,
        "1.bias": torch.tensor([1e-6, 1e-3, 1e-2, 1e-1, 1.0, 1e2]),
        "3.weight": head_rows[:, None] * torch.linspace(1.0, 10.0, 6)[None, :],
        "3.bias": head_rows.flip(0),
    }
    monkeypatch.setattr(fisher_module, "diagonal_fisher", lambda *args, **kwargs: stand_in)
    alpha, runs = 1e-2, 300
    method = ob.get_method("fisher")(alpha=alpha)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    squares = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in before.items()}
    for seed in range(runs):
        ctx = RunContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed), seed=seed)
        out = method._unlearn(copy.deepcopy(model), sc, ctx)
        for name, p in out.named_parameters():
            mean = before[name].clone()
            if name.startswith("3."):
                mean[3] = 0.0  # the zeroed row of class 3
            squares[name] += (p.detach().double() - mean.double()).square()
    for name, f in stand_in.items():
        want = _spec_variance(f, alpha, name.startswith("3."), [3])
        ratio = squares[name] / runs / want
        assert ratio.min() > 0.6 and ratio.max() < 1.5, (name, ratio.min().item(), ratio.max().item())
        tolerance = 4 * (2 / (runs * f.numel())) ** 0.5  # four standard errors of the mean of the ratio
        assert abs(float(ratio.mean()) - 1.0) < tolerance, (name, float(ratio.mean()), tolerance)
    # rows with the larger Fisher get the smaller noise
    row_var = (squares["1.weight"] / runs).mean(dim=1)
    assert torch.all(row_var[1:] < row_var[:-1]), row_var


@pytest.mark.slow
def test_fisher_on_random_forgetting_stays_next_to_the_original_over_three_seeds(random_runs):
    """Issue 11: against the no-op original over 3 seeds, Fisher forgetting's noise at its default α
    neither wrecks the model (retain accuracy within 2 points of the original's on every seed)
    nor moves it measurably toward the oracle (mean avg gap within 1.5 points of the no-op's):
    on random forgetting it does not beat doing nothing, as its docstring says.
    """
    gaps, noop_gaps = [], []
    for seed, sc, model, reference, noop in random_runs:
        out = ob.unlearn(model, sc, "fisher", seed=seed, device="cpu")
        ev = ob.evaluate(out.model, sc, reference)
        assert ev["retain_acc"] >= noop["retain_acc"] - 0.02, (seed, ev["retain_acc"], noop["retain_acc"])
        assert out.diagnostics["perturbed"] > 0 and out.diagnostics["zeroed_classes"] == 0
        gaps.append(ev["avg_gap"])
        noop_gaps.append(noop["avg_gap"])
    assert abs(sum(gaps) - sum(noop_gaps)) / len(gaps) <= 0.015, (gaps, noop_gaps)
