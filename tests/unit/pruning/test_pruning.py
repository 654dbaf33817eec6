"""Pruning: OMP, random, SynFlow, IMP with rewinding; masks, sparsity, saving beside checkpoints."""

import copy

import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate import pruning
from obliviate.errors import IncompatibleModelError, InvalidConfigError
from obliviate.io import load_masks, save_masks, save_model
from obliviate.testing import toy_model, toy_scenario


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_omp_prunes_exactly_the_smallest_conv_weights_globally():
    model = toy_model()
    before = _state(model)
    res = pruning.prune(model, 0.6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    assert set(res.masks) == {"body.0.weight", "body.4.weight"}  # Conv2d weights only (Unlearn-Sparse)
    kept = torch.cat([before[n][m].abs() for n, m in res.masks.items()])
    pruned = torch.cat([before[n][~m].abs() for n, m in res.masks.items()])
    total = kept.numel() + pruned.numel()
    assert pruned.numel() == round(0.6 * total) and pruned.max() <= kept.min()
    params = dict(res.model.named_parameters())
    for n, m in res.masks.items():
        assert torch.all(params[n][~m] == 0) and torch.equal(params[n][m], before[n][m])
    assert res.sparsity == pytest.approx(0.6, abs=1 / total) == pruning.sparsity(res.model)
    assert torch.equal(params["head.weight"], before["head.weight"])


def test_earlier_masks_stay_pruned_and_count_towards_the_target():
    model = toy_model()
    first = pruning.prune(model, 0.3)
    second = pruning.prune(first.model, 0.5, masks=first.masks)
    for n in first.masks:
        assert not torch.any(second.masks[n][~first.masks[n]])  # pruned once, pruned for good
    assert second.sparsity == pytest.approx(0.5, abs=1e-3)


def test_random_pruning_is_seeded_and_exact():
    model = toy_model()
    a, b, c = (pruning.prune(model, 0.4, kind="random", seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert any(not torch.equal(a.masks[n], c.masks[n]) for n in a.masks)
    assert a.sparsity == pytest.approx(0.4, abs=1e-3)


def test_synflow_scores_are_the_synaptic_flow_of_a_linear_chain():
    """Two linear layers without bias: R = 1ᵀ|W2||W1|1, so the score of W1[i, j] is |W1[i, j]| Σ_k |W2[k, i]|."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    w1, w2 = net[0].weight.detach().abs(), net[1].weight.detach().abs()
    scores1 = w1 * w2.sum(0)[:, None]
    scores2 = w2 * w1.sum(1)[None, :]
    masks = pruning.synflow_masks(net, 0.5, input_shape=(4,), iterations=1, scope="linear")
    flat = torch.cat([scores1.reshape(-1), scores2.reshape(-1)])
    threshold = flat.sort().values[8]  # the 9 smallest of 18 scores are pruned
    assert torch.equal(masks["0.weight"], scores1 > threshold) and torch.equal(masks["1.weight"], scores2 > threshold)


def test_synflow_reaches_the_target_without_emptying_a_layer():
    model = ob.build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0)
    res = pruning.prune(model, 0.98, kind="synflow", input_shape=(1, 8, 8), iterations=20)
    assert res.sparsity == pytest.approx(0.98, abs=1e-3)
    assert all(bool(m.any()) for m in res.masks.values())


def test_scopes_and_exclusions():
    model = toy_model()
    assert set(pruning.prunable_parameters(model, "linear")) == {"head.weight"}
    assert set(pruning.prunable_parameters(model, "conv_linear", exclude=["head"])) == {"body.0.weight", "body.4.weight"}
    with pytest.raises(IncompatibleModelError, match="no 'conv' weights"):
        pruning.prunable_parameters(ob.build_model("mlp", input_shape=(4,), num_classes=2), "conv")
    with pytest.raises(InvalidConfigError, match="scope"):
        pruning.prune(model, 0.5, scope="everything")
    with pytest.raises(InvalidConfigError, match="sparsity_target"):
        pruning.prune(model, 1.5)


def test_sparsity_reports_masks_models_and_per_parameter_values():
    masks = {"a": torch.tensor([True, False, False, False]), "b": torch.tensor([True, True, True, False])}
    assert pruning.sparsity(masks) == 0.5
    report = pruning.sparsity(masks, per_parameter=True)
    assert report == {"a": 0.75, "b": 0.25, "total": 0.5}
    res = pruning.prune(toy_model(), 0.25)
    assert pruning.sparsity(res.model, per_parameter=True)["total"] == pytest.approx(res.sparsity)
    recovered = pruning.masks_from_zeros(res.model)
    assert all(torch.equal(recovered[n], res.masks[n]) for n in res.masks)


def test_masks_saved_beside_a_checkpoint_round_trip(tmp_path):
    res = pruning.prune(toy_model(), 0.5)
    save_model(res.model, tmp_path / "model.safetensors")
    save_masks(res.masks, tmp_path / pruning.MASKS_FILE)
    loaded = load_masks(tmp_path / pruning.MASKS_FILE)
    assert loaded.keys() == res.masks.keys() and all(torch.equal(loaded[n], res.masks[n]) for n in loaded)


def test_training_with_the_masks_keeps_pruned_weights_exactly_zero():
    sc = toy_scenario()
    res = pruning.prune(toy_model(), 0.7)
    for optimizer in ("sgd", "adam"):
        out = ob.train(
            res.model, sc.train, masks=res.masks, epochs=2, lr=0.05, optimizer=optimizer, weight_decay=5e-3, progress=False
        )
        assert pruning.sparsity(out.model) == pytest.approx(res.sparsity)
        params = dict(out.model.named_parameters())
        assert all(torch.all(params[n][~m] == 0) for n, m in res.masks.items())


def test_fit_from_epoch_continues_the_schedule_of_a_full_run():
    sc = toy_scenario()
    recipe = ob.TrainConfig(epochs=6, lr=0.1, batch_size=64, schedule="cosine", warmup_epochs=1)
    full = ob.train(toy_model(), sc.train, recipe, progress=False).history
    model = copy.deepcopy(toy_model())
    part = pruning.fit_from_epoch(
        model, sc.train, recipe, 3, 5, generator=torch.Generator().manual_seed(0), device=torch.device("cpu")
    )
    assert [r["epoch"] for r in part] == [4, 5]
    assert [r["lr"] for r in part] == pytest.approx([r["lr"] for r in full[3:5]])


def test_imp_rounds_rewind_and_reach_the_target_sparsity():
    sc = toy_scenario()
    seen = []

    def callback(k, model, masks):
        seen.append((k, pruning.sparsity(masks) if masks else 0.0, pruning.sparsity(model)))

    model = ob.build_model("cnn", sc.dataset, seed=0, width=8)
    res = pruning.imp(
        model,
        sc.train,
        sparsity_target=1 - 0.8**2,
        rounds=2,
        rewind_epoch=1,
        epochs=3,
        lr=0.05,
        batch_size=32,
        schedule="cosine",
        device="cpu",
        progress=False,
        callback=callback,
    )
    assert [k for k, *_ in seen] == [0, 1, 2]
    assert seen[1][1] == pytest.approx(0.2, abs=2e-3) and seen[2][1] == pytest.approx(0.36, abs=2e-3)
    assert seen[2][2] == pytest.approx(0.36, abs=2e-3)  # pruned weights stayed exactly zero through retraining
    dense = [r for r in res.history if r["round"] == 0]
    again = [r for r in res.history if r["round"] == 2]
    assert [r["epoch"] for r in again] == [2, 3]  # retraining resumes at the rewind epoch ...
    assert [r["lr"] for r in again] == pytest.approx([r["lr"] for r in dense[1:]])  # ... with its learning rate
    assert res.kind == "imp" and res.sparsity == pytest.approx(0.36, abs=2e-3)
    with pytest.raises(InvalidConfigError, match="rewind_epoch"):
        pruning.imp(model, sc.train, sparsity_target=0.5, rewind_epoch=3, epochs=3)
