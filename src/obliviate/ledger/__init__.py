"""Deletion requests and removal budgets, persistent and append-only.

- :class:`DeletionLedger`: every deletion request in an append-only SQLite database (WAL), with
  the model digests before and after, the certificate spent and retraining events; a crash
  between writing a model and recording it is resolved on the next open.
- :class:`RemovalBudget`: the accountant of certified removal (Opacus ``IAccountant`` style).
"""

from .budget import RemovalBudget, budget_from, c_from_delta, certified_epsilon, delta_from_c
from .ledger import SCHEMA, DeletionLedger
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
]
