"""Dataset registry and loaders: embedded digits, torchvision wrappers (faked, never downloaded),
and the user-data constructors ``from_arrays`` / ``from_dataset``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import Dataset, TensorDataset

from obliviate.data import CIFAR100_COARSE, DATASETS, LabeledDataset, default_root, from_arrays, from_dataset, load_dataset
from obliviate.errors import (
    DatasetNotFoundError,
    InvalidConfigError,
    MissingDataError,
    UnknownNameError,
)

CPU = torch.device("cpu")

# The normalisation statistics the loaders must use (as written in the design of datasets.py).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}

# torchvision's CIFAR-100 fine class names, in label order.
CIFAR100_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road "
    "rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
    "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale "
    "willow_tree wolf woman worm"
).split()

# The official CIFAR-100 super-classes and their five members each.
SUPERCLASSES = {
    "aquatic_mammals": "beaver dolphin otter seal whale",
    "fish": "aquarium_fish flatfish ray shark trout",
    "flowers": "orchid poppy rose sunflower tulip",
    "food_containers": "bottle bowl can cup plate",
    "fruit_and_vegetables": "apple mushroom orange pear sweet_pepper",
    "household_electrical_devices": "clock keyboard lamp telephone television",
    "household_furniture": "bed chair couch table wardrobe",
    "insects": "bee beetle butterfly caterpillar cockroach",
    "large_carnivores": "bear leopard lion tiger wolf",
    "large_man-made_outdoor_things": "bridge castle house road skyscraper",
    "large_natural_outdoor_scenes": "cloud forest mountain plain sea",
    "large_omnivores_and_herbivores": "camel cattle chimpanzee elephant kangaroo",
    "medium_mammals": "fox porcupine possum raccoon skunk",
    "non-insect_invertebrates": "crab lobster snail spider worm",
    "people": "baby boy girl man woman",
    "reptiles": "crocodile dinosaur lizard snake turtle",
    "small_mammals": "hamster mouse rabbit shrew squirrel",
    "trees": "maple_tree oak_tree palm_tree pine_tree willow_tree",
    "vehicles_1": "bicycle bus motorcycle pickup_truck train",
    "vehicles_2": "lawn_mower rocket streetcar tank tractor",
}


def _all_inputs(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    from obliviate.data import iterate_batches

    xs, ys = zip(*iterate_batches(dataset, 10_000, device=CPU), strict=True)
    return torch.cat(xs), torch.cat(ys)


def _expected(raw: np.ndarray, name: str) -> np.ndarray:
    """(raw / 255 - mean) / std per channel, raw already channels-first (N, C, H, W)."""
    mean, std = (np.asarray(v, dtype=np.float64).reshape(1, -1, 1, 1) for v in STATS[name])
    return (raw.astype(np.float64) / 255.0 - mean) / std


# ---------------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_digits_sizes_shapes_and_types(digits):
    assert len(digits.train) == 1437 and len(digits.test) == 360
    assert digits.num_classes == 10
    assert digits.classes == tuple(str(c) for c in range(10))
    assert digits.input_shape == (1, 8, 8)
    assert digits.name == "digits"
    for split in (digits.train, digits.test):
        assert split.targets.dtype == np.int64
        assert split.inputs.dtype == torch.float32
        assert tuple(split.inputs.shape[1:]) == (1, 8, 8)
        x, y = split[0]
        assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert digits.train_targets.dtype == np.int64 and digits.test_targets.dtype == np.int64
    assert digits.train_fine is None and digits.fine_classes is None


def test_digits_values_lie_in_unit_interval_and_use_the_whole_range(digits):
    x = torch.cat([digits.train.inputs, digits.test.inputs])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # sklearn's digits are integers 0..16, scaled by 1/16
    assert torch.equal(x * 16, torch.round(x * 16))


def test_digits_is_the_whole_sklearn_set_split_80_20_stratified(digits):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    y_all = bunch.target
    ytr, yte = digits.train_targets, digits.test_targets
    assert np.array_equal(np.bincount(ytr, minlength=10) + np.bincount(yte, minlength=10), np.bincount(y_all))
    for c in range(10):
        n_c = int(np.sum(y_all == c))
        assert abs(int(np.sum(ytr == c)) - 0.8 * n_c) <= 1, c
        assert abs(int(np.sum(yte == c)) - 0.2 * n_c) <= 1, c
    # the union of both splits is exactly sklearn's images (as a multiset of rows), labels attached
    ours = np.concatenate(
        [
            np.concatenate([digits.train.inputs.reshape(-1, 64).numpy() * 16, ytr[:, None]], axis=1),
            np.concatenate([digits.test.inputs.reshape(-1, 64).numpy() * 16, yte[:, None]], axis=1),
        ]
    )
    theirs = np.concatenate([bunch.data, y_all[:, None]], axis=1)
    assert len(ours) == len(theirs) == 1797
    rows_ours, counts_ours = np.unique(ours, axis=0, return_counts=True)
    rows_theirs, counts_theirs = np.unique(theirs, axis=0, return_counts=True)
    assert np.array_equal(rows_ours, rows_theirs) and np.array_equal(counts_ours, counts_theirs)


def test_digits_split_is_sklearns_stratified_split_with_seed_0_in_index_order(digits):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    tr, te = train_test_split(np.arange(1797), test_size=0.2, stratify=bunch.target, random_state=0)
    for split, idx in ((digits.train, np.sort(tr)), (digits.test, np.sort(te))):
        assert np.array_equal(split.inputs.reshape(-1, 64).numpy(), (bunch.data[idx] / 16.0).astype(np.float32))
        assert np.array_equal(split.targets, bunch.target[idx])


def test_digits_is_deterministic(digits):
    again = load_dataset("digits")
    assert torch.equal(again.train.inputs, digits.train.inputs)
    assert torch.equal(again.test.inputs, digits.test.inputs)
    assert np.array_equal(again.train.targets, digits.train.targets)
    assert np.array_equal(again.test.targets, digits.test.targets)


def test_digits_is_the_default_and_ignores_root(digits, tmp_path):
    ds = load_dataset(root=tmp_path / "does-not-exist")
    assert ds.name == "digits" and len(ds.train) == 1437
    assert np.array_equal(ds.train.targets, digits.train.targets)


def test_digits_rejects_a_bad_test_fraction():
    with pytest.raises(InvalidConfigError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.0)


# ------------------------------------------------------------------- registry and arguments


def test_registry_holds_every_documented_dataset():
    for name in ("digits", "digits_coarse", "synthetic32", "cifar10", "cifar100", "cifar20", "svhn", "mnist", "fashion_mnist"):
        assert name in DATASETS


def test_unknown_dataset_name_suggests_the_close_one():
    with pytest.raises(UnknownNameError) as info:
        load_dataset("cifar1O")
    msg = str(info.value)
    assert "'cifar10'" in msg and "Did you mean" in msg
    assert "digits" in msg  # valid names are listed
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("download", ["yes", 1, None, 0])
def test_download_must_be_a_bool(download):
    with pytest.raises(InvalidConfigError, match="download"):
        load_dataset("digits", download=download)


def test_default_root_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OBLIVIATE_DATA", str(tmp_path / "data"))
    assert default_root() == tmp_path / "data"
    monkeypatch.delenv("OBLIVIATE_DATA")
    assert str(default_root()).endswith(".cache/obliviate/data")
    assert "~" not in str(default_root())


# ---------------------------------------------------------------- fake torchvision classes

_CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class _Recorder:
    """Base of the fakes: remembers every construction (class-level, reset per test)."""

    calls: list
    instances: dict

    def _record(self, root, download, key):
        type(self).calls.append({"root": root, "download": download, "split": key})
        type(self).instances[key] = self


class FakeCIFAR10(_Recorder):
    n_train, n_test = 12, 6
    classes = _CIFAR10_NAMES

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self._record(root, download, train)
        n = self.n_train if train else self.n_test
        rng = np.random.default_rng(1 if train else 2)
        self.data = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        self.targets = [int(v) for v in rng.integers(0, len(self.classes), size=n)]
        self.classes = list(type(self).classes)


class FakeCIFAR100(FakeCIFAR10):
    n_train, n_test = 100, 40
    classes = list(CIFAR100_NAMES)

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        super().__init__(root, train=train, transform=transform, target_transform=target_transform, download=download)
        if train:  # every fine class once, in a scrambled order
            self.targets = [int(v) for v in np.random.default_rng(3).permutation(100)]


class FakeSVHN(_Recorder):
    def __init__(self, root, split="train", transform=None, target_transform=None, download=False):
        self._record(root, download, split)
        n = 10 if split == "train" else 5
        rng = np.random.default_rng(4 if split == "train" else 5)
        self.data = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        self.labels = rng.integers(0, 10, size=n).astype(np.int64)


class FakeMNIST(_Recorder):
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
               "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]  # fmt: skip

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        self._record(root, download, train)
        n = 14 if train else 7
        gen = torch.Generator().manual_seed(6 if train else 7)
        self.data = torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
        self.targets = torch.randint(0, 10, (n,), generator=gen)


class FakeFashionMNIST(FakeMNIST):
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class NotFound:
    """What torchvision does when the files are absent and download=False."""

    def __init__(self, root, *args, download=False, **kwargs):
        if download:
            raise AssertionError("a test asked torchvision to download")
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")


FAKES = {"CIFAR10": FakeCIFAR10, "CIFAR100": FakeCIFAR100, "SVHN": FakeSVHN, "MNIST": FakeMNIST, "FashionMNIST": FakeFashionMNIST}


@pytest.fixture(autouse=True)
def _no_real_torchvision(monkeypatch):
    """Every torchvision dataset class is replaced: nothing here can touch the network."""
    for name in FAKES:
        monkeypatch.setattr(torchvision.datasets, name, NotFound)
    for fake in FAKES.values():
        monkeypatch.setattr(fake, "calls", [], raising=False)
        monkeypatch.setattr(fake, "instances", {}, raising=False)


@pytest.fixture
def fakes(monkeypatch):
    for name, fake in FAKES.items():
        monkeypatch.setattr(torchvision.datasets, name, fake)
    return FAKES


@pytest.mark.parametrize(("name", "fake", "stats"), [("cifar10", FakeCIFAR10, "cifar10"), ("cifar100", FakeCIFAR100, "cifar100")])
def test_cifar_wrapper_shapes_targets_and_normalisation(fakes, tmp_path, name, fake, stats):
    ds = load_dataset(name, root=tmp_path)
    assert ds.name == name
    assert ds.input_shape == (3, 32, 32)
    assert ds.num_classes == len(fake.classes) and ds.classes == tuple(fake.classes)
    assert ds.train_fine is None and ds.fine_classes is None
    assert [c["split"] for c in fake.calls] == [True, False]
    assert all(c["root"] == str(tmp_path) and c["download"] is False for c in fake.calls)
    for split, train in ((ds.train, True), (ds.test, False)):
        raw = fake.instances[train]
        assert len(split) == len(raw.targets)
        assert split.targets.dtype == np.int64
        assert np.array_equal(split.targets, np.asarray(raw.targets))
        x, y = _all_inputs(split)
        assert x.dtype == torch.float32 and tuple(x.shape) == (len(raw.targets), 3, 32, 32)
        assert y.tolist() == list(raw.targets)
        np.testing.assert_allclose(x.numpy(), _expected(raw.data.transpose(0, 3, 1, 2), stats), rtol=0, atol=1e-5)
        item_x, item_y = split[1]
        assert torch.equal(item_x, x[1]) and item_y == raw.targets[1]


def test_cifar_channels_are_moved_first(fakes, monkeypatch, tmp_path):
    class Marked(FakeCIFAR10):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data = np.zeros_like(self.data)
            self.data[0, 3, 7, 2] = 255  # image 0, row 3, column 7, blue channel
            self.data[0, 5, 1, 0] = 100  # image 0, row 5, column 1, red channel

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Marked)
    ds = load_dataset("cifar10", root=tmp_path)
    x = ds.train[0][0]
    (mean_r, _, mean_b), (std_r, _, std_b) = STATS["cifar10"]
    background = (-np.asarray(STATS["cifar10"][0]) / np.asarray(STATS["cifar10"][1])).reshape(3, 1, 1)
    diff = x.numpy() - background
    hot = np.argwhere(np.abs(diff) > 1e-4)
    assert sorted(map(tuple, hot)) == [(0, 5, 1), (2, 3, 7)]
    assert x[2, 3, 7].item() == pytest.approx((1.0 - mean_b) / std_b, abs=1e-5)
    assert x[0, 5, 1].item() == pytest.approx((100 / 255 - mean_r) / std_r, abs=1e-5)


def test_cifar20_uses_superclasses_and_keeps_fine_labels(fakes, tmp_path):
    ds = load_dataset("cifar20", root=tmp_path)
    table = np.asarray(CIFAR100_COARSE)
    assert ds.name == "cifar20" and ds.num_classes == 20
    assert ds.classes == tuple(SUPERCLASSES)  # the 20 official names, in coarse-label order
    assert ds.fine_classes == tuple(CIFAR100_NAMES)
    assert ds.input_shape == (3, 32, 32)
    for split, fine, train in ((ds.train, ds.train_fine, True), (ds.test, ds.test_fine, False)):
        raw = FakeCIFAR100.instances[train]
        assert fine is not None and fine.dtype == np.int64
        assert np.array_equal(fine, np.asarray(raw.targets))
        assert np.array_equal(split.targets, table[np.asarray(raw.targets)])
        assert split.targets.dtype == np.int64
        x, y = _all_inputs(split)
        assert np.array_equal(y.numpy(), table[np.asarray(raw.targets)])
        np.testing.assert_allclose(x.numpy(), _expected(raw.data.transpose(0, 3, 1, 2), "cifar100"), rtol=0, atol=1e-5)
    assert set(ds.train.targets.tolist()) == set(range(20))  # every fine class appears once in train


def test_cifar100_coarse_spot_values_from_the_spec():
    assert len(CIFAR100_COARSE) == 100
    for fine, coarse in ((69, 19), (51, 4), (2, 14), (40, 5), (71, 10)):
        assert CIFAR100_COARSE[fine] == coarse
    for fine, name in ((69, "rocket"), (51, "mushroom"), (2, "baby"), (40, "lamp"), (71, "sea")):
        assert CIFAR100_NAMES[fine] == name


def test_every_coarse_class_has_exactly_five_fine_classes():
    counts = np.bincount(np.asarray(CIFAR100_COARSE), minlength=20)
    assert counts.tolist() == [5] * 20


def test_cifar100_coarse_matches_the_official_taxonomy():
    assert len(CIFAR100_NAMES) == 100 and len(set(CIFAR100_NAMES)) == 100
    for coarse, (super_name, members) in enumerate(SUPERCLASSES.items()):
        for fine_name in members.split():
            assert CIFAR100_COARSE[CIFAR100_NAMES.index(fine_name)] == coarse, (fine_name, super_name)


def test_svhn_wrapper_keeps_channels_first(fakes, tmp_path):
    ds = load_dataset("svhn", root=tmp_path)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.classes == tuple(str(c) for c in range(10))
    assert [c["split"] for c in FakeSVHN.calls] == ["train", "test"]
    assert all(c["download"] is False and c["root"] == str(tmp_path) for c in FakeSVHN.calls)
    for split, key in ((ds.train, "train"), (ds.test, "test")):
        raw = FakeSVHN.instances[key]
        assert np.array_equal(split.targets, raw.labels) and split.targets.dtype == np.int64
        x, y = _all_inputs(split)
        assert tuple(x.shape) == (len(raw.labels), 3, 32, 32)
        assert y.tolist() == raw.labels.tolist()
        np.testing.assert_allclose(x.numpy(), _expected(raw.data, "svhn"), rtol=0, atol=1e-5)


def test_svhn_channel_order_is_not_permuted(fakes, monkeypatch, tmp_path):
    class Marked(FakeSVHN):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data = np.zeros_like(self.data)
            self.data[0, 1, 4, 9] = 255  # image 0, green channel, row 4, column 9

    monkeypatch.setattr(torchvision.datasets, "SVHN", Marked)
    x = load_dataset("svhn", root=tmp_path).train[0][0].numpy()
    mean, std = (np.asarray(v).reshape(3, 1, 1) for v in STATS["svhn"])
    hot = np.argwhere(np.abs(x - (-mean / std)) > 1e-4)
    assert list(map(tuple, hot)) == [(1, 4, 9)]


@pytest.mark.parametrize(("name", "fake"), [("mnist", FakeMNIST), ("fashion_mnist", FakeFashionMNIST)])
def test_mnist_like_wrappers(fakes, tmp_path, name, fake):
    ds = load_dataset(name, root=tmp_path)
    assert ds.name == name and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.classes == tuple(fake.classes)
    assert [c["split"] for c in fake.calls] == [True, False]
    for split, train in ((ds.train, True), (ds.test, False)):
        raw = fake.instances[train]
        assert np.array_equal(split.targets, raw.targets.numpy()) and split.targets.dtype == np.int64
        x, y = _all_inputs(split)
        assert tuple(x.shape) == (len(raw.targets), 1, 28, 28) and x.dtype == torch.float32
        assert torch.equal(y, raw.targets.long())
        np.testing.assert_allclose(x.numpy(), _expected(raw.data.numpy()[:, None], name), rtol=0, atol=1e-5)
        # a known pixel lands where it was
        r, c = 11, 17
        (mean,), (std,) = STATS[name]
        assert x[2, 0, r, c].item() == pytest.approx((raw.data[2, r, c].item() / 255 - mean) / std, abs=1e-5)


def test_download_true_is_forwarded_to_torchvision(fakes, tmp_path):
    load_dataset("mnist", root=tmp_path / "new", download=True)
    assert [c["download"] for c in FakeMNIST.calls] == [True, True]
    assert FakeMNIST.calls[0]["root"] == str(tmp_path / "new")


# --------------------------------------------------------------------- missing datasets


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "cifar20", "svhn", "mnist", "fashion_mnist"])
def test_missing_root_without_download_is_a_clear_error(fakes, tmp_path, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=missing)
    err = info.value
    assert isinstance(err, MissingDataError) and isinstance(err, FileNotFoundError)
    assert "download=True" in str(err) and str(missing) in str(err)
    assert all(not f.calls for f in FAKES.values())  # torchvision was not even asked
    assert not missing.exists()


def test_missing_default_root_is_a_clear_error(fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        load_dataset("cifar10")
    assert str(tmp_path / "absent") in str(info.value)


@pytest.mark.parametrize("name", ["cifar10", "cifar20", "svhn", "mnist", "fashion_mnist"])
def test_files_missing_under_an_existing_root_is_a_clear_error(tmp_path, name):
    # the autouse fixture makes every torchvision class raise torchvision's own RuntimeError
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root=tmp_path)
    msg = str(info.value)
    assert "download=True" in msg and str(tmp_path) in msg
    assert isinstance(info.value.__cause__, RuntimeError)


# ------------------------------------------------------------------------------ from_arrays


def _arrays(n_train=12, n_test=6, shape=(3, 4, 4), k=3, dtype=np.float32):
    rng = np.random.default_rng(0)
    x_tr = rng.random((n_train, *shape)).astype(dtype)
    x_te = rng.random((n_test, *shape)).astype(dtype)
    y_tr = np.arange(n_train) % k
    y_te = np.arange(n_test) % k
    return x_tr, y_tr, x_te, y_te


def test_from_arrays_shapes_and_inferred_classes():
    x_tr, y_tr, x_te, y_te = _arrays(k=3)
    ds = from_arrays(x_tr, y_tr, x_te, y_te, name="mine")
    assert ds.name == "mine"
    assert ds.input_shape == (3, 4, 4)
    assert len(ds.train) == 12 and len(ds.test) == 6
    assert ds.num_classes == 3 and ds.classes == ("0", "1", "2")
    assert np.array_equal(ds.train_targets, y_tr) and ds.train_targets.dtype == np.int64
    x, y = ds.train[5]
    assert torch.equal(x, torch.from_numpy(x_tr[5])) and y == int(y_tr[5])
    # labels only in the test split still count
    ds2 = from_arrays(x_tr, np.zeros(12, int) + [0, 1] * 6, x_te, np.full(6, 4))
    assert ds2.num_classes == 5


def test_from_arrays_class_names_and_explicit_num_classes():
    x_tr, y_tr, x_te, y_te = _arrays(k=3)
    ds = from_arrays(x_tr, y_tr, x_te, y_te, classes=["a", "b", "c", "d"])
    assert ds.num_classes == 4 and ds.classes == ("a", "b", "c", "d")
    ds = from_arrays(x_tr, y_tr, x_te, y_te, num_classes=7)
    assert ds.num_classes == 7 and ds.classes == tuple(str(c) for c in range(7))


def test_from_arrays_accepts_torch_tensors_and_integer_inputs():
    x_tr, y_tr, x_te, y_te = _arrays()
    ds = from_arrays(torch.from_numpy(x_tr), torch.from_numpy(y_tr), torch.from_numpy(x_te), torch.from_numpy(y_te))
    assert ds.num_classes == 3 and ds.input_shape == (3, 4, 4)
    ints = from_arrays(np.arange(8).reshape(4, 2), [0, 1, 0, 1], np.arange(4).reshape(2, 2), [1, 0])
    x, _ = ints.train[3]
    assert x.dtype == torch.float32 and x.tolist() == [6.0, 7.0]


def test_from_arrays_float_labels_that_are_whole_numbers_are_accepted():
    x_tr, _, x_te, _ = _arrays(n_train=4, n_test=2)
    ds = from_arrays(x_tr, [0.0, 1.0, 2.0, 1.0], x_te, np.array([2.0, 0.0]))
    assert ds.train_targets.tolist() == [0, 1, 2, 1] and ds.train_targets.dtype == np.int64


def test_from_arrays_uint8_with_scale_and_stats():
    raw = np.random.default_rng(1).integers(0, 256, size=(5, 2, 3, 3), dtype=np.uint8)
    ds = from_arrays(raw, [0, 1, 0, 1, 0], raw[:2], [0, 1], scale=1 / 255)
    assert ds.train.inputs.dtype == torch.uint8  # stored compactly
    x, _ = ds.train[4]
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), raw[4] / 255.0, rtol=0, atol=1e-6)
    ds = from_arrays(raw, [0, 1, 0, 1, 0], raw[:2], [0, 1], scale=1 / 255, mean=[0.5, 0.25], std=[0.5, 2.0])
    x, _ = ds.test[1]
    want = (raw[1] / 255.0 - np.array([0.5, 0.25]).reshape(2, 1, 1)) / np.array([0.5, 2.0]).reshape(2, 1, 1)
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-5)


def test_from_arrays_keeps_fine_labels():
    x_tr, _, x_te, _ = _arrays(n_train=4, n_test=2)
    ds = from_arrays(
        x_tr,
        [0, 0, 1, 1],
        x_te,
        [0, 1],
        classes=["A", "B"],
        train_fine=[0, 1, 2, 3],
        test_fine=[1, 2],
        fine_classes=["a0", "a1", "b0", "b1"],
    )
    assert ds.train_fine.tolist() == [0, 1, 2, 3] and ds.train_fine.dtype == np.int64
    assert ds.test_fine.tolist() == [1, 2]
    assert ds.fine_classes == ("a0", "a1", "b0", "b1")


@pytest.mark.parametrize(
    ("train_fine", "why"),
    [([0.5, 1, 2, 3], "non-integer"), ([0, -1, 2, 3], "negative"), ([0, 1, 2, 4], "beyond fine_classes")],
)
def test_from_arrays_validates_fine_labels_like_labels(train_fine, why):
    x_tr, _, x_te, _ = _arrays(n_train=4, n_test=2)
    with pytest.raises(InvalidConfigError, match="train_fine"):
        from_arrays(
            x_tr,
            [0, 0, 1, 1],
            x_te,
            [0, 1],
            classes=["A", "B"],
            train_fine=train_fine,
            test_fine=[1, 2],
            fine_classes=["a0", "a1", "b0", "b1"],
        )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"x_test": np.zeros((6, 3, 4, 5), np.float32)}, "same input shape"),
        ({"y_train": np.array([0, 1, 2] * 3 + [0, 1, 3])}, "num_classes"),
        ({"y_test": np.array([0, 1, 2, 0, 1, -1])}, "non-negative"),
        ({"y_train": np.arange(12) * 0.5}, "integer"),
        ({"classes": ["a", "b"]}, "class names"),
        ({"x_train": np.zeros(12, np.float32)}, "x_train"),
        ({"x_test": np.zeros(6, np.float32)}, "x_test"),
        ({"y_train": np.zeros(11, np.int64)}, "targets"),
        ({"y_train": np.zeros((12, 1), np.int64)}, "1-D"),
        ({"train_fine": [0, 1]}, "train_fine"),
        ({"num_classes": 1}, "num_classes"),
    ],
)
def test_from_arrays_rejects_bad_input(change, match):
    x_tr, y_tr, x_te, y_te = _arrays(k=3)
    kwargs = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te, "num_classes": 3}
    kwargs.update(change)
    with pytest.raises(InvalidConfigError, match=match):
        from_arrays(**kwargs)


def test_from_arrays_label_beyond_explicit_num_classes_names_the_label():
    x_tr, _, x_te, y_te = _arrays()
    with pytest.raises(InvalidConfigError) as info:
        from_arrays(x_tr, [0, 1, 2, 3] * 3, x_te, y_te, num_classes=3)
    assert "3" in str(info.value) and "[0, num_classes)" in str(info.value)


# ----------------------------------------------------------------------------- from_dataset


class WithTargets(Dataset):
    """A map-style dataset with a ``targets`` attribute that counts item reads."""

    def __init__(self, n, k, dim=5):
        self.x = torch.arange(n * dim, dtype=torch.float32).reshape(n, dim)
        self.targets = [i % k for i in range(n)]
        self.reads = 0

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], self.targets[i]


def test_from_dataset_reads_targets_attribute_without_iterating():
    tr, te = WithTargets(9, 4), WithTargets(4, 4)
    ds = from_dataset(tr, te, name="own")
    assert ds.name == "own" and ds.num_classes == 4 and ds.input_shape == (5,)
    assert ds.train_targets.tolist() == tr.targets and ds.test_targets.tolist() == te.targets
    assert tr.reads <= 1 and te.reads == 0  # at most one item read (for the input shape)
    x, y = ds.train[7]
    assert torch.equal(x, tr.x[7]) and y == tr.targets[7]


def test_from_dataset_iterates_items_when_there_is_no_targets_attribute():
    tr = TensorDataset(torch.randn(6, 2, 3), torch.tensor([0, 2, 1, 2, 0, 1]))
    te = TensorDataset(torch.randn(3, 2, 3), torch.tensor([1, 1, 0]))
    ds = from_dataset(tr, te, classes=["x", "y", "z"])
    assert ds.num_classes == 3 and ds.classes == ("x", "y", "z") and ds.input_shape == (2, 3)
    assert ds.train_targets.tolist() == [0, 2, 1, 2, 0, 1] and ds.train_targets.dtype == np.int64
    assert ds.test_targets.tolist() == [1, 1, 0]
    assert isinstance(ds.train, LabeledDataset)
    x, y = ds.test[2]
    assert torch.equal(x, te.tensors[0][2]) and y == 0 and isinstance(y, int)


def test_from_dataset_explicit_targets_take_precedence():
    tr = TensorDataset(torch.randn(4, 3), torch.tensor([0, 0, 0, 0]))
    te = TensorDataset(torch.randn(2, 3), torch.tensor([0, 0]))
    ds = from_dataset(tr, te, train_targets=[1, 2, 3, 4], test_targets=np.array([4, 0]))
    assert ds.num_classes == 5
    assert ds.train_targets.tolist() == [1, 2, 3, 4]
    assert ds.train[2][1] == 3 and ds.test[0][1] == 4


def test_from_dataset_rejects_bad_input():
    tr = TensorDataset(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(InvalidConfigError, match="train"):
        from_dataset([(torch.zeros(3), 0)], tr)
    with pytest.raises(InvalidConfigError, match="targets"):
        from_dataset(tr, tr, train_targets=[0, 1])
    with pytest.raises(InvalidConfigError, match="num_classes"):
        from_dataset(tr, tr, num_classes=1)
    with pytest.raises(InvalidConfigError, match="class names"):
        from_dataset(tr, tr, num_classes=2, classes=["a", "b", "c"])

    class Bare(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(2)

    with pytest.raises(InvalidConfigError, match="from_dataset"):
        from_dataset(Bare(), Bare())

    class Arrays(Dataset):  # labels fine, inputs are not tensors
        targets = [0, 1]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros(2), self.targets[i]

    with pytest.raises(InvalidConfigError, match="tensors"):
        from_dataset(Arrays(), Arrays())


def test_a_huge_label_is_refused_quickly_without_allocating_class_names():
    import time

    x = np.zeros((4, 3), np.float32)
    start = time.perf_counter()
    with pytest.raises(InvalidConfigError, match="num_classes="):
        from_arrays(x, [0, 1, 0, 10**9], x, [0, 1, 0, 1])
    assert time.perf_counter() - start < 1.0


def test_a_sentinel_label_is_refused_unless_num_classes_is_explicit():
    n = 2000
    y = np.arange(n) % 10
    y[7] = 255
    x = np.zeros((n, 3), np.float32)
    with pytest.raises(InvalidConfigError, match="255"):
        from_arrays(x, y, x[:10], np.arange(10))
    ds = from_arrays(x, y, x[:10], np.arange(10), num_classes=256)
    assert ds.num_classes == 256 and len(ds.classes) == 256


def test_labels_missing_a_few_classes_are_still_inferred():
    x = np.zeros((4, 3), np.float32)
    assert from_arrays(x, [0, 2, 0, 2], x, [0, 2, 2, 0]).num_classes == 3


def test_synthetic32_is_cifar_shaped_balanced_deterministic_and_learnable():
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("synthetic32", n_train=600, n_test=200, num_classes=4, seed=3)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 4 and (len(ds.train), len(ds.test)) == (600, 200)
    x, y = ds.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert np.bincount(np.asarray(ds.train_targets), minlength=4).tolist() == [150] * 4
    again = load_dataset("synthetic32", n_train=600, n_test=200, num_classes=4, seed=3)
    other = load_dataset("synthetic32", n_train=600, n_test=200, num_classes=4, seed=4)
    assert torch.equal(ds.train[5][0], again.train[5][0]) and not torch.equal(ds.train[5][0], other.train[5][0])

    def arrays(split):
        return np.stack([split[i][0].numpy().ravel() for i in range(len(split))]), np.array(
            [split[i][1] for i in range(len(split))]
        )

    (xtr, ytr), (xte, yte) = arrays(ds.train), arrays(ds.test)
    acc = LogisticRegression(max_iter=300).fit(xtr, ytr).score(xte, yte)
    assert 0.6 < acc  # learnable (chance is 0.25)
    with pytest.raises(InvalidConfigError, match="n_train"):
        load_dataset("synthetic32", n_train=0)
