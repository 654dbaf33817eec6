"""obliviate.bench.pool: content-addressed models, trained once, one original for every forget draw."""

from __future__ import annotations

import pytest
import torch

import obliviate as ob
from obliviate.bench import pool as pool_mod
from obliviate.bench.pool import ModelPool
from obliviate.data import parse_scenario
from obliviate.testing import toy_dataset

RECIPE = ob.TrainConfig.from_dict({"epochs": 1, "lr": 0.05, "batch_size": 64}).to_dict()


def _get(pool, sc, kind, seed=0, recipe=RECIPE):
    return pool.get_or_train(sc, kind, model="mlp", recipe=recipe, seed=seed, device="cpu")


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_second_get_trains_nothing_and_returns_the_same_weights(tmp_path):
    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    pool = ModelPool(tmp_path)
    before = pool_mod.trainings()
    first, key = _get(pool, sc, "original")
    assert pool.trained == 1 and pool_mod.trainings() == before + 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [f"{key}.json", f"{key}.safetensors"]
    again = ModelPool(tmp_path)  # another invocation over the same directory
    second, key2 = _get(again, sc, "original")
    assert key2 == key and again.trained == 0 and pool_mod.trainings() == before + 1
    assert _same(first.model, second.model)
    assert second.training_set == sc.training_set and second.seconds == first.seconds
    ob.unlearn(second, sc, "finetune", epochs=1, device="cpu", progress=False)  # usable: the training set checks out


def test_class_and_random_draws_of_one_seed_share_one_original(tmp_path):
    ds = toy_dataset()
    cls, rnd = parse_scenario("class:3", ds, seed=0), parse_scenario("random:0.1", ds, seed=0)
    assert cls.training_set == rnd.training_set and cls.retain_set != rnd.retain_set
    pool = ModelPool(tmp_path)
    _, k1 = _get(pool, cls, "original")
    _, k2 = _get(pool, rnd, "original")
    assert k1 == k2 and pool.trained == 1
    _, o1 = _get(pool, cls, "oracle")
    _, o2 = _get(pool, rnd, "oracle")
    assert len({k1, o1, o2}) == 3 and pool.trained == 3  # an oracle per retain set
    oracle, _ = _get(pool, cls, "oracle")
    assert oracle.training_set == cls.retain_set and pool.trained == 3


def test_the_key_follows_seed_recipe_model_and_data(tmp_path):
    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    pool = ModelPool(tmp_path)
    base = pool.key(sc, "original", "mlp", {}, RECIPE, 0)
    assert pool.key(sc, "original", "mlp", {}, RECIPE, 0) == base
    assert pool.key(sc, "original", "mlp", {}, RECIPE, 1) != base
    assert pool.key(sc, "original", "mlp", {}, {**RECIPE, "lr": 0.1}, 0) != base
    assert pool.key(sc, "original", "cnn", {}, RECIPE, 0) != base
    assert pool.key(sc, "original", "mlp", {"hidden": 8}, RECIPE, 0) != base
    other = parse_scenario("class:1", ds, seed=0, val_seed=1)  # another training set
    assert pool.key(other, "original", "mlp", {}, RECIPE, 0) != base


def test_entries_and_remove(tmp_path):
    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    pool = ModelPool(tmp_path)
    _, key = _get(pool, sc, "oracle", seed=2)
    (tmp_path / ".partial.json").write_text("{")  # a half-written temporary file is no entry
    (entry,) = pool.entries()
    assert (entry["key"], entry["kind"], entry["dataset"], entry["model"], entry["seed"]) == (key, "oracle", ds.name, "mlp", 2)
    assert entry["size"] > 0 and entry["parts"]["train_set"] == sc.retain_set.to_json()
    pool.remove(key)
    assert pool.entries() == [] and key not in pool


def test_a_model_being_trained_elsewhere_is_waited_for_not_trained_again(tmp_path):
    import shutil
    import threading

    from obliviate.bench.pool import exclusive

    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    elsewhere = ModelPool(tmp_path / "elsewhere")
    _, key = _get(elsewhere, sc, "original")
    shared = ModelPool(tmp_path / "shared")
    got = {}
    with exclusive(shared.path / f".{key}.lock"):  # another process is training this model
        waiter = threading.Thread(target=lambda: got.update(r=_get(shared, sc, "original")))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # it waits for the lock instead of training
        for suffix in (".safetensors", ".json"):  # the other process finishes its entry
            shutil.copy(elsewhere.path / f"{key}{suffix}", shared.path / f"{key}{suffix}")
    waiter.join(30)
    assert not waiter.is_alive() and got["r"][1] == key and shared.trained == 0
    assert shared.leftovers() == [shared.path / f".{key}.lock"]  # the lock of a complete entry is garbage


