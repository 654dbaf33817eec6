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
what was removed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import DuplicateRequestError, InvalidConfigError, LedgerError, UnknownSampleError
from .records import DeletionRequest, LedgerEntry

__all__ = ["DeletionLedger", "SCHEMA"]

SCHEMA = "obliviate.ledger/1"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('fit', 'remove')),
    sample_ids TEXT NOT NULL,
    received_at TEXT NOT NULL,
    reason TEXT,
    method TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES requests (request_id),
    kind TEXT NOT NULL CHECK (kind IN ('prepared', 'committed', 'aborted', 'retrained')),
    at TEXT NOT NULL,
    digest_before TEXT,
    digest_after TEXT,
    details TEXT NOT NULL
);
"""
_APPEND_ONLY = [
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the obliviate ledger is append-only'); END;"
    for table in ("meta", "requests", "events")
    for op in ("UPDATE", "DELETE")
]


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


class DeletionLedger:
    """An append-only SQLite ledger of deletion requests.

    Args:
        path: The database file.
        create: Create it (it must not exist yet); otherwise it must exist and be a ledger.

    Raises:
        InvalidConfigError: ``create`` and the file exists, or not ``create`` and it does not, or
            the file is not an obliviate ledger.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "ledger.sqlite")
        >>> with DeletionLedger(path, create=True) as led:
        ...     fit = led.prepare([0, 1, 2], kind="fit", digest_before=None, digest_after="d0")
        ...     led.commit(fit.request_id)
        ...     req = led.prepare([1], digest_before="d0", digest_after="d1")
        ...     led.commit(req.request_id)
        ...     sorted(led.forgotten_ids()), led.head_digest()
        ([1], 'd1')
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.path = Path(path)
        if create and self.path.exists():
            raise InvalidConfigError(f"Ledger {str(self.path)!r} already exists.")
        if not create and not self.path.is_file():
            raise InvalidConfigError(f"Ledger {str(self.path)!r} does not exist.")
        try:
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if create:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _DDL.split(";"):  # executescript() would commit the transaction
                    if statement.strip():
                        self._db.execute(statement)
                for trig in _APPEND_ONLY:
                    self._db.execute(trig)
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?), ('created_at', ?)", (SCHEMA, _now()))
                self._db.execute("COMMIT")
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as e:
            raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger ({e}).") from None
        if row is None or row[0] != SCHEMA:
            raise InvalidConfigError(f"{str(self.path)!r} is not an obliviate deletion ledger (schema {row and row[0]!r}).")

    # ---------------------------------------------------------------- plumbing
    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> DeletionLedger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # ---------------------------------------------------------------- reading
    def entries(self) -> list[LedgerEntry]:
        """Every request with its outcome, in the order received."""
        events: dict[str, list[tuple]] = {}
        for row in self._db.execute("SELECT request_id, kind, at, digest_before, digest_after, details FROM events ORDER BY seq"):
            events.setdefault(row[0], []).append(row[1:])
        out = []
        for rid, kind, ids, received, reason, method in self._db.execute(
            "SELECT request_id, kind, sample_ids, received_at, reason, method FROM requests ORDER BY seq"
        ):
            evs = events.get(rid, [])
            prepared = next((e for e in evs if e[0] == "prepared"), None)
            final = next((e for e in reversed(evs) if e[0] in ("committed", "aborted")), None)
            notes = tuple(json.loads(e[4]).get("note", "") for e in evs if json.loads(e[4]).get("note"))
            out.append(
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
        if request_id is not None and self._db.execute("SELECT 1 FROM requests WHERE request_id = ?", (request_id,)).fetchone():
            raise DuplicateRequestError(f"Request id {request_id!r} is already in the ledger; request ids must be unique.")
        return ids

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
                if request_id is not None and self._db.execute("SELECT 1 FROM requests WHERE request_id = ?", (rid,)).fetchone():
                    raise DuplicateRequestError(f"Request id {rid!r} is already in the ledger.")
            head = self.head_digest()
            if head != digest_before:
                raise LedgerError(
                    f"The request starts from model {str(digest_before)[:12]} but the ledger's last committed model is "
                    f"{str(head)[:12]}; another process changed the run. Open it again."
                )
            now = _now()
            self._db.execute(
                "INSERT INTO requests (request_id, kind, sample_ids, received_at, reason, method) VALUES (?, ?, ?, ?, ?, ?)",
                (rid, kind, json.dumps(list(ids)), now, reason, json.dumps(method or {}, default=str)),
            )
            self._event(rid, "prepared", digest_before, digest_after, {"certificate": certificate or {}})
            if retrained is not None:
                self._event(rid, "retrained", digest_before, digest_after, retrained)
        return DeletionRequest(rid, ids, now, reason, kind)

    def _event(self, rid: str, kind: str, before: str | None, after: str | None, details: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (request_id, kind, at, digest_before, digest_after, details) VALUES (?, ?, ?, ?, ?, ?)",
            (rid, kind, _now(), before, after, json.dumps(details, default=str)),
        )

    def _pending_one(self, request_id: str) -> LedgerEntry:
        match = [e for e in self.pending() if e.request.request_id == request_id]
        if not match:
            raise LedgerError(f"Request {request_id!r} is not pending (unknown, or already committed or aborted).")
        return match[0]

    def commit(self, request_id: str, note: str = "") -> None:
        """Mark a prepared request as having taken effect (its model file is in place)."""
        with self._transaction():
            e = self._pending_one(request_id)
            self._event(request_id, "committed", e.digest_before, e.digest_after, {"note": note} if note else {})

    def abort(self, request_id: str, note: str) -> None:
        """Mark a prepared request as never having taken effect."""
        with self._transaction():
            e = self._pending_one(request_id)
            self._event(request_id, "aborted", e.digest_before, e.digest_after, {"note": note})

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
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error); re-entrant within one connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outer = True

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
