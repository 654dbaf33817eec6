"""Scenarios: explicit, sorted, disjoint index arrays; their views, JSON files and short names."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from obliviate.data import Scenario, from_arrays, load_dataset, parse_scenario, validation_split
from obliviate.errors import InvalidConfigError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def tiny_fine():
    """4 sub-classes in 2 super-classes (fine f -> coarse f // 2); 20 train / 5 test per sub-class."""
    rng = np.random.default_rng(0)
    fine_tr = np.repeat(np.arange(4), 20)[rng.permutation(80)]
    fine_te = np.repeat(np.arange(4), 5)[rng.permutation(20)]
    return from_arrays(
        rng.random((80, 3), dtype=np.float32),
        fine_tr // 2,
        rng.random((20, 3), dtype=np.float32),
        fine_te // 2,
        name="tiny_fine",
        classes=["animal", "vehicle"],
        train_fine=fine_tr,
        test_fine=fine_te,
        fine_classes=["cat", "dog", "car", "rocket"],
    )


def _expected_val_sizes(targets: np.ndarray, fraction: float = 0.1) -> dict[int, int]:
    return {int(c): int(fraction * int(np.sum(targets == c))) for c in np.unique(targets)}


def check_invariants(sc: Scenario) -> None:
    ds = sc.dataset
    n_train, n_test = len(ds.train), len(ds.test)
    arrays = {"forget": sc.forget_idx, "retain": sc.retain_idx, "val": sc.val_idx, "test": sc.test_idx}
    for name, a in arrays.items():
        assert isinstance(a, np.ndarray) and a.dtype == np.int64 and a.ndim == 1, name
        assert np.all(np.diff(a) > 0), f"{name} not strictly increasing"
    f, r, v = arrays["forget"], arrays["retain"], arrays["val"]
    assert len(np.intersect1d(f, r)) == len(np.intersect1d(f, v)) == len(np.intersect1d(r, v)) == 0
    assert np.array_equal(np.sort(np.concatenate([f, r, v])), np.arange(n_train))
    assert np.array_equal(sc.test_idx, np.arange(n_test))
    assert np.array_equal(sc.train_idx, np.sort(np.concatenate([f, r])))
    # val: int(0.1 * n_c) of each class
    targets = ds.train_targets
    counts = {int(c): int(np.sum(targets[v] == c)) for c in np.unique(targets)}
    assert counts == _expected_val_sizes(targets, sc.params.get("val_fraction", 0.1))
    # the views hold exactly those samples
    assert sc.sizes() == {"forget": len(f), "retain": len(r), "val": len(v), "train": len(f) + len(r), "test": n_test}
    assert np.array_equal(sc.forget.targets, targets[f])
    assert np.array_equal(sc.retain.targets, targets[r])
    assert np.array_equal(sc.train.targets, targets[sc.train_idx])


def _pool_size(ds) -> int:
    return len(ds.train) - sum(_expected_val_sizes(ds.train_targets).values())


# ------------------------------------------------------------------------------ validation


def test_validation_split_takes_a_tenth_of_each_class_and_depends_on_its_seed(digits):
    v0 = validation_split(digits, seed=0)
    assert v0.dtype == np.int64 and np.all(np.diff(v0) > 0)
    t = digits.train_targets
    assert {int(c): int(np.sum(t[v0] == c)) for c in range(10)} == _expected_val_sizes(t)
    assert len(v0) == 139
    assert np.array_equal(validation_split(digits, seed=0), v0)
    assert not np.array_equal(validation_split(digits, seed=1), v0)
    assert len(validation_split(digits, fraction=0.0)) == 0
    with pytest.raises(InvalidConfigError, match="fraction"):
        validation_split(digits, fraction=1.0)


# ------------------------------------------------------------------------------ random


def test_random_by_fraction(digits):
    sc = Scenario.random(digits, fraction=0.1, seed=0)
    check_invariants(sc)
    pool = _pool_size(digits)
    assert pool == 1437 - 139
    assert len(sc.forget_idx) == int(0.1 * pool) == 129
    assert sc.kind == "random" and sc.name == "random:0.1"
    assert sc.seed == 0 and sc.val_seed == 0
    assert sc.test_forget is None and len(sc.test_retain) == len(digits.test)


@pytest.mark.parametrize("fraction", [0.05, 0.33, 0.5, 0.9])
def test_random_fraction_refers_to_train_minus_val(digits, fraction):
    sc = Scenario.random(digits, fraction=fraction, seed=3)
    check_invariants(sc)
    assert len(sc.forget_idx) == int(fraction * _pool_size(digits))
    assert sc.name == f"random:{fraction:g}"


def test_random_by_count(digits):
    sc = Scenario.random(digits, count=50, seed=2)
    check_invariants(sc)
    assert len(sc.forget_idx) == 50 and sc.name == "random:n=50"
    assert sc.params["count"] == 50


def test_random_same_seed_same_indices_other_seed_other_indices(digits):
    a = Scenario.random(digits, fraction=0.2, seed=7)
    b = Scenario.random(digits, fraction=0.2, seed=7)
    for attr in ("forget_idx", "retain_idx", "val_idx", "test_idx"):
        assert np.array_equal(getattr(a, attr), getattr(b, attr))
    assert a.hash == b.hash
    c = Scenario.random(digits, fraction=0.2, seed=8)
    assert not np.array_equal(a.forget_idx, c.forget_idx)
    np.testing.assert_array_equal(a.val_idx, c.val_idx)  # val_seed defaults to 0, whatever the forget seed


def test_val_depends_only_on_val_seed(digits):
    a = Scenario.random(digits, fraction=0.1, seed=1, val_seed=5)
    b = Scenario.random(digits, fraction=0.1, seed=2, val_seed=5)
    c = Scenario.classwise(digits, forget_class=4, seed=9, val_seed=5)
    assert a.val_seed == b.val_seed == 5
    assert np.array_equal(a.val_idx, b.val_idx) and np.array_equal(a.val_idx, c.val_idx)
    assert np.array_equal(a.val_idx, validation_split(digits, seed=5))
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.train_idx, c.train_idx)
    assert not np.array_equal(a.forget_idx, b.forget_idx)


