"""The deletion ledger: every removal request, append-only, in SQLite (stdlib ``sqlite3``, WAL).

Two tables hold the history; neither can be updated or deleted from (triggers refuse it):

- ``requests``: one row per request (id, sample ids, time, reason, method);
- ``events``: what happened to it: ``prepared`` (with the model digests before and after and the
  certificate), then ``committed`` or ``aborted``; ``retrained`` marks a request served by
  retraining.

A request takes effect in three steps (see :mod:`obliviate.certified.run`): ``prepare`` (the
new model's digest is recorded before the file is written), the atomic replacement of the model
file, and ``commit``. A process killed between them leaves a *pending* request, which
:meth:`DeletionLedger.recover` resolves from the model file on the next open: the file holds the
new digest -> committed (roll forward); the old digest -> aborted (roll back); anything else ->
:class:`~obliviate.errors.LedgerError`. So the ledger and the saved model never disagree about
what was removed. A rolled-back (aborted) request may be submitted again under the same request id.

Tamper evidence. The triggers stop mistakes, not an adversary (``DROP TRIGGER`` removes them), so
the history is also a hash chain: each event stores ``chain = SHA-256(previous chain || canonical
JSON of the event row)``, where a ``prepared`` event's encoding includes its whole request row, and
the first link starts from the ``meta`` rows. The chain head (number of events, last link) is
authenticated with an HMAC-SHA-256 under a secret key, stored in the one-row ``head`` table. The
key is the caller's (a certified run keeps it in its 0600 secret file) or, by default, a key file
``<ledger>.key`` created 0600 (``O_EXCL``) beside the ledger. :meth:`DeletionLedger.integrity_problem`
recomputes the chain: an edited, deleted, reordered or inserted event or request, or a head whose
MAC does not verify, is reported; every write checks it first and refuses a tampered ledger. What
the chain cannot detect alone is a rollback to an earlier genuine state (an old copy of the whole
database with its head); the model file's digest, cross-checked against the head, covers the run
directory case. A ledger written by an older version (schema ``obliviate.ledger/1``) has no chain:
it can be read, its integrity is reported as "no hash chain (ledger from an older version)", and it
cannot be written.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import stat
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import DuplicateRequestError, InvalidConfigError, LedgerError, UnknownSampleError
from .records import DeletionRequest, LedgerEntry

__all__ = ["DeletionLedger", "SCHEMA", "OLD_SCHEMAS", "KEY_BYTES", "key_file_of", "new_key"]

SCHEMA = "obliviate.ledger/2"
OLD_SCHEMAS = ("obliviate.ledger/1",)
"""Schemas this version reads but does not write (no hash chain)."""
KEY_BYTES = 32
NO_CHAIN = "no hash chain (ledger from an older version)"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('fit', 'remove')),
    sample_ids TEXT NOT NULL,
    received_at TEXT NOT NULL,
    reason TEXT,
    method TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_id ON requests (request_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_seq INTEGER NOT NULL REFERENCES requests (seq),
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('prepared', 'committed', 'aborted', 'retrained')),
    at TEXT NOT NULL,
    digest_before TEXT,
    digest_after TEXT,
    details TEXT NOT NULL,
    chain TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    chain TEXT NOT NULL,
    mac TEXT NOT NULL
);
"""
_APPEND_ONLY = [
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the obliviate ledger is append-only'); END;"
    for table in ("meta", "requests", "events")
    for op in ("UPDATE", "DELETE")
] + ["CREATE TRIGGER IF NOT EXISTS head_no_delete BEFORE DELETE ON head BEGIN SELECT RAISE(ABORT, 'the ledger head stays'); END;"]
_REQUEST_COLUMNS = "seq, request_id, kind, sample_ids, received_at, reason, method"
_EVENT_COLUMNS = "seq, request_seq, request_id, kind, at, digest_before, digest_after, details"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _ids(values: Iterable[Any], what: str) -> tuple[int, ...]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            try:
                import numpy as np

                if isinstance(v, np.integer):
                    v = int(v)
                else:
                    raise TypeError
            except TypeError:
                raise InvalidConfigError(f"{what} must be integer sample ids; got {v!r}.") from None
        out.append(int(v))
    return tuple(out)


