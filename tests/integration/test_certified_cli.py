"""``obliviate certified fit|remove|status`` end to end, the ledger it keeps, and crash safety.

Commands run in-process through :func:`obliviate.cli.main`; the crash tests start real processes
(``python -m obliviate certified remove``) that ``OBLIVIATE_CRASH_AT`` kills with SIGKILL between
two steps of a removal, then check that opening the run directory leaves the ledger and the
model file consistent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import obliviate as ob
from obliviate.certified.run import CRASH_ENV, LEDGER_FILE, MODEL_FILE, CertifiedRun, fit_run
from obliviate.cli import main
from obliviate.errors import DuplicateRequestError, LedgerError, UnknownSampleError
from obliviate.ledger import DeletionLedger
from obliviate.testing import one_error_line, run_cli

# the seeds here are deliberate (reproducible tests): the warning is tested in test_secrecy.py
pytestmark = pytest.mark.filterwarnings("ignore::obliviate.certified.SeededNoiseWarning")


@pytest.fixture(scope="module")
def ids_3_8() -> np.ndarray:
    """Train-split indices of the digits 3 and 8 (the sample ids of a --classes 3,8 run)."""
    targets = ob.load_dataset("digits").train_targets
    return np.flatnonzero(np.isin(targets, [3, 8]))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certified") / "base"
    args = ["certified", "fit", "--dataset", "digits", "--classes", "3,8", "--lam", "0.01", "--sigma", "10", "--seed", "0"]
    code = main([*args, "--out", str(out)])
    assert code == 0
    return out


@pytest.fixture
def run_dir(base_run: Path, tmp_path: Path) -> Path:
    """A private copy of the fitted run directory."""
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def status_json(capsys: pytest.CaptureFixture[str], run_dir: Path) -> dict:
    code, out, err = run_cli(capsys, "certified", "status", run_dir, "--json")
    assert code == 0, err
    return json.loads(out)


def test_fit_remove_status_and_the_ledger(capsys, run_dir, ids_3_8):
    st = status_json(capsys, run_dir)
    assert st["n_train"] == len(ids_3_8) and st["n_removed"] == 0 and st["mode"] == "binary"
    assert st["ledger_consistent"] and st["budget"] == pytest.approx(2.2803, abs=1e-4)
    assert 0.5 < st["train_acc"] <= 1.0 and st["beta"] < 1e-6
    a, b, c = (int(i) for i in ids_3_8[:3])
    code, out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", f"{a},{b}", "--reason", "user 7 asked")
    assert code == 0, err
    assert "removed 2 sample(s)" in out and "certified epsilon" in out
    code, out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(c), "--request-id", "ticket-9")
    assert code == 0, err
    st = status_json(capsys, run_dir)
    assert st["n_removed"] == 3 and st["requests_committed"] == 2 and st["ledger_consistent"]
    assert 0 < st["beta"] < st["budget"] and st["epsilon_spent"] == pytest.approx(st["beta"] * 4.38504 / 10, rel=1e-4)
    with DeletionLedger(run_dir / LEDGER_FILE) as led:
        entries = led.entries()
        assert [e.request.kind for e in entries] == ["fit", "remove", "remove"]
        first, second = entries[1], entries[2]
        assert first.request.sample_ids == (a, b) and first.request.reason == "user 7 asked"
        assert second.request.request_id == "ticket-9"
        assert first.digest_after == second.digest_before and second.digest_after == st["model_sha256"]
        assert first.certificate["charged"] > 0 and first.certificate["beta"] < second.certificate["beta"]
        assert led.forgotten_ids() == {a, b, c}
    # the saved model holds the removal: reopening gives the same weights and removed rows
    run = CertifiedRun.open(run_dir)
    assert {int(i) for i in run.sample_ids[run.model.removed_]} == {a, b, c}


def test_bad_input_prints_one_line_exits_2_and_writes_nothing(capsys, run_dir, ids_3_8, tmp_path):
    before = (run_dir / MODEL_FILE).read_bytes()
    outside = int(np.setdiff1d(np.arange(100), ids_3_8)[0])  # a train id of another digit
    first = int(ids_3_8[0])
    cases = [
        (("certified", "remove", run_dir, "--ids", str(outside)), "not in the training set"),
        (("certified", "remove", run_dir, "--ids", f"{first},{first}"), "more than once"),
        (("certified", "remove", run_dir, "--ids", "x"), "must be integers"),
        (("certified", "remove", run_dir), "--ids"),
        (("certified", "remove", tmp_path, "--ids", "1"), "not a certified run directory"),
        (("certified", "status", tmp_path / "missing"), "not a certified run directory"),
        (("certified", "fit", "--classes", "3", "--out", tmp_path / "f1"), "two distinct classes"),
        (("certified", "fit", "--classes", "3,x", "--out", tmp_path / "f2"), "--classes"),
        (("certified", "fit", "--lam", "-1", "--out", tmp_path / "f3"), "'lam'"),
        (("certified", "fit", "--set", "colour=red", "--out", tmp_path / "f4"), "no parameter 'colour'"),
        (("certified", "fit", "--features", "magic", "--out", tmp_path / "f5"), "--features"),
        (("certified", "fit", "--dataset", "digitz", "--out", tmp_path / "f6"), "digits"),
        (("certified", "fit", "--out", run_dir), "already holds a certified run"),
    ]
    for args, words in cases:
        code, _out, err = run_cli(capsys, *args)
        assert code == 2, (args, err)
        assert words in one_error_line(err), (args, err)
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(first))
    assert code == 0, err
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(first))
    assert code == 2 and "already removed" in one_error_line(err)
    assert not any((tmp_path / f"f{i}").exists() for i in range(1, 7))
    assert (run_dir / MODEL_FILE).read_bytes() != before  # only the valid request changed the model


def test_budget_exhausted_without_retraining_exits_1_and_is_recorded(capsys, tmp_path, ids_3_8):
    out = tmp_path / "strict"
    args = ["certified", "fit", "--classes", "3,8", "--lam", "0.01", "--epsilon", "0.01", "--no-auto-retrain", "--seed", "0"]
    assert main([*args, "--out", str(out)]) == 0
    code = 0
    for i in ids_3_8[:10]:
        code, _out, err = run_cli(capsys, "certified", "remove", out, "--ids", int(i))
        if code != 0:
            break
    assert code == 1 and "residual budget" in one_error_line(err)
    with DeletionLedger(out / LEDGER_FILE) as led:
        last = led.entries()[-1]
        assert last.status == "aborted" and "budget" in last.notes[0]
        assert int(i) not in led.forgotten_ids()


def test_retraining_is_recorded_as_an_event(tmp_path, ids_3_8):
    run = fit_run(tmp_path / "r", classes=(3, 8), params={"lam": 0.01, "epsilon": 0.02}, seed=1)
    for i in ids_3_8[:6]:
        _req, report = run.remove([int(i)])
        if report.retrained:
            break
    assert report.retrained
    with DeletionLedger(tmp_path / "r" / LEDGER_FILE) as led:
        entry = led.entries()[-1]
        assert entry.retrained and entry.status == "committed" and entry.certificate["retrain_count"] == 1
    with pytest.raises(DuplicateRequestError):
        run.remove([int(ids_3_8[0])])
    with pytest.raises(UnknownSampleError):
        run.remove([10**6])


def test_another_writer_is_detected(run_dir, ids_3_8):
    a, b = CertifiedRun.open(run_dir), CertifiedRun.open(run_dir)
    a.remove([int(ids_3_8[0])])
    with pytest.raises(LedgerError, match="changed since this run was opened"):
        b.remove([int(ids_3_8[1])])


def _remove_in_subprocess(run_dir: Path, ids: str, crash_at: str) -> subprocess.CompletedProcess:
    env = {**os.environ, CRASH_ENV: crash_at}
    cmd = [sys.executable, "-m", "obliviate", "certified", "remove", str(run_dir), "--ids", ids]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize(
    ("crash_at", "status", "applied"), [("after_prepare", "aborted", False), ("after_replace", "committed", True)]
)
def test_a_process_killed_mid_removal_leaves_ledger_and_model_consistent(run_dir, ids_3_8, crash_at, status, applied):
    a, b = int(ids_3_8[0]), int(ids_3_8[1])
    before = (run_dir / MODEL_FILE).read_bytes()
    proc = _remove_in_subprocess(run_dir, f"{a},{b}", crash_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # killed: the ledger holds a pending request
    with DeletionLedger(run_dir / LEDGER_FILE) as led:
        pending = led.pending()
        assert len(pending) == 1 and pending[0].request.sample_ids == (a, b)
    assert ((run_dir / MODEL_FILE).read_bytes() != before) == applied
    # what a kill during the model write leaves behind: a partial temporary file beside the model
    partial = run_dir / f".{MODEL_FILE}.tmp-999999"
    partial.write_bytes(b"partial")
    # opening resolves it from the model file on disk
    run = CertifiedRun.open(run_dir)
    assert not partial.exists()
    assert len(run.recovered) == 1 and ("rolled forward" if applied else "rolled back") in run.recovered[0]
    with DeletionLedger(run_dir / LEDGER_FILE) as led:
        assert led.pending() == [] and led.entries()[-1].status == status
        led.verify(run.status()["model_sha256"])
        assert led.forgotten_ids() == ({a, b} if applied else set())
    assert ({a, b} <= {int(i) for i in run.sample_ids[run.model.removed_]}) == applied
    assert run.status()["ledger_consistent"]
    # and the run goes on: a rolled-back request can be sent again, a committed one is refused
    if applied:
        with pytest.raises(DuplicateRequestError):
            run.remove([a])
    else:
        run.remove([a, b])
    assert CertifiedRun.open(run_dir).status()["n_removed"] == 2


def test_frozen_model_features_are_saved_and_checked_on_open(tmp_path, ids_3_8):
    ds = ob.load_dataset("digits")
    net = ob.build_model("mlp", ds, seed=0, hidden=(16,))
    arch = {"name": "mlp", "options": {"hidden": [16]}, "seed": 0}
    run = fit_run(tmp_path / "m", classes=(3, 8), features="model", feature_model=(arch, net), params={"lam": 0.01}, seed=0)
    assert run.status()["features"] == "model" and run.model.n_features_in_ == 16
    run.remove([int(ids_3_8[0])])
    again = CertifiedRun.open(tmp_path / "m")  # rebuilds the extractor from its saved weights
    assert again.model.n_removed_ == 1
    with open(tmp_path / "m" / "extractor.safetensors", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ob.errors.IncompatibleModelError, match="changed since the fit"):
        CertifiedRun.open(tmp_path / "m")


@pytest.mark.slow
def test_dp_features_from_the_command_line_report_their_privacy(capsys, tmp_path, ids_3_8):
    out = tmp_path / "dp"
    code, _out, err = run_cli(
        capsys, "certified", "fit", "--classes", "3,8", "--features", "dp", "--dp-set", "epochs=1", "--dp-set", "batch_size=64",
        "--lam", "0.01", "--seed", "0", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    st = status_json(capsys, out)
    assert st["features"] == "dp" and 0 < st["extractor_privacy"]["epsilon"] < 50
    code, _out, err = run_cli(capsys, "certified", "remove", out, "--ids", f"{ids_3_8[0]},{ids_3_8[1]}")
    assert code == 0, err
    st = status_json(capsys, out)
    eps = st["extractor_privacy"]["epsilon"]
    assert st["extractor_privacy"]["group_of_removed"]["epsilon"] == pytest.approx(2 * eps)
    code, _out, err = run_cli(capsys, "certified", "fit", "--features", "dp", "--dp-set", "colour=1", "--out", tmp_path / "x")
    assert code == 2 and "colour" in one_error_line(err)


HEAD_ONLY = "linear head only: the extractor saw the removed rows"


def test_a_non_private_extractor_labels_every_certificate_in_python(tmp_path, ids_3_8):
    ds = ob.load_dataset("digits")
    net = ob.build_model("mlp", ds, seed=0, hidden=(16,))
    arch = {"name": "mlp", "options": {"hidden": [16]}, "seed": 0}
    run = fit_run(tmp_path / "m", classes=(3, 8), features="model", feature_model=(arch, net), params={"lam": 0.01}, seed=0)
    _req, report = run.remove([int(ids_3_8[0])])
    assert run.status()["certificate_scope"] == HEAD_ONLY
    assert HEAD_ONLY in repr(run) and HEAD_ONLY in repr(run.model) and HEAD_ONLY in repr(report)
    with DeletionLedger(tmp_path / "m" / LEDGER_FILE) as led:
        assert all(e.certificate["scope"] == HEAD_ONLY for e in led.entries())
    reopened = CertifiedRun.open(tmp_path / "m")
    assert HEAD_ONLY in repr(reopened.model) and reopened.status()["certificate_scope"] == HEAD_ONLY
    # raw features: the certificate covers the whole model, with no such label
    raw = fit_run(tmp_path / "r", classes=(3, 8), params={"lam": 0.01}, seed=0)
    assert "head only" not in raw.status()["certificate_scope"] and "head only" not in repr(raw)


def test_a_non_private_extractor_labels_every_certificate_on_the_command_line(capsys, tmp_path, ids_3_8):
    trained = tmp_path / "trained"
    args = ["train", "--dataset", "digits", "--model", "mlp", "--model-option", "hidden=[16]", "--epochs", "1"]
    code, _out, err = run_cli(capsys, *args, "--out", trained)
    assert code == 0, err
    out = tmp_path / "head"
    code, text, err = run_cli(
        capsys, "certified", "fit", "--classes", "3,8", "--features", f"run:{trained}", "--lam", "0.01", "--out", out
    )
    assert code == 0, err
    assert HEAD_ONLY in " ".join(text.split())  # the table may wrap the label
    code, text, err = run_cli(capsys, "certified", "remove", out, "--ids", int(ids_3_8[0]))
    assert code == 0, err
    assert "certified epsilon" in text and HEAD_ONLY in text
    st = status_json(capsys, out)
    assert st["certificate_scope"] == HEAD_ONLY
    code, text, err = run_cli(capsys, "certified", "status", out)
    assert code == 0 and HEAD_ONLY in " ".join(text.split()), err


def test_the_default_fit_plans_a_useful_model_and_status_shows_its_cost_and_the_removals_left(capsys, tmp_path):
    out = tmp_path / "default"
    code, text, err = run_cli(capsys, "certified", "fit", "--seed", "0", "--out", out)  # all ten digits, no lam/sigma
    assert code == 0, err
    assert "unperturbed_test_acc" in text and "accuracy_cost" in text and "removals_left_expected" in text
    st = status_json(capsys, out)
    assert st["test_acc"] >= 0.85 and st["accuracy_cost"] <= 0.05  # the old defaults: 0.706 test accuracy
    assert st["accuracy_cost"] == pytest.approx(st["unperturbed_test_acc"] - st["test_acc"])
    assert st["removals_planned"] == 10 and st["removals_left_expected"] >= 10
    run = CertifiedRun.open(out)
    for sample in run.sample_ids[np.random.default_rng(0).choice(len(run.sample_ids), 10, replace=False)]:
        _req, report = run.remove([int(sample)])
        assert not report.retrained
    assert run.model.retrain_count_ == 0 and 0 <= run.model.expected_removals_left() < st["removals_left_expected"]
    # the number of planned removals is a parameter (--set removals=K; --removals K where the parser has it)
    code, _text, err = run_cli(capsys, "certified", "fit", "--set", "removals=3", "--seed", "0", "--out", tmp_path / "three")
    assert code == 0, err
    three = status_json(capsys, tmp_path / "three")
    assert three["removals_planned"] == 3 and three["budget"] < st["budget"]
