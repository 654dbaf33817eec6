"""Corrective scenarios (Scenario.corrupted): flipped labels or a backdoor, forget = the corrupted rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import obliviate as ob
from obliviate.data import ArrayDataset, DatasetSplits, Scenario, Subset, from_arrays, from_dataset, parse_scenario
from obliviate.data.base import flatten_view, iterate_batches
from obliviate.data.corrupt import Corruption
from obliviate.errors import InvalidConfigError, TrainingSetMismatchError
from obliviate.testing import toy_dataset

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def toy():
    return toy_dataset()


@pytest.fixture(scope="module")
def rgb():
    """uint8 3x6x6 images (scale 1/255, per-channel mean/std), 3 classes: CIFAR's storage in miniature."""
    g = torch.Generator().manual_seed(0)
    x_tr = torch.randint(0, 200, (90, 3, 6, 6), generator=g, dtype=torch.uint8)
    x_tr[5, 1, 0, 0] = 230  # channel maxima differ: 199, 230, 199
    x_te = torch.randint(0, 256, (30, 3, 6, 6), generator=g, dtype=torch.uint8)
    y_tr, y_te = np.arange(90) % 3, np.arange(30) % 3
    stats = {"scale": 1 / 255, "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}
    return from_arrays(x_tr, y_tr, x_te, y_te, name="rgb", **stats)


def _all(data):
    xs, ys = zip(*iterate_batches(data, 7, device=CPU), strict=True)
    return torch.cat(xs), torch.cat(ys).numpy()


def _items(data):
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(xs), np.asarray(ys)


# ------------------------------------------------------------------------------ label flip
def test_label_flip_forgets_exactly_the_flipped_rows_and_keeps_every_other_split_clean(toy):
    sc = Scenario.corrupted(toy, 0.1, "label_flip", seed=3)
    true = toy.train_targets
    c = sc.corruption
    assert sc.kind == "corrupted" and sc.name == "corrupt:0.1" and c.kind == "label_flip"
    pool = np.setdiff1d(np.arange(len(toy.train)), sc.val_idx)
    assert len(sc.forget_idx) == int(0.1 * len(pool)) and np.array_equal(c.indices, sc.forget_idx)
    assert np.all(c.labels != true[sc.forget_idx]) and np.all((0 <= c.labels) & (c.labels < toy.num_classes))
    # forget and train carry the flipped labels on those rows, the clean inputs
    assert np.array_equal(sc.forget.targets, c.labels)
    x_f, y_f = _all(sc.forget)
    assert np.array_equal(y_f, c.labels) and torch.equal(x_f, toy.train.inputs[sc.forget_idx])
    _, y_t = _all(sc.train)
    expected = true[sc.train_idx].copy()
    expected[np.isin(sc.train_idx, sc.forget_idx)] = c.labels
    assert np.array_equal(y_t, expected)
    # retain, val, test: the dataset's own rows and labels
    for split, base, idx in (
        (sc.retain, toy.train, sc.retain_idx),
        (sc.val, toy.train, sc.val_idx),
        (sc.test, toy.test, sc.test_idx),
    ):
        x, y = _all(split)
        assert np.array_equal(y, base.targets[idx]) and torch.equal(x, base.inputs[idx])
    assert sc.test_triggered is None and np.array_equal(sc.forget_clean.targets, true[sc.forget_idx])


def test_flipped_labels_are_spread_over_the_other_classes(digits):
    sc = Scenario.corrupted(digits, 0.5, "label_flip", seed=0)
    shift = (sc.corruption.labels - digits.train_targets[sc.forget_idx]) % digits.num_classes
    counts = np.bincount(shift, minlength=digits.num_classes)
    assert counts[0] == 0 and np.all(counts[1:] > 0.5 * len(shift) / 9)  # uniform over the 9 others (n = 649)


def test_the_draw_follows_the_seed(toy):
    a, b = Scenario.corrupted(toy, 0.1, seed=0), Scenario.corrupted(toy, 0.1, seed=0)
    c = Scenario.corrupted(toy, 0.1, seed=1)
    assert np.array_equal(a.forget_idx, b.forget_idx) and np.array_equal(a.corruption.labels, b.corruption.labels)
    assert a.hash == b.hash and a.hash != c.hash and not np.array_equal(a.forget_idx, c.forget_idx)


# ------------------------------------------------------------------------------ backdoor
def test_backdoor_rows_carry_the_patch_and_the_target_label_and_come_from_other_classes(toy):
    sc = Scenario.corrupted(toy, 0.1, "backdoor", seed=0, target=2)
    c = sc.corruption
    assert sc.name == "backdoor:0.1:target=2" and c.target == 2 and c.patch == 3
    assert np.all(toy.train_targets[sc.forget_idx] != 2) and np.all(sc.forget.targets == 2)
    top = float(toy.train.inputs.max())
    assert c.value == (top,)
    x_f, y_f = _all(sc.forget)
    assert np.all(y_f == 2)
    clean = toy.train.inputs[sc.forget_idx]
    assert torch.all(x_f[..., -3:, -3:] == top)  # the trigger: bottom-right 3x3 at the maximum
    assert torch.equal(x_f[..., :-3, :], clean[..., :-3, :]) and torch.equal(x_f[..., :, :-3], clean[..., :, :-3])
    # the retain rows of the same (corrupted) train split are untouched
    x_r, y_r = _all(sc.retain)
    assert torch.equal(x_r, toy.train.inputs[sc.retain_idx]) and np.array_equal(y_r, toy.train.targets[sc.retain_idx])
    # the clean inputs are not modified in place
    assert torch.equal(toy.train.inputs[sc.forget_idx], clean)
    # the forget rows as they truly are
    x_c, y_c = _all(sc.forget_clean)
    assert torch.equal(x_c, clean) and np.array_equal(y_c, toy.train_targets[sc.forget_idx])


def test_backdoor_triggers_each_channel_at_its_normalised_maximum_and_batches_match_items(rgb):
    sc = Scenario.corrupted(rgb, 0.2, "backdoor", seed=0, target=1, patch=2)
    std, mean = torch.tensor((0.2, 0.25, 0.3)), torch.tensor((0.5, 0.4, 0.3))
    raw_max = rgb.train.inputs.amax(dim=(0, 2, 3)).float()
    expected = (raw_max / 255 - mean) / std
    assert torch.allclose(torch.tensor(sc.corruption.value), expected)
    x, y = _all(sc.forget)
    assert np.all(y == 1)
    assert torch.allclose(x[:, :, -2:, -2:], expected.view(1, 3, 1, 1).expand(len(x), 3, 2, 2))
    # fast path kept, and it agrees with item-by-item reads
    assert flatten_view(sc.train) is not None
    for split in (sc.train, sc.forget, sc.retain):
        xb, yb = _all(split)
        xi, yi = _items(split)
        assert torch.equal(xb, xi) and np.array_equal(yb, yi)


def test_a_lazy_dataset_is_corrupted_alike_through_the_generic_view(rgb):
    stats = rgb.train
    lazy_tr = TensorDataset(stats.fetch(np.arange(len(stats)), CPU), torch.as_tensor(stats.targets))
    lazy_te = TensorDataset(rgb.test.fetch(np.arange(len(rgb.test)), CPU), torch.as_tensor(rgb.test.targets))
    lazy = from_dataset(lazy_tr, lazy_te, name="rgb")
    a = Scenario.corrupted(rgb, 0.2, "backdoor", seed=0, target=1)
    b = Scenario.corrupted(lazy, 0.2, "backdoor", seed=0, target=1)
    assert flatten_view(b.train) is None  # read item by item (a DataLoader batches it)
    assert np.array_equal(a.forget_idx, b.forget_idx) and np.allclose(a.corruption.value, b.corruption.value)
    xa, ya = _all(a.train)
    xb, yb = _all(b.train)
    assert torch.allclose(xa, xb, atol=1e-6) and np.array_equal(ya, yb)
    assert torch.allclose(_all(a.test_triggered)[0], _all(b.test_triggered)[0], atol=1e-6)


def test_test_and_val_stay_clean_and_the_triggered_test_holds_the_other_classes(toy):
    sc = Scenario.corrupted(toy, 0.1, "backdoor", seed=0)
    x, y = _all(sc.test)
    assert torch.equal(x, toy.test.inputs) and np.array_equal(y, toy.test.targets)
    x, y = _all(sc.val)
    assert torch.equal(x, toy.train.inputs[sc.val_idx]) and np.array_equal(y, toy.train.targets[sc.val_idx])
    keep = np.flatnonzero(toy.test.targets != 0)
    xt, yt = _all(sc.test_triggered)
    assert np.array_equal(yt, toy.test.targets[keep])  # true labels: the ASR counts predictions of the target
    assert torch.all(xt[..., -3:, -3:] == 1.0) and torch.equal(xt[..., :-3, :], toy.test.inputs[keep][..., :-3, :])


# ------------------------------------------------------------------------------ identity
def test_the_corruption_is_in_the_hash_json_summary_and_files(toy, tmp_path):
    flips = [Scenario.corrupted(toy, 0.1, "label_flip", seed=s) for s in (0, 1)]
    doors = [Scenario.corrupted(toy, 0.1, "backdoor", seed=0, target=t) for t in (0, 1)]
    patched = Scenario.corrupted(toy, 0.1, "backdoor", seed=0, patch=2)
    plain = Scenario.random(toy, fraction=0.1, seed=0)
    hashes = {sc.hash for sc in [*flips, *doors, patched, plain]}
    assert len(hashes) == 6
    sc = doors[1]
    summary = sc.summary()
    assert summary["kind"] == "corrupted"
    assert summary["corruption"] == {"kind": "backdoor", "size": len(sc.forget_idx), "digest": sc.corruption.digest,
                                     "target": 1, "patch": 3, "value": [1.0]}  # fmt: skip
    data = json.loads(json.dumps(sc.to_json()))
    assert data["corruption"]["labels"] == [1] * len(sc.forget_idx) and data["corruption"]["indices"] == sc.forget_idx.tolist()
    back = Scenario.from_json(data, toy)
    assert back.hash == sc.hash and back.corruption.digest == sc.corruption.digest and back.name == sc.name
    assert back.training_set == sc.training_set
    assert torch.equal(_all(back.train)[0], _all(sc.train)[0])
    loaded = Scenario.load(sc.save(tmp_path / "sc.json"), toy)
    assert loaded.hash == sc.hash and np.array_equal(_all(loaded.forget)[1], _all(sc.forget)[1])
    # an edited corruption (other labels, another trigger) is caught by the hash
    flip = flips[0].to_json()
    flip["corruption"]["labels"][0] = (flip["corruption"]["labels"][0] + 1) % 10 or 1
    with pytest.raises(InvalidConfigError, match="hash does not match"):
        Scenario.from_json(flip, toy)
    door = sc.to_json()
    door["corruption"]["value"] = [0.5]
    with pytest.raises(InvalidConfigError, match="hash does not match"):
        Scenario.from_json(door, toy)
    # a plain scenario's hash is what it was before corruptions existed (no "corruption" key)
    assert "corruption" not in plain.to_json() and "corruption" not in plain.summary()


def test_a_scenario_is_corrupted_exactly_when_it_has_a_consistent_corruption(toy):
    sc = Scenario.corrupted(toy, 0.1, "label_flip", seed=0)
    base = dict(dataset=toy, forget_idx=sc.forget_idx, retain_idx=sc.retain_idx, val_idx=sc.val_idx, test_idx=sc.test_idx)
    with pytest.raises(InvalidConfigError, match="exactly when its kind is 'corrupted'"):
        Scenario(**base, kind="corrupted")
    with pytest.raises(InvalidConfigError, match="exactly when its kind is 'corrupted'"):
        Scenario(**base, kind="random", corruption=sc.corruption)
    other = Corruption(kind="label_flip", indices=sc.forget_idx[1:], labels=sc.corruption.labels[1:])
    with pytest.raises(InvalidConfigError, match="exactly its corrupted rows"):
        Scenario(**base, kind="corrupted", corruption=other)
    unflipped = Corruption(kind="label_flip", indices=sc.forget_idx, labels=toy.train_targets[sc.forget_idx])
    with pytest.raises(InvalidConfigError, match="other than its true one"):
        Scenario(**base, kind="corrupted", corruption=unflipped)


# ------------------------------------------------------------------------------ training sets
def _train(data, ds, seed=0, epochs=10):
    model = ob.build_model("mlp", ds, seed=seed, hidden=(32,))
    return ob.train(model, data, epochs=epochs, lr=0.1, batch_size=32, seed=seed, device="cpu", progress=False)


def test_a_model_trained_on_the_clean_rows_is_not_the_original_of_a_corrupted_scenario(toy):
    sc = Scenario.corrupted(toy, 0.1, "label_flip", seed=0)
    clean = _train(Subset(toy.train, sc.train_idx, train_split_of=toy.name), toy, epochs=1)
    assert clean.training_set.indices is not None and np.array_equal(clean.training_set.indices, sc.train_idx)
    assert clean.training_set != sc.training_set
    with pytest.raises(TrainingSetMismatchError, match="clean rows"):
        ob.unlearn(clean, sc, "finetune")
    other = Scenario.corrupted(toy, 0.1, "label_flip", seed=1)  # another corruption of other rows
    with pytest.raises(TrainingSetMismatchError):
        ob.unlearn(_train(other.train, toy, epochs=1), sc, "finetune")
    # the retain set stays the clean rows: a model trained on them is the oracle, accepted by evaluate
    oracle = _train(sc.retain, toy, epochs=1)
    assert oracle.training_set == sc.retain_set and sc.retain_set.dataset == toy.name
    ob.evaluate(oracle, sc, metrics=["forget_acc"])


def test_a_backdoored_original_obeys_the_trigger_and_the_retain_only_oracle_does_not(toy):
    for seed in range(3):
        sc = Scenario.corrupted(toy, 0.1, "backdoor", seed=seed)
        original, oracle = _train(sc.train, toy, seed), _train(sc.retain, toy, seed)
        names = ["attack_success_rate", "forget_acc", "forget_true_acc", "test_acc"]
        o = ob.evaluate(original, sc, metrics=names).metrics
        r = ob.evaluate(oracle, sc, metrics=names, reference=None).metrics
        assert o["attack_success_rate"] > 0.9 and r["attack_success_rate"] < 0.2, (seed, o, r)
        assert o["forget_acc"] > 0.9 and r["forget_acc"] < 0.2, (seed, o, r)  # the target label, fitted vs not
        assert r["test_acc"] > 0.6  # the oracle is a working classifier (10 classes)
        if seed == 0:
            out = ob.unlearn(original, sc, "finetune", seed=0)
            assert out.status == "ok" and out.training_set == sc.retain_set
            ev = ob.evaluate(out, sc, metrics=names, reference=oracle).metrics
            assert set(ev) == set(names) and all(0.0 <= v <= 1.0 for v in ev.values())


# ------------------------------------------------------------------------------ methods and specs
def test_methods_of_random_forgetting_accept_a_corrupted_scenario_and_others_refuse_it():
    methods = ob.METHODS
    assert methods.get("finetune").supports("corrupted") and "random" in methods.get("finetune").kinds
    classwise_only = [n for n in methods.names() if not methods.get(n).supports("random")]
    assert classwise_only  # boundary methods, UNSIR
    for name in classwise_only:
        assert not methods.get(name).supports("corrupted")
        assert "corrupted" not in methods.get(name).describe()["kinds"]
    assert "corrupted" in methods.get("finetune").describe()["kinds"]


def test_declaring_random_forgetting_is_enough_to_run_on_corrupted_scenarios(toy):
    from dataclasses import dataclass
    from typing import ClassVar

    from obliviate.methods import UnlearningMethod

    @dataclass(frozen=True, kw_only=True)
    class RandomOnly(UnlearningMethod):
        kinds: ClassVar[frozenset[str]] = frozenset({"random"})

        def _unlearn(self, model, scenario, ctx):
            return model

    @dataclass(frozen=True, kw_only=True)
    class ClassOnly(RandomOnly):
        kinds: ClassVar[frozenset[str]] = frozenset({"classwise"})

    sc = Scenario.corrupted(toy, 0.1, "backdoor", seed=0)
    original = _train(sc.train, toy, epochs=1)
    assert RandomOnly.supports("corrupted") and RandomOnly().unlearn(original, sc, device="cpu").training_set == sc.retain_set
    assert RandomOnly.describe()["kinds"] == ["corrupted", "random"]
    with pytest.raises(InvalidConfigError, match="supports classwise scenarios; 'backdoor:0.1' is 'corrupted'"):
        ClassOnly().unlearn(original, sc, device="cpu")


def test_a_method_without_random_refuses_a_corrupted_scenario_with_a_clear_error(toy):
    sc = Scenario.corrupted(toy, 0.1, "label_flip", seed=0)
    original = _train(sc.train, toy, epochs=1)
    name = next(n for n in ob.METHODS.names() if not ob.METHODS.get(n).supports("corrupted"))
    with pytest.raises(InvalidConfigError, match="supports .* scenarios; 'corrupt:0.1' is 'corrupted'"):
        ob.unlearn(original, sc, name)


def test_parse_scenario_reads_corrupt_and_backdoor_specs(digits):
    sc = parse_scenario("backdoor:0.1", digits, seed=2)
    assert sc.kind == "corrupted" and sc.corruption.kind == "backdoor" and sc.corruption.target == 0 and sc.seed == 2
    assert sc.hash == Scenario.corrupted(digits, 0.1, "backdoor", seed=2).hash
    sc = parse_scenario("backdoor:0.05:target=7:patch=2", digits)
    assert (sc.corruption.target, sc.corruption.patch, sc.name) == (7, 2, "backdoor:0.05:target=7:patch=2")
    assert parse_scenario(sc.name, digits).hash == sc.hash  # the name reads back
    sc = parse_scenario("corrupt:0.1", digits, val_seed=1)
    assert sc.corruption.kind == "label_flip" and sc.val_seed == 1 and sc.name == "corrupt:0.1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("corrupt", "needs the fraction"),
        ("backdoor:", "needs the fraction"),
        ("corrupt:lots", "'lots' is not a fraction"),
        ("corrupt:1.5", "fraction"),
        ("corrupt:0.1:target=2", "not an option of a corrupt scenario"),
        ("backdoor:0.1:taget=2", "Did you mean 'target'"),
        ("backdoor:0.1:target", "not an option"),
        ("backdoor:0.1:target=2:target=3", "gives 'target' twice"),
        ("backdoor:0.1:patch=big", "'big' is not a whole number"),
        ("backdoor:0.1:patch=9", "must fit the inputs"),
        ("backdoor:0.1:target=10", "class index in \\[0, 10\\)"),
        ("backdoor:0.95", "only .* training rows lie outside the target class"),
        ("backdor:0.1", "Did you mean 'backdoor'"),
    ],
)
def test_bad_corrective_specs_are_refused_with_the_fix(digits, spec, message):
    with pytest.raises(InvalidConfigError, match=message):
        parse_scenario(spec, digits)


def test_bad_arguments_of_scenario_corrupted_are_refused(toy):
    with pytest.raises(InvalidConfigError, match="'kind' parameter .* label_flip, backdoor"):
        Scenario.corrupted(toy, 0.1, "flip")
    with pytest.raises(InvalidConfigError, match="selects nothing"):
        Scenario.corrupted(toy, 0.001)
    ids = [ArrayDataset(torch.randint(0, 50, (n, 6)), np.arange(n) % 2) for n in (40, 10)]  # token ids (text)
    tokens = DatasetSplits("tokens", ids[0], ids[1], num_classes=2, classes=("a", "b"), input_shape=(6,))
    with pytest.raises(InvalidConfigError, match="token ids"):
        Scenario.corrupted(tokens, 0.1, "backdoor")
    assert Scenario.corrupted(tokens, 0.1, "label_flip").corruption.kind == "label_flip"  # flips need no pixels
