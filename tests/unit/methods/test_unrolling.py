"""Single-gradient unlearning (sgu) and amnesiac unlearning against the spec's oracles."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.errors import InvalidConfigError, MissingDataError, UnlearningWarning
from obliviate.methods.unrolling import optimizer_coefficients, sgu_correction
from obliviate.metrics.unrolling import verification_errors
from obliviate.recording import Recorder, naive_retrain, replay
from obliviate.testing import toy_dataset, toy_model, toy_recording, toy_scenario
from obliviate.training import TrainConfig, fit

CPU = torch.device("cpu")
PLAIN = dict(momentum=0.0, weight_decay=0.0, schedule="constant", device="cpu", progress=False)


def _dist(a: nn.Module, b: nn.Module) -> float:
    return ob.metrics.functional.weight_distance(a, b)


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


def test_sgu_with_only_the_forget_step_equals_retraining(toy):
    """The spec's oracle: with t = 1 (B* is the whole run), w_u = w_0 = the naive retrain."""
    forget = np.arange(32)
    sc = ob.Scenario.from_indices(toy, forget, val_fraction=0.0)
    data = ob.data.Subset(toy.train, forget)  # the run is one step on B*
    model = ob.build_model("mlp", toy, seed=0, hidden=(16,))
    res = ob.train(model, data, epochs=1, lr=0.5, batch_size=32, record=True, **PLAIN)
    assert res.recording.num_steps == 1
    out = ob.unlearn(res.model, sc, "sgu", recording=res.recording, device="cpu")
    w_prime = naive_retrain(res.model, res.recording, sc, device="cpu")
    assert _dist(w_prime, model) == 0.0  # the retrain takes no step
    assert _dist(res.model, model) > 0.1  # the step moved the weights
    assert _dist(out.model, w_prime) < 1e-6
    ev = ob.evaluate(out.model, sc, metrics=["verification_error"], recording=res.recording)
    assert ev["verification_error"] < 1e-6 and ev["verification_error_noop"] > 0.1


