"""SISA: removal retrains only the affected shards, from the right slice checkpoint, and is exactly retraining."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.errors import InvalidConfigError
from obliviate.sisa import SISAEnsemble
from obliviate.testing import toy_dataset

RECIPE = {"lr": 0.05, "batch_size": 32, "optimizer": "sgd", "momentum": 0.9}


def _ensemble(ds, shards=3, slices=4, **kw):
    return SISAEnsemble(lambda k: ob.build_model("mlp", ds, seed=k), shards, slices, RECIPE, epochs_per_slice=2, **kw)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def ds():
    return toy_dataset()


@pytest.fixture
def one_thread():
    """Exactness holds at a fixed thread count: pin one, and give the caller's back."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_removal_is_bit_identical_to_training_without_the_rows_from_scratch(ds, one_thread):
    sisa = _ensemble(ds).fit(ds.train)
    assert sisa.stages_trained == 12 and sorted(sisa.rows().tolist()) == list(range(len(ds.train)))
    # a row of shard 1's third slice: shard 1 resumes after stage 2 and trains stages 3 and 4, nothing else
    row = int(sisa.slices[1][2][0])
    others = [{n: v.clone() for n, v in sisa.shards[k].state_dict().items()} for k in (0, 2)]
    report = sisa.remove([row])
    assert report.shards == [1] and report.resumed_from == {1: 2} and report.stages_trained == 2
    assert report.stages_total == 12 and report.removed == [row]
    for k, before in zip((0, 2), others, strict=True):  # the other shards untouched
        after = sisa.shards[k].state_dict()
        assert all(torch.equal(after[n], v) for n, v in before.items())
    # the same ensemble trained from scratch on every row but that one: the same shards, slices and weights
    fresh = _ensemble(ds)
    fresh.fit(ds.train)  # same seed: same assignment; now drop the row from its slice before training
    fresh.slices[1][2] = fresh.slices[1][2][fresh.slices[1][2] != row]
    fresh.checkpoints[1] = fresh.checkpoints[1][:1]
    fresh._train_shard(1, start=1)
    assert _same(sisa.shards[1], fresh.shards[1])
    # and a retraining from the wrong checkpoint (one stage later, after the row was seen) differs
    wrong = _ensemble(ds).fit(ds.train)
    wrong.slices[1][2] = wrong.slices[1][2][wrong.slices[1][2] != row]
    wrong._train_shard(1, start=4)
    assert not _same(sisa.shards[1], wrong.shards[1])


def test_rows_in_several_shards_and_first_slices_retrain_those_shards_from_scratch(ds):
    sisa = _ensemble(ds, shards=2, slices=3).fit(ds.train)
    rows = [int(sisa.slices[0][0][0]), int(sisa.slices[1][1][0]), int(sisa.slices[1][2][0])]
    report = sisa.remove(rows)
    assert report.shards == [0, 1] and report.resumed_from == {0: 0, 1: 1} and report.stages_trained == 3 + 2
    assert not np.isin(rows, sisa.rows()).any() and sisa.rows().size == len(ds.train) - 3
    with pytest.raises(InvalidConfigError, match="none of the 3 rows"):
        sisa.remove(rows)  # already gone


def test_the_ensemble_predicts_and_evaluates_like_a_model(ds):
    sc = ob.Scenario.random(ds, fraction=0.1, seed=0)
    for aggregate in ("mean", "vote"):
        sisa = _ensemble(ds, shards=2, slices=2, aggregate=aggregate).fit(ds.train, rows=sc.train_idx)
        logits = sisa(torch.stack([ds.test[i][0] for i in range(8)]))
        assert logits.shape == (8, ds.num_classes) and torch.isfinite(logits).all()
        with pytest.warns(ob.errors.UncheckedTrainingSetWarning):
            ev = ob.evaluate(sisa, sc, metrics=["test_acc", "retain_acc"])
        assert 0.0 <= ev["test_acc"] <= 1.0


@pytest.mark.parametrize(
    ("kw", "match"), [({"n_shards": 0}, "n_shards"), ({"n_slices": 1.5}, "n_slices"), ({"aggregate": "max"}, "aggregate")]
)
def test_bad_settings_are_refused(ds, kw, match):
    args = {"n_shards": 2, "n_slices": 2, **kw}
    with pytest.raises(InvalidConfigError, match=match):
        SISAEnsemble(
            lambda k: ob.build_model("mlp", ds, seed=k),
            args["n_shards"],
            args["n_slices"],
            RECIPE,
            aggregate=args.get("aggregate", "mean"),
        )


