"""The ledger is tamper-evident (issue 13, item 3) and an aborted request id can be sent again (item 14).

An adversary with write access to the database can drop the append-only triggers and rewrite
rows; the hash chain and its HMAC-authenticated head must expose every such change, and a
tampered ledger must refuse further writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import sys

import pytest

from obliviate.errors import DuplicateRequestError, InvalidConfigError, LedgerError
from obliviate.ledger import DeletionLedger, key_file_of
from obliviate.ledger.ledger import NO_CHAIN

TRIGGERS = [f"{t}_no_{op}" for t in ("meta", "requests", "events") for op in ("update", "delete")] + ["head_no_delete"]


@pytest.fixture
def path(tmp_path):
    """A ledger with a fit and two committed removals (one retrained), closed."""
    p = tmp_path / "ledger.sqlite"
    with DeletionLedger(p, create=True) as led:
        fit = led.prepare(range(10), kind="fit", digest_before=None, digest_after="m0")
        led.commit(fit.request_id)
        r1 = led.prepare([3], digest_before="m0", digest_after="m1", certificate={"beta": 0.5})
        led.commit(r1.request_id)
        r2 = led.prepare([4, 5], digest_before="m1", digest_after="m2", certificate={"beta": 0.0}, retrained={"retrain_count": 1})
        led.commit(r2.request_id)
    return p


def attack(path, *sql: str) -> None:
    """Run SQL on the ledger as an adversary would: the append-only triggers dropped first."""
    db = sqlite3.connect(path, isolation_level=None)
    for trig in TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trig}")
    for statement in sql:
        db.execute(statement)
    db.close()


def problem(path) -> str | None:
    with DeletionLedger(path, verify=False) as led:
        return led.integrity_problem()


def test_an_untouched_ledger_verifies_and_reopens(path):
    assert problem(path) is None
    with DeletionLedger(path) as led:  # verify=True: no error
        assert led.forgotten_ids() == {3, 4, 5} and led.head_digest() == "m2"


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        # the forgery: the certificate and the digest after the last removal rewritten
        (["UPDATE events SET digest_after = 'forged' WHERE seq >= 5"], "does not match the hash chain"),
        (['UPDATE events SET details = \'{"certificate": {"beta": 0.0}}\' WHERE seq = 3'], "does not match the hash chain"),
        (["UPDATE requests SET sample_ids = '[3, 6]' WHERE seq = 2"], "does not match the hash chain"),
        (["DELETE FROM events WHERE seq = 4"], "numbered"),  # the commit of the first removal
        (["DELETE FROM events WHERE seq = 7"], "chain head covers"),  # the last event
        (["DELETE FROM events WHERE seq >= 3", "DELETE FROM requests WHERE seq >= 2"], "chain head covers"),
        (
            [
                "UPDATE events SET seq = seq + 100 WHERE seq = 4",
                "UPDATE events SET seq = 4 WHERE seq = 5",
                "UPDATE events SET seq = 5 WHERE seq = 104",
            ],
            "hash chain",
        ),  # fmt: skip
        (
            [
                "INSERT INTO requests (request_id, kind, sample_ids, received_at, reason, method) "
                "VALUES ('x', 'remove', '[7]', 't', NULL, '{}')"
            ],
            "no recorded preparation",
        ),  # fmt: skip
        (["UPDATE meta SET value = '2000-01-01' WHERE key = 'created_at'"], "hash chain"),
        (["UPDATE head SET mac = '00' || substr(mac, 3)"], "MAC does not verify"),
    ],
)
def test_every_edit_outside_obliviate_is_detected_and_refused(path, sql, words):
    attack(path, *sql)
    found = problem(path)
    assert found is not None and words in found
    with pytest.raises(LedgerError, match="fails its integrity check"):
        DeletionLedger(path)


def test_recomputing_the_unkeyed_chain_does_not_help_without_the_key(path):
    """An adversary who knows the format rewrites an event and recomputes every link and the head
    count: only the head's MAC, which needs the key, stops them.
    """
    from obliviate.ledger.ledger import _EVENT_COLUMNS, _REQUEST_COLUMNS, _link

    db = sqlite3.connect(path, isolation_level=None)
    for trig in TRIGGERS:
        db.execute(f"DROP TRIGGER IF EXISTS {trig}")
    db.execute('UPDATE events SET details = \'{"certificate": {"beta": 0.0}}\' WHERE seq = 3')
    meta = sorted(db.execute("SELECT key, value FROM meta").fetchall())
    chain = hashlib.sha256(json.dumps(["obliviate.ledger-genesis", meta], sort_keys=True, separators=(",", ":")).encode())
    chain = chain.hexdigest()
    requests = {r[0]: r for r in db.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests")}
    for row in db.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY seq").fetchall():
        chain = _link(chain, [list(row), list(requests[row[1]]) if row[3] == "prepared" else None])
        db.execute("UPDATE events SET chain = ? WHERE seq = ?", (chain, row[0]))
    db.execute("UPDATE head SET chain = ?", (chain,))
    db.close()
    assert "MAC does not verify" in problem(path)
    # and with the wrong key the head fails too
    with DeletionLedger(path, key=os.urandom(32), verify=False) as led:
        assert "MAC does not verify" in led.integrity_problem()


def test_a_tampered_ledger_refuses_writes(path):
    led = DeletionLedger(path)
    attack(path, "UPDATE events SET digest_after = 'forged' WHERE seq = 7")
    with pytest.raises(LedgerError, match="fails its integrity check"):
        led.prepare([6], digest_before="forged", digest_after="m3")
    led.close()
    assert problem(path) is not None


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_key_file_is_created_0600_exclusively_and_a_wide_one_is_not_trusted(tmp_path):
    p = tmp_path / "l.sqlite"
    old = os.umask(0)
    try:
        DeletionLedger(p, create=True).close()
    finally:
        os.umask(old)
    key = key_file_of(p)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(bytes.fromhex(key.read_text().strip())) == 32
    p.unlink()
    with pytest.raises(InvalidConfigError, match="already exists"):  # O_EXCL: never over an existing key file
        DeletionLedger(p, create=True)
    assert not p.exists()
    key.unlink()
    DeletionLedger(p, create=True).close()
    key.chmod(0o644)
    with DeletionLedger(p) as led:  # readable, but neither trusted nor writable
        assert "accessible by group or others" in led.integrity_problem()
        with pytest.raises(LedgerError, match="without its key"):
            led.prepare([0], kind="fit", digest_before=None, digest_after="a")


def test_a_given_key_is_used_and_no_key_file_is_written(tmp_path):
    p, k = tmp_path / "l.sqlite", os.urandom(32)
    with DeletionLedger(p, create=True, key=k) as led:
        led.commit(led.prepare([0, 1], kind="fit", digest_before=None, digest_after="a").request_id)
    assert not key_file_of(p).exists()
    with DeletionLedger(p, key=k) as led:
        assert led.integrity_problem() is None
    with DeletionLedger(p) as led:  # no key: readable, the head cannot be authenticated
        assert "without the ledger's key" in led.integrity_problem() and led.known_ids() == {0, 1}


def test_a_ledger_from_an_older_version_is_reported_as_unchained(tmp_path):
    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE requests (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            sample_ids TEXT NOT NULL, received_at TEXT NOT NULL, reason TEXT, method TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, kind TEXT NOT NULL,
            at TEXT NOT NULL, digest_before TEXT, digest_after TEXT, details TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', 'obliviate.ledger/1'), ('created_at', 't');
        INSERT INTO requests (request_id, kind, sample_ids, received_at, reason, method)
            VALUES ('f', 'fit', '[0,1,2]', 't', NULL, '{}');
        INSERT INTO events (request_id, kind, at, digest_before, digest_after, details)
            VALUES ('f', 'prepared', 't', NULL, 'a', '{}'), ('f', 'committed', 't', NULL, 'a', '{}');
        """
    )
    db.close()
    with pytest.raises(LedgerError, match=r"no hash chain \(ledger from an older version\)"):
        DeletionLedger(p)
    with DeletionLedger(p, verify=False) as led:
        assert led.integrity_problem() == NO_CHAIN and led.head_digest() == "a" and led.known_ids() == {0, 1, 2}
        with pytest.raises(LedgerError, match="can be read but not written"):
            led.prepare([1], digest_before="a", digest_after="b")


