"""Frozen records of the deletion ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeletionRequest", "LedgerEntry"]


@dataclass(frozen=True)
class DeletionRequest:
    """One request, as received.

    Attributes:
        request_id: Unique id (given by the caller or generated).
        sample_ids: The samples to remove (for a ``fit`` request: every training sample).
        received_at: ISO-8601 UTC time the request was recorded.
        reason: Free text (e.g. "GDPR art. 17 request #123"), or None.
        kind: "fit" (the model every later request starts from) or "remove".
    """

    request_id: str
    sample_ids: tuple[int, ...]
    received_at: str
    reason: str | None = None
    kind: str = "remove"


@dataclass(frozen=True)
class LedgerEntry:
    """A request with what happened to it.

    Attributes:
        request: The :class:`DeletionRequest`.
        method: How it was served (estimator, parameters), as recorded.
        status: "committed" (the model file holds its result), "aborted" (it never took effect) or
            "pending" (prepared, outcome not yet recorded: only between two steps of one process,
            or after a crash until the ledger is opened again and recovered).
        digest_before: SHA-256 of the model file the request started from (None for a fit).
        digest_after: SHA-256 of the model file it produced.
        certificate: What it cost (bound charged, accumulated bound, epsilon, ...).
        retrained: Whether serving it retrained the model (budget exhausted).
        started_at: Time it was prepared.
        finished_at: Time it was committed or aborted (None while pending).
        notes: Notes of its events (e.g. how recovery resolved it).
    """

    request: DeletionRequest
    method: dict[str, Any]
    status: str
    digest_before: str | None
    digest_after: str | None
    certificate: dict[str, Any]
    retrained: bool
    started_at: str
    finished_at: str | None
    notes: tuple[str, ...] = field(default_factory=tuple)
