"""Deletion requests as a stream (issue 17): the drift curve, the ledger, bad input, and resuming after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate import requests as streams
from obliviate.errors import InvalidConfigError
from obliviate.ledger import DeletionLedger
from obliviate.testing import toy_dataset

RECIPE = {"epochs": 3, "lr": 0.05, "batch_size": 32, "schedule": "constant"}


@pytest.fixture(scope="module")
def base():
    ds = toy_dataset()
    rows = np.arange(200)  # rows 200..249 are held out: the validation split of every request's scenario
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_rows = streams._scenario(ds, rows, rows[:1], "original").train
        res = ob.train(ob.build_model("mlp", ds, seed=0), train_rows, seed=0, progress=False, **RECIPE)
    return ds, res


def _requests(k=3, m=4, seed=0):
    return np.random.default_rng(seed).choice(200, k * m, replace=False).reshape(k, m).tolist()


def _apply(base, out, method="finetune", **kw):
    ds, res = base
    kw.setdefault("params", {"epochs": 1, "lr": 0.05, "batch_size": 32} if method == "finetune" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return streams.apply(res, ds, kw.pop("requests", _requests()), method, out=out, device="cpu", progress=False, **kw)


def test_each_request_is_served_in_order_recorded_in_the_ledger_and_measured_against_its_oracle(base, tmp_path):
    reqs = _requests()
    res = _apply(base, tmp_path / "s", requests=reqs)
    assert res.done and [r.ids for r in res.results] == reqs and res.resumed_at == 0
    curve = res.curve()
    assert curve["requests"] == [1, 2, 3]
    assert all(np.isfinite(curve[m]).all() for m in ("avg_gap", "forget_acc", "retain_acc", "val_acc", "test_acc"))
    with DeletionLedger(tmp_path / "s" / streams.LEDGER_FILE, read_only=True) as led:
        entries = led.committed()
        assert [e.request.kind for e in entries] == ["fit", "remove", "remove", "remove"]
        assert led.forgotten_ids() == {i for r in reqs for i in r} and led.integrity_problem() is None
        assert entries[1].method["name"] == "finetune" and entries[1].method["metrics"]["forget_acc"] == curve["forget_acc"][0]
    # the oracle of request 2 is the original retrained without requests 1 and 2: its avg gap to itself is 0
    ds, orig = base
    both = streams._scenario(ds, np.arange(200), reqs[0] + reqs[1], "after 2")
    oracle = ob.unlearn(orig, both, "retrain", seed=0, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = ob.evaluate(oracle.model, both, oracle.model, metrics=["avg_gap", "forget_acc"])
    assert ev["avg_gap"] == 0.0
    # status reads back the same curve
    assert streams.status(tmp_path / "s").curve() == curve


def test_bad_requests_are_refused_before_anything_is_written(base, tmp_path):
    for bad, match in (
        ([[1, 2], [2, 3]], "also in request 1"),
        ([[1, 1]], "twice in it"),
        ([[1], [230]], "not in the model's training set"),
        ([[]], "empty"),
        ([], "requests is empty"),
    ):
        with pytest.raises(InvalidConfigError, match=match):
            _apply(base, tmp_path / "bad", requests=bad)
        assert not (tmp_path / "bad").exists()
    with pytest.raises(ob.errors.UnknownNameError):
        _apply(base, tmp_path / "bad", method="no_such_method")
    assert not (tmp_path / "bad").exists()
    _apply(base, tmp_path / "s", requests=_requests(k=1))
    with pytest.raises(InvalidConfigError, match="holds another stream"):
        _apply(base, tmp_path / "s", requests=_requests(k=2))


def test_a_crash_between_the_steps_of_a_request_resumes_without_losing_or_repeating_one(base, tmp_path, monkeypatch):
    """Killed after the ledger recorded request 2 (before or after the new state file is in): the next call
    resolves it from the file on disk and finishes; the result is the uninterrupted stream's, bit for bit.
    """
    whole = _apply(base, tmp_path / "whole", method="sisa", params={"shards": 2, "slices": 2, "epochs": 2}, preset="digits")
    final = (tmp_path / "whole" / streams.STATE_FILE).read_bytes()
    for point in ("stream_after_prepare", "stream_after_replace"):
        out = tmp_path / point
        calls = {"n": 0}

        def crash(name, point=point, calls=calls):
            if name == point:
                calls["n"] += 1
                if calls["n"] == 2:
                    raise KeyboardInterrupt(point)

        monkeypatch.setattr(streams, "_crash_point", crash)
        with pytest.raises(KeyboardInterrupt):
            _apply(base, out, method="sisa", params={"shards": 2, "slices": 2, "epochs": 2}, preset="digits")
        assert streams.status(out).pending == 1 and len(streams.status(out).results) == 1
        monkeypatch.setattr(streams, "_crash_point", lambda name: None)
        res = _apply(base, out, method="sisa", params={"shards": 2, "slices": 2, "epochs": 2}, preset="digits")
        rolled = "committed (rolled forward)" if point == "stream_after_replace" else "aborted (rolled back)"
        assert len(res.recovered) == 1 and rolled in res.recovered[0]
        assert res.resumed_at == (2 if point == "stream_after_replace" else 1) and res.done
        assert (out / streams.STATE_FILE).read_bytes() == final
        assert [r.metrics for r in res.results] == [r.metrics for r in whole.results]


def test_certified_removal_serves_a_stream_against_its_refitted_oracle(base, tmp_path):
    res = _apply(base, tmp_path / "c", method="certified", params={"removals": 12, "random_state": 0}, requests=_requests(k=2))
    assert res.done and all(r.status == "ok" for r in res.results)
    curve = res.curve()
    assert all(0.0 <= v <= 1.0 for v in curve["val_acc"]) and all(np.isfinite(curve["avg_gap"]))
    assert res.results[0].diagnostics  # the removal's report (bounds, iterations) is kept
    # its health is measured against the estimator it started from, not against the network it was given
    start = ob.requests._CertifiedSteps({"removals": 12, "random_state": 0})
    ds, orig = base
    first = streams._scenario(ds, np.arange(200), _requests(k=2)[0], "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ob.training.accuracy(streams.CertifiedModule(start.start(None, first, 0)), first.val)
    drop = res.results[0].diagnostics["val_acc_drop_total"]
    assert drop == pytest.approx(100 * (fitted - curve["val_acc"][0]), abs=1e-9)


def test_read_ids_file_reads_requests_per_line_or_in_batches(tmp_path):
    f = tmp_path / "ids.txt"
    f.write_text("# a comment\n1 2 3\n\n4,5\n6\n")
    assert streams.read_ids_file(f) == [[1, 2, 3], [4, 5], [6]]
    assert streams.read_ids_file(f, batch=4) == [[1, 2, 3, 4], [5, 6]]
    f.write_text("1 x\n")
    with pytest.raises(InvalidConfigError, match="line 1"):
        streams.read_ids_file(f)


# ---------------------------------------------------------------------------------------------- SIGKILL
def _cli(*args, env=None):
    return [sys.executable, "-m", "obliviate", *map(str, args)]


@pytest.mark.slow
def test_sigkill_mid_stream_then_the_same_command_serves_every_request_once(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = tmp_path / "run"
    subprocess.run(
        _cli("train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--out", run),
        check=True,
        env=env,
        capture_output=True,
    )
    ids = np.random.default_rng(1).choice(np.arange(0, 1200), 24, replace=False)
    rd = ob.runs.RunDir(run)
    rows = streams._rows_of_run(run, rd.training_set, rd.dataset()).indices
    ids = [int(i) for i in rows[ids % len(rows)]]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(" ".join(map(str, ids)) + "\n")
    args = ("requests", "apply", run, "--ids-file", ids_file, "--batch", "3", "--method", "finetune", "--preset", "digits")
    args += ("--set", "epochs=1")
    subprocess.run(_cli(*args, "--out", tmp_path / "whole"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(*args, "--out", tmp_path / "killed"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (tmp_path / "killed" / streams.STREAM_FILE).is_file() and len(streams.status(tmp_path / "killed").results) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    served = len(streams.status(tmp_path / "killed").results)
    assert 2 <= served < 8, "the kill came too late to test a resume"
    done = subprocess.run(_cli(*args, "--out", tmp_path / "killed"), check=True, env=env, capture_output=True, text=True)
    assert "8 of 8 requests served" in done.stdout
    again, whole = streams.status(tmp_path / "killed"), streams.status(tmp_path / "whole")
    assert [r.ids for r in again.results] == [ids[i : i + 3] for i in range(0, 24, 3)] and again.pending == 0
    with DeletionLedger(tmp_path / "killed" / streams.LEDGER_FILE, read_only=True) as led:
        removes = [e for e in led.entries() if e.request.kind == "remove"]
        assert sum(e.status == "committed" for e in removes) == 8 and led.integrity_problem() is None
    # every request applied exactly once: the same final model and curve as the stream that was never killed
    assert (tmp_path / "killed" / streams.STATE_FILE).read_bytes() == (tmp_path / "whole" / streams.STATE_FILE).read_bytes()
    assert [r.metrics for r in again.results] == [r.metrics for r in whole.results]
    status = subprocess.run(_cli("requests", "status", tmp_path / "killed"), env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "8 of 8 requests served" in status.stdout and "[8/8]" in status.stdout


def test_a_slow_slide_over_the_stream_is_collapsed_even_when_each_request_looks_fine(base, tmp_path, monkeypatch):
    """Each method run checks only its own request; the stream compares with the original model too."""
    import obliviate.evaluation as evaluation
    from obliviate.training import accuracy

    ds, res = base
    original_val = accuracy(res.model, streams._scenario(ds, np.arange(200), [0], "x").val)
    real = evaluation.evaluate
    served = {"n": 0}

    def sliding(model, scenario, reference=None, **kw):  # the real evaluation, with val_acc 6 points lower per request
        ev = real(model, scenario, reference, **kw)
        served["n"] += 1
        ev.metrics["val_acc"] = original_val - 0.06 * served["n"]
        return ev

    monkeypatch.setattr(evaluation, "evaluate", sliding)
    out = _apply(base, tmp_path / "s", requests=_requests(k=3))
    assert [r.status for r in out.results] == ["ok", "collapsed", "collapsed"]
    assert [round(r.diagnostics["val_acc_drop_total"], 6) for r in out.results] == [6.0, 12.0, 18.0]
    assert "Collapsed over the stream" in out.results[1].notes[-1]


def test_a_langevin_stream_records_each_requests_certificate_in_the_ledger(base, tmp_path):
    """Langevin unlearning re-certifies every request: its epsilon, delta and assumptions go into the ledger entry."""
    res = _apply(base, tmp_path / "l", method="langevin", params={"steps": 2}, requests=_requests(k=2, m=3))
    with DeletionLedger(tmp_path / "l" / streams.LEDGER_FILE, read_only=True) as led:
        removes = [e for e in led.committed() if e.request.kind == "remove"]
        assert len(removes) == 2
        for entry, served in zip(removes, res.results, strict=True):
            diag = entry.method["diagnostics"]
            assert {"epsilon", "delta", "renyi_epsilon", "assumptions_hold"} <= set(diag)
            assert diag["epsilon"] == served.diagnostics["epsilon"] > 0 and diag["assumptions_hold"] == 0.0  # an MLP


def test_a_certified_streams_seed_is_not_written_to_its_files(base, tmp_path):
    """The seed of a certified estimator determines its secret noise: stream.json keeps only its digest."""
    _apply(base, tmp_path / "c", method="certified", params={"removals": 12, "random_state": 123456789}, requests=_requests(k=1))
    for f in (tmp_path / "c").iterdir():
        assert b"123456789" not in f.read_bytes(), f.name
    with pytest.raises(InvalidConfigError, match="holds another stream"):  # a resume with another seed is refused
        _apply(base, tmp_path / "c", method="certified", params={"removals": 12, "random_state": 7}, requests=_requests(k=1))
