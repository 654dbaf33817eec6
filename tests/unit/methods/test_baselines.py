"""Bad teacher, UNSIR, boundary shrink/expand, SCRUB, SalUn and NegGrad+ (issue 4): the pieces
each paper defines, checked against hand computations, plus their effect on the digits CNN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.errors import InvalidConfigError
from obliviate.methods._helpers import distill_kl, per_class_subset, random_copy
from obliviate.methods.boundary import nearest_wrong_labels
from obliviate.methods.salun import saliency, saliency_mask
from obliviate.methods.unsir import error_maximizing_noise
from obliviate.testing import toy_model, toy_scenario
from obliviate.training import accuracy

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------ helpers
def test_per_class_subset_keeps_at_most_k_of_each_label_drawn_from_the_generator():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    a = per_class_subset(labels, 4, torch.Generator().manual_seed(0))
    b = per_class_subset(labels, 4, torch.Generator().manual_seed(0))
    c = per_class_subset(labels, 4, torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.diff(a) > 0)
    assert np.bincount(labels[a]).tolist() == [4, 3, 4]


def test_distill_kl_is_batchmean_kl_times_t_squared():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    for temp in (1.0, 4.0):
        p_t = torch.softmax(t / temp, 1).numpy()
        p_s = torch.softmax(s / temp, 1).numpy()
        expected = temp**2 * np.mean([scipy.stats.entropy(a, b) for a, b in zip(p_t, p_s, strict=True)])
        assert float(distill_kl(s, t, temp)) == pytest.approx(expected, rel=1e-5)


def test_random_copy_is_a_seeded_frozen_reinitialisation_in_eval_mode():
    model = toy_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a, b, c = random_copy(model, 3), random_copy(model, 3), random_copy(model, 4)
    assert not a.training and all(not p.requires_grad for p in a.parameters())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.head.weight, c.head.weight)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # the input is untouched
    fresh = ob.build_model("cnn", toy_scenario().dataset, seed=3, width=8, dropout=0.2)  # = a new model from seed 3
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), fresh.state_dict().values(), strict=True))


# ------------------------------------------------------------------------------------ kinds
@pytest.mark.parametrize("name", ["unsir", "boundary_shrink", "boundary_expand"])
def test_class_level_methods_refuse_random_forgetting_with_a_clear_error(name):
    with pytest.raises(InvalidConfigError, match="random"):
        ob.unlearn(toy_model("random"), toy_scenario("random"), name, preset="digits", device="cpu")


@pytest.mark.parametrize("name", ["boundary_shrink", "boundary_expand"])
def test_boundary_methods_refuse_subclass_forgetting(name):
    ds = ob.load_dataset("digits_coarse")
    sc = ob.Scenario.subclass(ds, fine_class=3)
    model = ob.build_model("mlp", ds, hidden=(8,))
    with pytest.raises(InvalidConfigError, match="subclass"):
        ob.unlearn(model, sc, name, device="cpu")


# ------------------------------------------------------------------------------------ bad teacher
def test_bad_teacher_moves_forget_outputs_towards_a_random_network(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "bad_teacher", preset="digits", device="cpu")
    before = ob.evaluate(trained_cnn, class3, metrics=["zrf", "retain_acc"]).metrics
    after = ob.evaluate(out.model, class3, metrics=["zrf", "retain_acc"]).metrics
    assert after["zrf"] > before["zrf"] + 0.15
    assert after["retain_acc"] >= before["retain_acc"] - 0.05
    assert out.diagnostics["retain_used"] == round(0.5 * len(class3.retain))


# ------------------------------------------------------------------------------------ UNSIR
def test_unsir_noise_raises_the_loss_of_the_class_and_leaves_the_model_untouched(trained_cnn):
    model = trained_cnn
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"count": 8, "lr": 0.1, "reg": 0.1, "device": CPU}
    start = error_maximizing_noise(model, 3, (1, 8, 8), steps=0, generator=torch.Generator().manual_seed(0), **kw)
    noise = error_maximizing_noise(model, 3, (1, 8, 8), steps=25, generator=torch.Generator().manual_seed(0), **kw)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # eval mode: BN statistics unchanged
    target = torch.full((8,), 3)
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(noise), target) > F.cross_entropy(model(start), target) + 1.0


def test_unsir_subclass_labels_the_noise_with_the_superclass():
    ds = ob.load_dataset("digits_coarse")
    sc = ob.Scenario.subclass(ds, fine_class=3)
    model = ob.build_model("mlp", ds, hidden=(16,))
    seen = []
    method = ob.methods.make_method("unsir", preset="digits", repair_epochs=0)
    original_fit = ob.methods.base.RunContext.fit

    def spy(self, net, data, config, **kw):
        if callable(data):
            seen.extend(int(v) for _, y in data(0) for v in y)
        return original_fit(self, net, data, config, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ob.methods.base.RunContext, "fit", spy)
        method.unlearn(model, sc, device="cpu")
    counts = np.bincount(seen, minlength=5)
    noise = method.noise_batch * method.noise_copies
    eights = int((ds.train_fine[sc.retain_idx] == 8).sum())  # the rest of super-class 3/8
    assert counts[3] == noise + min(eights, method.retain_per_class)


# ------------------------------------------------------------------------------------ boundary
def test_nearest_wrong_labels_are_never_the_true_label_and_follow_the_attack(trained_cnn, class3):
    x, y = next(ob.data.iterate_batches(class3.forget, 64, device=CPU))
    labels = nearest_wrong_labels(trained_cnn, x, y, 0.1)
    assert not torch.any(labels == y)
    with torch.no_grad():  # at bound ~0 the attack does nothing: the label is the runner-up class
        logits = trained_cnn.eval()(x)
    runner_up = logits.masked_fill(F.one_hot(y, 10).bool(), -math.inf).argmax(1)
    assert torch.equal(nearest_wrong_labels(trained_cnn, x, y, 1e-9), runner_up)


@pytest.mark.parametrize("name", ["boundary_shrink", "boundary_expand"])
def test_boundary_methods_forget_the_class_with_their_digits_preset(trained_cnn, class3, name):
    out = ob.unlearn(trained_cnn, class3, name, preset="digits", device="cpu")
    assert accuracy(out.model, class3.forget) <= 0.1
    assert accuracy(out.model, class3.retain) >= accuracy(trained_cnn, class3.retain) - 0.08


def test_boundary_expand_keeps_the_architecture_and_prunes_the_shadow_neuron(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "boundary_expand", preset="digits", device="cpu")
    assert out.model.head.out_features == 10
    assert {k: v.shape for k, v in out.model.state_dict().items()} == {k: v.shape for k, v in trained_cnn.state_dict().items()}


# ------------------------------------------------------------------------------------ SCRUB
def test_scrub_without_max_steps_or_distillation_is_exactly_finetuning():
    model, sc = toy_model(), toy_scenario()
    recipe = {"epochs": 2, "lr": 0.05, "batch_size": 32, "schedule": "cosine", "optimizer": "sgd"}
    scrub = ob.unlearn(model, sc, "scrub", max_epochs=0, alpha=0.0, gamma=1.0, device="cpu", **recipe)
    ft = ob.unlearn(model, sc, "finetune", device="cpu", **recipe)
    assert all(torch.equal(a, b) for a, b in zip(scrub.model.state_dict().values(), ft.model.state_dict().values(), strict=True))


def test_scrub_max_steps_push_the_forget_outputs_away_from_the_teacher(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "scrub", preset="digits", device="cpu")
    ev = ob.evaluate(out.model, class3, reference=trained_cnn, metrics=["kl_divergence", "forget_acc", "retain_acc"])
    assert ev.metrics["kl_divergence"] > 1.0  # KL(original || student) on D_f
    assert ev.metrics["forget_acc"] <= 0.05
    assert ev.metrics["retain_acc"] >= accuracy(trained_cnn, class3.retain) - 0.05


# ------------------------------------------------------------------------------------ SalUn
def test_saliency_is_the_gradient_magnitude_of_the_mean_forget_loss(trained_cnn, class3):
    scores = saliency(trained_cnn, class3.forget, batch_size=16, device=CPU)
    x, y = next(ob.data.iterate_batches(class3.forget, len(class3.forget), device=CPU))
    model = trained_cnn.eval()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(scores[name], p.grad.abs(), atol=1e-6, rtol=1e-4)
    model.zero_grad()


def test_saliency_mask_keeps_the_global_top_share_within_the_allowed_coordinates():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0]), "b": torch.tensor([[4.0, 0.0], [2.0, 6.0]])}
    mask = saliency_mask(scores, 0.5)  # ceil(0.5 * 7) = 4 coordinates: 6, 5, 4, 3
    assert mask["a"].tolist() == [True, False, True] and mask["b"].tolist() == [[True, False], [False, True]]
    allowed = {"b": torch.tensor([[False, True], [True, False]])}  # 5 eligible: ceil(2.5) = 3 of them, 5, 3, 2
    mask = saliency_mask(scores, 0.5, allowed)
    assert mask["a"].tolist() == [True, False, True] and mask["b"].tolist() == [[False, False], [True, False]]


def test_salun_moves_only_the_salient_weights_even_with_weight_decay_and_momentum(trained_cnn, class3):
    method = ob.methods.make_method("salun", preset="digits", mask_ratio=0.3, weight_decay=5e-3, momentum=0.9)
    out = method.unlearn(trained_cnn, class3, device="cpu")
    mask = saliency_mask(saliency(trained_cnn, class3.forget, batch_size=method.batch_size, device=CPU), 0.3)
    moved = kept = 0
    for (name, before), after in zip(trained_cnn.named_parameters(), out.model.parameters(), strict=True):
        assert torch.equal(after.detach()[~mask[name]], before.detach()[~mask[name]]), name
        moved += int((after.detach() != before.detach())[mask[name]].sum())
        kept += int(mask[name].sum())
    assert moved > 0.9 * kept
    assert out.diagnostics["mask_fraction"] == pytest.approx(0.3, abs=1e-3)
    assert accuracy(out.model, class3.forget) <= 0.05


def test_salun_combines_the_callers_masks_by_logical_and(trained_cnn, class3):
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in trained_cnn.named_parameters()}
    out = ob.unlearn(trained_cnn, class3, "salun", preset="digits", masks=masks, device="cpu")
    for (name, before), after in zip(trained_cnn.named_parameters(), out.model.parameters(), strict=True):
        assert torch.equal(after.detach()[~masks[name]], before.detach()[~masks[name]])


# ------------------------------------------------------------------------------------ NegGrad+
def test_neggrad_plus_pairs_retain_and_forget_batches_in_its_loss(trained_cnn, class3):
    """With β close to 1 the step is (almost) fine-tuning; with β = 0.5 the forget loss rises."""
    common = {"epochs": 1, "lr": 0.01, "batch_size": 64, "forget_batch_size": 16, "device": "cpu"}
    ascent = ob.unlearn(trained_cnn, class3, "neggrad_plus", beta=0.5, **common).model
    descent = ob.unlearn(trained_cnn, class3, "neggrad_plus", beta=1 - 1e-9, **common).model

    def forget_loss(model):
        logits, y = ob.training.predict(model, class3.forget)
        return float(F.cross_entropy(logits, y))

    assert forget_loss(ascent) > forget_loss(trained_cnn) + 0.5
    assert forget_loss(descent) <= forget_loss(trained_cnn) + 0.05


def test_neggrad_plus_forgets_the_class_with_its_digits_preset(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "neggrad_plus", preset="digits", device="cpu")
    assert accuracy(out.model, class3.forget) <= 0.05
    assert accuracy(out.model, class3.retain) >= accuracy(trained_cnn, class3.retain) - 0.05


@pytest.mark.parametrize("name", ["bad_teacher", "scrub", "salun", "neggrad_plus"])
def test_methods_that_cover_random_forgetting_run_on_it_and_keep_retain_accuracy(name):
    model, sc = toy_model("random"), toy_scenario("random")
    out = ob.unlearn(model, sc, name, preset="digits", device="cpu")
    assert accuracy(out.model, sc.retain) >= accuracy(model, sc.retain) - 0.1