def test_random_val_fraction_is_honoured(digits):
    sc = Scenario.random(digits, fraction=0.1, val_fraction=0.2)
    assert len(sc.val_idx) == sum(_expected_val_sizes(digits.train_targets, 0.2).values())
    check_invariants(sc)
    none = Scenario.random(digits, count=10, val_fraction=0.0)
    assert len(none.val_idx) == 0 and len(none.retain_idx) == 1427


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, 0.0, 1.0, float("nan"), "0.1", True])
def test_random_rejects_bad_fractions(digits, fraction):
    with pytest.raises(InvalidConfigError, match="'fraction'"):
        Scenario.random(digits, fraction=fraction)


def test_random_rejects_a_fraction_that_selects_nothing(digits):
    with pytest.raises(InvalidConfigError, match="fraction"):
        Scenario.random(digits, fraction=1e-4)


@pytest.mark.parametrize("count", [0, -3, 2.5, 1298])
def test_random_rejects_bad_counts(digits, count):
    with pytest.raises(InvalidConfigError, match="'count'"):
        Scenario.random(digits, count=count)


@pytest.mark.parametrize("kwargs", [{}, {"fraction": 0.1, "count": 10}])
def test_random_needs_exactly_one_of_fraction_or_count(digits, kwargs):
    with pytest.raises(InvalidConfigError) as info:
        Scenario.random(digits, **kwargs)
    assert "fraction" in str(info.value) and "count" in str(info.value)


@pytest.mark.parametrize(
    ("build", "param"),
    [
        (lambda ds: Scenario.random(ds, fraction=0.1, seed=-1), "'seed'"),
        (lambda ds: Scenario.random(ds, fraction=0.1, val_seed=-2), "'seed'"),
        (lambda ds: Scenario.random(ds, fraction=0.1, seed=1.5), "'seed'"),
        (lambda ds: Scenario.classwise(ds, forget_class=1, seed=-1), "'seed'"),
        (lambda ds: Scenario.from_indices(ds, [0], seed=-1), "'seed'"),
        (lambda ds: Scenario.random(ds, fraction=0.1, val_fraction=1.0), "'fraction'"),
    ],
)
def test_bad_seeds_are_rejected(digits, build, param):
    with pytest.raises(InvalidConfigError, match=param):
        build(digits)


