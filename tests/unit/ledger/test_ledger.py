"""The SQLite deletion ledger: records, validation, append-only storage, recovery."""

from __future__ import annotations

import sqlite3

import pytest

from obliviate.errors import DuplicateRequestError, InvalidConfigError, LedgerError, UnknownSampleError
from obliviate.ledger import DeletionLedger


@pytest.fixture
def ledger(tmp_path):
    led = DeletionLedger(tmp_path / "ledger.sqlite", create=True)
    fit = led.prepare(range(10), kind="fit", digest_before=None, digest_after="m0", method={"estimator": "X"})
    led.commit(fit.request_id)
    yield led
    led.close()


def remove(led, ids, before, after, **kw):
    req = led.prepare(ids, digest_before=before, digest_after=after, **kw)
    led.commit(req.request_id)
    return req


def test_requests_are_recorded_with_digests_certificates_and_outcome(ledger, tmp_path):
    r1 = remove(ledger, [3, 4], "m0", "m1", certificate={"charged": 0.1}, reason="user 17", request_id="req-1")
    remove(ledger, [7], "m1", "m2", retrained={"retrain_count": 1})
    entries = ledger.entries()
    assert len(ledger) == len(entries) == 3
    fit, e1, e2 = entries
    assert fit.request.kind == "fit" and fit.status == "committed" and fit.digest_after == "m0"
    assert e1.request == r1 and r1.request_id == "req-1" and e1.request.sample_ids == (3, 4)
    assert (e1.digest_before, e1.digest_after, e1.certificate, e1.request.reason) == ("m0", "m1", {"charged": 0.1}, "user 17")
    assert e2.retrained and not e1.retrained
    assert e1.started_at <= e1.finished_at
    assert ledger.forgotten_ids() == {3, 4, 7} and ledger.known_ids() == set(range(10))
    assert ledger.head_digest() == "m2"
    mode = sqlite3.connect(tmp_path / "ledger.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_bad_requests_are_refused_with_the_right_error(ledger):
    remove(ledger, [1], "m0", "m1", request_id="a")
    with pytest.raises(DuplicateRequestError, match="more than once"):
        ledger.check_request([2, 2])
    with pytest.raises(DuplicateRequestError, match="already removed"):
        ledger.check_request([5, 1])
    with pytest.raises(UnknownSampleError, match=r"\[10, 99\]"):
        ledger.check_request([10, 99, 2])
    with pytest.raises(DuplicateRequestError, match="Request id 'a'"):
        ledger.check_request([2], request_id="a")
    with pytest.raises(InvalidConfigError, match="at least one"):
        ledger.check_request([])
    with pytest.raises(InvalidConfigError, match="integer"):
        ledger.check_request([1.5])
    # the refused requests wrote nothing
    assert len(ledger) == 2


def test_a_pending_request_blocks_others_and_a_stale_start_is_refused(ledger):
    req = ledger.prepare([1], digest_before="m0", digest_after="m1")
    with pytest.raises(LedgerError, match="pending"):
        ledger.prepare([2], digest_before="m0", digest_after="mX")
    ledger.commit(req.request_id)
    with pytest.raises(LedgerError, match="another process"):
        ledger.prepare([2], digest_before="m0", digest_after="mX")  # the head is m1 now
    with pytest.raises(LedgerError, match="not pending"):
        ledger.commit(req.request_id)


def test_storage_is_append_only(ledger, tmp_path):
    remove(ledger, [1], "m0", "m1")
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    for sql in (
        "UPDATE requests SET sample_ids = '[]'",
        "DELETE FROM requests",
        "UPDATE events SET kind = 'aborted'",
        "DELETE FROM events",
        "DELETE FROM meta",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(sql)
    db.close()
    assert ledger.forgotten_ids() == {1}


def test_recovery_rolls_forward_back_or_refuses(ledger):
    forward = ledger.prepare([1], digest_before="m0", digest_after="m1")
    assert ledger.recover("m1") == [f"request {forward.request_id} committed (rolled forward)"]
    assert ledger.forgotten_ids() == {1} and ledger.head_digest() == "m1"
    back = ledger.prepare([2], digest_before="m1", digest_after="m2")
    assert ledger.recover("m1") == [f"request {back.request_id} aborted (rolled back)"]
    assert ledger.forgotten_ids() == {1}
    assert [e.status for e in ledger.entries()] == ["committed", "committed", "aborted"]
    assert "rolled" not in " ".join(ledger.entries()[2].notes) and "never replaced" in ledger.entries()[2].notes[0]
    ledger.prepare([2], digest_before="m1", digest_after="m2")
    with pytest.raises(LedgerError, match="matches neither"):
        ledger.recover("tampered")
    with pytest.raises(LedgerError, match="pending"):
        ledger.verify("m2")


def test_verify_and_refused_requests(ledger):
    ledger.verify("m0")
    with pytest.raises(LedgerError, match="changed outside"):
        ledger.verify("other")
    req = ledger.record_refused([4], digest="m0", reason=None, note="budget exhausted")
    entry = ledger.entries()[-1]
    assert entry.request.request_id == req.request_id and entry.status == "aborted" and entry.notes == ("budget exhausted",)
    assert ledger.forgotten_ids() == set()
    remove(ledger, [4], "m0", "m1")  # the refused id can be requested again


def test_opening_checks_the_file(tmp_path):
    with pytest.raises(InvalidConfigError, match="does not exist"):
        DeletionLedger(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(InvalidConfigError, match="not an obliviate deletion ledger"):
        DeletionLedger(junk)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(InvalidConfigError, match="not an obliviate deletion ledger"):
        DeletionLedger(other)
    DeletionLedger(tmp_path / "l.sqlite", create=True).close()
    with pytest.raises(InvalidConfigError, match="already exists"):
        DeletionLedger(tmp_path / "l.sqlite", create=True)
    with DeletionLedger(tmp_path / "l.sqlite") as led:
        with pytest.raises(LedgerError, match="no committed fit"):
            led.check_request([1])
        fit = led.prepare([0, 1], kind="fit", digest_before=None, digest_after="a")
        led.commit(fit.request_id)
        with pytest.raises(LedgerError, match="already has a fit"):
            led.prepare([0, 1], kind="fit", digest_before="a", digest_after="b")
