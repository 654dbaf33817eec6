"""CF-k and EU-k (Goel et al., arXiv:2201.06640): the last-k-layers rule, a frozen part that never
moves, EU-k's exactness when the frozen part never saw D_f, the contract suite and the digits preset.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import obliviate as ob
import obliviate.methods.last_k as last_k
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import InvalidConfigError
from obliviate.models.zoo import reinitialize
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import TrainConfig, accuracy


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow  # 10-30 s each on 2 shared cores
@pytest.mark.parametrize("cls", [last_k.CatastrophicForgettingK, last_k.ExactUnlearningK])
def test_contract_suite(cls: type) -> None:
    report = check_method(cls)
    assert report["masks"] == report["deterministic"] == report["sanity"] == "ok"


def test_last_layers_counts_weight_layers_and_takes_the_norms_after_them(digits: ob.DatasetSplits) -> None:
    cnn = ob.build_model("cnn", digits, seed=0)  # body.0 conv, body.1 BN, body.4 conv, body.5 BN, head
    assert [n for n, _ in last_k.layers_of(cnn)] == ["body.0", "body.1", "body.4", "body.5", "head"]
    assert [n for n, _ in last_k.last_layers(cnn, 1)] == ["head"]
    assert [n for n, _ in last_k.last_layers(cnn, 2)] == ["body.4", "body.5", "head"]
    assert [n for n, _ in last_k.last_layers(cnn, 3)] == ["body.0", "body.1", "body.4", "body.5", "head"]
    with pytest.raises(InvalidConfigError, match=r"has 3 weight layers \(body.0, body.4, head\); choose k <= 3"):
        last_k.last_layers(cnn, 4)


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_k_beyond_the_model_is_an_error_naming_the_count(name: str) -> None:
    sc = toy_scenario("classwise")
    with pytest.raises(InvalidConfigError, match="3 weight layers"):
        ob.unlearn(toy_model("classwise"), sc, name, preset="digits", k=4, epochs=1, device="cpu", progress=False)


@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_everything_outside_the_last_k_layers_is_bit_identical(name: str) -> None:
    """The toy CNN has BatchNorm in its frozen body: its weights and running statistics must not move."""
    sc = toy_scenario("classwise")
    model = toy_model("classwise")
    before = _state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bare nn.Module: unchecked training set
        out = ob.unlearn(model, sc, name, k=1, epochs=2, lr=0.1, batch_size=32, device="cpu", progress=False).model
    after = out.state_dict()
    head = {k for k in before if k.startswith("head.")}
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == head  # the head moved, and nothing else did (BatchNorm running_mean/var included)
    assert all(p.requires_grad for p in out.parameters())  # the frozen part's flags are put back


def test_eu_k_equals_training_the_head_from_scratch_when_the_features_never_saw_the_forget_set() -> None:
    """EU-k is exact for a model whose frozen part never saw D_f: bit-identical to an independent ``ob.train``."""
    sc = toy_scenario("random")
    init = ob.build_model("mlp", sc.dataset, seed=0, hidden=(32,))
    features = [n for n, _ in init.named_parameters() if not n.startswith("head.")]
    # a feature extractor that never saw D_f (trained on D_r), then a head trained on D_f ∪ D_r on top of it
    pre = ob.train(init, sc.retain, epochs=3, lr=0.1, batch_size=32, seed=1, device="cpu", progress=False).model
    frozen = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in pre.named_parameters() if n in features}
    original = ob.train(pre, sc.train, epochs=3, lr=0.1, batch_size=32, seed=2, masks=frozen, device="cpu", progress=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a head trained 4 epochs on tiny data may fail the health check: not the point
        out = ob.unlearn(original, sc, "eu_k", k=1, epochs=4, lr=0.05, batch_size=32, seed=7, device="cpu", progress=False)

    reference = copy.deepcopy(original.model)
    reinitialize(reference.head, 7)
    for name, p in reference.named_parameters():
        p.requires_grad_(name not in features)
    config = {k: out.config[k] for k in ("epochs", "lr", "optimizer", "momentum", "weight_decay", "batch_size", "schedule")}
    oracle = ob.train(reference, sc.retain, TrainConfig(**config), seed=7, device="cpu", progress=False).model
    got, want = out.model.state_dict(), oracle.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)
    assert torch.equal(got["body.1.weight"], pre.state_dict()["body.1.weight"])  # the features are the pre-trained ones
    assert not torch.equal(got["head.weight"], original.model.state_dict()["head.weight"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cf_k", "eu_k"])
def test_digits_preset_forgets_a_class_and_keeps_the_others(name: str, digits: ob.DatasetSplits) -> None:
    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", digits, seed=0), sc.train, seed=0, device="cpu", progress=False, **DEMO_RECIPE)
    out = ob.unlearn(base, sc, name, preset="digits", seed=0, device="cpu", progress=False)
    assert out.status == "ok"
    assert accuracy(base.model, sc.forget) > 0.95
    assert accuracy(out.model, sc.forget) < 0.3
    assert accuracy(out.model, sc.retain) > 0.95
