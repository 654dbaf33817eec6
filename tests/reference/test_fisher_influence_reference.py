"""Fisher and influence computations against plain references (backward loops, dense inverses).

Per-sample quantities are compared in float64, where a real difference cannot hide in
summation order; the method-level influence step is compared in float32 (the data are float32).
"""

import copy

import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.data.base import Subset, iterate_batches
from obliviate.methods.fisher import batch_fisher
from obliviate.methods.influence import heuristic_ihvp, woodbury_ihvp
from obliviate.per_sample import per_sample_fisher
from obliviate.testing import toy_model, toy_scenario

CPU = torch.device("cpu")


def _fisher_loop(model, x, y, kind):
    """Σ_i Fisher_i with one backward pass per (sample, class): the SSD seed's batch-size-1 loop."""
    model.eval()
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for i in range(len(x)):
        log_p = torch.log_softmax(model(x[i : i + 1]), dim=1)[0]
        classes = range(log_p.shape[0]) if kind == "expected" else [int(y[i])]
        for k in classes:
            grads = torch.autograd.grad(log_p[k], params, retain_graph=True)
            weight = log_p[k].detach().exp() if kind == "expected" else 1.0
            for t, g in zip(total, grads, strict=True):
                t += weight * g.square()
    return dict(zip([n for n, _ in model.named_parameters()], total, strict=True))


class _Doubled(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y, self.targets = x, y, y.numpy()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


@pytest.mark.parametrize("kind", ["expected", "empirical"])
@pytest.mark.parametrize("batch_size", [1, 4, 9])
def test_per_sample_fisher_equals_a_backward_loop_over_samples_and_classes(trained_cnn, class3, kind, batch_size):
    model = copy.deepcopy(trained_cnn).double()
    x = torch.stack([class3.retain[i][0] for i in range(9)]).double()
    y = torch.as_tensor(class3.retain.targets[:9])
    fast, n = per_sample_fisher(model, _Doubled(x, y), kind=kind, batch_size=batch_size, device=CPU)
    slow = _fisher_loop(model, x, y, kind)
    assert n == 9 and fast.keys() == slow.keys()
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], atol=1e-12, rtol=1e-9)


def test_expected_fisher_counts_c_backward_passes_per_sample(trained_cnn, class3):
    counter = {"samples": 0}
    per_sample_fisher(trained_cnn, Subset(class3.retain, range(7)), batch_size=4, device=CPU, counter=counter)
    assert counter["samples"] == 7 * 10


def test_batch_fisher_is_the_unlearn_sparse_approximation(trained_cnn, class3):
    """fisher_new: per batch, Σ_k mean_b(p_k) (∇ mean_b CE(z, k))², averaged over batches."""
    data = Subset(class3.retain, range(10))
    got = batch_fisher(trained_cnn, data, batch_size=5, device=CPU)
    model = copy.deepcopy(trained_cnn).eval()
    params = list(model.parameters())
    want = [torch.zeros_like(p) for p in params]
    for x, _ in iterate_batches(data, 5, device=CPU):
        for k in range(10):
            model.zero_grad()
            logits = model(x)
            prob = torch.softmax(logits, 1)[:, k].mean().detach()
            F.cross_entropy(logits, torch.full((len(x),), k)).backward()
            for w, p in zip(want, params, strict=True):
                w += prob * p.grad.square()
    for (name, _), w in zip(model.named_parameters(), want, strict=True):
        torch.testing.assert_close(got[name], w / 2, atol=1e-9, rtol=1e-5)


