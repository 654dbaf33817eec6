"""DELETE (issue 18 item 5): masked distillation on the forget set only, class-wise scenarios."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.demo import DEMO_RECIPE
from obliviate.errors import InvalidConfigError, UncheckedTrainingSetWarning
from obliviate.methods.delete import DELETE, masked_distillation
from obliviate.testing import check_method, toy_model, toy_scenario
from obliviate.training import accuracy


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_contract_suite():
    report = check_method(DELETE)
    assert report["masks"] == "ok" and report["deterministic"] == "ok"


def test_loss_is_forgetting_plus_retention_terms():
    """KL(softmax(Mask_y(z_t)) ‖ softmax(z_s)) = -log(1 - s_y) + KL(q̂ ‖ ŝ) over the other classes."""
    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    s = F.softmax(z_s, 1)
    keep = torch.ones_like(s, dtype=torch.bool)
    keep[torch.arange(6), y] = False
    s_hat = s[keep].view(6, 4) / s[keep].view(6, 4).sum(1, keepdim=True)
    q_hat = F.softmax(z_t[keep].view(6, 4), 1)
    forgetting = -torch.log1p(-s[torch.arange(6), y])
    retention = (q_hat * (q_hat.log() - s_hat.log())).sum(1)
    expected = (forgetting + retention).mean()
    assert masked_distillation(z_s, z_t, y).item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_pushes_the_erased_class_down_and_matches_the_teacher_elsewhere():
    z_t = torch.tensor([[4.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([0])
    z_s = z_t.clone().requires_grad_(True)  # the student starts as the teacher
    masked_distillation(z_s, z_t, y).backward()
    grad = z_s.grad[0]
    assert grad[0] > 0.9  # descent lowers the erased logit (its probability ~0.94 goes to 0)
    assert torch.all(grad[1:] < 0)  # and raises the others
    # at the masked teacher's own logits the loss is 0 only when the erased class is at -inf
    far = torch.tensor([[-30.0, 1.0, 0.0, -1.0]])
    assert masked_distillation(far, z_t, y).item() == pytest.approx(0.0, abs=1e-6)
    # the temperature softens both sides and scales the KL by T^2
    t = 2.0
    q = F.softmax(torch.tensor([[-torch.inf, 1.0, 0.0, -1.0]]) / t, 1)
    log_s = F.log_softmax(z_t / t, 1)
    by_hand = t**2 * (q[0, 1:] * (q[0, 1:].log() - log_s[0, 1:])).sum()
    assert masked_distillation(z_t, z_t, y, temperature=t).item() == pytest.approx(by_hand.item(), rel=1e-5)


def test_forgets_the_class_and_keeps_the_rest_on_the_toy_scenario():
    sc, model = toy_scenario("classwise"), toy_model("classwise")
    out = ob.unlearn(model, sc, DELETE.from_preset("digits"), seed=0, device="cpu", progress=False)
    before_f, after_f = accuracy(model, sc.forget), accuracy(out.model, sc.forget)
    assert before_f > 0.9 and after_f <= 0.1
    assert accuracy(out.model, sc.val_retain) >= accuracy(model, sc.val_retain) - 0.1
    # the masked class is the forgotten one: no forget sample is still predicted as it
    with torch.no_grad():
        x = torch.stack([sc.forget[i][0] for i in range(len(sc.forget))])
        assert (out.model(x).argmax(1) == 3).float().mean() <= 0.1


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
    method = DELETE.from_preset("digits")
    with pytest.warns(UncheckedTrainingSetWarning):  # a bare module: its training set cannot be checked
        a = method.unlearn(model, sc, seed=0, device="cpu", progress=False)
        b = method.unlearn(model, no_retain, seed=0, device="cpu", progress=False)
    assert _same(a.model, b.model)


def test_only_class_centric_scenarios():
    assert DELETE.kinds == frozenset({"classwise"}) and "retain" not in DELETE.requires
    with pytest.raises(InvalidConfigError, match="classwise"):
        ob.unlearn(toy_model("random"), toy_scenario("random"), "delete", device="cpu", progress=False)


@pytest.mark.slow
def test_digits_preset_health_check():
    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    base = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, progress=False, **DEMO_RECIPE)
    out = ob.unlearn(base, sc, "delete", preset="digits", seed=0, progress=False)
    assert out.status == "ok"
    assert accuracy(base.model, sc.forget) > 0.95 and accuracy(out.model, sc.forget) < 0.1
