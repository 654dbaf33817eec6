"""Discriminative Adversarial Unlearning (issue 5): the attacker, the game's schedule and data
handling, the opt-in mia_adversarial metric, and one full class-wise run against the oracle.
"""

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.errors import InvalidConfigError, MissingDataError
from obliviate.methods.adversarial import (
    AdversarialUnlearning,
    Attacker,
    _Cycler,
    barlow_twins_loss,
    heldout_split,
    membership_attack_accuracy,
    train_attacker,
)
from obliviate.metrics.functional import mia_adversarial
from obliviate.training import TrainConfig, accuracy, fit

# A cheap configuration for behavioural checks (the digits preset's attacker, a short game).
TINY = dict(
    epochs=1,
    lr=0.02,
    batch_size=64,
    attack_batch_size=8,
    noise_samples=2,
    attacker_warmup=0,
    attacker_dim=8,
    attacker_layers=1,
    attacker_heads=2,
    attacker_ff=16,
    attacker_hidden=8,
)


# A small attacker of the paper's architecture for the synthetic checks.
SMALL = dict(dim=8, layers=1, heads=2, ff=16, hidden=8)


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def _synthetic(n, member, generator, num_classes=5):
    """Attack features of an easy member/non-member set: members are confident and stable."""
    y = torch.randint(0, num_classes, (n,), generator=generator)
    z = torch.randn(n, num_classes, generator=generator)
    z[torch.arange(n), y] += 6.0 if member else 2.0
    s = torch.rand(n, num_classes, generator=generator) * (1.0 if member else 3.0)
    return torch.cat([z, nn.functional.one_hot(y, num_classes).float(), s], 1)


# --------------------------------------------------------------------------- Barlow Twins
def test_barlow_twins_hand_computed_value():
    # a = b = [1, -1]: mean 0, unbiased variance 2, standardised ±1/√2, M = (1/2)(1/2 + 1/2) = 1/2
    x = torch.tensor([[1.0], [-1.0]])
    assert barlow_twins_loss(x, x, eps=0.0).item() == pytest.approx(0.25)
    # two dimensions, the second anti-correlated with the first across the pair:
    # M = [[1/2, -1/2], [-1/2, 1/2]] -> (1/2 - 1)^2 * 2 + λ * 2 * (1/4)
    y = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    assert barlow_twins_loss(y, y, off_diagonal=0.1, eps=0.0).item() == pytest.approx(0.5 + 0.1 * 0.5)


def test_barlow_twins_stays_finite_on_a_dead_dimension():
    """The Gunlearn code divides by a raw std: a constant (dead ReLU) dimension gives NaN."""
    a = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    a[:, 2] = 0.0
    a.requires_grad_(True)
    b = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    loss = barlow_twins_loss(a, b)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()
    # the dead dimension contributes exactly (0 - 1)^2 on the diagonal (its row of M is zero)
    live = [0, 1, 3]
    full = barlow_twins_loss(a.detach(), b, off_diagonal=0.0)
    assert full.item() == pytest.approx(barlow_twins_loss(a.detach()[:, live], b[:, live], off_diagonal=0.0).item() + 1.0)


def test_barlow_twins_rejects_bad_shapes():
    with pytest.raises(InvalidConfigError, match="same shape"):
        barlow_twins_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(InvalidConfigError, match="at least 2"):
        barlow_twins_loss(torch.zeros(1, 3), torch.zeros(1, 3))


# --------------------------------------------------------------------------- the attacker
def test_attacker_layout_and_size():
    net = Attacker(10, dim=16, layers=1, heads=2, ff=32, hidden=16)
    assert net(torch.randn(5, 30)).shape == (5, 2)
    paper = Attacker(10)
    assert len(paper.encoder.layers) == 3 and paper.embed[0].out_features == 64
    with pytest.raises(InvalidConfigError, match="multiple"):
        Attacker(10, dim=10, heads=4)
    with pytest.raises(InvalidConfigError, match="attacker_heads"):
        AdversarialUnlearning(attacker_dim=10, attacker_heads=4)
    with pytest.raises(InvalidConfigError, match="stop_iter"):
        AdversarialUnlearning(stop_lr=0.01)


def test_the_attacker_separates_an_easy_member_set():
    gen = torch.Generator().manual_seed(0)
    members, nonmembers = _synthetic(300, True, gen), _synthetic(300, False, gen)
    torch.manual_seed(0)
    net = Attacker(5, **SMALL)
    train_attacker(net, members, nonmembers, steps=100, batch_size=64, generator=gen)
    net.eval()
    fresh_m, fresh_n = _synthetic(200, True, gen), _synthetic(200, False, gen)
    with torch.no_grad():
        pred = net(torch.cat([fresh_m, fresh_n])).argmax(1)
    truth = torch.cat([torch.ones(200), torch.zeros(200)]).long()
    assert (pred == truth).float().mean() >= 0.95