def test_a_recording_is_made_once_kept_beside_the_weights_and_checked_against_them(tmp_path):
    from safetensors.torch import save_file

    from obliviate.errors import IncompatibleModelError
    from obliviate.io import load_state_dict

    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    pool = ModelPool(tmp_path)
    plain, key = _get(pool, sc, "original")
    assert plain.recording is None and not pool.has_recording(key)
    recorded, key2 = pool.get_or_train(sc, "original", model="mlp", recipe=RECIPE, seed=0, device="cpu", record=True)
    assert key2 == key and pool.trained == 2  # trained once more, with recording on
    assert pool.has_recording(key) and recorded.recording is not None and recorded.recording.updates is not None
    assert _same(plain.model, recorded.model) and recorded.seconds == plain.seconds  # the stored entry is unchanged
    again = ModelPool(tmp_path)
    loaded, _ = again.get_or_train(sc, "original", model="mlp", recipe=RECIPE, seed=0, device="cpu", record=True)
    assert again.trained == 0 and torch.equal(loaded.recording.updates, recorded.recording.updates)
    out = ob.unlearn(loaded, sc, "amnesiac", recording=loaded.recording, device="cpu", progress=False)
    assert out.status in ("ok", "collapsed")

    # stored weights that the recorded training does not reproduce are not given a recording
    other = parse_scenario("class:2", ds, seed=1)
    _, k3 = _get(pool, other, "original", seed=1)
    weights = pool.files(k3)[0]
    state = load_state_dict(weights)
    save_file({k: (v + 1.0 if v.is_floating_point() else v).contiguous() for k, v in state.items()}, str(weights))
    with pytest.raises(IncompatibleModelError, match="not reproducible"):
        pool.get_or_train(other, "original", model="mlp", recipe=RECIPE, seed=1, device="cpu", record=True)
    assert not pool.has_recording(k3)


def test_record_if_training_records_without_loading(tmp_path):
    ds = toy_dataset()
    sc = parse_scenario("class:1", ds, seed=0)
    pool = ModelPool(tmp_path)
    out, key = pool.get_or_train(sc, "original", model="mlp", recipe=RECIPE, seed=0, device="cpu", record_if_training=True)
    assert pool.trained == 1 and pool.has_recording(key)
    loaded, _ = pool.get_or_train(sc, "original", model="mlp", recipe=RECIPE, seed=0, device="cpu", record=True)
    assert pool.trained == 1 and loaded.recording is not None


def test_shadow_models_are_trained_once_per_row_set(tmp_path):
    import numpy as np

    from obliviate.data import TrainingSet
    from obliviate.errors import InvalidConfigError

    ds = toy_dataset()
    rng = np.random.default_rng(0)
    halves = [rng.choice(len(ds.train), size=len(ds.train) // 2, replace=False) for _ in range(2)]
    pool = ModelPool(tmp_path)

    def shadow(rows, seed=0):
        return pool.get_or_train_on(ds, rows, model="mlp", recipe=RECIPE, seed=seed, device="cpu")

    a, ka = shadow(halves[0])
    b, kb = shadow(halves[1])
    assert ka != kb and pool.trained == 2
    assert a.training_set == TrainingSet.of(ds.name, halves[0]) and a.training_set.size == len(ds.train) // 2
    again, ka2 = shadow(halves[0][::-1])  # the same rows in another order: the same model
    assert ka2 == ka and pool.trained == 2 and _same(a.model, again.model)
    shadow(halves[0], seed=1)
    assert pool.trained == 3
    assert {e["kind"] for e in pool.entries()} == {"shadow"}
    # a shadow on exactly an original's rows is that original
    sc = parse_scenario("class:1", ds, seed=0)
    _, k_orig = shadow(sc.training_set.indices)
    assert k_orig == pool.key(sc, "original", "mlp", {}, RECIPE, 0)
    for bad in ([], [0, 0, 1], [len(ds.train)], [-1]):
        with pytest.raises(InvalidConfigError, match="distinct rows"):
            shadow(bad)
