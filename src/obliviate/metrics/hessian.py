"""Deprecated location of :mod:`obliviate.hessian` (linear algebra, not a metric; issue 12).

Every name still resolves here, with a :class:`DeprecationWarning`; import from
:mod:`obliviate.hessian` instead.
"""

from __future__ import annotations

import warnings
from typing import Any

from .. import hessian as _hessian

__all__ = list(_hessian.__all__)


def __getattr__(name: str) -> Any:
    if name in _hessian.__all__ or name == "LogitLoss":
        warnings.warn(
            f"obliviate.metrics.hessian.{name} moved to obliviate.hessian.{name}; import it from there.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_hessian, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