def test_cycler_gives_equal_batches_from_a_set_smaller_than_the_batch():
    draw = _Cycler(5, torch.Generator().manual_seed(0))
    first = draw.take(12)
    assert len(first) == 12
    assert sorted(first[:5].tolist()) == list(range(5)) and sorted(first[5:10].tolist()) == list(range(5))
    counts = np.bincount(torch.cat([first, draw.take(13)]).numpy(), minlength=5)
    assert counts.tolist() == [5, 5, 5, 5, 5]  # every sample once per pass


# --------------------------------------------------------------------------- mia_adversarial
def test_mia_adversarial_on_easy_and_on_identical_distributions():
    gen = torch.Generator().manual_seed(1)
    kw = dict(seed=0, steps=100, batch_size=64, attacker=SMALL)
    easy = mia_adversarial(_synthetic(200, True, gen), _synthetic(300, False, gen), **kw)
    same = mia_adversarial(_synthetic(200, True, gen), _synthetic(300, True, gen), **kw)
    assert easy >= 0.95
    assert 0.3 <= same <= 0.7
    m, n = _synthetic(60, True, gen), _synthetic(60, False, gen)
    assert mia_adversarial(m, n, seed=3, steps=10, attacker=SMALL) == mia_adversarial(m, n, seed=3, steps=10, attacker=SMALL)


def test_mia_adversarial_rejects_bad_input():
    with pytest.raises(MissingDataError):
        mia_adversarial(np.zeros((1, 6)), np.zeros((5, 6)))
    with pytest.raises(InvalidConfigError, match="3C"):
        mia_adversarial(np.zeros((4, 5)), np.zeros((4, 5)))
    with pytest.raises(InvalidConfigError, match="must match"):
        mia_adversarial(np.zeros((4, 6)), np.zeros((4, 9)))


def test_mia_adversarial_is_opt_in_in_evaluate(trained_cnn, class3):
    from obliviate.evaluation import _resolve_metrics

    assert ob.METRICS.get("mia_adversarial").opt_in
    assert "mia_adversarial" not in _resolve_metrics(None, True, class3)
    value = ob.evaluate(trained_cnn, class3, metrics=["mia_adversarial"], seed=1).metrics["mia_adversarial"]
    assert value == membership_attack_accuracy(trained_cnn, class3, seed=1, batch_size=512)
    assert 0.0 <= value <= 1.0


# --------------------------------------------------------------------------- data handling
def test_heldout_split_keeps_the_forgotten_class_or_everything(class3, digits):
    restricted = heldout_split(class3)
    assert len(restricted) > 0 and set(restricted.targets.tolist()) == {3}
    assert len(heldout_split(class3, restrict=False)) == len(class3.val)
    with_test = heldout_split(class3, include_test=True)
    assert len(with_test) == len(restricted) + len(class3.test_forget)
    rnd = ob.Scenario.random(digits, fraction=0.1, seed=0)
    assert len(heldout_split(rnd)) == len(rnd.val)  # a random D_f spans every class
    coarse = ob.load_dataset("digits_coarse")
    sub = ob.Scenario.subclass(coarse, fine_class=3, seed=0)
    fine_val = np.asarray(coarse.train_fine)[sub.val_idx]
    held = heldout_split(sub)
    assert 0 < len(held) == int(np.sum(fine_val == 3)) < len(sub.val)  # only the forgotten sub-class


def test_mia_adversarial_scores_against_test_samples_no_method_saw(trained_cnn, class3, digits, monkeypatch):
    """The non-members are test-split samples only: never the validation split the defender trains on."""
    import obliviate.methods.adversarial as adv

    seen: list = []
    real = adv.attack_features_of

    def spy(model, data, *args, **kwargs):
        seen.append(data)
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(adv, "attack_features_of", spy)
    rnd = ob.Scenario.random(digits, fraction=0.1, seed=0)
    for sc in (class3, rnd):
        seen.clear()
        membership_attack_accuracy(trained_cnn, sc, seed=0)
        members, nonmembers = seen
        assert isinstance(nonmembers, ob.data.Subset) and nonmembers.dataset is digits.test
        assert np.isin(nonmembers.indices, sc.test_idx).all()
    # class-wise: exactly the forgotten class's test samples; random: the test samples of D_f's classes
    held = adv.attack_heldout_split(class3)
    assert set(held.targets.tolist()) == {3} and len(held) == len(class3.test_forget)
    assert len(adv.attack_heldout_split(rnd)) == len(rnd.test)


def test_a_class_without_held_out_samples_is_a_clear_error(class3, trained_cnn):
    labels = class3.dataset.train_targets
    sc = ob.Scenario(
        dataset=class3.dataset,
        forget_idx=class3.forget_idx,
        retain_idx=class3.retain_idx,
        val_idx=class3.val_idx[labels[class3.val_idx] != 3],
        test_idx=class3.test_idx,
        kind="classwise",
        name="class:3:no-val-3",
        params=class3.params,
    )
    with pytest.raises(MissingDataError, match="val_set='all'"):
        ob.unlearn(trained_cnn, sc, "adversarial", device="cpu", **TINY)
    out = ob.unlearn(trained_cnn, sc, "adversarial", device="cpu", val_set="all", stop_iter=2, **TINY)
    assert out.diagnostics["adversarial_iterations"] == 2


