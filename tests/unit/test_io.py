import json
import pickle
import warnings

import pytest
import torch

import obliviate as ob
from obliviate.errors import IncompatibleModelError, InvalidConfigError, UncheckedTrainingSetWarning
from obliviate.io import (
    METADATA_KEY,
    load_masks,
    load_state_dict,
    load_weights,
    read_json,
    read_metadata,
    save_masks,
    save_model,
    write_json,
)


def test_save_and_load_round_trip_is_exact(trained_cnn, tmp_path):
    path = save_model(trained_cnn, tmp_path / "m.safetensors", {"note": "x"})
    model = ob.build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=9)
    load_weights(model, path)
    assert all(torch.equal(a, b) for a, b in zip(trained_cnn.state_dict().values(), model.state_dict().values(), strict=True))
    assert read_metadata(path) == {"format": "obliviate", "note": "x"}


def test_metadata_is_one_canonical_json_key_and_the_former_layout_still_reads(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    model = torch.nn.Linear(2, 2)
    path = save_model(model, tmp_path / "m.safetensors", {"b": 2, "a": "x y"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {METADATA_KEY: '{"a":"x y","b":"2","format":"obliviate"}'}
    assert read_metadata(path) == {"a": "x y", "b": "2", "format": "obliviate"}
    masks = save_masks({"weight": torch.ones(2, 2, dtype=torch.bool)}, tmp_path / "k.safetensors")
    assert read_metadata(masks) == {"format": "obliviate-masks"}
    old = tmp_path / "old.safetensors"  # files written before: one header key per entry
    save_file({"weight": torch.zeros(2)}, str(old), metadata={"format": "obliviate", "dataset": "digits"})
    assert read_metadata(old) == {"format": "obliviate", "dataset": "digits"}
    bare = tmp_path / "bare.safetensors"
    save_file({"weight": torch.zeros(2)}, str(bare))
    assert read_metadata(bare) == {}
    for bad in ("{not json", '["list"]', '{"n": 3}'):
        save_file({"weight": torch.zeros(2)}, str(bare), metadata={METADATA_KEY: bad})
        with pytest.raises(IncompatibleModelError, match="metadata of"):
            read_metadata(bare)
    with pytest.raises(InvalidConfigError, match="does not exist"):
        read_metadata(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(IncompatibleModelError, match="not a safetensors file"):
        read_metadata(tmp_path / "junk.safetensors")


def test_a_pickle_is_refused_and_never_unpickled(trained_cnn, tmp_path):
    marker = tmp_path / "unpickled"

    class Bomb:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": Bomb()}))
    with pytest.raises(IncompatibleModelError, match="not a safetensors file"):
        load_state_dict(path)
    assert not marker.exists()
    torch.save(trained_cnn.state_dict(), tmp_path / "torch.pt")
    with pytest.raises(IncompatibleModelError):
        load_weights(trained_cnn, tmp_path / "torch.pt")


def test_mismatched_checkpoint_names_the_difference(trained_cnn, tmp_path):
    path = save_model(trained_cnn, tmp_path / "m.safetensors")
    wider = ob.build_model("cnn", input_shape=(1, 8, 8), num_classes=10, width=8)
    with pytest.raises(IncompatibleModelError, match="shape of"):
        load_weights(wider, path)
    mlp = ob.build_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(IncompatibleModelError, match="does not match MLP: unexpected"):
        load_weights(mlp, path)
    with pytest.raises(InvalidConfigError, match="does not exist"):
        load_weights(mlp, tmp_path / "nothing.safetensors")


def test_masks_round_trip_and_must_be_boolean(tmp_path):
    masks = {"a": torch.tensor([True, False]), "b": torch.zeros(2, 2, dtype=torch.bool)}
    loaded = load_masks(save_masks(masks, tmp_path / "m.safetensors"))
    assert all(torch.equal(loaded[k], masks[k]) for k in masks)
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(IncompatibleModelError, match="not boolean"):
        load_masks(tmp_path / "f.safetensors")


def test_json_writes_nan_as_null_and_reads_errors_clearly(tmp_path):
    import numpy as np

    write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(1.5), "z": (1, 2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": None, "y": 1.5, "z": [1, 2]}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InvalidConfigError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(InvalidConfigError, match="does not exist"):
        read_json(tmp_path / "missing.json")


# ---------------------------------------------------------------- run directories as library objects (issue 12, item 4)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, digits):
    """A run directory written through the library alone (no CLI): an MLP trained on a non-default val split."""
    from obliviate.runs import RunDir, make_origin

    sc = ob.Scenario.classwise(digits, forget_class=3, seed=0, val_seed=1)
    base = ob.train(ob.build_model("mlp", digits, seed=2), sc.train, epochs=1, lr=0.05, seed=0, device="cpu", progress=False)
    path = tmp_path_factory.mktemp("runs") / "mlp"
    origin = make_origin(digits, "mlp", seed=2, val_fraction=0.1, val_seed=1, recipe=base.config.to_dict())
    masks = {"head.weight": torch.ones_like(dict(base.model.named_parameters())["head.weight"], dtype=torch.bool)}
    run = RunDir.create(path)
    run.save(base.model, {"kind": "train", "seed": 0, "origin": origin, "train_set": base.training_set.to_json()}, masks=masks)
    return path, base, masks


def test_run_dir_round_trips_model_origin_training_set_and_masks(saved_run, digits):
    from obliviate.runs import RunDir, load_run

    path, base, masks = saved_run
    run = RunDir(path)
    assert run.origin["model"] == {"name": "mlp", "options": {}, "seed": 2} and run.origin["val_seed"] == 1
    assert run.recipe == base.config.to_dict()
    model = run.load_model()
    assert not model.training
    for (k, a), (_, b) in zip(model.state_dict().items(), base.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert run.training_set == base.training_set
    assert run.dataset().name == "digits"
    loaded = run.masks(model)
    assert loaded is not None and set(loaded) == set(masks) and torch.equal(loaded["head.weight"], masks["head.weight"])
    # the older entry point is the same object's view
    assert load_run(path).training_set == run.training_set


def test_run_dir_builds_scenarios_over_its_own_validation_split_and_feeds_unlearn(saved_run):
    from obliviate.errors import MissingDataError
    from obliviate.runs import RunDir

    path, base, _ = saved_run
    run = RunDir(path)
    assert not run.has_scenario and not run.has_recording
    with pytest.raises(MissingDataError):
        run.scenario()
    with pytest.raises(MissingDataError):
        run.recording()
    sc = run.make_scenario("random:0.1", seed=4)
    assert sc.val_seed == 1 and sc.training_set == run.training_set and sc.seed == 4
    # ob.unlearn accepts the RunDir itself and checks its training set (no warning, no mismatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncheckedTrainingSetWarning)
        out = ob.unlearn(run, sc, "finetune", epochs=1, lr=0.01, seed=0, device="cpu", progress=False)
    assert out.training_set == sc.retain_set


def test_run_dir_refuses_to_overwrite_a_run(saved_run, tmp_path):
    from obliviate.runs import RunDir

    path, _, _ = saved_run
    with pytest.raises(InvalidConfigError, match="already holds a run; choose another directory"):
        RunDir.create(path)
    with pytest.raises(InvalidConfigError, match="already holds a run; choose another --out"):
        RunDir.check_new(path, flag="--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidConfigError, match="is a file, not a directory"):
        RunDir.create(tmp_path / "file")
    with pytest.raises(InvalidConfigError, match="not a run directory"):
        _ = RunDir(tmp_path).record


def test_retrain_inherits_the_original_recipe_in_the_library(saved_run):
    from obliviate.methods.base import make_method, recipe_of
    from obliviate.runs import RunDir

    run = RunDir(saved_run[0])
    recipe = run.recipe
    assert recipe_of(run) == recipe  # what ob.unlearn(run, ...) scales its defaults from
    assert make_method("retrain", recipe=recipe).to_dict() == {**make_method("retrain").to_dict(), **recipe}
    assert make_method("retrain", recipe=recipe, epochs=3).epochs == 3
    assert make_method("finetune", recipe=recipe, lr=0.1).lr == 0.1


def test_default_recipe_is_the_demo_recipe_on_digits_and_train_config_elsewhere(digits):
    import numpy as np

    from obliviate.demo import DEMO_RECIPE
    from obliviate.runs import default_recipe
    from obliviate.training import TrainConfig

    assert default_recipe(digits) == DEMO_RECIPE
    rng = np.random.default_rng(0)
    other = ob.data.from_arrays(
        rng.normal(size=(20, 4)).astype("float32"), np.arange(20) % 2, rng.normal(size=(6, 4)).astype("float32"), np.arange(6) % 2
    )
    assert default_recipe(other) == TrainConfig(augment=other.augment).to_dict()


def test_a_checkpoint_with_non_finite_weights_is_refused_naming_file_and_tensor(tmp_path):
    from safetensors.torch import save_file

    model = ob.build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point() and k.endswith("weight"))
    for bad in (float("nan"), float("inf"), float("-inf")):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state[name].view(-1)[3] = bad
        path = tmp_path / "poisoned.safetensors"
        save_file(state, str(path))
        with pytest.raises(IncompatibleModelError, match=r"poisoned\.safetensors") as err:
            load_weights(model, path)
        msg = str(err.value)
        assert repr(name) in msg and "non-finite" in msg and "learning rate" not in msg and "lr" not in msg.split()
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is left untouched


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.float16, torch.bool])
def test_a_checkpoint_whose_floating_tensor_has_another_dtype_is_refused_not_cast(tmp_path, dtype):
    from safetensors.torch import save_file

    model = ob.build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].to(dtype)
    path = tmp_path / "cast.safetensors"
    save_file(state, str(path))
    with pytest.raises(IncompatibleModelError, match=r"cast\.safetensors") as err:
        load_weights(model, path)
    msg = str(err.value)
    assert repr(name) in msg and str(dtype).removeprefix("torch.") in msg and "float32" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_integer_buffers_keep_their_integer_dtype_on_load(trained_cnn, tmp_path):
    integer = {k: v.dtype for k, v in trained_cnn.state_dict().items() if not v.is_floating_point()}
    assert integer  # BatchNorm's num_batches_tracked: an int64 buffer, not a floating tensor
    path = save_model(trained_cnn, tmp_path / "m.safetensors")
    model = ob.build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=9)
    load_weights(model, path)
    assert {k: model.state_dict()[k].dtype for k in integer} == integer
    assert all(torch.equal(trained_cnn.state_dict()[k], model.state_dict()[k]) for k in integer)