def test_an_aborted_request_id_can_be_submitted_again(path):
    """Item 14: a rolled-back request is not in effect; its id is free again (a committed or pending one is not)."""
    with DeletionLedger(path) as led:
        req = led.prepare([6], digest_before="m2", digest_after="m3", request_id="ticket-1")
        assert led.recover("m2") == [f"request {req.request_id} aborted (rolled back)"]
        again = led.prepare([6], digest_before="m2", digest_after="m3", request_id="ticket-1")
        with pytest.raises(LedgerError, match="pending"):
            led.prepare([7], digest_before="m2", digest_after="m4", request_id="ticket-1")
        led.commit(again.request_id)
        with pytest.raises(DuplicateRequestError, match="ticket-1"):
            led.check_request([7], request_id="ticket-1")
        entries = [e for e in led.entries() if e.request.request_id == "ticket-1"]
        assert [e.status for e in entries] == ["aborted", "committed"] and led.forgotten_ids() == {3, 4, 5, 6}
        assert led.integrity_problem() is None


def test_read_only_opening_reads_and_writes_nothing(path, tmp_path):
    with DeletionLedger(path, read_only=True) as led:
        assert led.integrity_problem() is None and led.head_digest() == "m2"
        with pytest.raises(LedgerError, match="read-only"):
            led.prepare([6], digest_before="m2", digest_after="m3")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            led._db.execute("INSERT INTO meta VALUES ('x', 'y')")
