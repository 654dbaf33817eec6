"""Deprecated location of :mod:`obliviate.hessian` (linear algebra, not a metric; issue 12).

Every name still resolves here, with a :class:`DeprecationWarning`; import from
:mod:`obliviate.hessian` instead.
"""

from __future__ import annotations

from .. import hessian as _hessian
from .._utils import moved_names

__all__ = list(_hessian.__all__)

__getattr__ = moved_names(__name__, {name: _hessian for name in [*_hessian.__all__, "LogitLoss"]})
