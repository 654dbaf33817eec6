"""Hostile and unlucky use of a certified run directory (issue 13, items 3, 10, 14 and 15).

- Item 3: the ledger forgery of the issue (append-only triggers dropped, the model's budget reset,
  ``digest_after`` rewritten to the new model's hash) and its variants are reported by ``status``
  as ``ledger_consistent: false`` with a reason (exit 0), and ``remove`` refuses the run (exit 1).
- Item 10: ``status`` needs only read access (the ledger opened with ``mode=ro``); ``remove`` on a
  directory the user cannot write fails in one line. CI runs as root, which ignores file modes:
  the CLI then runs in a subprocess without the capabilities that bypass them.
- Item 14: a killed ``fit`` leaves one state that ``fit``, ``status`` and ``remove`` name alike;
  a rolled-back request id can be sent again; ``--ids-file`` never echoes the file and reads pipes.
- Item 15: a binary model refuses to lose a whole class unless the caller allows it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

import obliviate as ob
from obliviate.certified import run as run_module
from obliviate.certified.model import read_safetensors
from obliviate.certified.run import CRASH_ENV, LEDGER_FILE, MODEL_FILE, SECRET_FILE, CertifiedRun, fit_run
from obliviate.cli import main
from obliviate.ledger import DeletionLedger
from obliviate.ledger.ledger import _EVENT_COLUMNS, _REQUEST_COLUMNS, _head_mac, _link
from obliviate.testing import one_error_line, run_cli

pytestmark = pytest.mark.filterwarnings("ignore::obliviate.certified.SeededNoiseWarning")
TRIGGERS = [f"{t}_no_{op}" for t in ("meta", "requests", "events") for op in ("update", "delete")]
FIT = ["certified", "fit", "--classes", "3,8", "--lam", "0.01", "--sigma", "10", "--seed", "0"]


@pytest.fixture(scope="module")
def ids_3_8() -> np.ndarray:
    targets = ob.load_dataset("digits").train_targets
    return np.flatnonzero(np.isin(targets, [3, 8]))


@pytest.fixture(scope="module")
def removed_run(tmp_path_factory: pytest.TempPathFactory, ids_3_8: np.ndarray) -> Path:
    """A run with two committed removals."""
    out = tmp_path_factory.mktemp("tamper") / "base"
    assert main([*FIT, "--out", str(out)]) == 0
    assert main(["certified", "remove", str(out), "--ids", f"{ids_3_8[0]},{ids_3_8[1]}"]) == 0
    assert main(["certified", "remove", str(out), "--ids", str(ids_3_8[2]), "--request-id", "ticket-2"]) == 0
    return out


@pytest.fixture
def run_dir(removed_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(removed_run, tmp_path / "run"))


def status(capsys, run_dir: Path) -> dict:
    code, out, err = run_cli(capsys, "certified", "status", run_dir, "--json")
    assert code == 0 and "Traceback" not in err, err
    return json.loads(out)


def reset_budget(run_dir: Path) -> str:
    """Rewrite the model file with its budget spent reset to 0 (the issue's forgery); returns its new digest."""
    import hashlib

    data = (run_dir / MODEL_FILE).read_bytes()
    tensors, meta = read_safetensors(data)
    budget = json.loads(meta["budget"])
    assert budget["spent"] > 0
    budget["spent"], budget["history"] = 0.0, []
    meta["budget"] = json.dumps(budget)
    forged = save(dict(tensors), metadata=meta)
    (run_dir / MODEL_FILE).write_bytes(forged)
    return hashlib.sha256(forged).hexdigest()


def sql(run_dir: Path, *statements: str, params: tuple = ()) -> None:
    """Edit the ledger as an adversary: the append-only triggers dropped first."""
    db = sqlite3.connect(run_dir / LEDGER_FILE, isolation_level=None)
    for trig in TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trig}")
    for statement in statements:
        db.execute(statement, params)
    db.close()