# ------------------------------------------------------------------------------ classwise


def test_classwise_forgets_the_whole_class_outside_val(digits):
    sc = Scenario.classwise(digits, forget_class=3, seed=0)
    check_invariants(sc)
    t = digits.train_targets
    members = np.flatnonzero(t == 3)
    assert np.array_equal(sc.forget_idx, np.setdiff1d(members, sc.val_idx))
    assert len(sc.forget_idx) == len(members) - int(0.1 * len(members))
    assert not np.any(t[sc.retain_idx] == 3)
    assert sc.kind == "classwise" and sc.name == "class:3"
    assert sc.params["forget_class"] == 3


def test_classwise_test_splits(digits):
    sc = Scenario.classwise(digits, forget_class=3, seed=0)
    tt = digits.test_targets
    assert np.all(sc.test_forget.targets == 3)
    assert len(sc.test_forget) == int(np.sum(tt == 3))
    assert not np.any(sc.test_retain.targets == 3)
    assert len(sc.test_retain) + len(sc.test_forget) == len(digits.test)
    assert np.array_equal(np.sort(np.concatenate([sc.test_forget.indices, sc.test_retain.indices])), np.arange(len(digits.test)))
    assert len(sc.test) == len(digits.test)


def test_classwise_by_name_and_by_digit_string(tiny_fine, digits):
    by_name = Scenario.classwise(tiny_fine, forget_class="vehicle")
    by_index = Scenario.classwise(tiny_fine, forget_class=1)
    assert np.array_equal(by_name.forget_idx, by_index.forget_idx) and by_name.name == "class:1"
    assert np.array_equal(
        Scenario.classwise(digits, forget_class="3").forget_idx, Scenario.classwise(digits, forget_class=3).forget_idx
    )


def test_classwise_with_count(digits):
    a = Scenario.classwise(digits, forget_class=5, count=10, seed=0)
    check_invariants(a)
    assert len(a.forget_idx) == 10 and np.all(digits.train_targets[a.forget_idx] == 5)
    assert a.name == "class:5:n=10"
    # the rest of the class is retained
    assert np.sum(digits.train_targets[a.retain_idx] == 5) == np.sum(digits.train_targets[a.train_idx] == 5) - 10
    b = Scenario.classwise(digits, forget_class=5, count=10, seed=0)
    c = Scenario.classwise(digits, forget_class=5, count=10, seed=1, val_seed=0)
    assert np.array_equal(a.forget_idx, b.forget_idx)
    assert not np.array_equal(a.forget_idx, c.forget_idx)
    assert np.array_equal(a.val_idx, c.val_idx)
    with pytest.raises(InvalidConfigError, match="'count'"):
        Scenario.classwise(digits, forget_class=5, count=0)
    with pytest.raises(InvalidConfigError, match="'count'"):
        Scenario.classwise(digits, forget_class=5, count=10_000)


@pytest.mark.parametrize("forget_class", [10, -1, "10", 2.0, True, None])
def test_classwise_rejects_a_class_not_in_the_dataset(digits, forget_class):
    with pytest.raises(InvalidConfigError) as info:
        Scenario.classwise(digits, forget_class=forget_class)
    assert "'forget_class'" in str(info.value)
    assert "[0, 10)" in str(info.value)


def test_classwise_unknown_name_suggests_a_near_one(tiny_fine):
    with pytest.raises(InvalidConfigError) as info:
        Scenario.classwise(tiny_fine, forget_class="vehicel")
    msg = str(info.value)
    assert "'forget_class'" in msg and "'vehicel'" in msg and "'vehicle'" in msg


# ------------------------------------------------------------------------------ subclass


