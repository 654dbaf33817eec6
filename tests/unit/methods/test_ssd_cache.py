"""SSD/LFSSD: the importance over the full training data is computed once per (model, data,
settings) and reused from a bounded LRU cache (issue 4).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.errors import InvalidConfigError
from obliviate.methods.ssd import IMPORTANCE_CACHE, ImportanceCache, clear_importance_cache, data_fingerprint
from obliviate.testing import toy_dataset, toy_model, toy_scenario


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_importance_cache()
    yield
    clear_importance_cache()


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("name", ["ssd", "lfssd"])
def test_an_alpha_sweep_computes_the_full_importance_once_and_matches_recomputation(name):
    model, sc = toy_model(), toy_scenario()
    cached, fresh = [], []
    for alpha in (2.0, 5.0, 10.0):
        cached.append(ob.unlearn(model, sc, name, alpha=alpha, batch_size=16, device="cpu"))
        fresh.append(ob.unlearn(model, sc, name, alpha=alpha, batch_size=16, cache_importance=False, device="cpu"))
    assert [r.diagnostics["importance_cached"] for r in cached] == [0.0, 1.0, 1.0]
    assert "importance_cached" not in fresh[0].diagnostics
    assert IMPORTANCE_CACHE.info()["entries"] == 1
    for a, b in zip(cached, fresh, strict=True):
        assert _same(a.model, b.model)
    # the cost in passes shows the saved pass over D: only D_f is back-propagated on a hit
    n_train, n_forget = len(sc.train), len(sc.forget)
    assert cached[0].diagnostics["passes"] == pytest.approx((n_train + n_forget) / n_train)
    assert cached[1].diagnostics["passes"] == pytest.approx(n_forget / n_train)


def test_the_key_covers_model_weights_data_and_importance_settings():
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "ssd", batch_size=16, device="cpu")
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.head.bias.add_(1e-3)
    runs = [  # another class of the same training set first (a hit), then four misses (the LRU holds 4)
        ob.unlearn(model, ob.Scenario.classwise(toy_dataset(), forget_class=5), "ssd", batch_size=16, device="cpu"),
        ob.unlearn(other, sc, "ssd", batch_size=16, device="cpu"),  # other weights
        ob.unlearn(model, sc, "ssd", batch_size=8, device="cpu"),  # other importance batch size
        ob.unlearn(model, sc, "ssd", batch_size=16, per_sample=True, device="cpu"),  # per-sample importance
        ob.unlearn(model, sc, "lfssd", batch_size=16, device="cpu"),  # label-free loss
    ]
    assert [r.diagnostics["importance_cached"] for r in runs] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert IMPORTANCE_CACHE.info()["entries"] == 4


def test_a_changed_buffer_or_architecture_recomputes_but_an_equal_copy_hits():
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "ssd", batch_size=16, device="cpu")
    stats = copy.deepcopy(model)  # same weights, other BatchNorm running statistics (used in eval mode)
    with torch.no_grad():
        stats.body[1].running_mean.add_(0.5)
    gelu = copy.deepcopy(model)  # same state dict, another activation
    gelu.body[2] = torch.nn.GELU()
    runs = [
        ob.unlearn(copy.deepcopy(model), sc, "ssd", batch_size=16, device="cpu"),  # an equal copy: a hit
        ob.unlearn(stats, sc, "ssd", batch_size=16, device="cpu"),
        ob.unlearn(gelu, sc, "ssd", batch_size=16, device="cpu"),
    ]
    assert [r.diagnostics["importance_cached"] for r in runs] == [1.0, 0.0, 0.0]
    fresh = ob.unlearn(gelu, sc, "ssd", batch_size=16, cache_importance=False, device="cpu")
    assert _same(runs[2].model, fresh.model)  # the GELU model got its own importance


def test_changed_training_data_recomputes_and_reloaded_equal_data_hits():
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "ssd", batch_size=16, device="cpu")
    ds = toy_dataset()

    def rebuilt(inputs: torch.Tensor) -> ob.Scenario:
        data = ob.data.from_arrays(inputs, ds.train.targets, ds.test.inputs, ds.test.targets, name="toy_digits", num_classes=10)
        return ob.Scenario.classwise(data, forget_class=3, seed=0)

    reloaded = rebuilt(ds.train.inputs.clone())  # the same content in new objects
    assert reloaded.dataset.train is not sc.dataset.train
    inputs = ds.train.inputs.clone()
    inputs[0, 0, 4, 4] = inputs[0, 0, 4, 4] + 1  # one pixel of one training image
    changed = rebuilt(inputs)
    np.testing.assert_array_equal(changed.forget_idx, sc.forget_idx)  # the same request on other data
    other_split = ob.Scenario.classwise(ds, forget_class=3, seed=0, val_seed=1)  # another validation draw: another D
    runs = [ob.unlearn(model, s, "ssd", batch_size=16, device="cpu") for s in (reloaded, changed, other_split)]
    assert [r.diagnostics["importance_cached"] for r in runs] == [1.0, 0.0, 0.0]


def test_data_fingerprint_follows_content_positions_and_labels():
    a, b = ob.load_dataset("digits"), ob.load_dataset("digits")
    assert a.train is not b.train and data_fingerprint(a.train) == data_fingerprint(b.train)
    sub = ob.data.Subset(a.train, np.arange(10))
    assert data_fingerprint(sub) == data_fingerprint(ob.data.Subset(b.train, np.arange(10)))
    assert data_fingerprint(sub) != data_fingerprint(ob.data.Subset(a.train, np.arange(1, 11)))
    relabelled = ob.data.Relabeled(sub, np.zeros(10, np.int64))
    assert data_fingerprint(relabelled) != data_fingerprint(sub)
    coarse = ob.load_dataset("digits_coarse")  # same images, other labels
    assert data_fingerprint(coarse.train) != data_fingerprint(a.train)
    changed = ob.data.ArrayDataset(a.train.inputs.clone(), a.train.targets)
    changed.inputs[0, 0, 0, 0] += 1.0
    assert data_fingerprint(changed) != data_fingerprint(a.train)


def test_data_without_an_in_memory_base_is_identified_by_the_object():
    tensors = torch.utils.data.TensorDataset(torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
    wrapped = ob.data.LabeledDataset(tensors, [0, 1, 0, 1])
    again = ob.data.LabeledDataset(tensors, [0, 1, 0, 1])
    assert data_fingerprint(wrapped) == data_fingerprint(wrapped)
    assert data_fingerprint(wrapped) != data_fingerprint(again)


def test_the_cache_is_a_bounded_lru_and_can_be_cleared():
    cache = ImportanceCache(max_entries=2)
    value = {"w": torch.zeros(1)}
    cache.put(("a",), value)
    cache.put(("b",), value)
    assert cache.get(("a",)) is value  # "a" is now the most recently used
    cache.put(("c",), value)
    assert cache.get(("b",)) is None and cache.get(("a",)) is value and cache.get(("c",)) is value
    assert cache.info() == {"entries": 2, "max_entries": 2, "bytes": 8, "max_bytes": 2 * 2**30, "hits": 3, "misses": 1}
    cache.max_entries = 1
    assert len(cache) == 1 and cache.get(("c",)) is value
    cache.max_entries = 0
    cache.put(("d",), value)
    assert len(cache) == 0
    cache.max_entries = 3
    cache.put(("e",), value)
    cache.clear()
    assert len(cache) == 0 and cache.info()["hits"] == 0
    with pytest.raises(InvalidConfigError, match="max_entries"):
        cache.max_entries = -1


def test_the_cache_is_bounded_in_bytes():
    cache = ImportanceCache(max_entries=10, max_bytes=100)
    small, large = {"w": torch.zeros(10)}, (torch.zeros(30),)  # 40 and 120 bytes
    cache.put(("a",), small)
    cache.put(("b",), small)
    assert cache.nbytes == 80
    cache.put(("c",), small)  # 120 > 100: the least recently used goes
    assert cache.get(("a",)) is None and cache.get(("b",)) is small and cache.nbytes == 80
    cache.put(("big",), large)  # larger than the whole bound: not kept, nothing evicted for it
    assert cache.get(("big",)) is None and len(cache) == 2


def test_a_cached_importance_is_never_changed_by_dampening():
    model, sc = toy_model(), toy_scenario()
    ob.unlearn(model, sc, "ssd", alpha=1.0, batch_size=16, device="cpu")
    (key,) = list(IMPORTANCE_CACHE._entries)
    stored = {k: v.clone() for k, v in IMPORTANCE_CACHE._entries[key].items()}
    ob.unlearn(model, sc, "ssd", alpha=1.0, dampening=0.5, batch_size=16, device="cpu")
    assert all(torch.equal(stored[k], v) for k, v in IMPORTANCE_CACHE._entries[key].items())
