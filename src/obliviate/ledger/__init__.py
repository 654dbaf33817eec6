"""Deletion requests and removal budgets, persistent and append-only.

- :class:`DeletionLedger`: every deletion request in an append-only SQLite database (WAL), with
  the model digests before and after, the certificate spent and retraining events; a crash
  between writing a model and recording it is resolved on the next open. The events form a hash
  chain whose head is authenticated with an HMAC key, so edits outside obliviate are detected.
- :class:`RemovalBudget`: the accountant of certified removal (Opacus ``IAccountant`` style).
"""

from .budget import RemovalBudget, budget_from, c_from_delta, certified_epsilon, delta_from_c
from .ledger import SCHEMA, DeletionLedger, key_file_of, new_key
from .records import DeletionRequest, LedgerEntry

__all__ = [
    "SCHEMA",
    "DeletionLedger",
    "DeletionRequest",
    "LedgerEntry",
    "RemovalBudget",
    "budget_from",
    "c_from_delta",
    "certified_epsilon",
    "delta_from_c",
    "key_file_of",
    "new_key",
]