def reseal(run_dir: Path) -> None:
    """Recompute every link and the head's MAC with the run's own key: what only a holder of the
    secret file could do. Whatever the chain then hides, the model/ledger cross-check must catch.
    """
    key = bytes.fromhex(json.loads((run_dir / SECRET_FILE).read_text())["ledger_key"])
    db = sqlite3.connect(run_dir / LEDGER_FILE, isolation_level=None)
    with DeletionLedger(run_dir / LEDGER_FILE, key=key, verify=False) as led:
        chain = led._genesis()
    requests = {r[0]: r for r in db.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests")}
    rows = db.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq").fetchall()
    for row in rows:
        chain = _link(chain, [list(row), list(requests[row[1]]) if row[3] == "prepared" else None])
        db.execute("UPDATE events SET chain = ? WHERE seq = ?", (chain, row[0]))
    db.execute("UPDATE head SET count = ?, chain = ?, mac = ?", (len(rows), chain, _head_mac(key, len(rows), chain)))
    db.close()


# ---------------------------------------------------------------- item 3: tamper evidence
def test_the_issues_forgery_is_reported_by_status_and_refused_by_remove(capsys, run_dir, ids_3_8):
    assert status(capsys, run_dir)["ledger_consistent"]
    new = reset_budget(run_dir)
    sql(run_dir, "UPDATE events SET digest_after = ? WHERE request_id = 'ticket-2'", params=(new,))
    st = status(capsys, run_dir)
    assert st["ledger_consistent"] is False and st["epsilon_spent"] == 0.0  # what the forged model claims ...
    assert "does not match the hash chain" in st["reason"]  # ... and why it is not to be believed
    code, out, err = run_cli(capsys, "certified", "status", run_dir)  # the table prints the reason too
    assert code == 0 and "ledger inconsistent: " in out and "hash chain" in " ".join(out.split())
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(ids_3_8[5]))
    assert code == 1 and "cannot be trusted" in one_error_line(err)


@pytest.mark.parametrize(
    ("statements", "words"),
    [
        (["DELETE FROM events WHERE seq = (SELECT MAX(seq) FROM events)"], "chain head covers"),
        (
            ["DELETE FROM events WHERE request_id = 'ticket-2'", "DELETE FROM requests WHERE request_id = 'ticket-2'"],
            "chain head covers",
        ),  # fmt: skip
        (
            [
                'UPDATE events SET details = \'{"certificate": {"beta": 0.0}}\' '
                "WHERE kind = 'prepared' AND request_id = 'ticket-2'"
            ],
            "does not match the hash chain",
        ),  # fmt: skip
        (["UPDATE requests SET sample_ids = '[1]' WHERE request_id = 'ticket-2'"], "does not match the hash chain"),
    ],
)
def test_a_deleted_or_edited_event_is_reported(capsys, run_dir, statements, words):
    sql(run_dir, *statements)
    st = status(capsys, run_dir)
    assert st["ledger_consistent"] is False and words in st["reason"]


def test_the_cross_check_catches_a_forgery_even_by_a_holder_of_the_key(capsys, run_dir):
    """Re-sealed with the key, the chain verifies; the model file's budget and the ledger's certificates still disagree."""
    new = reset_budget(run_dir)
    sql(run_dir, "UPDATE events SET digest_after = ? WHERE request_id = 'ticket-2'", params=(new,))
    reseal(run_dir)
    with DeletionLedger(run_dir / LEDGER_FILE, verify=False, key=CertifiedRun.open(run_dir, read_only=True)._key) as led:
        assert led.integrity_problem() is None
    st = status(capsys, run_dir)
    assert st["ledger_consistent"] is False and "certifies beta" in st["reason"] and "model file carries beta 0" in st["reason"]