def _quadratic(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return 0.5 * (out - nn.functional.one_hot(y, 10).to(out.dtype)).pow(2).sum(1).mean()


def _quadratic_ve(toy, lr: float) -> tuple[float, float]:
    data = ob.data.Subset(toy.train, np.arange(240))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recorder = Recorder()
    config = TrainConfig(epochs=1, lr=lr, momentum=0.0, weight_decay=0.0, batch_size=24, schedule="constant")
    fit(
        model, data, config=config, loss_fn=_quadratic, generator=torch.Generator().manual_seed(0), device=CPU, step_hook=recorder
    )
    rec = recorder.recording
    forget = rec.batch(0)  # B* at step 0, then 9 more steps
    correction, _ = sgu_correction(model, rec, data, forget, loss_fn=_quadratic)
    w_u = rec.vector(model) + torch.cat([correction[n].reshape(-1).double() for n in rec.param_names])
    w_prime, steps = replay(model, rec, data, exclude=forget, loss_fn=_quadratic, device="cpu")
    assert steps == rec.num_steps - 1 == 9
    return float((w_u - rec.vector(w_prime)).norm()), float((rec.vector(model) - rec.vector(w_prime)).norm())


def test_verification_error_is_second_order_in_the_learning_rate_on_a_quadratic_loss(toy):
    """The spec's oracle: plain SGD on a quadratic loss, halving η divides VE by 3 to 5."""
    ve_1, noop_1 = _quadratic_ve(toy, 1e-3)
    ve_2, noop_2 = _quadratic_ve(toy, 5e-4)
    assert 3.0 <= ve_1 / ve_2 <= 5.0, (ve_1, ve_2)
    assert 1.6 <= noop_1 / noop_2 <= 2.4  # doing nothing leaves a first-order error
    assert ve_1 < noop_1 / 3


def test_weighted_single_pass_equals_the_per_step_gradients(toy):
    """Without BatchNorm sgu takes one weighted pass; it must equal the per-step definition."""
    sc = ob.Scenario.from_indices(toy, np.arange(0, 250, 7), val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=1, hidden=(16,))
    res = ob.train(model, sc.train, epochs=2, lr=0.1, batch_size=32, record=True, std_reg=0.5, label_smoothing=0.1, **PLAIN)
    rec = res.recording
    data, forget = rec.training_data(toy.train), rec.positions(sc.forget_idx)
    fast, diag = sgu_correction(res.model, rec, data, forget)

    def batch_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = m(x)
        ce = nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
        return ce + 0.5 * logits.std(dim=1).mean() / logits.shape[1]

    slow, _ = sgu_correction(res.model, rec, data, forget, loss_fn=batch_loss)
    for name in rec.param_names:
        torch.testing.assert_close(fast[name], slow[name], atol=1e-6, rtol=1e-4)
    assert diag["forget_steps"] == int(rec.steps_holding(forget).sum()) > 10  # the forget samples are in most batches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sgu_beats_doing_nothing_in_its_scope_plain_sgd_at_a_small_learning_rate(toy, seed):
    """The paper's regime (plain SGD, small η·t, a forget set mixed into the batches), seeds 0-2:
    sgu's verification error is under a tenth of the no-op original's on every seed.
    """
    sc = ob.Scenario.from_indices(toy, np.arange(seed, 250, 10), val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=seed, hidden=(16,))
    res = ob.train(model, sc.train, epochs=2, lr=2e-3, batch_size=32, record=True, seed=seed, **PLAIN)
    out = ob.unlearn(res, sc, "sgu", recording=res.recording, device="cpu")
    errors = verification_errors(out.model, res.recording, sc)
    assert errors["verification_error"] < 0.1 * errors["verification_error_noop"], (seed, errors)


@pytest.mark.slow
def test_sgu_digits_preset_against_doing_nothing_on_random_forgetting_over_three_seeds():
    """Issue 11: the preset on random forgetting of a model trained from scratch with momentum
    (the toy CNN, seeds 0-2; the demo's situation), against the no-op original, with the
    paper's oracle ``w'`` (the recorded run replayed without the forget set) as the reference.

    What sgu guarantees there: its verification error stays within 2 % of the no-op's on every
    seed (the first-order correction is small next to ``‖w_T − w'‖``: it neither approaches nor
    leaves ``w'``). What it does not do, as its docstring says: beat doing nothing; its mean avg
    gap to ``w'`` is not below the no-op's (it can cost accuracy, so no accuracy bound holds).
    """
    gaps, noop_gaps = [], []
    for seed in (0, 1, 2):
        sc, model, rec = toy_scenario("random", seed), toy_model("random", seed), toy_recording("random", seed)
        with pytest.warns(UnlearningWarning, match="plain SGD"):  # the recipe uses momentum, as the demo's
            out = ob.unlearn(model, sc, "sgu", preset="digits", recording=rec, device="cpu")
        errors = verification_errors(out.model, rec, sc)
        ratio = errors["verification_error"] / errors["verification_error_noop"]
        assert 0.98 <= ratio <= 1.02, (seed, errors)
        oracle = naive_retrain(model, rec, sc, device="cpu")
        reference = ob.evaluate(oracle, sc, oracle)
        gaps.append(ob.evaluate(out.model, sc, reference)["avg_gap"])
        noop_gaps.append(ob.evaluate(model, sc, reference)["avg_gap"])
    assert sum(gaps) >= sum(noop_gaps), (gaps, noop_gaps)


def test_optimizer_coefficients_are_the_exact_response_of_torch_sgd():
    lrs = np.array([0.1, 0.08, 0.05, 0.05, 0.02, 0.01])
    for momentum, wd, nesterov in ((0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.01, False), (0.5, 0.1, True), (0.0, 0.1, False)):
        rec = _FakeRecording(lrs, {"optimizer": "sgd", "momentum": momentum, "weight_decay": wd, "nesterov": nesterov})
        coefs = optimizer_coefficients(rec)
        for s in range(len(lrs)):
            # a parameter whose loss gradient is a unit impulse at step s (the weight decay acts on top)
            finals = []
            for impulse in (0.0, 1.0):
                p = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
                opt = torch.optim.SGD([p], lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
                for k, lr in enumerate(lrs):
                    opt.param_groups[0]["lr"] = lr
                    p.grad = torch.tensor([impulse if k == s else 0.0], dtype=torch.float64)
                    opt.step()
                finals.append(float(p.detach()))
            assert coefs[s] == pytest.approx(finals[0] - finals[1], rel=1e-10), (momentum, wd, nesterov, s)
    plain = optimizer_coefficients(_FakeRecording(lrs, {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0}))
    np.testing.assert_allclose(plain, lrs)
    with pytest.raises(InvalidConfigError, match="linear"):
        optimizer_coefficients(_FakeRecording(lrs, {"optimizer": "adam"}))


class _FakeRecording:
    def __init__(self, lrs, config):
        self.lrs, self.config = lrs, config


@pytest.fixture(scope="module")
def momentum_run(toy):
    sc = ob.Scenario.from_indices(toy, np.arange(0, 250, 25), val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=0, hidden=(16,))
    res = ob.train(
        model, sc.train, epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False, record=True, record_updates=True
    )
    return sc, model, res


def test_sgu_warns_on_momentum_and_needs_a_recording(momentum_run):
    sc, _, res = momentum_run
    with pytest.warns(UnlearningWarning, match="plain SGD"):
        out = ob.unlearn(res.model, sc, "sgu", recording=res.recording, device="cpu")
    steps_with_forget = res.recording.steps_holding(res.recording.positions(sc.forget_idx))
    assert out.diagnostics["forget_step_fraction"] == pytest.approx(steps_with_forget.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnlearningWarning)
        ob.unlearn(res, sc, "sgu", coefficient="optimizer", recording=res.recording, device="cpu")  # a TrainResult: checked
    with pytest.raises(MissingDataError, match=r"record=True"):
        ob.unlearn(res.model, sc, "sgu", device="cpu")
    with pytest.raises(InvalidConfigError, match="Recording"):
        ob.unlearn(res.model, sc, "sgu", recording={"steps": 3}, device="cpu")
    with pytest.warns(UnlearningWarning, match="final weights"):
        ob.unlearn(
            ob.build_model("mlp", sc.dataset, seed=5, hidden=(16,)), sc, "sgu", coefficient="optimizer", recording=res.recording
        )


def test_amnesiac_subtracts_exactly_the_updates_of_the_forget_steps(momentum_run):
    sc, model, res = momentum_run
    rec = res.recording
    out = ob.unlearn(res.model, sc, "amnesiac", recording=rec, device="cpu")
    steps = np.flatnonzero(rec.steps_holding(rec.positions(sc.forget_idx)))
    assert 0 < len(steps) < rec.num_steps and out.diagnostics["steps_undone"] == len(steps)
    want = rec.vector(res.model) - rec.update_sum(steps)
    torch.testing.assert_close(rec.vector(out.model), want, atol=1e-6, rtol=0)
    # forgetting every sample undoes the whole run
    everything = ob.Scenario.from_indices(sc.dataset, np.arange(250), val_fraction=0.0)
    back = ob.unlearn(res.model, everything, "amnesiac", recording=rec, device="cpu").model
    assert _dist(back, model) < 1e-5
    with pytest.raises(MissingDataError, match="retain"):
        ob.unlearn(res.model, everything, "amnesiac", epochs=1, recording=rec, device="cpu")


def test_amnesiac_needs_the_updates_of_the_forget_steps(toy):
    sc = ob.Scenario.from_indices(toy, [3, 50], val_fraction=0.0)
    model = ob.build_model("mlp", toy, seed=0, hidden=(8,))
    kw = dict(epochs=2, lr=0.05, batch_size=32, device="cpu", progress=False, record=True)
    only_these = ob.train(model, sc.train, record_updates=sc.forget_idx, **kw)
    assert len(only_these.recording.update_steps) <= 4
    out = ob.unlearn(only_these.model, sc, "amnesiac", recording=only_these.recording, device="cpu")
    assert out.diagnostics["steps_undone"] == len(only_these.recording.update_steps)
    other = ob.Scenario.from_indices(toy, [7], val_fraction=0.0)
    with pytest.raises(MissingDataError, match="record_updates"):
        ob.unlearn(only_these.model, other, "amnesiac", recording=only_these.recording, device="cpu")
    none = ob.train(model, sc.train, **kw)
    with pytest.raises(MissingDataError, match="record_updates"):
        ob.unlearn(none.model, sc, "amnesiac", recording=none.recording, device="cpu")


def test_the_two_amnesiacs_are_documented_apart():
    graves, rl = ob.get_method("amnesiac"), ob.get_method("random_label")
    assert "Graves" in graves.__doc__ and "random_label" in graves.__doc__
    assert "amnesiac" in rl.presets and "Graves" in rl.__doc__


def test_batchnorm_gradients_use_each_steps_batch_statistics(toy):
    """With BatchNorm the one-step oracle holds only on batch statistics (as in the SGD step)."""
    forget = np.arange(32)
    sc = ob.Scenario.from_indices(toy, forget, val_fraction=0.0)
    model = ob.build_model("cnn", toy, seed=0, width=4)
    res = ob.train(model, ob.data.Subset(toy.train, forget), epochs=1, lr=0.5, batch_size=32, record=True, **PLAIN)
    batch = ob.unlearn(res.model, sc, "sgu", recording=res.recording, device="cpu").model
    assert ob.metrics.functional.weight_distance(batch, model) < 1e-6
    running = ob.unlearn(res.model, sc, "sgu", batchnorm="running", recording=res.recording, device="cpu").model
    assert ob.metrics.functional.weight_distance(running, model) > 1e-3  # w_0's running statistics are the initial ones


def test_running_batchnorm_statistics_allow_the_single_weighted_pass(toy):
    sc = ob.Scenario.from_indices(toy, np.arange(0, 250, 9), val_fraction=0.0)
    model = ob.build_model("cnn", toy, seed=0, width=4)
    res = ob.train(model, sc.train, epochs=2, lr=0.05, batch_size=32, record=True, **PLAIN)
    rec = res.recording
    data, forget = rec.training_data(toy.train), rec.positions(sc.forget_idx)
    fast, _ = sgu_correction(res.model, rec, data, forget, gradient_at="final", batchnorm="running")

    def batch_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(m(x), y)  # evaluated with BatchNorm in eval mode

    slow, _ = sgu_correction(res.model, rec, data, forget, gradient_at="final", batchnorm="running", loss_fn=batch_loss)
    for name in rec.param_names:
        torch.testing.assert_close(fast[name], slow[name], atol=1e-6, rtol=1e-4)
    with pytest.raises(InvalidConfigError, match="batchnorm"):
        sgu_correction(res.model, rec, data, forget, batchnorm="frozen")
