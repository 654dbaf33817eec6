import math

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.data import Subset
from obliviate.errors import DivergenceError, IncompatibleModelError, InvalidConfigError
from obliviate.training import (
    DIVERGENCE_NORM_RATIO,
    MIN_REFERENCE_NORM,
    TrainConfig,
    _lr_factor,
    augment_batch,
    fit,
    make_optimizer,
    parameter_norm,
    protect_masks,
    resolve_masks,
)


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_gives_bit_identical_weights_on_cpu(class3):
    model = ob.build_model("cnn", class3.dataset, seed=0, dropout=0.3)
    kw = dict(epochs=2, lr=0.05, batch_size=32, augment="flip", seed=7, device="cpu", progress=False)
    a, b = ob.train(model, class3.train, **kw), ob.train(model, class3.train, **kw)
    assert _state_equal(a.model, b.model)
    c = ob.train(model, class3.train, **{**kw, "seed": 8})
    assert not _state_equal(a.model, c.model)


def test_train_leaves_the_input_model_and_global_rng_untouched(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    result = ob.train(model, class3.train, epochs=1, lr=0.05, batch_size=64, seed=0, device="cpu", progress=False)
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.model is not model and not result.model.training
    assert result.config.epochs == 1 and len(result.history) == 1 and result.seconds > 0
    assert result.masks is None  # a dense run


def test_a_masked_run_returns_its_masks_for_unlearning(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    masks = {"head.weight": torch.rand(model.head.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5}
    result = ob.train(model, class3.train, masks=masks, epochs=1, lr=0.05, seed=0, device="cpu", progress=False)
    assert result.masks.keys() == masks.keys() and torch.equal(result.masks["head.weight"], masks["head.weight"])
    assert torch.all(result.model.head.weight[~masks["head.weight"]] == model.head.weight[~masks["head.weight"]])


def test_training_fits_the_digits(class3, trained_cnn):
    assert ob.training.accuracy(trained_cnn, class3.train) > 0.97
    assert ob.training.accuracy(trained_cnn, class3.test) > 0.93


@pytest.mark.parametrize(
    "optimizer, momentum, wd", [("sgd", 0.9, 5e-4), ("sgd", 0.0, 0.1), ("adam", 0.0, 1e-2), ("adamw", 0.0, 0.1)]
)
def test_masked_coordinates_stay_bit_identical_under_momentum_weight_decay_and_adam(class3, optimizer, momentum, wd):
    model = ob.build_model("cnn", class3.dataset, seed=0)
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters()}
    out = ob.train(
        model,
        class3.train,
        epochs=2,
        lr=0.05,
        batch_size=64,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=wd,
        masks=masks,
        seed=0,
        device="cpu",
        progress=False,
    ).model
    moved_trainable = False
    for (name, p_in), p_out in zip(model.named_parameters(), out.parameters(), strict=True):
        m = masks[name]
        assert torch.equal(p_out.detach()[~m], p_in.detach()[~m]), name
        moved_trainable |= not torch.equal(p_out.detach()[m], p_in.detach()[m])
    assert moved_trainable


def test_mask_guard_zeroes_optimizer_state_at_frozen_coordinates():
    layer = nn.Linear(4, 3)
    mask = torch.tensor([[True, False, True, False]] * 3)
    opt = make_optimizer(layer, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.1, masks={"weight": mask})
    for _ in range(3):
        opt.zero_grad()
        layer(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    buf = opt.state[layer.weight]["momentum_buffer"]
    assert torch.all(buf[~mask] == 0) and torch.any(buf[mask] != 0)


def test_protect_masks_ignores_all_true_masks_and_resolve_masks_checks_them():
    layer = nn.Linear(2, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    protect_masks(opt, layer, {"weight": torch.ones(2, 2, dtype=torch.bool)})
    assert not opt._optimizer_step_pre_hooks  # nothing to guard
    with pytest.raises(IncompatibleModelError, match="not a parameter"):
        resolve_masks(layer, {"nope": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(IncompatibleModelError, match="shape"):
        resolve_masks(layer, {"weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(InvalidConfigError, match="torch.bool"):
        resolve_masks(layer, {"weight": torch.ones(2, 2)})


def test_learning_rate_schedules():
    steps = 10
    cos = _lr_factor(TrainConfig(epochs=4, schedule="cosine"), steps)
    assert cos(0) == pytest.approx(1.0) and cos(40) == pytest.approx(0.0, abs=1e-12)
    assert cos(20) == pytest.approx(0.5)
    step = _lr_factor(TrainConfig(epochs=182, schedule="step"), 1)
    assert step(90) == 1.0 and step(91) == pytest.approx(0.1) and step(136) == pytest.approx(0.01)
    warm = _lr_factor(TrainConfig(epochs=5, warmup_epochs=2, schedule="constant"), steps)
    factors = [warm(s) for s in range(50)]
    assert factors[0] == pytest.approx(1 / 20) and max(factors) == pytest.approx(1.0)  # never above the base lr
    assert all(b >= a for a, b in zip(factors[:20], factors[1:21], strict=True))


def test_warmup_must_be_shorter_than_training():
    with pytest.raises(InvalidConfigError, match="warmup_epochs"):
        TrainConfig(epochs=3, warmup_epochs=3)


def test_crop_flip_augmentation_is_a_shifted_or_flipped_copy():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    g = torch.Generator().manual_seed(0)
    flipped = augment_batch(x, "flip", g)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    cropped = augment_batch(x, "crop", torch.Generator().manual_seed(3), padding=2)
    padded = nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(cropped[i], w) for w in windows)
    assert augment_batch(x, None, g) is x
    with pytest.raises(IncompatibleModelError):
        augment_batch(torch.zeros(2, 3), "flip", g)


def test_divergence_raises_instead_of_returning_garbage(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)

    def exploding(net, x, y):
        return net(x).sum() * float("inf")

    with pytest.raises(DivergenceError, match="lower the learning rate"):
        fit(
            model,
            class3.train,
            config=TrainConfig(epochs=1, batch_size=64, lr=0.1),
            loss_fn=exploding,
            generator=torch.Generator(),
            device=torch.device("cpu"),
        )


def _pull_weights_up(scale=1.0):
    """A finite loss whose gradient is -scale on every weight: each SGD step adds lr * scale to every coordinate."""
    return lambda net, x, y: -scale * sum(p.sum() for p in net.parameters()) + 0 * net(x).sum()


def _fit_toy(model, data, scale=1.0, **config):
    return fit(
        model,
        data,
        config=TrainConfig(
            **{"epochs": 1, "batch_size": 64, "momentum": 0.0, "weight_decay": 0.0, "schedule": "constant", **config}
        ),
        loss_fn=_pull_weights_up(scale),
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
        desc="toy",
    )


def test_weight_norm_blow_up_with_a_finite_loss_raises_divergence(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    start = parameter_norm(model.parameters())
    with pytest.raises(DivergenceError, match=r"norm grew .* times .*epoch 1 \(toy\); lower the learning rate") as info:
        _fit_toy(model, class3.train, lr=1e4)
    assert parameter_norm(model.parameters()) > DIVERGENCE_NORM_RATIO * start  # it stopped at the first step past the limit
    assert "\n" not in str(info.value)


def test_weights_that_overflow_on_the_last_step_raise_divergence(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    one_batch = Subset(class3.train, np.arange(16))  # one step: the loss is never computed after it
    with pytest.raises(DivergenceError, match="non-finite"):
        _fit_toy(model, one_batch, scale=1e30, lr=1e10)  # steps of 1e40 overflow float32


def test_the_norm_guard_allows_growth_below_the_limit_and_from_zero_weights(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    start = parameter_norm(model.parameters())
    n = sum(p.numel() for p in model.parameters())
    lr = 0.5 * DIVERGENCE_NORM_RATIO * start / math.sqrt(n) / math.ceil(len(class3.train) / 64)  # ends at ~500x the start
    _fit_toy(model, class3.train, lr=lr)
    assert 100 * start < parameter_norm(model.parameters()) < DIVERGENCE_NORM_RATIO * start
    zero = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(zero[1].weight), nn.init.zeros_(zero[1].bias)
    assert parameter_norm(zero.parameters()) == 0.0
    fit(  # a zero start is compared against MIN_REFERENCE_NORM, not 0
        zero,
        class3.train,
        config=TrainConfig(epochs=2, batch_size=64, lr=0.1),
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert 0 < parameter_norm(zero.parameters()) < DIVERGENCE_NORM_RATIO * MIN_REFERENCE_NORM


def test_parameter_norm_does_not_overflow_and_flags_non_finite_values():
    assert parameter_norm([torch.full((4,), 1e30), torch.zeros(3)]) == pytest.approx(2e30)
    assert parameter_norm([torch.tensor([3.0]), torch.tensor([4.0])]) == pytest.approx(5.0)
    assert math.isnan(parameter_norm([torch.tensor([1.0, float("nan")])]))
    assert parameter_norm([]) == 0.0


def test_fit_refuses_a_model_that_is_already_non_finite(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(IncompatibleModelError, match="NaN or inf"):
        fit(
            model,
            class3.train,
            config=TrainConfig(epochs=1, batch_size=64, lr=0.01),
            generator=torch.Generator(),
            device=torch.device("cpu"),
        )


def test_epoch_end_callback_stops_training_and_counter_counts_samples(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    counter = {"samples": 0}
    history = fit(
        model,
        class3.train,
        config=TrainConfig(epochs=5, batch_size=64, lr=0.01),
        generator=torch.Generator(),
        device=torch.device("cpu"),
        epoch_end=lambda epoch, net: epoch == 1,
        counter=counter,
    )
    assert len(history) == 2 and counter["samples"] == 2 * len(class3.train)


def test_predict_restores_mode_and_accuracy_matches_manual(class3, trained_cnn):
    trained_cnn.train()
    logits, labels = ob.training.predict(trained_cnn, class3.test)
    assert trained_cnn.training
    trained_cnn.eval()
    with torch.no_grad():
        x = torch.stack([class3.test[i][0] for i in range(len(class3.test))])
        manual = trained_cnn(x)
    assert torch.allclose(logits, manual, atol=1e-5)
    assert np.array_equal(labels.numpy(), class3.test.targets)
    assert ob.training.accuracy(trained_cnn, class3.test) == pytest.approx(float((manual.argmax(1) == labels).float().mean()))
    assert math.isnan(ob.training.accuracy(trained_cnn, torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0))))


def test_augmentation_hook_sees_every_batch_and_stays_reproducible(class3):
    seen = []

    def noise(x, generator):
        seen.append(x.shape[0])
        return x + 0.1 * torch.randn(x.shape, generator=generator)

    model = ob.build_model("mlp", class3.dataset, seed=0)
    kw = dict(epochs=1, lr=0.05, batch_size=64, seed=0, device="cpu", progress=False)
    a = ob.train(model, class3.train, augment_fn=noise, **kw)
    assert sum(seen) == len(class3.train)
    b = ob.train(model, class3.train, augment_fn=noise, **kw)
    plain = ob.train(model, class3.train, **kw)
    assert _state_equal(a.model, b.model) and not _state_equal(a.model, plain.model)
    with pytest.raises(InvalidConfigError, match="callable"):
        ob.train(model, class3.train, augment_fn=3, **kw)