def test_a_run_without_its_secret_file_cannot_be_authenticated(capsys, run_dir, ids_3_8):
    (run_dir / SECRET_FILE).unlink()
    st = status(capsys, run_dir)
    assert st["ledger_consistent"] is False and "cannot be authenticated" in st["reason"] and SECRET_FILE in st["reason"]
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(ids_3_8[5]))
    assert code == 1 and "cannot be trusted" in one_error_line(err)


def test_the_secret_file_is_private(run_dir):
    assert oct(os.stat(run_dir / SECRET_FILE).st_mode & 0o777) == oct(0o600)


# ---------------------------------------------------------------- item 10: read-only run directories
def test_status_opens_the_ledger_read_only(capsys, run_dir, monkeypatch):
    targets = []
    real = sqlite3.connect

    def spy(target, *args, **kwargs):
        targets.append((str(target), kwargs.get("uri", False)))
        return real(target, *args, **kwargs)

    (run_dir / ".lock").unlink(missing_ok=True)
    files = sorted(f.name for f in run_dir.iterdir())
    monkeypatch.setattr(sqlite3, "connect", spy)
    assert status(capsys, run_dir)["ledger_consistent"]
    assert targets and all(uri and "mode=ro" in target for target, uri in targets), targets
    # no lock file created; SQLite's own -wal/-shm files may appear in a writable folder (a reader's right)
    after = {f.name for f in run_dir.iterdir()} - {f"{LEDGER_FILE}-wal", f"{LEDGER_FILE}-shm"}
    assert sorted(after) == files


def _unprivileged() -> None:
    """preexec_fn: as root, drop the capabilities that bypass file modes (from the bounding set, so
    the exec'ed interpreter never has them).
    """
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _cli(*args: object) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "obliviate", *[str(a) for a in args]]
    return subprocess.run(cmd, preexec_fn=_unprivileged, capture_output=True, text=True, timeout=300)


def _read_only(path: Path) -> None:
    for file in path.iterdir():
        file.chmod(0o400 if file.name == SECRET_FILE else 0o444)
    path.chmod(0o555)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="drops Linux capabilities or relies on POSIX modes")
def test_status_works_and_remove_fails_in_one_line_on_a_directory_the_user_cannot_write(run_dir, ids_3_8):
    probe = run_dir.parent / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        check = subprocess.run(
            [sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"], preexec_fn=_unprivileged, capture_output=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot run a process that file modes bind here ({e})")
    if check.returncode == 0:
        pytest.skip("this user writes into a 0555 directory (root with capabilities that cannot be dropped)")
    before = {f.name: f.read_bytes() for f in run_dir.iterdir()}
    _read_only(run_dir)
    try:
        proc = _cli("certified", "status", run_dir, "--json")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        st = json.loads(proc.stdout)
        assert st["ledger_consistent"] is True and st["n_removed"] == 3, st
        proc = _cli("certified", "remove", run_dir, "--ids", str(ids_3_8[5]))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        line = one_error_line(proc.stderr)
        assert "cannot write to the directory" in line and "not an obliviate deletion ledger" not in line
        assert {f.name: f.read_bytes() for f in run_dir.iterdir()} == before  # nothing written, no -wal/-shm
    finally:
        run_dir.chmod(0o755)
        for file in run_dir.iterdir():
            file.chmod(0o600 if file.name == SECRET_FILE else 0o644)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file modes (see the test above)")
def test_status_in_process_on_a_read_only_directory(capsys, run_dir, ids_3_8):
    _read_only(run_dir)
    try:
        assert status(capsys, run_dir)["ledger_consistent"] is True
        code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(ids_3_8[5]))
        assert code == 1 and "cannot write to the directory" in one_error_line(err)
    finally:
        run_dir.chmod(0o755)


# ---------------------------------------------------------------- item 14: small defects
class _Killed(BaseException):
    """Stands in for SIGKILL at a crash point (in-process, so the test stays fast)."""


