"""SCAR (issue 18 item 2): Mahalanobis forgetting plus distillation on surrogate data, no retain set."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import InvalidConfigError, UncheckedTrainingSetWarning
from obliviate.methods.base import make_context
from obliviate.methods.scar import SCAR, class_statistics, mahalanobis, nearest_wrong_class, shrink_covariance, tukey
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import accuracy

# A short run for the behaviour checks on the toy model (about 20 forget samples).
TOY = dict(epochs=20, lr=2e-3, batch_size=16, surrogate_batches=2, surrogate_size=500)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_contract_suite():
    report = check_method(SCAR)
    assert report["masks"] == "ok" and report["deterministic"] == "ok"


def test_tukey_is_a_signed_power_with_finite_gradient_at_zero():
    x = torch.tensor([0.0, 4.0, -9.0, 0.25], requires_grad=True)
    y = tukey(x, 0.5)
    assert torch.allclose(y, torch.tensor([0.0, 2.0, -3.0, 0.5]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0] == 0.0


def test_shrinkage_by_hand():
    cov = torch.tensor([[2.0, 0.5], [0.5, 4.0]])
    # V1 = mean diagonal = 3, V2 = mean non-zero off-diagonal = 0.5
    out = shrink_covariance(cov, 1.0, 2.0)
    assert torch.allclose(out, torch.tensor([[5.0, 1.5], [1.5, 7.0]]))
    assert torch.allclose(shrink_covariance(torch.eye(2), 1.0, 1.0), 2 * torch.eye(2))  # no off-diagonal: V2 = 0


def test_mahalanobis_matches_the_formula_and_statistics_skip_thin_classes():
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(40, 3, generator=g)
    labels = torch.tensor([0] * 20 + [1] * 19 + [2])
    kept, means, inverses = class_statistics(feats, labels, [0, 1, 2], delta=0.5, gamma_diag=3.0, gamma_off=3.0)
    assert kept == [0, 1]  # class 2 has one sample: no covariance
    # the statistics by hand for class 1
    rows = feats[labels == 1].double().sqrt()
    cov = shrink_covariance(shrink_covariance(torch.cov(rows.T), 3.0, 3.0), 3.0, 3.0)
    sd = cov.diagonal().sqrt()
    inv = torch.linalg.inv(cov / (sd[:, None] * sd[None, :]))
    m = F.normalize(rows.mean(0), dim=0)
    assert torch.allclose(means[1].double(), m, atol=1e-6)
    assert torch.allclose(inverses[1].double(), inv, atol=1e-4)
    x = torch.rand(5, 3, generator=g)
    u = F.normalize(x.double().sqrt(), dim=1)
    by_hand = torch.stack([(u[i] - m) @ inv @ (u[i] - m) for i in range(5)])
    assert torch.allclose(mahalanobis(x, means, inverses, 0.5)[:, 1].double(), by_hand, atol=1e-4)


def test_target_is_the_nearest_class_other_than_the_own():
    means = F.normalize(torch.eye(3), dim=1)
    inverses = torch.eye(3).expand(3, 3, 3)
    kept = [0, 1, 2]
    x = torch.tensor([[1.0, 0.2, 0.0], [1.0, 0.0, 0.3], [0.0, 0.1, 1.0]])
    slot, ok = nearest_wrong_class(x, torch.tensor([0, 0, 1]), kept, means, inverses, 1.0)
    # sample 0 is nearest to class 0 (its own), then 1; sample 1 likewise then 2; sample 2 is nearest to 2
    assert slot.tolist() == [1, 2, 2] and ok.all()
    slot, ok = nearest_wrong_class(x[:1], torch.tensor([0]), [0], means[:1], inverses[:1], 1.0)
    assert not ok.any()  # only its own class has statistics: no target


def test_forgets_the_class_and_keeps_the_rest_on_the_toy_scenario():
    """The forget class is forgotten, the retained classes kept; the Mahalanobis term does most of the forgetting."""
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    run = dict(seed=0, device="cpu", progress=False)
    out = ob.unlearn(model, sc, SCAR(**TOY), **run)
    assert accuracy(model, sc.forget) > 0.9 and accuracy(out.model, sc.forget) <= 0.3
    assert accuracy(out.model, sc.val_retain) >= accuracy(model, sc.val_retain) - 0.1
    assert accuracy(out.model, sc.retain) >= accuracy(model, sc.retain) - 0.1
    assert out.diagnostics["forget_without_target"] == 0.0 and out.diagnostics["classes_with_statistics"] >= 2
    distill_only = ob.unlearn(model, sc, SCAR(**TOY, lambda_forget=0.0), **run).model
    assert accuracy(distill_only, sc.forget) > accuracy(out.model, sc.forget) + 0.3


def test_reads_no_retain_data():
    """The result is bit-identical when the retain set is moved into the val split."""
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    no_retain = ob.Scenario(
        dataset=sc.dataset,
        forget_idx=sc.forget_idx,
        retain_idx=np.zeros(0, np.int64),
        val_idx=np.union1d(sc.val_idx, sc.retain_idx),
        test_idx=sc.test_idx,
        kind="classwise",
        name="class:3:no-retain",
        params=sc.params,
    )
    method = SCAR(**{**TOY, "epochs": 3})
    with pytest.warns(UncheckedTrainingSetWarning):  # a bare module: its training set cannot be checked
        a = method.unlearn(model, sc, seed=0, device="cpu", progress=False)
        b = method.unlearn(model, no_retain, seed=0, device="cpu", progress=False)
    assert _same(a.model, b.model)
    assert "retain" not in SCAR.requires and SCAR.kinds == frozenset({"classwise", "random"})


def test_surrogates():
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    forget_x = torch.stack([sc.forget[i][0] for i in range(len(sc.forget))])
    ctx = make_context(model, torch.device("cpu"), seed=0, masks=None, progress=False, recording=None)
    noise = SCAR(surrogate_size=300)._surrogate(sc, forget_x, ctx)
    assert noise.shape == (300, *forget_x.shape[1:])
    assert noise.mean().item() == pytest.approx(forget_x.mean().item(), abs=0.05)
    uniform = SCAR(surrogate="uniform", surrogate_size=300)._surrogate(sc, forget_x, ctx)
    assert uniform.min() >= forget_x.min() and uniform.max() <= forget_x.max()
    other = SCAR(surrogate="synthetic32", surrogate_size=50)._surrogate(sc, forget_x, ctx)
    assert other.shape == (50, *forget_x.shape[1:]) and torch.isfinite(other).all()
    # digits images are in-distribution for a digits model: refused
    with pytest.raises(InvalidConfigError, match="in-distribution"):
        SCAR(surrogate="digits")._surrogate(sc, forget_x, ctx)
    # every seed draws other noise
    ctx1 = make_context(model, torch.device("cpu"), seed=1, masks=None, progress=False, recording=None)
    assert not torch.equal(SCAR(surrogate_size=300)._surrogate(sc, forget_x, ctx1), noise)


def test_random_forget_set_runs_with_statistics_of_every_class():
    sc, model = toy_scenario("random"), toy_model("random")
    out = ob.unlearn(model, sc, SCAR(**{**TOY, "epochs": 3}), seed=0, device="cpu", progress=False)
    assert out.diagnostics["classes_with_statistics"] == 10
    assert accuracy(out.model, sc.forget) <= accuracy(model, sc.forget)
    custom = ob.Scenario.from_indices(sc.dataset, sc.forget_idx)
    with pytest.raises(InvalidConfigError, match="supports"):
        ob.unlearn(model, custom, SCAR(), device="cpu", progress=False)
    assert not SCAR.supports("subclass") and SCAR.supports("corrupted")  # a corrective forget set is a random one


@pytest.mark.slow
def test_digits_preset_health_check():
    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, progress=False, **DEMO_RECIPE)
    out = ob.unlearn(base, sc, "scar", preset="digits", seed=0, progress=False)
    assert out.status == "ok"
    assert accuracy(base.model, sc.forget) > 0.95 and accuracy(out.model, sc.forget) < 0.2
    rnd = ob.Scenario.random(ds, fraction=0.1, seed=0)
    assert ob.unlearn(base, rnd, "scar", preset="digits", seed=0, progress=False).status == "ok"
