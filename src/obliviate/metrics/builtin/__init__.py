"""The metrics obliviate ships, one module per family; importing this package registers them."""

from . import accuracy, adversarial, corrective, mia, oracle, privacy_risk, unrolling, zrf

__all__ = ["accuracy", "adversarial", "corrective", "mia", "oracle", "privacy_risk", "unrolling", "zrf"]