def test_subclass_forgets_the_fine_class_inside_its_superclass(tiny_fine):
    sc = Scenario.subclass(tiny_fine, fine_class=3, seed=0)
    check_invariants(sc)
    fine = tiny_fine.train_fine
    assert np.all(fine[sc.forget_idx] == 3)
    assert np.array_equal(sc.forget_idx, np.setdiff1d(np.flatnonzero(fine == 3), sc.val_idx))
    assert not np.any(fine[sc.retain_idx] == 3)
    # the forgotten samples keep their super-class label, and the super-class stays in retain
    assert np.all(sc.forget.targets == 1)
    assert np.any(tiny_fine.train_targets[sc.retain_idx] == 1)
    assert sc.kind == "subclass" and sc.name == "subclass:3"
    assert sc.params["fine_class"] == 3 and sc.params["superclass"] == 1
    # test splits follow the fine label
    tf = tiny_fine.test_fine
    assert np.array_equal(sc.test_forget.indices, np.flatnonzero(tf == 3))
    assert np.array_equal(sc.test_retain.indices, np.flatnonzero(tf != 3))
    assert np.all(sc.test_forget.targets == 1)
    # val is stratified by the (coarse) targets: 10 % of 40 per super-class
    assert len(sc.val_idx) == 8


def test_subclass_by_name_count_and_errors(tiny_fine, digits):
    by_name = Scenario.subclass(tiny_fine, fine_class="rocket")
    assert np.array_equal(by_name.forget_idx, Scenario.subclass(tiny_fine, fine_class=3).forget_idx)
    few = Scenario.subclass(tiny_fine, fine_class="cat", count=5, seed=1)
    check_invariants(few)
    assert len(few.forget_idx) == 5 and np.all(tiny_fine.train_fine[few.forget_idx] == 0)
    assert few.name == "subclass:0:n=5"
    with pytest.raises(InvalidConfigError) as info:
        Scenario.subclass(tiny_fine, fine_class="rockett")
    assert "'fine_class'" in str(info.value) and "'rocket'" in str(info.value)
    with pytest.raises(InvalidConfigError, match="'fine_class'"):
        Scenario.subclass(tiny_fine, fine_class=4)
    with pytest.raises(InvalidConfigError, match="sub-class labels"):
        Scenario.subclass(digits, fine_class=0)


# ------------------------------------------------------------------------------ from_indices


def test_from_indices_forgets_exactly_those(digits):
    val = validation_split(digits, seed=0)
    pool = np.setdiff1d(np.arange(1437), val)
    request = [int(pool[40]), int(pool[3]), int(pool[1000]), int(pool[7])]
    sc = Scenario.from_indices(digits, request)
    check_invariants(sc)
    assert sc.forget_idx.tolist() == sorted(request)
    assert sc.kind == "custom" and sc.name == "indices:n=4"
    assert np.array_equal(sc.val_idx, val)
    # numpy input of another integer type is fine
    same = Scenario.from_indices(digits, np.asarray(request, dtype=np.int32))
    assert np.array_equal(same.forget_idx, sc.forget_idx)


def test_from_indices_without_validation_split(digits):
    sc = Scenario.from_indices(digits, [0, 1436], val_fraction=0.0)
    check_invariants(sc)
    assert len(sc.val_idx) == 0 and sc.forget_idx.tolist() == [0, 1436] and len(sc.retain_idx) == 1435


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        ([], "empty"),
        (np.zeros(0, np.int64), "empty"),
        ([1437], r"\[0, 1437\)"),
        ([-1], r"\[0, 1437\)"),
        ([2, 5, 2], "duplicates"),
        ([1.0, 2.0], "integers"),
        (["3"], "integers"),
        ([[1, 2]], "1-D"),
    ],
)
def test_from_indices_rejects_bad_indices(digits, indices, match):
    with pytest.raises(InvalidConfigError, match=match) as info:
        Scenario.from_indices(digits, indices, val_fraction=0.0)
    assert "'forget_indices'" in str(info.value)


def test_from_indices_refuses_validation_samples(digits):
    val = validation_split(digits, seed=4)
    pool_sample = int(np.setdiff1d(np.arange(1437), val)[0])
    with pytest.raises(InvalidConfigError, match="validation split") as info:
        Scenario.from_indices(digits, [pool_sample, int(val[3])], seed=4)
    assert str(int(val[3])) in str(info.value)


