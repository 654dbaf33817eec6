"""Pruned weights stay exactly zero and frozen under every registered method (issue 3).

The contract suite (check 11) freezes random coordinates; here the masks are a pruning's
(OMP at 50 % of the convolution weights, pruned weights exactly zero), and the methods that
perturb weights directly (Fisher noise, the influence step, pruning during fine-tuning, LoRA)
are also run without the base class's final restore, to show they respect masks themselves.
"""

import copy

import pytest
import torch

import obliviate as ob
from obliviate import pruning
from obliviate.methods.base import RunContext
from obliviate.testing import toy_model, toy_scenario

OWN = ["fisher", "iu", "l1_sparse", "ga_l1", "ft_prune", "prune_lora"]


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


@pytest.mark.slow
@pytest.mark.parametrize("name", ob.METHODS.names())
def test_every_method_keeps_pruned_weights_at_zero(name, pruned):
    preset = "digits" if "digits" in ob.METHODS.get(name).presets else None
    kwargs = {"recording": pruned.recording} if getattr(ob.METHODS.get(name), "needs_recording", False) else {}
    if name == "retrain":
        kwargs["epochs"] = 3  # the digits preset's 30 epochs prove nothing more
    out = ob.unlearn(pruned.model, toy_scenario(), name, preset=preset, masks=pruned.masks, device="cpu", **kwargs)
    _check(out.model, pruned)


@pytest.mark.parametrize("name", OWN + ["finetune_lora"])
def test_own_methods_respect_masks_without_the_final_restore(name, pruned):
    method = ob.get_method("finetune")(use_lora=True, epochs=2, lr=0.05) if name == "finetune_lora" else None
    method = method or ob.get_method(name).from_preset("digits")
    masks = {n: m.clone() for n, m in pruned.masks.items()}
    gen = torch.Generator().manual_seed(0)
    masks["head.weight"] = torch.rand(pruned.model.head.weight.shape, generator=gen) < 0.5  # frozen, non-zero
    ctx = RunContext(device=torch.device("cpu"), generator=torch.Generator().manual_seed(0), seed=0, masks=masks)
    out = method._unlearn(copy.deepcopy(pruned.model), toy_scenario(), ctx)
    _check(out, pruned)
    head = pruned.model.head.weight
    assert torch.equal(out.head.weight[~masks["head.weight"]], head[~masks["head.weight"]])
