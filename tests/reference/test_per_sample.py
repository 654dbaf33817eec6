"""Per-sample gradients through torch.func must equal a backward pass per sample.

Compared in float64, where summation order cannot hide a real difference (in float32 the two
paths differ by ~1e-4 relative on large logit-norm gradients, which is rounding).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.per_sample import minibatch_sum, per_sample_gradients, per_sample_sum


def _loop(model, x, y, loss):
    model.eval()
    out = {n: [] for n, _ in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        logits = model(x[i : i + 1])
        value = F.cross_entropy(logits, y[i : i + 1]) if loss == "cross_entropy" else logits.pow(2).sum()
        value.backward()
        for n, p in model.named_parameters():
            out[n].append(p.grad.detach().clone())
    return {n: torch.stack(v) for n, v in out.items()}


@pytest.mark.parametrize("loss", ["cross_entropy", "logit_norm"])
@pytest.mark.parametrize("chunk", [None, 3])
def test_vectorised_per_sample_gradients_equal_a_backward_loop(trained_cnn, class3, loss, chunk):
    model = copy.deepcopy(trained_cnn).double()
    x = torch.stack([class3.train[i][0] for i in range(10)]).double()
    y = torch.as_tensor(class3.train.targets[:10])
    fast = per_sample_gradients(model, x, y, loss=loss, chunk_size=chunk)
    slow = _loop(model, x, y, loss)
    assert fast.keys() == slow.keys()
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], atol=1e-10, rtol=1e-9)


def test_frozen_parameters_are_left_out_and_mode_restored(class3):
    model = ob.build_model("mlp", class3.dataset, seed=0)
    model.body[1].weight.requires_grad_(False)
    model.train()
    g = per_sample_gradients(model, torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert "body.1.weight" not in g and "head.weight" in g
    assert model.training


def test_per_sample_sum_of_squares_is_n_times_the_empirical_fisher(trained_cnn, class3):
    sub = torch.utils.data.Subset(class3.train, range(12))
    totals, n = per_sample_sum(trained_cnn, sub, torch.square, batch_size=5, device=torch.device("cpu"))
    x = torch.stack([sub[i][0] for i in range(12)])
    y = torch.tensor([sub[i][1] for i in range(12)])
    slow = _loop(trained_cnn, x, y, "cross_entropy")
    assert n == 12
    for name, total in totals.items():
        torch.testing.assert_close(total, slow[name].pow(2).sum(0), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("transform", [None, torch.square])
def test_minibatch_sum_equals_a_backward_pass_per_batch(trained_cnn, class3, transform):
    model = copy.deepcopy(trained_cnn)
    sub = torch.utils.data.Subset(class3.train, range(12))
    names = ["head.weight", "head.bias"]
    counter = {"samples": 0}
    totals, batches = minibatch_sum(model, sub, transform, names=names, batch_size=5, device=torch.device("cpu"), counter=counter)
    assert batches == 3 and counter["samples"] == 12 and list(totals) == names
    model.eval()
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters() if n in names}
    for start in range(0, 12, 5):
        idx = range(start, min(start + 5, 12))
        x = torch.stack([sub[i][0] for i in idx])
        y = torch.tensor([sub[i][1] for i in idx])
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            if n in names:
                expected[n] += p.grad if transform is None else transform(p.grad)
    for n in names:
        torch.testing.assert_close(totals[n], expected[n], atol=1e-6, rtol=1e-5)
