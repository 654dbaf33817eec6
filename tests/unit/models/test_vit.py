"""Vision transformers: the timm ``vit_tiny`` of the zoo and a Hugging Face classifier built from a config."""

import copy
import sys

import pytest
import torch

import obliviate as ob
from obliviate.errors import MissingDependencyError
from obliviate.training import accuracy


def _tiny_vit(ds, seed=0):
    return ob.build_model("vit_tiny", ds, seed=seed, embed_dim=32, depth=2, num_heads=2)


def test_vit_tiny_is_seeded_reinitialisable_and_sized_for_the_input(digits):
    a, b, c = _tiny_vit(digits), _tiny_vit(digits), _tiny_vit(digits, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.pos_embed, c.pos_embed) and not torch.equal(a.cls_token, c.cls_token)
    assert a.pos_embed.shape[1] == 1 + 4  # class token + (8/4)^2 patches
    cifar = ob.build_model("vit_tiny", input_shape=(3, 32, 32), num_classes=10)
    assert cifar.pos_embed.shape[1] == 1 + 64 and cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ob.errors.IncompatibleModelError, match="divisible"):
        ob.build_model("vit_tiny", input_shape=(1, 10, 10), num_classes=10)


def test_vit_tiny_names_the_extra_when_timm_is_missing(monkeypatch, digits):
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "timm.models.vision_transformer", None)
    with pytest.raises(MissingDependencyError, match=r"pip install obliviate\[vit\]"):
        ob.build_model("vit_tiny", digits)


@pytest.mark.slow
def test_vit_tiny_trains_and_unlearns_on_tiny_inputs(digits, class3):
    base = ob.train(
        _tiny_vit(digits), class3.train, epochs=6, lr=3e-3, optimizer="adam", weight_decay=0.0, batch_size=64, progress=False
    )
    assert accuracy(base.model, class3.test) > 0.6  # chance is 0.1
    assert ob.ModelAdapter(base.model, example=torch.zeros(1, 1, 8, 8)).head_name == "head"
    for method, kw in [("fisher", {"max_samples": 64}), ("l1_sparse", {"use_lora": True}), ("retrain", {"epochs": 1})]:
        out = ob.unlearn(base.model, class3, method, preset="digits", device="cpu", **kw)
        assert list(out.model.state_dict()) == list(base.model.state_dict())
        if method == "fisher":
            assert accuracy(out.model, class3.forget) == 0.0  # the head row of class 3 is zeroed


@pytest.fixture(scope="module")
def hf_vit():
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=10,
    )
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config)


@pytest.mark.slow
def test_a_hugging_face_vit_from_a_config_trains_unlearns_and_evaluates(hf_vit, class3):
    adapter = ob.ModelAdapter(hf_vit, example=torch.zeros(1, 1, 8, 8))
    assert adapter.head_name == "classifier" and adapter.features(torch.zeros(2, 1, 8, 8)).shape == (2, 32)
    base = ob.train(hf_vit, class3.train, epochs=6, lr=3e-3, optimizer="adam", weight_decay=0.0, batch_size=64, progress=False)
    assert accuracy(base.model, class3.test) > 0.6
    fisher = ob.unlearn(base.model, class3, "fisher", preset="digits", max_samples=64, device="cpu")
    # α depends on the model (its gradients are ~30x the digits CNN's); 3e-3 forgets class 3 here
    iu = ob.unlearn(base.model, class3, "iu", preset="digits", alpha=3e-3, num_samples=200, device="cpu")
    lora = ob.unlearn(base.model, class3, "finetune", preset="digits", use_lora=True, device="cpu")
    for out in (fisher, iu, lora):
        assert type(out.model) is type(hf_vit) and list(out.model.state_dict()) == list(hf_vit.state_dict())
    assert accuracy(fisher.model, class3.forget) < 0.2
    ev = ob.evaluate(iu.model, class3, metrics=["forget_acc", "retain_acc"])
    assert ev.metrics["forget_acc"] < accuracy(base.model, class3.forget) - 0.5
    assert ev.metrics["retain_acc"] > accuracy(base.model, class3.retain) - 0.05


def test_retrain_reinitialises_every_weight_of_a_hugging_face_model(hf_vit):
    """Hugging Face skips modules flagged as initialised; reinitialize clears the flags first."""
    model = copy.deepcopy(hf_vit)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ob.models.reinitialize(model, seed=5)
    for name in ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings", "classifier.weight"):
        assert not torch.equal(dict(model.named_parameters())[name], before[name]), name
    again = ob.models.reinitialize(copy.deepcopy(hf_vit), seed=5)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