def test_scenario_refuses_overlapping_splits(digits):
    sc = Scenario.random(digits, count=5)
    with pytest.raises(InvalidConfigError, match="disjoint"):
        Scenario(
            dataset=digits,
            forget_idx=sc.forget_idx,
            retain_idx=sc.retain_idx,
            val_idx=sc.forget_idx[:1],
            test_idx=sc.test_idx,
        )


def test_scenario_sorts_its_indices_so_the_same_rows_give_the_same_scenario(digits):
    """Index order carries no meaning: unsorted arrays give the sorted scenario, with the same hash."""
    sc = Scenario.random(digits, count=5)
    rng = np.random.default_rng(0)
    shuffled = Scenario(
        dataset=digits,
        forget_idx=rng.permutation(sc.forget_idx),
        retain_idx=rng.permutation(sc.retain_idx),
        val_idx=rng.permutation(sc.val_idx),
        test_idx=rng.permutation(sc.test_idx),
    )
    same = Scenario(dataset=digits, forget_idx=sc.forget_idx, retain_idx=sc.retain_idx, val_idx=sc.val_idx, test_idx=sc.test_idx)
    for attr in ("forget_idx", "retain_idx", "val_idx", "test_idx"):
        arr = getattr(shuffled, attr)
        assert np.array_equal(arr, np.sort(getattr(sc, attr))) and arr.dtype == np.int64
    assert np.array_equal(shuffled.retain.indices, same.retain.indices)
    assert shuffled.hash == same.hash


def test_split_by_name(digits):
    sc = Scenario.random(digits, count=5)
    assert sc.split("forget") is sc.forget and sc.split("test") is sc.test
    with pytest.raises(InvalidConfigError, match="'forget'"):
        sc.split("forgte")


# ------------------------------------------------------------------------------ JSON


@pytest.mark.parametrize(
    "build",
    [
        lambda ds, fine: Scenario.random(ds, fraction=0.1, seed=3),
        lambda ds, fine: Scenario.random(ds, count=20, seed=1, val_seed=2),
        lambda ds, fine: Scenario.classwise(ds, forget_class=3),
        lambda ds, fine: Scenario.from_indices(ds, [0, 5], val_fraction=0.0),
        lambda ds, fine: Scenario.subclass(fine, fine_class="rocket", count=4),
    ],
)
def test_json_round_trip(digits, tiny_fine, tmp_path, build):
    sc = build(digits, tiny_fine)
    path = sc.save(tmp_path / "scenario.json")
    data = json.loads(path.read_text())
    assert data["schema"] == "obliviate.scenario/1" and data["dataset"] == sc.dataset.name
    assert data["hash"] == sc.hash and len(sc.hash) == 64
    back = Scenario.load(path, sc.dataset)
    for attr in ("forget_idx", "retain_idx", "val_idx", "test_idx"):
        assert np.array_equal(getattr(back, attr), getattr(sc, attr)) and getattr(back, attr).dtype == np.int64
    assert back.hash == sc.hash
    assert (back.kind, back.name, back.seed, back.val_seed) == (sc.kind, sc.name, sc.seed, sc.val_seed)
    assert back.params == sc.params
    if sc.test_forget is not None:
        assert np.array_equal(back.test_forget.indices, sc.test_forget.indices)
        assert np.array_equal(back.test_retain.indices, sc.test_retain.indices)


def test_hash_covers_the_dataset_name_and_every_index(digits):
    sc = Scenario.random(digits, count=5)
    renamed = Scenario(
        dataset=dataclasses.replace(digits, name="digits2"),
        forget_idx=sc.forget_idx,
        retain_idx=sc.retain_idx,
        val_idx=sc.val_idx,
        test_idx=sc.test_idx,
    )
    assert renamed.hash != sc.hash
    moved = Scenario(
        dataset=digits,
        forget_idx=sc.forget_idx[1:],
        retain_idx=np.union1d(sc.retain_idx, sc.forget_idx[:1]),
        val_idx=sc.val_idx,
        test_idx=sc.test_idx,
    )
    assert moved.hash != sc.hash


@pytest.mark.parametrize("field", ["forget_idx", "retain_idx", "val_idx", "test_idx"])
def test_tampered_file_is_refused(digits, tmp_path, field):
    sc = Scenario.classwise(digits, forget_class=2)
    path = sc.save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    data[field] = data[field][:-1]  # drop one index
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidConfigError, match="hash"):
        Scenario.load(path, digits)


