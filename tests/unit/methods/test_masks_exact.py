"""Pruned weights stay exactly zero and frozen under every registered method (issue 3, issue 11).

The contract suite (check 11) freezes random coordinates; here the masks are a pruning's
(OMP at 50 % of the convolution weights, pruned weights exactly zero). Every registered method
(and the LoRA variant of each method that has one) is also run without the base class's final
``restore_frozen``, on the raw ``_unlearn`` output, to show it keeps frozen coordinates frozen
itself: the final restore would hide a method that moves them. ``retrain`` accepts only pruning
masks (a False coordinate must be zero), since it starts from scratch.
"""

import copy

import pytest
import torch

import obliviate as ob
from obliviate import pruning
from obliviate._utils import seeded
from obliviate.errors import InvalidConfigError
from obliviate.methods.base import METHODS, make_context
from obliviate.testing import toy_dataset, toy_model, toy_scenario


@pytest.fixture(scope="module")
def pruned():
    """A pruned toy model retrained briefly with its masks, recorded for the unrolling methods."""
    res = pruning.prune(toy_model(), 0.5)
    sc = toy_scenario()
    trained = ob.train(
        res.model, sc.train, masks=res.masks, epochs=2, lr=0.02, batch_size=32, record=True, record_updates=True, progress=False
    )
    res.model, res.recording = trained.model, trained.recording
    return res


def _check(out, pruned_result):
    params, before = dict(out.named_parameters()), dict(pruned_result.model.named_parameters())
    for name, mask in pruned_result.masks.items():
        assert torch.all(params[name][~mask] == 0), f"{name}: a pruned weight is no longer zero"
        assert torch.equal(params[name][~mask], before[name][~mask])


# an ensemble method (sisa) trains new shard models from scratch and refuses masks: the contract suite checks that
MASKABLE = [n for n in ob.METHODS.names() if not ob.METHODS.get(n).ensemble]


@pytest.mark.slow
@pytest.mark.parametrize("name", MASKABLE)
def test_every_method_keeps_pruned_weights_at_zero(name, pruned):
    preset = "digits" if "digits" in ob.METHODS.get(name).presets else None
    kwargs = {"recording": pruned.recording} if getattr(ob.METHODS.get(name), "needs_recording", False) else {}
    if name == "retrain":
        kwargs["epochs"] = 3  # the digits preset's 30 epochs prove nothing more
    out = ob.unlearn(pruned.model, toy_scenario(), name, preset=preset, masks=pruned.masks, device="cpu", **kwargs)
    _check(out.model, pruned)


# ------------------------------------------------------------------ retrain: pruning masks only (issue 11, item 7)
SHORT = dict(epochs=1, lr=0.05, batch_size=32, schedule="constant", milestones=None)


def test_retrain_refuses_a_mask_that_would_keep_trained_values(pruned):
    """A retrained oracle starts from scratch: a False coordinate that is not zero would carry a trained value."""
    masks = {n: m.clone() for n, m in pruned.masks.items()}
    gen = torch.Generator().manual_seed(0)
    masks["head.weight"] = torch.rand(pruned.model.head.weight.shape, generator=gen) < 0.5  # frozen, trained, non-zero
    with pytest.raises(InvalidConfigError, match=r"retrain.*pruning.*'head\.weight'.*not zero"):
        ob.unlearn(pruned.model, toy_scenario(), "retrain", masks=masks, device="cpu", **SHORT)


def test_retrain_with_a_pruning_mask_is_training_from_scratch_with_those_coordinates_zero(pruned):
    """Pruned coordinates are exactly zero, and every other one equals an independent masked ``ob.train`` on D_r."""
    sc = toy_scenario()
    out = ob.unlearn(pruned.model, sc, "retrain", seed=0, masks=pruned.masks, device="cpu", **SHORT).model
    _check(out, pruned)
    fresh = ob.build_model("cnn", toy_dataset(), seed=0, width=8, dropout=0.2)  # toy_model's architecture and init seed
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            if name in pruned.masks:
                p.masked_fill_(~pruned.masks[name], 0.0)
    oracle = ob.train(fresh, sc.retain, masks=pruned.masks, seed=0, device="cpu", progress=False, **SHORT).model
    a, b = out.state_dict(), oracle.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ raw _unlearn output, every method (issue 11, item 9)
# Short runs: one epoch and small inner loops, starting from the digits preset where there is one.
FAST = {
    "epochs": 1,
    "max_epochs": 1,  # scrub
    "attacker_warmup": 2,  # adversarial
    "stop_iter": 2,
    "noise_steps": 2,  # unsir
    "repair_epochs": 1,
    "num_samples": 64,  # iu
    "max_samples": 64,  # fisher
}
LORA = [n for n in METHODS.names() if "use_lora" in METHODS.get(n).field_names()]
CASES = [(n, False) for n in MASKABLE] + [(n, True) for n in LORA]


def _fast_method(name, lora):
    cls = METHODS.get(name)
    base = cls.presets.get("digits", {})
    fields = cls.field_names()
    overrides = {k: v for k, v in FAST.items() if k in fields}
    if lora:
        overrides["use_lora"] = True
    return cls.from_dict({**base, **overrides})


def raw_unlearn(method, model, scenario, masks, *, seed=0, recording=None):
    """``method._unlearn`` on a copy of ``model`` with the RunContext ``UnlearningMethod.unlearn`` builds, but
    without its final ``restore_frozen``: what the method itself does to frozen coordinates.
    """
    method.load_dependencies()
    dev = torch.device("cpu")
    net = copy.deepcopy(model).to(dev)
    recording = recording if method.needs_recording else None
    ctx = make_context(net, dev, seed=seed, masks=masks, progress=False, recording=recording)
    with seeded(seed, dev):
        return method._unlearn(net, scenario, ctx)


def _frozen_everywhere(pruned_result):
    """Random masks on every parameter (about half frozen), AND the pruning masks: frozen coordinates are
    trained non-zero values, or pruned zeros.
    """
    gen = torch.Generator().manual_seed(1)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in pruned_result.model.named_parameters()}
    for n, m in pruned_result.masks.items():
        masks[n] &= m
    return masks


def check_raw_masks(method, pruned_result, scenario):
    """Run ``method`` raw and assert its frozen coordinates are bit-identical to the input's."""
    masks = _frozen_everywhere(pruned_result)
    model = copy.deepcopy(pruned_result.model)
    if method.exact:  # an exact method retrains from scratch: its masks can only mean "pruned"
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.masked_fill_(~masks[n], 0.0)
    out = raw_unlearn(method, model, scenario, masks, recording=pruned_result.recording)
    before, after = dict(model.named_parameters()), dict(out.named_parameters())
    assert before.keys() == after.keys()
    moved = False
    for n, m in masks.items():
        assert torch.equal(after[n].detach()[~m], before[n].detach()[~m]), f"{method.name}: frozen coordinates of {n!r} moved"
        moved = moved or not torch.equal(after[n].detach()[m], before[n].detach()[m])
    assert moved, f"{method.name} changed no trainable coordinate: the check would prove nothing"


@pytest.mark.parametrize(("name", "lora"), CASES, ids=[n + ("+lora" if lora else "") for n, lora in CASES])
def test_raw_unlearn_keeps_frozen_coordinates_bit_identical(name, lora, pruned):
    check_raw_masks(_fast_method(name, lora), pruned, toy_scenario())
