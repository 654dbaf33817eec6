"""Discriminative Adversarial Unlearning (issue 5): the attacker, the game's schedule and data
handling, the opt-in mia_adversarial metric, and one full class-wise run against the oracle.
Issue 12: the attack machinery lives in obliviate.metrics.attacks, the game is an object.
"""

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.errors import InvalidConfigError, MissingDataError
from obliviate.methods.adversarial import AdversarialUnlearning, barlow_twins_loss
from obliviate.metrics.attacks import Attacker, BatchCycler, attack_heldout_split, heldout_split, train_attacker
from obliviate.metrics.attacks.membership import membership_attack_accuracy
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
    draw = BatchCycler(5, torch.Generator().manual_seed(0))
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
    import obliviate.metrics.attacks.membership as adv

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
    held = attack_heldout_split(class3)
    assert set(held.targets.tolist()) == {3} and len(held) == len(class3.test_forget)
    assert len(attack_heldout_split(rnd)) == len(rnd.test)


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


# --------------------------------------------------------------------------- issue 12: layout and the game object
_MOVED = {
    "Attacker": "obliviate.metrics.attacks",
    "attack_features": "obliviate.metrics.attacks",
    "attack_features_of": "obliviate.metrics.attacks",
    "train_attacker": "obliviate.metrics.attacks",
    "heldout_split": "obliviate.metrics.attacks",
    "attack_heldout_split": "obliviate.metrics.attacks",
    "membership_attack_accuracy": "obliviate.metrics.attacks.membership",
}


@pytest.mark.parametrize("name", sorted(_MOVED))
def test_old_import_paths_resolve_with_a_deprecation_warning(name):
    import importlib

    import obliviate.methods.adversarial as old

    new = getattr(importlib.import_module(_MOVED[name]), name)
    with pytest.warns(DeprecationWarning, match=f"moved to {_MOVED[name]}.{name}"):
        assert getattr(old, name) is new
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018


def test_the_attack_machinery_imports_nothing_from_methods():
    """The cycle of issue 12: metrics/functional/adversarial imported methods/adversarial, which imports it back."""
    import ast
    from pathlib import Path

    import obliviate

    root = Path(obliviate.__file__).parent
    files = [*sorted((root / "metrics" / "attacks").glob("*.py")), root / "metrics" / "functional" / "adversarial.py"]
    assert len(files) >= 4
    for path in files:
        package = ["obliviate", *path.relative_to(root).parent.parts]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join([*base, *(node.module or "").split(".")])
                names = [target + "." + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("obliviate.methods") for n in names), (path.name, names)


def test_attack_heldout_is_a_cached_view_that_changes_no_split(digits):
    coarse = ob.load_dataset("digits_coarse")
    scenarios = [
        ob.Scenario.classwise(digits, forget_class=3, seed=0),
        ob.Scenario.random(digits, fraction=0.1, seed=0),
        ob.Scenario.subclass(coarse, fine_class=3, seed=0),
    ]
    for sc in scenarios:
        before = (sc.hash, sc.train_idx.copy(), sc.train.indices.copy(), sc.val_idx.copy(), sc.sizes(), sc.to_json())
        held = sc.attack_heldout
        assert held is sc.attack_heldout and attack_heldout_split(sc) is held  # one cached view
        assert held.dataset is sc.dataset.test and np.isin(held.indices, sc.test_idx).all() and len(held) > 0
        after = (sc.hash, sc.train_idx, sc.train.indices, sc.val_idx, sc.sizes(), sc.to_json())
        assert before[0] == after[0] and before[4] == after[4] and before[5] == after[5]
        for a, b in zip(before[1:4], after[1:4], strict=True):
            np.testing.assert_array_equal(a, b)
    # the held-out labels are those of D_f: the forgotten class, or every class of a random D_f
    assert set(scenarios[0].attack_heldout.targets.tolist()) == {3}
    fine = np.asarray(coarse.test_fine)[scenarios[2].attack_heldout.indices]
    assert set(fine.tolist()) == {3}