def _crash_at(monkeypatch, name: str) -> None:
    def crash(point: str) -> None:
        if point == name:
            raise _Killed(point)

    monkeypatch.setattr(run_module, "_crash_point", crash)


@pytest.mark.parametrize("point", ["fit_after_spec", "fit_after_prepare"])
def test_after_a_killed_fit_fit_status_and_remove_name_the_same_state(capsys, tmp_path, monkeypatch, point):
    out = tmp_path / "killed"
    _crash_at(monkeypatch, point)
    with pytest.raises(_Killed):
        main([*FIT, "--out", str(out)])
    monkeypatch.undo()
    for args in (["certified", "status", out], [*FIT, "--out", out], ["certified", "remove", out, "--ids", "1"]):
        code, _out, err = run_cli(capsys, *args)
        assert code == 2 and "holds an incomplete certified fit" in one_error_line(err) and "delete the folder" in err, args
    shutil.rmtree(out)
    assert run_cli(capsys, *FIT, "--out", out)[0] == 0  # what the message says works


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_fit_killed_by_sigkill_is_an_incomplete_fit(capsys, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "obliviate", *FIT, "--out", str(out)]
    proc = subprocess.run(cmd, env={**os.environ, CRASH_ENV: "fit_after_prepare"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    code, _out, err = run_cli(capsys, "certified", "status", out)
    assert code == 2 and "incomplete certified fit" in one_error_line(err)
    code, _out, err = run_cli(capsys, *FIT, "--out", out)
    assert code == 2 and "incomplete certified fit" in one_error_line(err)


def test_a_rolled_back_request_id_can_be_submitted_again(capsys, run_dir, monkeypatch, ids_3_8):
    a = str(ids_3_8[5])
    _crash_at(monkeypatch, "after_prepare")
    with pytest.raises(_Killed):
        main(["certified", "remove", str(run_dir), "--ids", a, "--request-id", "ticket-7"])
    monkeypatch.undo()
    assert "rolled back" in CertifiedRun.open(run_dir).recovered[0]
    code, out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", a, "--request-id", "ticket-7")
    assert code == 0 and "request ticket-7: removed 1 sample(s)" in out, err
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(ids_3_8[6]), "--request-id", "ticket-7")
    assert code == 2 and "ticket-7" in one_error_line(err)  # a committed request's id stays taken
    assert status(capsys, run_dir)["ledger_consistent"]


def test_ids_file_never_echoes_the_file_and_names_the_line(capsys, run_dir, tmp_path, ids_3_8):
    secret_text = "root:x:0:0:root:/root:/bin/bash"
    f = tmp_path / "passwd"
    f.write_text(f"{ids_3_8[5]}\n{secret_text}\n")
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids-file", f)
    line = one_error_line(err)
    assert code == 2 and "line 2 is not a list of integer sample ids" in line and "root" not in line.split("'", 2)[-1]
    assert "/bin/bash" not in err and "root:x" not in err
    if Path("/etc/passwd").is_file():
        code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids-file", "/etc/passwd")
        assert code == 2 and "line 1 is not" in one_error_line(err) and ":0:0:" not in err
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids-file", tmp_path)
    assert code == 2 and "is a directory" in one_error_line(err)
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids-file", tmp_path / "missing")
    assert code == 2 and "does not exist" in one_error_line(err)


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd (what <(...) expands to)")
def test_ids_file_reads_a_pipe(capsys, run_dir, ids_3_8):
    r, w = os.pipe()
    os.write(w, f"{ids_3_8[5]}\n{ids_3_8[6]}\n".encode())
    os.close(w)
    try:
        code, out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids-file", f"/dev/fd/{r}")
    finally:
        os.close(r)
    assert code == 0 and "removed 2 sample(s)" in out, err


# ---------------------------------------------------------------- item 15: a whole class of a binary model
def test_removing_a_whole_class_of_a_binary_model_is_refused_unless_allowed(capsys, run_dir):
    targets = ob.load_dataset("digits").train_targets
    run = CertifiedRun.open(run_dir, read_only=True)
    gone = {int(i) for i in run.sample_ids[run.model.removed_]}
    threes = [int(i) for i in np.flatnonzero(targets == 3) if int(i) not in gone]
    before = {f.name: f.read_bytes() for f in run_dir.iterdir() if f.name in (MODEL_FILE, LEDGER_FILE)}
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", ",".join(map(str, threes)))
    line = one_error_line(err)
    assert code == 2 and "class 3" in line and "one class" in line and "--allow-single-class" in line
    assert {f.name: f.read_bytes() for f in run_dir.iterdir() if f.name in (MODEL_FILE, LEDGER_FILE)} == before
    # all but one row of the class is fine
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", ",".join(map(str, threes[:-1])))
    assert code == 0, err
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(threes[-1]))
    assert code == 2 and "one class" in one_error_line(err)
    code, out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(threes[-1]), "--allow-single-class")
    assert code == 0, err
    assert status(capsys, run_dir)["ledger_consistent"]


