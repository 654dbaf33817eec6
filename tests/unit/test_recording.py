"""Recorded training (ob.train(..., record=True)), its persistence, and its replay."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.errors import IncompatibleModelError, InvalidConfigError, MissingDataError
from obliviate.recording import RECORDING_FILE, Recorder, Recording, logit_loss, naive_retrain, replay
from obliviate.testing import toy_dataset
from obliviate.training import TrainConfig, lr_factor


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def small():
    """The 250 training samples of the toy digits; every tenth one is forgotten."""
    return ob.Scenario.from_indices(toy_dataset(), np.arange(0, 250, 10), val_fraction=0.0)


KW = dict(epochs=3, lr=0.05, batch_size=32, schedule="cosine", seed=3, device="cpu", progress=False)


def test_recording_does_not_change_the_trained_weights(class3):
    model = ob.build_model("cnn", class3.dataset, seed=0, dropout=0.3)
    kw = dict(epochs=2, lr=0.05, batch_size=64, seed=7, device="cpu", progress=False)
    plain = ob.train(model, class3.train, **kw)
    recorded = ob.train(model, class3.train, record=True, record_updates=True, **kw)
    assert plain.recording is None
    assert _same(plain.model, recorded.model)
    assert recorded.recording.dropout  # dropout makes a replay approximate; it is flagged


def test_recording_holds_the_batch_order_and_the_learning_rates(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    res = ob.train(model, small.train, record=True, **KW)
    rec = res.recording
    n, bs = len(small.train), 32
    per_epoch = math.ceil(n / bs)
    assert rec.num_steps == 3 * per_epoch and rec.num_epochs == 3 and rec.num_samples == n
    assert np.array_equal(rec.ids, small.train_idx)  # dataset numbering: the scenario's indices
    assert np.array_equal(rec.labels, small.dataset.train_targets[small.train_idx])
    for order in rec.orders:
        assert order.dtype == np.int32 and np.array_equal(np.sort(order), np.arange(n))
    # the batches of an epoch partition the training positions
    epoch1 = np.concatenate([rec.batch(s) for s in range(per_epoch, 2 * per_epoch)])
    assert np.array_equal(np.sort(epoch1), np.arange(n))
    factor = lr_factor(TrainConfig.from_dict(res.config.to_dict()), per_epoch)
    np.testing.assert_allclose(rec.lrs, [0.05 * factor(s) for s in range(rec.num_steps)], rtol=1e-12)
    assert rec.updates is None and rec.nbytes()["updates"] == 0
    # the recorded initial weights are the input model's
    assert all(torch.equal(rec.initial[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(rec.final[k], v) for k, v in res.model.state_dict().items())


def test_recorded_updates_sum_to_the_weight_change_and_can_be_restricted(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    rec = ob.train(model, small.train, record=True, record_updates=True, **KW).recording
    total = rec.update_sum(np.arange(rec.num_steps))
    torch.testing.assert_close(total, rec.vector(rec.final) - rec.vector(rec.initial), atol=1e-6, rtol=0)
    p = sum(t.numel() for n, t in rec.initial.items() if n in rec.param_names)
    assert rec.nbytes()["updates"] == rec.num_steps * p * 4
    # only the steps whose batch holds sample 10 of the train split
    some = ob.train(model, small.train, record=True, record_updates=[10], **KW).recording
    want = np.flatnonzero(some.steps_holding(some.positions([10])))
    assert np.array_equal(some.update_steps, want) and len(want) == 3  # once per epoch
    torch.testing.assert_close(some.update_sum(want), rec.update_sum(want))
    with pytest.raises(MissingDataError, match="record_updates"):
        some.update_sum(np.arange(rec.num_steps))


def test_record_updates_needs_record_and_a_recorder_may_be_given(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    with pytest.raises(InvalidConfigError, match="record=True"):
        ob.train(model, small.train, record_updates=True, **KW)
    rec = ob.train(model, small.train, record=Recorder(hessian_every=10, hessian_samples=64), **KW).recording
    assert rec.num_steps == 24 and rec.hessian_steps.tolist() == [0, 10, 20]  # at w_0, then every 10 steps
    assert np.all(np.isfinite(rec.hessian_eigenvalues)) and rec.seed == 3


def test_batches_of_one_skipped_under_batchnorm_are_not_steps(digits):
    sc = ob.Scenario.from_indices(digits, [0], val_fraction=0.0)
    data = ob.data.Subset(digits.train, np.arange(65))
    model = ob.build_model("cnn", digits, seed=0, width=4)
    rec = ob.train(model, data, epochs=2, lr=0.05, batch_size=64, device="cpu", progress=False, record=True).recording
    assert rec.num_steps == 2 and rec.step_batch.tolist() == [0, 0]
    assert len(sc.forget) == 1


def test_save_and_load_round_trip(tmp_path, small):
    model = ob.build_model("cnn", small.dataset, seed=0, width=4)
    rec = ob.train(model, small.train, record=True, record_updates=True, **KW).recording
    rec.save(tmp_path)
    back = Recording.load(tmp_path)
    for name in ("ids", "labels", "step_epoch", "step_batch", "lrs", "update_steps"):
        assert np.array_equal(getattr(back, name), getattr(rec, name)), name
    assert all(np.array_equal(a, b) for a, b in zip(back.orders, rec.orders, strict=True))
    assert back.config == rec.config and back.param_names == rec.param_names and back.batch_size == rec.batch_size
    assert torch.equal(back.updates, rec.updates)
    assert all(torch.equal(back.initial[k], rec.initial[k]) for k in rec.initial)
    with open(tmp_path / RECORDING_FILE, "rb") as f:
        assert not f.read(2).startswith(b"\x80")  # not a pickle
    with pytest.raises(InvalidConfigError, match="does not exist"):
        Recording.load(tmp_path / "elsewhere")


def test_replay_without_exclusions_reproduces_the_run_bit_for_bit(small):
    for name, kw in (("mlp", {"hidden": (8,)}), ("cnn", {"width": 4})):
        model = ob.build_model(name, small.dataset, seed=0, **kw)
        res = ob.train(model, small.train, record=True, momentum=0.9, weight_decay=5e-4, **KW)
        rec = res.recording
        again, steps = replay(model, rec, rec.training_data(small.dataset.train), device="cpu")
        assert steps == rec.num_steps and _same(again, res.model), name


def test_naive_retrain_skips_exactly_the_forget_samples(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    rec = ob.train(model, small.train, record=True, **KW).recording
    net = naive_retrain(model, rec, small, device="cpu")
    # by hand: the same loop over the recorded batches minus the forget positions
    forget = rec.positions(small.forget_idx)
    by_hand = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    opt = torch.optim.SGD(by_hand.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = rec.training_data(small.dataset.train)
    for s in range(rec.num_steps):
        kept = np.setdiff1d(rec.batch(s), forget, assume_unique=True)
        kept = rec.batch(s)[np.isin(rec.batch(s), kept)]
        x, y = next(iter(ob.data.iterate_batches(ob.data.Subset(data, kept), len(kept), device=torch.device("cpu"))))
        for g in opt.param_groups:
            g["lr"] = rec.lrs[s]
        opt.zero_grad()
        nn.functional.cross_entropy(by_hand(x), y).backward()
        opt.step()
    for (n, p), q in zip(net.named_parameters(), by_hand.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=n)


def test_recordings_refuse_other_data_and_unknown_samples(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    rec = ob.train(model, small.train, record=True, **KW).recording
    with pytest.raises(MissingDataError, match="not in the recorded training set"):
        rec.positions([1000])
    toy = small.dataset
    shifted = ob.from_arrays(toy.train.inputs, (toy.train_targets + 1) % 10, toy.test.inputs, toy.test_targets)
    with pytest.raises(IncompatibleModelError, match="labels differ"):
        rec.training_data(shifted.train)
    with pytest.raises(IncompatibleModelError, match="refers to sample"):
        rec.training_data(ob.data.Subset(toy.train, np.arange(100)))
    augmented = ob.train(model, small.train, record=True, augment="flip", **{**KW, "epochs": 1}).recording
    with pytest.raises(InvalidConfigError, match="augmentation"):
        naive_retrain(model, augmented, small)
    with pytest.raises(IncompatibleModelError, match="does not match the recording"):
        replay(ob.build_model("mlp", small.dataset, hidden=(9,)), rec, rec.training_data(small.dataset.train))


def test_recording_plugs_its_recorder_into_train_without_training_importing_it():
    """``train(record=True)`` uses the Recorder that obliviate.recording registered (issue 12: no import cycle)."""
    import ast
    import inspect

    import obliviate.training as training

    assert training._recorder_factory is Recorder
    tree = ast.parse(inspect.getsource(training))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "recording" not in imported and "obliviate.recording" not in imported


def test_one_subset_walker_serves_the_recorder_and_the_batch_iterator(small):
    """``subset_root`` (the recorder's sample ids) and ``flatten_view`` (the fast batch path) agree on nested views."""
    from obliviate.data.base import Subset, flatten_view, subset_root

    view = Subset(Subset(small.train, np.arange(len(small.train))[::-1]), np.array([4, 0, 7]))
    root, ids = subset_root(view)
    base, positions, labels = flatten_view(view)
    np.testing.assert_array_equal(ids, positions)
    assert root is base or subset_root(root)[0] is base
    np.testing.assert_array_equal(labels, [int(view[i][1]) for i in range(3)])
    for i in range(3):
        torch.testing.assert_close(view[i][0], root[int(ids[i])][0])


def test_logit_loss_is_the_training_loss():
    """One implementation: ``cross_entropy_loss`` (what fit uses) is ``logit_loss`` of the logits, bit for bit."""
    from obliviate.training import cross_entropy_loss

    torch.manual_seed(0)
    net = torch.nn.Linear(5, 4)
    x, y = torch.randn(16, 5), torch.randint(0, 4, (16,))
    for smoothing, std_reg in [(0.0, 0.0), (0.1, 0.5)]:
        assert torch.equal(cross_entropy_loss(smoothing, std_reg)(net, x, y), logit_loss(smoothing, std_reg)(net(x), y))
        per = logit_loss(smoothing, std_reg, reduction="none")(net(x), y)
        torch.testing.assert_close(per.mean(), logit_loss(smoothing, std_reg)(net(x), y))


# --------------------------------------------------------------------------- issue 13 item 13: edited recordings
def _edit_json(directory, change):
    import json

    path = directory / "recording.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="module")
def recorded_mlp(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    return model, ob.train(model, small.train, record=True, **KW)


def test_an_edited_recording_is_refused_on_load_naming_the_file(tmp_path, recorded_mlp):
    _, res = recorded_mlp
    for i, change in enumerate(
        (
            lambda m: m.update(param_names=m["param_names"][:1]),  # the repro: sgu then updates one tensor
            lambda m: m["config"].update(lr=0.5),
            lambda m: m.update(seed=4),
        )
    ):
        directory = tmp_path / f"edit{i}"
        res.recording.save(directory)
        assert Recording.load(directory).param_names == res.recording.param_names  # untouched: loads
        path = _edit_json(directory, change)
        with pytest.raises(IncompatibleModelError, match=rf"{path}.*edited"):
            Recording.load(directory)


def test_edited_recording_tensors_are_refused_on_load(tmp_path, recorded_mlp):
    from safetensors.torch import load_file, save_file

    _, res = recorded_mlp
    res.recording.save(tmp_path)
    tensors = load_file(str(tmp_path / RECORDING_FILE))
    tensors["final/head.weight"] = tensors["final/head.weight"] * 2
    save_file(tensors, str(tmp_path / RECORDING_FILE), metadata={"format": "obliviate-recording"})
    with pytest.raises(IncompatibleModelError, match="edited"):
        Recording.load(tmp_path)


def test_a_recording_without_a_digest_loads_with_a_warning_to_re_record(tmp_path, recorded_mlp):
    from obliviate.errors import UnlearningWarning

    _, res = recorded_mlp
    res.recording.save(tmp_path)
    _edit_json(tmp_path, lambda m: m.pop("digest"))
    with pytest.warns(UnlearningWarning, match="no digest.*re-record"):
        back = Recording.load(tmp_path)
    assert back.param_names == res.recording.param_names


def test_a_recording_missing_a_trained_parameter_is_refused_by_sgu(recorded_mlp, small):
    import dataclasses

    model, res = recorded_mlp
    short = dataclasses.replace(res.recording, param_names=res.recording.param_names[:1])
    with pytest.raises(IncompatibleModelError, match="'body.1.bias'.*not in the recording's param_names"):
        short.check_model(res.model)
    with pytest.raises(IncompatibleModelError, match="not in the recording's param_names"):
        ob.unlearn(res, small, "sgu", recording=short, device="cpu")
    twice = dataclasses.replace(res.recording, param_names=[*res.recording.param_names, res.recording.param_names[0]])
    with pytest.raises(IncompatibleModelError, match="twice"):
        twice.check_model(res.model)
    res.recording.check_model(res.model)  # the real recording fits


def test_a_parameter_frozen_during_the_recorded_run_may_be_left_out(small):
    model = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))
    model.body[1].bias.requires_grad_(False)
    res = ob.train(model, small.train, record=True, **KW)
    assert "body.1.bias" not in res.recording.param_names
    fresh = ob.build_model("mlp", small.dataset, seed=0, hidden=(8,))  # every parameter trainable again
    res.recording.check_model(fresh)


def test_the_cli_refuses_an_edited_recording_in_one_line_naming_the_file(tmp_path, capsys):
    from obliviate.cli import main

    base = tmp_path / "base"
    assert main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--record", "--out", str(base)]) == 0
    path = _edit_json(base, lambda m: m.update(param_names=m["param_names"][:1]))
    capsys.readouterr()
    code = main(["unlearn", str(base), "--scenario", "random:0.1", "--method", "sgu", "--out", str(tmp_path / "u")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(path) in err and "edited" in err, err
    assert not (tmp_path / "u" / "run.json").exists()
