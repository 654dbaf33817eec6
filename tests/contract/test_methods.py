"""Every registered method passes the shipped contract suite (obliviate.testing.check_method)."""

import dataclasses
from dataclasses import dataclass

import pytest
import torch

import obliviate as ob
from obliviate.methods import UnlearningMethod
from obliviate.testing import check_method, toy_dataset, toy_model, toy_scenario

EXPECTED_CHECKS = {
    "defaults",
    "validation",
    "round_trip",
    "input_unchanged",
    "output",
    "deterministic",
    "missing_data",
    "sanity",
    "masks",
}


@pytest.mark.parametrize("name", ob.METHODS.names())
def test_method_passes_the_contract(name):
    report = check_method(name)
    assert EXPECTED_CHECKS <= set(report) and set(report.values()) == {"ok"}


@dataclass(frozen=True, kw_only=True)
class Sneaky(UnlearningMethod):
    """Changes the caller's model before copying it (a bug the contract must catch)."""

    def unlearn(self, model, scenario, **kw):
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return super().unlearn(model, scenario, **kw)

    def _unlearn(self, model, scenario, ctx):
        return model


Sneaky.name = "sneaky"  # not registered: only checked


def test_the_contract_catches_a_method_that_changes_its_input():
    with pytest.raises(AssertionError, match="input_unchanged"):
        check_method(Sneaky)


# ------------------------------------------------------------------ exact methods (issue 11, item 8)
EXACT = [n for n in ob.METHODS.names() if ob.METHODS.get(n).exact]
# A short recipe that uses every random draw and schedule of the training loop: shuffling, dropout (the
# toy model has it), augmentation, warm-up, cosine decay, label smoothing, clipping, momentum, weight decay.
RECIPE = dict(
    epochs=2,
    lr=0.05,
    batch_size=32,
    schedule="cosine",
    milestones=None,
    warmup_epochs=1,
    augment="crop_flip",
    label_smoothing=0.1,
    grad_clip=5.0,
    momentum=0.9,
    weight_decay=5e-4,
)


def _differs_from_independent_training(method, seed):
    """Names of the state entries where ``method`` differs from ``ob.train`` of a fresh ``build_model(seed)``
    on ``scenario.retain`` with the method's recipe and ``seed`` (what an exact method states it equals).
    """
    sc, model = toy_scenario(), toy_model()  # the toy model: build_model("cnn", ..., seed=0, width=8, dropout=0.2)
    out = method.unlearn(model, sc, seed=seed, device="cpu", progress=False).model.state_dict()
    fresh = ob.build_model("cnn", toy_dataset(), seed=seed, width=8, dropout=0.2)
    oracle = ob.train(fresh, sc.retain, method.recipe(), seed=seed, device="cpu", progress=False).model.state_dict()
    assert out.keys() == oracle.keys()
    return [k for k in out if not torch.equal(out[k], oracle[k])]


def test_the_exact_methods_are_retrain_and_sisa():
    """A new exact method must state what it is exact with respect to and get a check of exactly that here."""
    assert EXACT == ["retrain", "sisa"]


@pytest.mark.parametrize("name", [n for n in EXACT if not ob.METHODS.get(n).ensemble])
def test_exact_method_is_bit_identical_to_an_independent_train_on_the_retain_set(name):
    cls = ob.METHODS.get(name)
    assert "Exact with respect to:" in cls.__doc__
    method = cls.from_dict({k: v for k, v in RECIPE.items() if k in cls.field_names()})
    assert method.recipe() == ob.TrainConfig(**RECIPE)
    assert _differs_from_independent_training(method, seed=3) == []


def _buggy_retrain(bug):
    """A replacement for ``Retrain._unlearn`` with one bug that a retrain-vs-retrain comparison cannot see."""
    from obliviate.models.zoo import reinitialize

    def run(self, model, scenario, ctx):
        if bug != "no_reinitialisation":  # else: fine-tunes the trained weights instead of starting from scratch
            reinitialize(model, 0 if bug == "fixed_init_seed" else ctx.seed)
        data = scenario.train if bug == "trains_on_train_split" else scenario.retain  # D_f leaks into the oracle
        ctx.fit(model, data, self.recipe(), desc="retrain")
        return model

    return run


@pytest.mark.parametrize("bug", ["no_reinitialisation", "trains_on_train_split", "fixed_init_seed"])
def test_the_exact_check_catches_a_retrain_that_is_not_one(bug, monkeypatch):
    """Retrain compared with retrain passes whatever retrain does; the independent ``ob.train`` does not."""
    cls = ob.METHODS.get("retrain")
    monkeypatch.setattr(cls, "_unlearn", _buggy_retrain(bug))
    assert _differs_from_independent_training(cls.from_dict(RECIPE), seed=3) != []


# ------------------------------------------------------------------ sisa (issue 17)
def _sisa_differs(monkeypatch=None, bug=None):
    """Whether ``sisa`` on the toy scenario differs from every shard trained from scratch on its rows of D_r."""
    from obliviate.methods.sisa import SISA
    from obliviate.sisa import SISAEnsemble

    if bug == "late_resume":  # a removal that resumes one stage after the right checkpoint (it saw the forget rows)
        train_shards = SISAEnsemble._train_shards

        def late(self, jobs):
            return train_shards(self, [(k, min(s + 1, self.n_slices)) if self.stages_trained else (k, s) for k, s in jobs])

        monkeypatch.setattr(SISAEnsemble, "_train_shards", late)
    if bug == "no_removal":  # rows dropped from the bookkeeping only, nothing retrained
        fit_only = SISAEnsemble._train_shards
        monkeypatch.setattr(SISAEnsemble, "_train_shards", lambda self, jobs: 0 if self.stages_trained else fit_only(self, jobs))
    sc, model = toy_scenario(), toy_model()
    method = dataclasses.replace(SISA.from_preset("digits"), epochs=4, shards=2, slices=3)
    out = method.unlearn(model, sc, seed=5, device="cpu", progress=False)
    expected = SISA.exact_reference(out.model, sc, 5)
    state = out.model.state_dict()
    assert state.keys() == expected.keys()
    return [k for k in state if not torch.equal(state[k], expected[k])]


def test_sisa_is_bit_identical_to_its_shards_trained_from_scratch_on_the_retain_rows():
    assert _sisa_differs() == []


@pytest.mark.parametrize("bug", ["late_resume", "no_removal"])
def test_the_sisa_check_catches_a_removal_that_is_not_exact(bug, monkeypatch):
    assert _sisa_differs(monkeypatch, bug) != []