def test_the_python_api_refuses_it_too(tmp_path, ids_3_8):
    run = fit_run(tmp_path / "r", classes=(3, 8), params={"lam": 0.01, "sigma": 10.0}, seed=0)
    targets = ob.load_dataset("digits").train_targets
    eights = [int(i) for i in np.flatnonzero(targets == 8)]
    with pytest.raises(ob.errors.InvalidConfigError, match="one class"):
        run.remove(eights)
    assert run.model.n_removed_ == 0


def _downgrade_to_v1(run_dir: Path) -> None:
    """Rewrite the run's ledger in the format of the previous version (no chain, no head) and drop
    its secret file: a run directory written before the ledger was chained.
    """
    old = sqlite3.connect(run_dir / LEDGER_FILE)
    requests = old.execute(
        "SELECT request_id, kind, sample_ids, received_at, reason, method FROM requests ORDER BY seq"
    ).fetchall()
    events = old.execute("SELECT request_id, kind, at, digest_before, digest_after, details FROM events ORDER BY seq").fetchall()
    created = old.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()[0]
    old.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{run_dir / LEDGER_FILE}{suffix}").unlink(missing_ok=True)
    (run_dir / SECRET_FILE).unlink()
    db = sqlite3.connect(run_dir / LEDGER_FILE, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")  # as the previous version wrote it
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            sample_ids TEXT NOT NULL, received_at TEXT NOT NULL, reason TEXT, method TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, kind TEXT NOT NULL,
            at TEXT NOT NULL, digest_before TEXT, digest_after TEXT, details TEXT NOT NULL);
        """
    )
    db.execute("INSERT INTO meta VALUES ('schema', 'obliviate.ledger/1'), ('created_at', ?)", (created,))
    db.executemany(
        "INSERT INTO requests (request_id, kind, sample_ids, received_at, reason, method) VALUES (?, ?, ?, ?, ?, ?)", requests
    )
    db.executemany(
        "INSERT INTO events (request_id, kind, at, digest_before, digest_after, details) VALUES (?, ?, ?, ?, ?, ?)", events
    )
    db.close()


def test_a_run_from_an_older_version_is_reported_as_unchained_and_not_changed(capsys, run_dir, ids_3_8):
    _downgrade_to_v1(run_dir)
    st = status(capsys, run_dir)
    assert st["ledger_consistent"] is False and st["reason"] == "no hash chain (ledger from an older version)"
    assert st["n_removed"] == 3 and st["requests_committed"] == 2  # still readable
    before = (run_dir / LEDGER_FILE).read_bytes()
    code, _out, err = run_cli(capsys, "certified", "remove", run_dir, "--ids", str(ids_3_8[5]))
    assert code == 1 and "no hash chain (ledger from an older version)" in one_error_line(err)
    assert (run_dir / LEDGER_FILE).read_bytes() == before