# --------------------------------------------------------------------------- schedule and forwards
def test_fit_lr_factor_multiplies_the_schedule_per_step():
    model = nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    history = fit(
        model,
        lambda _epoch: [(x, y)],
        config=TrainConfig(epochs=4, lr=0.1, momentum=0.0, schedule="constant"),
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        steps_per_epoch=1,
        lr_factor=lambda step: 0.5 if step >= 2 else 1.0,
        progress=False,
    )
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.05, 0.05, 0.05])


def test_without_a_game_it_is_finetuning_at_stop_lr(trained_cnn, class3):
    """stop_iter=0: every step is after the stop, so the run is FT on D_r at stop_lr, bit for bit."""
    out = ob.unlearn(
        trained_cnn, class3, "adversarial", device="cpu", seed=3, **dict(TINY, epochs=2, lr=0.025, stop_iter=0, stop_lr=0.05)
    )
    ft = ob.unlearn(trained_cnn, class3, "finetune", device="cpu", seed=3, epochs=2, lr=0.05, batch_size=64)
    assert _equal(out.model, ft.model)
    assert out.diagnostics["adversarial_iterations"] == 0


def _bn_calls(model):
    calls = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp: calls.append((mod.training, inp[0].shape[0])))
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    ]
    return calls, hooks


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_forget_and_noisy_forwards_stop_after_stop_iter_and_respect_the_mode(trained_cnn, class3, mode):
    model = ob.build_model("cnn", class3.dataset)
    model.load_state_dict(trained_cnn.state_dict())
    first_bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    calls, hooks = _bn_calls(first_bn)
    # the hooks travel with the model copy made by unlearn
    out = ob.unlearn(model, class3, "adversarial", device="cpu", feature_mode=mode, stop_iter=3, **TINY)
    for h in hooks:
        h.remove()
    b, m = TINY["attack_batch_size"], TINY["noise_samples"]
    retain_sizes = {64, len(class3.retain) % 64}
    if mode == "eval":  # clean + noisy copies in one eval-mode forward per set
        adversarial = [c for c in calls if c[1] == b * (1 + m)]
        assert len(adversarial) == 2 * 3 and not any(training for training, _ in adversarial)
    else:  # the code's training-mode forwards: clean and noisy separately
        assert sum(1 for c in calls if c == (True, b)) == 2 * 3
        assert sum(1 for c in calls if c == (True, b * m)) == 2 * 3
    assert all(size in retain_sizes for training, size in calls if training and size not in (b, b * m))
    assert out.diagnostics["adversarial_iterations"] == 3
    n = len(class3.retain) + 3 * 2 * b * (1 + m)
    assert out.diagnostics["passes"] == pytest.approx(n / len(class3.train))


# --------------------------------------------------------------------------- presets and the full run
def test_presets_follow_the_gunlearn_table():
    cls = ob.get_method("adversarial")
    c10 = cls.from_preset("cifar10_classwise")
    assert (c10.lr, c10.epochs, c10.stop_iter, c10.stop_lr, c10.batch_size) == (0.02, 3, 30, 0.01, 256)
    c100 = cls.from_preset("cifar100_random")
    assert (c100.lr, c100.epochs, c100.stop_iter) == (0.01, 5, None)
    assert cls.from_preset("cifar10_random_sparse").lr == 0.03
    assert cls.from_preset("cifar100_classwise_sparse").stop_iter == 20
    d = cls()
    assert (d.adv_weight, d.bt_weight, d.bt_off_diagonal, d.noise_samples, d.noise_std, d.attacker_lr) == (
        0.9,
        1e-3,
        5e-3,
        10,
        1e-3,
        1e-3,
    )


@pytest.mark.slow
def test_classwise_run_matches_the_oracle(trained_cnn, class3):
    """Done-when: the digits preset on class:3 forgets to within 5 points of the oracle, brings
    MIA-efficacy within 10 points of the oracle's and keeps retain accuracy within 5 points.
    The original model and the oracle use the same (shortened demo) recipe.
    """
    recipe = dict(epochs=12, lr=0.05, batch_size=64, schedule="cosine")
    oracle = ob.unlearn(trained_cnn, class3, "retrain", seed=0, device="cpu", **recipe)
    out = ob.unlearn(trained_cnn, class3, "adversarial", preset="digits", seed=0, device="cpu")
    names = ["forget_acc", "retain_acc", "mia_efficacy"]
    ev, ev_oracle = ob.evaluate(out.model, class3, metrics=names), ob.evaluate(oracle.model, class3, metrics=names)
    original_retain = accuracy(trained_cnn, class3.retain)
    assert abs(ev["forget_acc"] - ev_oracle["forget_acc"]) <= 0.05, (ev.metrics, ev_oracle.metrics)
    assert abs(ev["mia_efficacy"] - ev_oracle["mia_efficacy"]) <= 0.10, (ev.metrics, ev_oracle.metrics)
    assert ev["retain_acc"] >= original_retain - 0.05, (ev.metrics, original_retain)
    assert out.diagnostics["adversarial_iterations"] == 5
