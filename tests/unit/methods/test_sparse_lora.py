"""ℓ1-sparse, GA + ℓ1, progressive pruning during fine-tuning, LoRA and PruneLoRA."""

import copy
import sys

import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate import pruning
from obliviate.errors import InvalidConfigError, MissingDependencyError
from obliviate.methods.base import RunContext
from obliviate.methods.lora import effective_l1, lora_fit, lora_targets
from obliviate.methods.sparse import l1_weight
from obliviate.testing import toy_model, toy_scenario
from obliviate.training import TrainConfig


def _l1(model):
    return float(sum(p.detach().abs().sum() for p in model.parameters()))


def test_l1_schedule_decays_linearly_to_zero():
    assert [l1_weight(1.0, e, 5, 0, "decay") for e in range(5)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert [l1_weight(1.0, e, 5, 2, "decay") for e in range(5)] == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0, 0.0])
    assert [l1_weight(0.5, e, 4, 1, "constant") for e in range(4)] == [0.5, 0.5, 0.5, 0.0]
    with pytest.raises(InvalidConfigError, match="no_l1_epochs"):
        ob.get_method("l1_sparse")(epochs=3, no_l1_epochs=3)


def test_l1_penalty_shrinks_the_weights_compared_with_plain_fine_tuning():
    sc, model = toy_scenario(), toy_model()
    plain = ob.unlearn(model, sc, "l1_sparse", preset="digits", alpha=0.0, device="cpu").model
    sparse = ob.unlearn(model, sc, "l1_sparse", preset="digits", alpha=1e-2, device="cpu").model
    finetune = ob.unlearn(model, sc, "finetune", preset="digits", device="cpu").model
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), finetune.state_dict().values(), strict=True))
    assert _l1(sparse) < 0.9 * _l1(plain)


def test_ga_l1_adds_the_penalty_to_the_ascent_loss():
    sc, model = toy_scenario(), toy_model()
    method = ob.get_method("ga_l1")(alpha=0.01)
    x, y = next(iter(torch.utils.data.DataLoader(sc.forget, batch_size=8)))
    expected = -F.cross_entropy(model(x), y) + 0.01 * _l1(model)
    assert float(method._loss(model, x, y).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    out = ob.unlearn(model, sc, "ga_l1", epochs=2, lr=0.01, alpha=0.05, device="cpu")
    assert _l1(out.model) < _l1(ob.unlearn(model, sc, "gradient_ascent", epochs=2, lr=0.01, device="cpu").model)


@pytest.mark.parametrize("epochs", [4, 5])
def test_ft_prune_reaches_the_rate_and_keeps_pruned_weights_at_zero(epochs):
    sc, model = toy_scenario(), toy_model()
    out = ob.unlearn(model, sc, "ft_prune", preset="digits", epochs=epochs, rate=0.6, device="cpu")
    assert pruning.sparsity(out.model) == pytest.approx(0.6, abs=2e-3)  # exactly zero, also after the last epochs
    assert out.diagnostics["sparsity"] == pytest.approx(0.6, abs=2e-3)
    assert torch.all(out.model.head.weight != 0)  # the head is never pruned


def test_ft_prune_only_prunes_trainable_coordinates():
    sc, model = toy_scenario(), toy_model()
    masks = {"body.4.weight": torch.zeros_like(model.body[4].weight, dtype=torch.bool)}  # frozen, non-zero
    out = ob.unlearn(model, sc, "ft_prune", preset="digits", rate=0.5, masks=masks, device="cpu")
    assert torch.equal(out.model.body[4].weight, model.body[4].weight)
    assert pruning.sparsity(out.model, per_parameter=True)["body.0.weight"] > 0.0


def _ctx(masks=None):
    return RunContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), seed=0, masks=masks or {})