def test_woodbury_ihvp_equals_the_dense_inverse_and_the_sherman_morrison_recursion():
    gen = torch.Generator().manual_seed(0)
    n, p, lam = 6, 15, 0.05
    g = torch.randn(n, p, generator=gen, dtype=torch.float64)
    v = torch.randn(p, generator=gen, dtype=torch.float64)
    dense = torch.linalg.solve(lam * torch.eye(p, dtype=torch.float64) + g.T @ g / n, v)
    inverse = torch.eye(p, dtype=torch.float64) / lam  # WoodFisher's recursion, F_0^-1 = I / λ
    for row in g:
        u = inverse @ row
        inverse = inverse - torch.outer(u, u) / (n + row @ u)
    torch.testing.assert_close(woodbury_ihvp(g, v, lam), dense, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(inverse @ v, dense, atol=1e-10, rtol=1e-10)


def _seed_iu(model, sc, chosen, alpha, n_const, mode, lam=None, relative=None):
    """Unlearn-Sparse's wfisher with a backward pass per retain sample (the seed code's loops).

    With ``relative``, λ = relative · tr(F)/P, F = (1/N) Σ g gᵀ over the chosen samples' gradients.
    """
    model = copy.deepcopy(model).eval()
    params = list(model.parameters())

    def flat_grad(x, y, reduction):
        model.zero_grad()
        F.cross_entropy(model(x), y, reduction=reduction).backward()
        return torch.cat([p.grad.reshape(-1) for p in params]).clone()

    g_f = sum(flat_grad(x, y, "sum") for x, y in iterate_batches(sc.forget, 32, device=CPU))
    g_r = sum(flat_grad(x, y, "sum") for x, y in iterate_batches(sc.retain, 32, device=CPU))
    n_f, n_r = len(sc.forget), len(sc.retain)
    v = g_f / (n_f + n_r) - n_f / ((n_f + n_r) * n_r) * g_r
    rows = []
    for i in chosen:
        x, y = sc.retain[int(i)]
        rows.append(flat_grad(x.unsqueeze(0), torch.tensor([y]), "mean"))
    if mode == "heuristic":
        k, o = v.clone(), None
        for g in rows:
            if o is None:
                o = g.clone()
            else:
                t = torch.dot(o, g)
                k -= (torch.dot(k, g) / (n_const + t)) * o
                o -= (t / (n_const + t)) * o
    else:
        gm = torch.stack(rows).double()
        if relative is not None:
            lam = relative * float(torch.trace(gm.T @ gm / len(rows))) / gm.shape[1]
        k = torch.linalg.solve(lam * torch.eye(gm.shape[1], dtype=torch.float64) + gm.T @ gm / len(rows), v.double()).float()
    start = 0
    with torch.no_grad():
        for p in params:
            p.add_(alpha * k[start : start + p.numel()].view_as(p))
            start += p.numel()
    return model


@pytest.mark.parametrize("mode", ["heuristic", "woodbury", "woodbury_relative"])
def test_influence_unlearning_equals_the_seed_algorithm_with_backward_loops(mode):
    """The seed algorithm; the Woodbury step with an absolute λ, or with λ = relative_damping · tr(F)/P."""
    sc, model = toy_scenario(), toy_model()
    n = 12
    alpha = 2.0 if mode == "heuristic" else 0.05
    if mode == "woodbury_relative":
        damping = {"relative_damping": 50.0}
        out = ob.unlearn(model, sc, "iu", alpha=alpha, num_samples=n, seed=3, device="cpu", **damping)
        assert out.diagnostics["damping"] == pytest.approx(50.0 * out.diagnostics["fisher_scale"])
    else:
        out = ob.unlearn(model, sc, "iu", ihvp=mode, alpha=alpha, num_samples=n, damping=0.5, seed=3, device="cpu")
    wanted = n + 2 if mode == "heuristic" else n
    chosen = torch.randperm(len(sc.retain), generator=torch.Generator().manual_seed(3))[:wanted].sort().values
    relative = 50.0 if mode == "woodbury_relative" else None
    ref = _seed_iu(model, sc, chosen, alpha, n, mode, lam=0.5, relative=relative)
    moved = 0.0
    for (name, a), b in zip(out.model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
        moved += float((a - dict(model.named_parameters())[name]).detach().abs().sum())
    assert moved > 1e-3  # the step is not trivially zero


def test_heuristic_recursion_is_not_the_inverse_fisher():
    """Documented as a heuristic: it differs from the WoodFisher product it is named after."""
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(8, 12, generator=gen, dtype=torch.float64)
    v = torch.randn(12, generator=gen, dtype=torch.float64)
    assert not torch.allclose(heuristic_ihvp(g, v, 8), woodbury_ihvp(g, v, 1.0), rtol=1e-2)