def test_requests_are_checked_against_the_ledger_and_recorded_with_the_digests(ds, tmp_path):
    from obliviate.errors import DuplicateRequestError, UnknownSampleError
    from obliviate.ledger import DeletionLedger

    with DeletionLedger(tmp_path / "ledger.sqlite", create=True) as ledger:
        rows = np.arange(200)
        sisa = _ensemble(ds, shards=2, slices=2).fit(ds.train, rows=rows, ledger=ledger)
        assert ledger.known_ids() == set(range(200)) and ledger.head_digest() == sisa.digest()
        before = sisa.digest()
        report = sisa.remove([3, 150], ledger=ledger, reason="request 1")
        assert ledger.forgotten_ids() == {3, 150} and ledger.head_digest() == sisa.digest() != before
        last = ledger.entries()[-1]
        assert last.status == "committed" and last.request.reason == "request 1"
        assert ledger.integrity_problem() is None
        trained = sisa.stages_trained
        with pytest.raises(DuplicateRequestError):
            sisa.remove([3], ledger=ledger)  # already removed: refused before any retraining
        with pytest.raises(UnknownSampleError):
            sisa.remove([230], ledger=ledger)  # never trained on
        assert sisa.stages_trained == trained and report.removed == [3, 150]


def test_save_and_load_give_the_same_ensemble_and_the_same_later_removals(ds, tmp_path, one_thread):
    sisa = _ensemble(ds, shards=2, slices=3).fit(ds.train)
    path = sisa.save(tmp_path / "sisa.safetensors")
    back = SISAEnsemble.load(path, lambda k: ob.build_model("mlp", ds, seed=k), ds.train)
    assert back.digest() == sisa.digest() and back.stages_trained == sisa.stages_trained
    assert all(np.array_equal(a, b) for sa, sb in zip(sisa.slices, back.slices, strict=True) for a, b in zip(sa, sb, strict=True))
    row = int(sisa.slices[0][1][0])
    r1, r2 = sisa.remove([row]), back.remove([row])  # the loaded one resumes from the same checkpoints
    assert r1.resumed_from == r2.resumed_from == {0: 1} and back.digest() == sisa.digest()
    with pytest.raises(ob.errors.IncompatibleModelError, match="not a SISA ensemble"):
        ob.io.save_model(sisa.shards[0], tmp_path / "plain.safetensors")
        SISAEnsemble.load(tmp_path / "plain.safetensors", lambda k: ob.build_model("mlp", ds, seed=k), ds.train)
    with pytest.raises(ob.errors.IncompatibleModelError, match="does not fit"):
        SISAEnsemble.load(path, lambda k: ob.build_model("mlp", ds, seed=k, hidden=(7,)), ds.train)


@pytest.mark.slow
def test_the_ray_backend_trains_the_same_shards_as_the_sequential_one(ds, one_thread):
    pytest.importorskip("ray")
    local = _ensemble(ds, shards=3, slices=2).fit(ds.train)
    on_ray = _ensemble(ds, shards=3, slices=2, backend="ray").fit(ds.train)
    assert on_ray.digest() == local.digest() and on_ray.stages_trained == local.stages_trained == 6
    rows = [int(local.slices[0][1][0]), int(local.slices[2][0][0])]
    assert on_ray.remove(rows).resumed_from == local.remove(rows).resumed_from == {0: 1, 2: 0}
    assert on_ray.digest() == local.digest()


def test_weight_metrics_are_left_out_for_an_ensemble_and_refused_when_named(ds):
    sc = ob.Scenario.random(ds, fraction=0.1, seed=0)
    sisa = _ensemble(ds, shards=2, slices=1).fit(ds.train, rows=sc.retain_idx)
    single = ob.build_model("mlp", ds, seed=0)
    with pytest.warns(ob.errors.UncheckedTrainingSetWarning):
        ev = ob.evaluate(sisa, sc, single)
    assert "avg_gap" in ev.metrics and "weight_distance" not in ev.metrics
    with pytest.warns(ob.errors.UncheckedTrainingSetWarning), pytest.raises(ob.errors.MissingDataError, match="compares weights"):
        ob.evaluate(sisa, sc, single, metrics=["weight_distance"])
    with pytest.warns(ob.errors.UncheckedTrainingSetWarning):  # two single models: it is computed
        assert "weight_distance" in ob.evaluate(single, sc, single).metrics