def test_lora_trains_only_adapter_weights_then_merges_into_the_original_keys():
    sc, model = toy_scenario(), toy_model()
    net = copy.deepcopy(model)
    keys, flags = list(model.state_dict()), {n: p.requires_grad for n, p in model.named_parameters()}
    seen = {}

    def before_merge(_epoch, wrapped):
        seen.update({n: p.detach().clone() for n, p in wrapped.named_parameters()})
        return False

    settings = ob.get_method("finetune")(use_lora=True, lora_rank=2)
    merged = lora_fit(net, sc.retain, TrainConfig(epochs=2, lr=0.05, batch_size=32), _ctx(), settings, epoch_end=before_merge)
    # before the merge: every base weight untouched; the adapters (and the head's trainable copy) trained
    original = dict(model.named_parameters())
    adapters = {n: v for n, v in seen.items() if "lora_" in n or ".modules_to_save." in n}
    bases = {n: v for n, v in seen.items() if n not in adapters}
    for name, value in bases.items():
        plain = name.replace("base_model.model.", "").replace(".base_layer", "").replace(".original_module", "")
        assert torch.equal(value, original[plain]), name
    assert len(bases) == len(original) and {n.split(".")[-3] for n in adapters if "lora_" in n} == {"lora_A", "lora_B"}
    assert all(bool(v.any()) for n, v in adapters.items() if "lora_B" in n)  # B starts at zero
    assert not torch.equal(adapters["base_model.model.head.modules_to_save.default.weight"], original["head.weight"])
    # after the merge: a plain model with the original keys and flags, different weights
    assert type(merged) is type(model) and list(merged.state_dict()) == keys
    assert not any("lora" in type(m).__name__.lower() or "peft" in type(m).__module__ for m in merged.modules())
    assert {n: p.requires_grad for n, p in merged.named_parameters()} == flags
    assert not torch.equal(merged.body[0].weight, model.body[0].weight)
    assert not torch.equal(merged.head.weight, model.head.weight)


def test_lora_targets_every_linear_and_conv_but_the_head():
    model = toy_model()
    assert lora_targets(model, "head") == ["body.0", "body.4"]
    vit = ob.build_model("vit_tiny", input_shape=(1, 8, 8), num_classes=10, depth=1, embed_dim=16, num_heads=2)
    targets = lora_targets(vit, "head")
    assert "patch_embed.proj" in targets and "blocks.0.attn.qkv" in targets and "head" not in targets


def test_effective_l1_counts_merged_lora_weights_once(trained_cnn):
    import peft

    net = copy.deepcopy(trained_cnn)
    plain = float(effective_l1(net).detach())
    wrapped = peft.get_peft_model(net, peft.LoraConfig(r=2, target_modules=["body.0"], modules_to_save=["head"]))
    assert float(effective_l1(wrapped).detach()) == pytest.approx(plain, rel=1e-6)  # B = 0 at init: W + BA = W


def test_finetune_with_lora_keeps_masks_exact():
    sc, model = toy_scenario(), toy_model()
    res = pruning.prune(model, 0.5)
    out = ob.unlearn(res.model, sc, "finetune", preset="digits", use_lora=True, masks=res.masks, device="cpu")
    assert pruning.sparsity(out.model) == pytest.approx(res.sparsity)
    assert list(out.model.state_dict()) == list(model.state_dict())


def test_prune_lora_prunes_then_fine_tunes_adapters():
    sc, model = toy_scenario(), toy_model()
    out = ob.unlearn(model, sc, "prune_lora", preset="digits", sparsity=0.7, device="cpu")
    assert pruning.sparsity(out.model) == pytest.approx(0.7, abs=2e-3) == out.diagnostics["sparsity"]
    assert list(out.model.state_dict()) == list(model.state_dict())
    assert ob.training.accuracy(out.model, sc.retain) > 0.8


def test_lora_without_peft_fails_before_training_and_describing_needs_no_peft(monkeypatch):
    sc, model = toy_scenario(), toy_model()
    monkeypatch.setitem(sys.modules, "peft", None)
    for name, kw in [("prune_lora", {}), ("finetune", {"use_lora": True})]:
        with pytest.raises(MissingDependencyError, match=r"pip install obliviate\[lora\]"):
            ob.unlearn(model, sc, name, device="cpu", **kw)
    assert ob.get_method("prune_lora").describe()["defaults"]["lora_rank"] == 8
    assert ob.unlearn(model, sc, "finetune", epochs=1, device="cpu").model is not None