def key_file_of(path: str | os.PathLike[str]) -> Path:
    """The default key file of a ledger: ``<ledger file name>.key`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".key")


def new_key() -> bytes:
    """A fresh ledger key from operating-system entropy (``os.urandom``)."""
    return os.urandom(KEY_BYTES)


def _write_key_file(path: Path, key: bytes) -> None:
    """Create ``path`` holding ``key`` (hex) with mode 0600, exclusively (``O_EXCL``: never over a file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise InvalidConfigError(f"Key file {str(path)!r} already exists; a new ledger needs a new key file.") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.hex().encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read_key_file(path: Path) -> tuple[bytes | None, str | None]:
    """The key in ``path``, or None and why it cannot be used."""
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
                return None, f"key file {str(path)!r} is accessible by group or others (mode {stat.S_IMODE(mode):04o})"
            text = fh.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None, f"no key file {str(path)!r}"
    except OSError as e:
        return None, f"key file {str(path)!r} cannot be read ({e.strerror or e})"
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None, f"key file {str(path)!r} does not hold a hex key"
    if len(key) < 16:
        return None, f"key file {str(path)!r} holds a key shorter than 16 bytes"
    return key, None


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _link(previous: str, payload: Any) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + _canonical(payload)).hexdigest()


def _head_mac(key: bytes, count: int, chain: str) -> str:
    return hmac.new(key, f"obliviate.ledger-head|{count}|{chain}".encode(), hashlib.sha256).hexdigest()