def test_changed_index_is_refused(digits, tmp_path):
    sc = Scenario.random(digits, count=30)
    path = sc.save(tmp_path / "s.json")
    data = json.loads(path.read_text())
    moved = data["forget_idx"][0]
    data["forget_idx"][0] = data["retain_idx"][0]  # swap one forget index with a retain index
    data["retain_idx"][0] = moved
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidConfigError, match="hash"):
        Scenario.load(path, digits)


def test_file_for_another_dataset_is_refused(digits, tmp_path):
    path = Scenario.classwise(digits, forget_class=2).save(tmp_path / "s.json")
    with pytest.raises(InvalidConfigError) as info:
        Scenario.load(path, dataclasses.replace(digits, name="mnist"))
    assert "'digits'" in str(info.value) and "'mnist'" in str(info.value)


@pytest.mark.parametrize("content", ['{"runs": []}', "[1, 2, 3]", '{"schema": "obliviate.results/1"}', "not json {", ""])
def test_non_scenario_file_is_refused(digits, tmp_path, content):
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(InvalidConfigError):
        Scenario.load(path, digits)


def test_missing_file_is_refused(digits, tmp_path):
    with pytest.raises(InvalidConfigError, match="Cannot read"):
        Scenario.load(tmp_path / "absent.json", digits)


def test_summary_is_the_run_record_block(digits):
    sc = Scenario.classwise(digits, forget_class=7, seed=2)
    s = sc.summary()
    assert s["name"] == "class:7" and s["kind"] == "classwise" and s["dataset"] == "digits"
    assert s["forget_size"] == len(sc.forget_idx) and s["seed"] == 2 and s["hash"] == sc.hash
    json.dumps(sc.to_json())  # JSON-ready


# ------------------------------------------------------------------------------ parse_scenario


def test_parse_scenario_builds_the_named_scenarios(digits, tiny_fine):
    a = parse_scenario("class:3", digits)
    assert a.kind == "classwise" and a.name == "class:3"
    assert np.array_equal(a.forget_idx, Scenario.classwise(digits, forget_class=3).forget_idx)
    b = parse_scenario("class:3:n=10", digits, seed=4)
    assert b.name == "class:3:n=10" and len(b.forget_idx) == 10 and b.seed == 4
    assert np.array_equal(b.forget_idx, Scenario.classwise(digits, forget_class=3, count=10, seed=4).forget_idx)
    c = parse_scenario("random:0.1", digits, seed=1, val_seed=0)
    assert c.name == "random:0.1" and c.val_seed == 0
    assert np.array_equal(c.forget_idx, Scenario.random(digits, fraction=0.1, seed=1, val_seed=0).forget_idx)
    d = parse_scenario("random:n=20", digits)
    assert d.name == "random:n=20" and len(d.forget_idx) == 20
    e = parse_scenario("subclass:rocket", tiny_fine)
    assert e.name == "subclass:3" and e.kind == "subclass"
    f = parse_scenario("class:3", digits, val_fraction=0.2)
    assert len(f.val_idx) == sum(_expected_val_sizes(digits.train_targets, 0.2).values())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("clss:3", "Did you mean 'class'"),
        ("randon:0.1", "Did you mean 'random'"),
        ("random:abc", "'abc' is not a fraction"),
        ("random:n=abc", "'abc' is not a whole number"),
        ("class:3:n=x", "'x' is not a whole number"),
        ("class:", "Unknown scenario"),
        ("class", "Unknown scenario"),
        ("random:", "Unknown scenario"),
        ("class:3:4", "Unknown scenario"),
        ("", "Unknown scenario"),
        ("random:1.5", "'fraction'"),
        ("random:0.1:n=5", "random:0.1:n=5"),  # a fraction and a count: not a documented form
        ("random:n=10:n=5", "random:n=10:n=5"),
        ("class:12", "'forget_class'"),
    ],
)
def test_parse_scenario_rejects_bad_specs(digits, spec, match):
    with pytest.raises(InvalidConfigError, match=match):
        parse_scenario(spec, digits)