class _ClosureLoop(AdversarialUnlearning):
    """The game loop as it was before issue 12 (closures over a mutable dict), to pin the object's behaviour."""

    def _unlearn(self, model, scenario, ctx):
        import torch.nn.functional as F

        from obliviate._utils import eval_mode
        from obliviate.methods.adversarial import _tensors
        from obliviate.metrics.attacks import attack_features_of, logit_sensitivity, membership_labels, noisy_copies
        from obliviate.metrics.attacks import stack_features as _features
        from obliviate.models.adapter import ModelAdapter, logits_of

        dev, gen = ctx.device, ctx.generator
        num_classes = scenario.dataset.num_classes
        heldout = heldout_split(scenario, restrict=self.val_set == "forget_class")

        def lr_factor(step):
            if self.stop_iter is not None and self.stop_lr is not None and step >= self.stop_iter:
                return self.stop_lr / self.lr
            return 1.0

        x_f, y_f = _tensors(scenario.forget, dev)
        x_v, y_v = _tensors(heldout, dev)
        adapter = ModelAdapter(model)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        noise_gen = torch.Generator(device=dev).manual_seed(seed)
        attacker = self.make_attacker(num_classes).to(dev)
        opt_a = torch.optim.Adam(attacker.parameters(), lr=self.attacker_lr)
        m, std = self.noise_samples, self.noise_std
        if self.adv_weight > 0 and self.attacker_warmup > 0:
            members = scenario.train if self.warmup_members == "train" else scenario.forget
            common = {"noise_samples": m, "noise_std": std, "generator": noise_gen, "batch_size": 512, "device": dev}
            feats_m = attack_features_of(model, members, num_classes, **common).to(dev)
            feats_n = attack_features_of(model, heldout, num_classes, **common).to(dev)
            ctx.diagnostics["attacker_warmup_acc"] = train_attacker(
                attacker, feats_m, feats_n, steps=self.attacker_warmup, batch_size=64, generator=gen, optimizer=opt_a
            )
        b = max(2, self.attack_batch_size or self.batch_size)
        draw_f, draw_v = BatchCycler(len(y_f), gen), BatchCycler(len(y_v), gen)
        target = membership_labels(b, b, dev)
        state = {"step": 0, "attacker_acc": 0.0, "bt": 0.0, "adv": 0.0, "iters": 0}

        def outputs(x):
            return adapter.features_and_logits(x) if self.bt_weight > 0 else (None, adapter.logits(x))

        def forwards(x):
            if not (self.adv_weight > 0 and m > 0):
                h, z = outputs(x)
                return h, z, torch.zeros_like(z)
            if self.feature_mode == "eval":
                h, z = outputs(torch.cat([x, noisy_copies(x, m, std, noise_gen)]))
                z, z_noisy, h = z[: len(x)], z[len(x) :], None if h is None else h[: len(x)]
            else:
                h, z = outputs(x)
                z_noisy = adapter.logits(noisy_copies(x, m, std, noise_gen))
            return h, z, logit_sensitivity(z, z_noisy, m, std)

        def unlearning_terms():
            fi, vi = draw_f.take(b).to(dev), draw_v.take(b).to(dev)
            if self.feature_mode == "eval":
                with eval_mode(model):
                    (h_f, z_f, s_f), (h_v, z_v, s_v) = forwards(x_f[fi]), forwards(x_v[vi])
            else:
                (h_f, z_f, s_f), (h_v, z_v, s_v) = forwards(x_f[fi]), forwards(x_v[vi])
            ctx.counter["samples"] += 2 * b * (1 + (m if self.adv_weight > 0 else 0))
            total = torch.zeros((), device=dev)
            if self.adv_weight > 0:
                a = torch.cat([_features(z_f, y_f[fi], s_f, num_classes), _features(z_v, y_v[vi], s_v, num_classes)])
                attacker.requires_grad_(True)
                for _ in range(self.attacker_steps):
                    out = attacker(a.detach())
                    loss_a = F.cross_entropy(out, target)
                    opt_a.zero_grad(set_to_none=True)
                    loss_a.backward()
                    opt_a.step()
                attacker.requires_grad_(False)
                state["attacker_acc"] += float((out.argmax(1) == target).float().mean())
                adv = F.cross_entropy(attacker(a), 1 - target)
                state["adv"] = float(adv.detach())
                total = total + self.adv_weight * adv
            if h_f is not None and h_v is not None:
                bt = barlow_twins_loss(h_v, h_f, off_diagonal=self.bt_off_diagonal, eps=self.bt_eps)
                state["bt"] = float(bt.detach())
                total = total + self.bt_weight * bt
            state["iters"] += 1
            return self.beta * total

        def loss_fn(net, x, y):
            step = state["step"]
            state["step"] += 1
            active = self.stop_iter is None or step < self.stop_iter
            extra = unlearning_terms() if active else None
            loss = F.cross_entropy(logits_of(net(x)), y)
            return loss if extra is None else loss + extra

        ctx.fit(model, scenario.retain, self.recipe(), loss_fn=loss_fn, lr_factor=lr_factor, desc="adversarial")
        ctx.diagnostics["adversarial_iterations"] = float(state["iters"])
        if state["iters"] and self.adv_weight > 0:
            ctx.diagnostics["attacker_acc"] = state["attacker_acc"] / state["iters"]
            ctx.diagnostics["last_adv_loss"] = state["adv"]
        if state["iters"] and self.bt_weight > 0:
            ctx.diagnostics["last_bt_loss"] = state["bt"]
        return model


@pytest.mark.parametrize(
    "extra",
    [
        dict(stop_iter=4, attacker_warmup=5),
        dict(stop_iter=3, feature_mode="train", stop_lr=0.05, attacker_steps=2),
        dict(stop_iter=3, bt_weight=0.0, attacker_warmup=3, warmup_members="forget", val_set="all"),
        dict(stop_iter=2, adv_weight=0.0),
    ],
    ids=["eval-warmup", "train-mode", "no-bt", "no-adv"],
)
def test_the_game_object_is_bit_identical_to_the_closure_loop(trained_cnn, class3, extra):
    kw = dict(TINY, **extra)
    new = ob.unlearn(trained_cnn, class3, AdversarialUnlearning(**kw), device="cpu", seed=5)
    old = ob.unlearn(trained_cnn, class3, _ClosureLoop(**kw), device="cpu", seed=5)
    assert _equal(new.model, old.model)
    assert set(new.diagnostics) == set(old.diagnostics)
    for key, value in old.diagnostics.items():
        if "seconds" not in key and "time" not in key:
            assert new.diagnostics[key] == value, key
    assert new.diagnostics["adversarial_iterations"] == kw["stop_iter"]
