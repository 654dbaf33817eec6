import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import obliviate as ob
from obliviate.methods.ssd import dampen, importance

CPU = torch.device("cpu")


def test_dampen_selects_and_scales_exactly_as_the_paper_says():
    model = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    i_d = {"weight": torch.tensor([[1.0, 1.0, 0.0, 2.0]])}
    i_f = {"weight": torch.tensor([[5.0, 20.0, 3.0, 20.0]])}
    # alpha 4: coordinate 0 (5 > 4) selected, beta = 0.5*1/5; 1 selected, beta 0.5/20; 2: I_D = 0 -> zeroed; 3: 20 > 8
    info = dampen(model, i_f, i_d, alpha=4.0, dampening=0.5)
    expected = torch.tensor([[1.0 * 0.1, 2.0 * 0.025, 0.0, 4.0 * 0.05]])
    torch.testing.assert_close(model.weight.detach(), expected)
    assert info["selected"] == 4


def test_selection_is_strict_at_exactly_alpha_times_the_training_importance():
    """Spec (method-zoo-seeds.md, SSD): select where I_f > alpha * I_D; a tie is not dampened, the next float up is."""
    model = nn.Linear(4, 1, bias=False)
    original = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    with torch.no_grad():
        model.weight.copy_(original)
    above = torch.nextafter(torch.tensor(4.0), torch.tensor(5.0))  # the smallest float32 above 4 = alpha * I_D
    i_d = {"weight": torch.tensor([[1.0, 1.0, 2.0, 0.0]])}
    i_f = {"weight": torch.stack([torch.tensor(4.0), above, torch.tensor(8.0), torch.tensor(0.0)]).reshape(1, 4)}
    assert torch.equal(i_f["weight"][0, [0, 2, 3]], 4.0 * i_d["weight"][0, [0, 2, 3]])  # exact ties, 0 = 4 * 0 included
    info = dampen(model, i_f, i_d, alpha=4.0, dampening=0.5)
    after = model.weight.detach()
    assert torch.equal(after[0, [0, 2, 3]], original[0, [0, 2, 3]])  # ties: not selected, bit for bit unchanged
    assert after[0, 1] == 2.0 * (0.5 * 1.0 / above) and after[0, 1] < 0.3  # just above: dampened by min(0.5 / I_f, 1)
    assert info["selected"] == 1


def test_dampening_never_increases_a_weight_and_respects_masks():
    model = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0]]))
    i_d = {"weight": torch.tensor([[1.0, 1.0, 1.0]])}
    i_f = {"weight": torch.tensor([[11.0, 11.0, 11.0]])}
    dampen(model, i_f, i_d, alpha=10.0, dampening=100.0, masks={"weight": torch.tensor([[True, True, False]])})
    # beta = min(100/11, 1) = 1 for selected ones; the masked coordinate is untouched either way
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[1.0, -2.0, 3.0]]))
    dampen(model, i_f, i_d, alpha=10.0, dampening=1.0, masks={"weight": torch.tensor([[True, False, False]])})
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[1.0 / 11, -2.0, 3.0]]))


def test_minibatch_importance_is_the_mean_of_squared_batch_gradients(trained_cnn, class3):
    sub = torch.utils.data.Subset(class3.train, range(20))
    imp = importance(trained_cnn, sub, batch_size=8, device=CPU)
    model = copy.deepcopy(trained_cnn).eval()
    manual = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for start in range(0, 20, 8):
        idx = range(start, min(start + 8, 20))
        x = torch.stack([sub[i][0] for i in idx])
        y = torch.tensor([sub[i][1] for i in idx])
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            manual[n] += p.grad.pow(2)
    for n in manual:
        torch.testing.assert_close(imp[n], manual[n] / 3, atol=1e-7, rtol=1e-5)


def test_label_free_importance_ignores_labels(trained_cnn, class3):
    idx = np.arange(30)
    data = ob.data.Subset(class3.dataset.train, class3.train_idx[idx])
    relabelled = ob.data.Relabeled(data, np.zeros(30, dtype=np.int64))
    a = importance(trained_cnn, data, batch_size=10, device=CPU, label_free=True)
    b = importance(trained_cnn, relabelled, batch_size=10, device=CPU, label_free=True)
    c = importance(trained_cnn, relabelled, batch_size=10, device=CPU, label_free=False)
    d = importance(trained_cnn, data, batch_size=10, device=CPU, label_free=False)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(c[n], d[n]) for n in c)


def test_per_sample_importance_equals_batches_of_one(trained_cnn, class3):
    sub = torch.utils.data.Subset(class3.forget, range(12))
    vec = importance(trained_cnn, sub, batch_size=5, device=CPU, per_sample=True)
    ones = importance(trained_cnn, sub, batch_size=1, device=CPU)
    for n in vec:
        torch.testing.assert_close(vec[n], ones[n], atol=1e-7, rtol=1e-4)


def test_per_sample_importance_bounds_the_selection(trained_cnn, class3):
    """With per-sample importance and D ⊇ D_f, I_D >= |D_f|/|D| * I_f, so alpha >= |D|/|D_f| selects nothing."""
    full = importance(trained_cnn, class3.train, batch_size=256, device=CPU, per_sample=True)
    forget = importance(trained_cnn, class3.forget, batch_size=256, device=CPU, per_sample=True)
    ratio = len(class3.train) / len(class3.forget)
    for n in full:
        assert torch.all(forget[n] <= ratio * full[n] * (1 + 1e-4) + 1e-12)


def test_ssd_forgets_the_class_on_digits_with_its_preset(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "ssd", preset="digits", device="cpu")
    assert ob.training.accuracy(out.model, class3.forget) <= 0.05
    assert ob.training.accuracy(out.model, class3.retain) >= ob.training.accuracy(trained_cnn, class3.retain) - 0.03
    assert 0 < out.diagnostics["selected_fraction"] < 0.2


def test_lfssd_forgets_the_class_on_digits_with_its_preset(trained_cnn, class3):
    out = ob.unlearn(trained_cnn, class3, "lfssd", preset="digits", device="cpu")
    assert ob.training.accuracy(out.model, class3.forget) <= 0.05
    assert ob.training.accuracy(out.model, class3.retain) >= ob.training.accuracy(trained_cnn, class3.retain) - 0.03


@pytest.mark.parametrize("name", ["ssd", "lfssd"])
def test_ssd_takes_no_optimiser_step_so_unselected_weights_are_unchanged(trained_cnn, class3, name):
    out = ob.unlearn(trained_cnn, class3, name, alpha=1e9, device="cpu")  # nothing can be selected
    assert all(torch.equal(a, b) for a, b in zip(trained_cnn.state_dict().values(), out.model.state_dict().values(), strict=True))