class DeletionLedger:
    """An append-only, tamper-evident SQLite ledger of deletion requests.

    Args:
        path: The database file.
        create: Create it (it must not exist yet); otherwise it must exist and be a ledger.
        key: The secret key that authenticates the chain head (at least 16 bytes). None (the
            default): the key file ``<path>.key`` beside the ledger, created 0600 with ``create``
            (from ``os.urandom``) and read otherwise. Without a usable key the ledger can be read
            but not written, and :meth:`integrity_problem` says the chain cannot be authenticated.
        read_only: Open the database read-only (SQLite URI ``mode=ro``; also ``immutable=1`` when
            the folder cannot be written, so SQLite needs no ``-wal``/``-shm`` files). Nothing can be
            written.
        verify: Check the chain on open when a key is available and raise if it fails (default).
            False opens any ledger, a tampered or older one included, for inspection: call
            :meth:`integrity_problem`.

    Raises:
        InvalidConfigError: ``create`` and the file exists, or not ``create`` and it does not, or
            the file is not an obliviate ledger.
        LedgerError: ``verify`` and the ledger fails its integrity check (or has no hash chain), or
            the file cannot be opened (e.g. a folder the user cannot read).

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
        >>> with DeletionLedger(path, create=True) as led:
        ...     fit = led.prepare([0, 1, 2], kind="fit", digest_before=None, digest_after="d0")
        ...     led.commit(fit.request_id)
        ...     req = led.prepare([1], digest_before="d0", digest_after="d1")
        ...     led.commit(req.request_id)
        ...     sorted(led.forgotten_ids()), led.head_digest(), led.integrity_problem()
        ([1], 'd1', None)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        key: bytes | None = None,
        read_only: bool = False,
        verify: bool = True,
    ) -> None:
        self.path = Path(path)
        self.read_only = bool(read_only)
        if create and read_only:
            raise InvalidConfigError("A ledger cannot be created read-only.")
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise InvalidConfigError("key must be bytes of length >= 16 (e.g. os.urandom(32)).")
        if create and self.path.exists():
            raise InvalidConfigError(f"Ledger {str(self.path)!r} already exists.")
        if not create and not self.path.exists():
            raise InvalidConfigError(f"Ledger {str(self.path)!r} does not exist.")
        if not create and self.path.is_dir():
            raise InvalidConfigError(f"Ledger {str(self.path)!r} is a directory, not a ledger file.")
        self._key, self._key_problem = key, None
        key_file = None
        if create and key is None:
            key_file = key_file_of(self.path)
            self._key = new_key()
            _write_key_file(key_file, self._key)
        elif key is None:
            self._key, self._key_problem = _read_key_file(key_file_of(self.path))
        try:
            self._db = self._connect()
        except BaseException:
            if key_file is not None:
                key_file.unlink(missing_ok=True)
            raise
        try:
            if create:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _DDL.split(";"):  # executescript() would commit the transaction
                    if statement.strip():
                        self._db.execute(statement)
                for trig in _APPEND_ONLY:
                    self._db.execute(trig)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?), ('created_at', ?)", (SCHEMA, _now()))
                genesis = self._genesis()
                self._db.execute(
                    "INSERT INTO head (id, count, chain, mac) VALUES (1, 0, ?, ?)", (genesis, _head_mac(self._key, 0, genesis))
                )
                self._db.execute("COMMIT")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.OperationalError as e:
            self._db.close()
            if key_file is not None:
                key_file.unlink(missing_ok=True)
            if "no such table" in str(e):
                raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger ({e}).") from None
            raise self._open_error(e) from None
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger ({e}).") from None
        if row is None or row[0] not in (SCHEMA, *OLD_SCHEMAS):
            self._db.close()
            raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger (schema {row and row[0]!r}).")
        self.schema = row[0]
        self.chained = self.schema == SCHEMA
        if verify and (not self.chained or self._key is not None):
            try:
                self.check_integrity()
            except BaseException:
                self._db.close()
                raise

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            try:
                db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
            except sqlite3.OperationalError as e:
                raise self._open_error(e) from None
            except sqlite3.DatabaseError as e:
                raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger ({e}).") from None
            return db
        uri = "file:" + quote(str(self.path.resolve())) + "?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        folder_writable = os.access(self.path.parent, os.W_OK)
        if not folder_writable and not (wal.exists() and wal.stat().st_size > 0):
            # nothing left in a write-ahead log: the database file is complete, and with immutable=1
            # SQLite takes no locks and creates no -wal/-shm files (the folder may be read-only)
            uri += "&immutable=1"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
            db.execute("PRAGMA query_only=ON")
        except sqlite3.OperationalError as e:
            raise self._open_error(e) from None
        return db

    def _open_error(self, e: Exception) -> LedgerError:
        folder = self.path.parent
        hint = ""
        if not os.access(folder, os.W_OK) and not self.read_only:
            hint = f"; the folder {str(folder)!r} is not writable, and writing to the ledger needs write access"
        elif not os.access(self.path, os.R_OK):
            hint = "; the file is not readable by this user"
        elif self.read_only:
            hint = "; a read-only folder whose ledger has an unfinished write-ahead log must be opened once with write access"
        return LedgerError(f"Cannot open the deletion ledger {str(self.path)!r} ({e}){hint}.")

    # ---------------------------------------------------------------- plumbing
    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> DeletionLedger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        if self.read_only:
            raise LedgerError(f"The ledger {str(self.path)!r} was opened read-only; nothing can be written.")
        if not self.chained:
            raise LedgerError(
                f"The ledger {str(self.path)!r} has {NO_CHAIN}: it can be read but not written. Fit a new run with this version."
            )
        if self._key is None:
            raise LedgerError(
                f"The ledger {str(self.path)!r} cannot be written without its key ({self._key_problem}): the chain head "
                "could not be authenticated."
            )
        return _Transaction(self._db, self)

    # ---------------------------------------------------------------- integrity
    def _genesis(self) -> str:
        meta = sorted(self._db.execute("SELECT key, value FROM meta").fetchall())
        return hashlib.sha256(_canonical(["obliviate.ledger-genesis", meta])).hexdigest()

    @staticmethod
    def _payload(event: tuple, request: tuple | None) -> list[Any]:
        return [list(event), list(request) if request is not None else None]

    def integrity_problem(self) -> str | None:
        """Recompute the hash chain and check its authenticated head; None when all is intact.

        Returns:
            Why the ledger cannot be trusted: no chain (an older version), no usable key, or the
            first event, request or head that does not match (edited, deleted, reordered or
            inserted outside obliviate).
        """
        if not self.chained:
            return NO_CHAIN
        requests = {row[0]: row for row in self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests")}
        prepared: set[int] = set()
        chain = self._genesis()
        count = 0
        for row in self._db.execute(f"SELECT {_EVENT_COLUMNS}, chain FROM events ORDER BY seq"):
            event, stored = row[:-1], row[-1]
            count += 1
            seq, rseq, rid, kind = event[0], event[1], event[2], event[3]
            where = f"event {seq} ({kind} of request {rid!r})"
            if seq != count:
                return f"the events are not numbered 1..n (event {count} is {seq}): events were deleted or reordered"
            request = requests.get(rseq)
            if request is None or request[1] != rid:
                return f"{where} names a request that is not in the ledger: its request row was deleted or edited"
            if kind == "prepared":
                if rseq in prepared:
                    return f"{where} prepares a request twice: an event was inserted"
                prepared.add(rseq)
            elif rseq not in prepared:
                return f"{where} comes before the request was prepared: events were reordered or inserted"
            chain = _link(chain, self._payload(event, request if kind == "prepared" else None))
            if not hmac.compare_digest(chain, str(stored)):
                return f"{where} does not match the hash chain: it or an event before it was edited, deleted or inserted"
        unprepared = sorted(set(requests) - prepared)
        if unprepared:
            return f"request {requests[unprepared[0]][1]!r} has no recorded preparation: a request row was inserted"
        head = self._db.execute("SELECT count, chain, mac FROM head WHERE id = 1").fetchone()
        if head is None:
            return "the authenticated chain head is missing: the ledger was rewritten"
        if head[0] != count or head[1] != chain:
            return (
                f"the ledger holds {count} events but its chain head covers {head[0]}: events were deleted, appended or "
                "rewritten outside obliviate"
            )
        if self._key is None:
            return f"the chain head cannot be authenticated without the ledger's key ({self._key_problem})"
        if not hmac.compare_digest(_head_mac(self._key, count, chain), str(head[2])):
            return (
                "the chain head's MAC does not verify: the ledger was rewritten without its key (or the key is not this ledger's)"
            )
        return None

    def check_integrity(self) -> None:
        """Raise :class:`~obliviate.errors.LedgerError` when :meth:`integrity_problem` finds one."""
        problem = self.integrity_problem()
        if problem is not None:
            raise LedgerError(
                f"The deletion ledger {str(self.path)!r} fails its integrity check: {problem}. Refusing to use it."
                if problem != NO_CHAIN
                else f"The deletion ledger {str(self.path)!r} has {NO_CHAIN}; its history cannot be verified."
            )

    # ---------------------------------------------------------------- reading
    def _event_rows(self) -> Iterator[tuple]:
        if self.chained:
            sql = "SELECT request_seq, kind, at, digest_before, digest_after, details FROM events ORDER BY seq"
        else:  # the older schema: request ids were unique, events named them
            sql = (
                "SELECT (SELECT r.seq FROM requests r WHERE r.request_id = e.request_id), kind, at, digest_before, "
                "digest_after, details FROM events e ORDER BY seq"
            )
        return iter(self._db.execute(sql).fetchall())

    def entries(self) -> list[LedgerEntry]:
        """Every request with its outcome, in the order received."""
        return [e for _seq, e in self._entries()]

    def _entries(self) -> list[tuple[int, LedgerEntry]]:
        events: dict[int, list[tuple]] = {}
        for row in self._event_rows():
            events.setdefault(row[0], []).append(row[1:])
        out = []
        for rseq, rid, kind, ids, received, reason, method in self._db.execute(
            "SELECT seq, request_id, kind, sample_ids, received_at, reason, method FROM requests ORDER BY seq"
        ).fetchall():
            evs = events.get(rseq, [])
            prepared = next((e for e in evs if e[0] == "prepared"), None)
            final = next((e for e in reversed(evs) if e[0] in ("committed", "aborted")), None)
            notes = tuple(json.loads(e[4]).get("note", "") for e in evs if json.loads(e[4]).get("note"))
            out.append(
                (
                    rseq,
                    LedgerEntry(
                        request=DeletionRequest(rid, tuple(json.loads(ids)), received, reason, kind),
                        method=json.loads(method),
                        status=final[0] if final else "pending",
                        digest_before=prepared[2] if prepared else None,
                        digest_after=prepared[3] if prepared else None,
                        certificate=json.loads(prepared[4]).get("certificate", {}) if prepared else {},
                        retrained=any(e[0] == "retrained" for e in evs),
                        started_at=prepared[1] if prepared else received,
                        finished_at=final[1] if final else None,
                        notes=notes,
                    ),
                )
            )
        return out

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def pending(self) -> list[LedgerEntry]:
        """Requests prepared but neither committed nor aborted."""
        return [e for e in self.entries() if e.status == "pending"]

    def committed(self) -> list[LedgerEntry]:
        """Requests that took effect, in order."""
        return [e for e in self.entries() if e.status == "committed"]

    def head_digest(self) -> str | None:
        """Digest of the model file the last committed request produced (None before the fit)."""
        done = self.committed()
        return done[-1].digest_after if done else None

    def known_ids(self) -> set[int]:
        """The training sample ids (those of the committed ``fit`` request)."""
        fits = [e for e in self.committed() if e.request.kind == "fit"]
        return set(fits[0].request.sample_ids) if fits else set()

    def forgotten_ids(self) -> set[int]:
        """Sample ids removed by committed requests."""
        return {i for e in self.committed() if e.request.kind == "remove" for i in e.request.sample_ids}

    # ---------------------------------------------------------------- writing
    def check_request(self, sample_ids: Iterable[Any], request_id: str | None = None) -> tuple[int, ...]:
        """Validate a removal request without writing anything; returns the ids as ints.

        Raises:
            InvalidConfigError: no ids, or ids that are not integers.
            DuplicateRequestError: an id repeated, already removed, or a request id reused.
            UnknownSampleError: an id not in the training set.
            LedgerError: a request is pending, or there is no committed fit.
        """
        ids = _ids(sample_ids, "sample_ids")
        if not ids:
            raise InvalidConfigError("A removal request needs at least one sample id.")
        if self.pending():
            raise LedgerError("A request is pending (a process stopped mid-removal); open the run again to recover it first.")
        known = self.known_ids()
        if not known:
            raise LedgerError("The ledger has no committed fit; the run directory is incomplete. Delete it and fit again.")
        seen: set[int] = set()
        dup = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        if dup:
            raise DuplicateRequestError(f"Sample ids {dup[:5]} appear more than once in the request.")
        unknown = sorted(set(ids) - known)
        if unknown:
            raise UnknownSampleError(
                f"Sample ids {unknown[:5]} are not in the training set of this model ({len(known)} samples)."
            )
        gone = sorted(set(ids) & self.forgotten_ids())
        if gone:
            raise DuplicateRequestError(f"Sample ids {gone[:5]} were already removed by an earlier request.")
        self._check_request_id(request_id)
        return ids

    def _check_request_id(self, request_id: str | None) -> None:
        """A request id may be used again only when every earlier request under it was aborted."""
        if request_id is None:
            return
        used = [e for e in self.entries() if e.request.request_id == request_id]
        if any(e.status != "aborted" for e in used):
            raise DuplicateRequestError(
                f"Request id {request_id!r} is already in the ledger; request ids must be unique (only an aborted "
                "request's id may be submitted again)."
            )

    def prepare(
        self,
        sample_ids: Iterable[Any],
        *,
        digest_before: str | None,
        digest_after: str,
        kind: str = "remove",
        certificate: dict[str, Any] | None = None,
        method: dict[str, Any] | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        retrained: dict[str, Any] | None = None,
    ) -> DeletionRequest:
        """Record a request and its intended result (before the model file is replaced).

        Checked again inside the write transaction: no request pending, ``digest_before`` equal to
        :meth:`head_digest` (no concurrent writer got there first), and for removals the checks of
        :meth:`check_request`.

        Raises:
            DuplicateRequestError, UnknownSampleError: as :meth:`check_request`.
            LedgerError: a request is pending or ``digest_before`` is not the head.
        """
        if kind not in ("fit", "remove"):
            raise InvalidConfigError(f"kind must be 'fit' or 'remove'; got {kind!r}.")
        rid = request_id or uuid.uuid4().hex
        with self._transaction():
            if kind == "remove":
                ids = self.check_request(sample_ids, request_id)
            else:
                ids = _ids(sample_ids, "sample_ids")
                if self.pending() or self.committed():
                    raise LedgerError("This ledger already has a fit; a run directory holds one model's history.")
                self._check_request_id(request_id)
            head = self.head_digest()
            if head != digest_before:
                raise LedgerError(
                    f"The request starts from model {str(digest_before)[:12]} but the ledger's last committed model is "
                    f"{str(head)[:12]}; another process changed the run. Open it again."
                )
            now = _now()
            rseq = self._db.execute(
                "INSERT INTO requests (request_id, kind, sample_ids, received_at, reason, method) VALUES (?, ?, ?, ?, ?, ?)",
                (rid, kind, json.dumps(list(ids)), now, reason, json.dumps(method or {}, default=str)),
            ).lastrowid
            self._event(rseq, rid, "prepared", digest_before, digest_after, {"certificate": certificate or {}})
            if retrained is not None:
                self._event(rseq, rid, "retrained", digest_before, digest_after, retrained)
        return DeletionRequest(rid, ids, now, reason, kind)

    def _event(self, rseq: int, rid: str, kind: str, before: str | None, after: str | None, details: dict[str, Any]) -> None:
        """Append one event, extend the hash chain and re-authenticate its head (inside a transaction)."""
        if self._key is None or not self._db.in_transaction:  # every writer goes through _transaction(), which ensures both
            raise LedgerError(
                "Ledger events are written only inside a keyed transaction (open the ledger with its key to write)."
            )
        count, previous = self._db.execute("SELECT count, chain FROM head WHERE id = 1").fetchone()
        seq = count + 1
        event = (seq, rseq, rid, kind, _now(), before, after, json.dumps(details, default=str))
        request = None
        if kind == "prepared":
            request = self._db.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE seq = ?", (rseq,)).fetchone()
        chain = _link(previous, self._payload(event, request))
        self._db.execute(
            f"INSERT INTO events ({_EVENT_COLUMNS}, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*event, chain),
        )
        self._db.execute(
            "UPDATE head SET count = ?, chain = ?, mac = ? WHERE id = 1", (seq, chain, _head_mac(self._key, seq, chain))
        )

    def _pending_one(self, request_id: str) -> tuple[int, LedgerEntry]:
        match = [(seq, e) for seq, e in self._entries() if e.status == "pending" and e.request.request_id == request_id]
        if not match:
            raise LedgerError(f"Request {request_id!r} is not pending (unknown, or already committed or aborted).")
        return match[0]

    def commit(self, request_id: str, note: str = "") -> None:
        """Mark a prepared request as having taken effect (its model file is in place)."""
        with self._transaction():
            seq, e = self._pending_one(request_id)
            self._event(seq, request_id, "committed", e.digest_before, e.digest_after, {"note": note} if note else {})

    def abort(self, request_id: str, note: str) -> None:
        """Mark a prepared request as never having taken effect (its id may be submitted again)."""
        with self._transaction():
            seq, e = self._pending_one(request_id)
            self._event(seq, request_id, "aborted", e.digest_before, e.digest_after, {"note": note})

    def record_refused(
        self,
        sample_ids: Iterable[Any],
        *,
        digest: str,
        reason: str | None,
        note: str,
        method: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> DeletionRequest:
        """Record a valid request that could not be served (e.g. budget exhausted): prepared with
        an unchanged model, then aborted at once with ``note``.
        """
        req = self.prepare(
            sample_ids,
            digest_before=digest,
            digest_after=digest,
            method=method,
            reason=reason,
            request_id=request_id,
            certificate={"refused": note},
        )
        self.abort(req.request_id, note)
        return req

    def recover(self, model_digest: str | None) -> list[str]:
        """Resolve pending requests from the digest of the model file now on disk.

        The new digest on disk -> committed (the file was replaced, the commit was lost); the old
        one -> aborted (the file was never replaced). Returns one line per action.

        Raises:
            LedgerError: the file matches neither, or (with nothing pending) differs from
                :meth:`head_digest`.
        """
        actions = []
        for e in self.pending():
            rid = e.request.request_id
            if model_digest is not None and model_digest == e.digest_after:
                self.commit(rid, note="recovered on open: the model file had been replaced, the commit was lost")
                actions.append(f"request {rid} committed (rolled forward)")
            elif model_digest == e.digest_before:
                self.abort(rid, note="recovered on open: the model file was never replaced; submit the request again")
                actions.append(f"request {rid} aborted (rolled back)")
            else:
                raise LedgerError(
                    f"Request {rid} is pending and the model file ({str(model_digest)[:12]}) matches neither its starting "
                    f"model ({str(e.digest_before)[:12]}) nor its result ({str(e.digest_after)[:12]}); the run directory "
                    "was changed outside obliviate."
                )
        self.verify(model_digest)
        return actions

    def verify(self, model_digest: str | None) -> None:
        """Check that the model file on disk is the one the last committed request produced.

        Raises:
            LedgerError: a request is pending, or the digests differ.
        """
        if self.pending():
            raise LedgerError("A request is pending; open the run again to recover it.")
        head = self.head_digest()
        if head != model_digest:
            raise LedgerError(
                f"The model file ({str(model_digest)[:12]}) is not the one the ledger's last committed request produced "
                f"({str(head)[:12]}); the run directory was changed outside obliviate."
            )


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); re-entrant within one connection.

    The outermost transaction first checks the ledger's integrity (under the write lock, so what
    is checked is what is extended) and refuses a tampered ledger.
    """

    def __init__(self, db: sqlite3.Connection, ledger: DeletionLedger) -> None:
        self.db = db
        self.ledger = ledger
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True
            try:
                self.ledger.check_integrity()
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
