"""The removal budget of certified removal: an accountant in the style of Opacus' ``IAccountant``.

Guo et al. (ICML 2020, arXiv:1911.03030), Theorem 3 and Algorithm 2: a model trained on
``L_b(w) = sum_i l(w^T x_i, y_i) + (lam n / 2)||w||^2 + b^T w`` with secret ``b ~ N(0, sigma^2 I)``
and then edited by removals is ``(epsilon, delta)``-certified as long as the norm of its gradient
residual stays below ``sigma * epsilon / c`` with ``delta = 1.5 exp(-c^2 / 2)``. Removals add
their residual bounds to an accumulated ``beta``; when the next one would exceed the budget the
model must be retrained with a fresh ``b`` (``beta`` restarts). The seed repository only logged
``beta``; this accountant enforces the budget.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .._validation import check_interval
from ..errors import BudgetExhaustedError, InvalidConfigError

__all__ = ["RemovalBudget", "c_from_delta", "delta_from_c", "budget_from", "certified_epsilon"]


def c_from_delta(delta: float) -> float:
    """``c = sqrt(2 ln(1.5 / delta))``, the Gaussian tail factor of the (epsilon, delta) theorem.

    Args:
        delta: Failure probability, in (0, 1).

    Example:
        >>> round(c_from_delta(1e-4), 3)
        4.385
    """
    delta = check_interval("c_from_delta", "delta", delta, low=0.0, high=1.0, closed="neither")
    return math.sqrt(2.0 * math.log(1.5 / delta))


def delta_from_c(c: float) -> float:
    """``delta = 1.5 exp(-c^2 / 2)``, the inverse of :func:`c_from_delta`."""
    c = check_interval("delta_from_c", "c", c, low=0.0, closed="neither")
    return 1.5 * math.exp(-0.5 * c * c)


def budget_from(sigma: float, epsilon: float, delta: float) -> float:
    """The largest certified gradient-residual norm: ``sigma * epsilon / c(delta)``.

    Example:
        >>> round(budget_from(10.0, 1.0, 1e-4), 2)
        2.28
    """
    return sigma * epsilon / c_from_delta(delta)


def certified_epsilon(beta: float, sigma: float, delta: float) -> float:
    """The epsilon certified for an accumulated residual bound ``beta``: ``c(delta) * beta / sigma``."""
    return c_from_delta(delta) * beta / sigma


class RemovalBudget:
    """Accumulates gradient-residual bounds against ``sigma * epsilon / c(delta)``.

    Args:
        sigma: Standard deviation of the objective-perturbation noise ``b`` (σ in the paper).
        epsilon: Target ε of the (ε, δ)-certified-removal guarantee.
        delta: Target δ, in (0, 1).

    Attributes:
        spent: The accumulated bound β since the last reset (training residual included).
        history: The amounts charged since the last reset, in order (the first is the base set by
            :meth:`reset`).
        resets: How many times the budget was reset (one per retraining).

    Example:
        >>> acc = RemovalBudget(sigma=10.0, epsilon=1.0, delta=1e-4)
        >>> acc.step(1.0); acc.can_spend(1.5)
        False
        >>> round(acc.epsilon_spent(), 4)
        0.4385
    """

    def __init__(self, *, sigma: float, epsilon: float, delta: float) -> None:
        self.sigma = check_interval(self, "sigma", sigma, low=0.0, closed="neither")
        self.epsilon = check_interval(self, "epsilon", epsilon, low=0.0, closed="neither")
        self.delta = check_interval(self, "delta", delta, low=0.0, high=1.0, closed="neither")
        self.c = c_from_delta(self.delta)
        self.budget = self.sigma * self.epsilon / self.c
        self.spent = 0.0
        self.history: list[float] = [0.0]
        self.resets = 0

    @classmethod
    def mechanism(cls) -> str:
        """Name of the mechanism this accountant is for."""
        return "gaussian_objective_perturbation"

    def remaining(self) -> float:
        """Budget left before a retrain is needed (never negative)."""
        return max(0.0, self.budget - self.spent)

    def epsilon_spent(self) -> float:
        """The ε certified for what was spent so far (at the accountant's δ)."""
        return self.c * self.spent / self.sigma

    def can_spend(self, amount: float) -> bool:
        """Whether charging ``amount`` keeps the accumulated bound within the budget (``<=``)."""
        return self.spent + float(amount) <= self.budget

    def step(self, amount: float) -> None:
        """Charge ``amount`` (a removal's residual bound).

        Raises:
            InvalidConfigError: ``amount`` is negative or not finite.
            BudgetExhaustedError: the charge would exceed the budget (nothing is charged).
        """
        amount = check_interval(self, "amount", amount, low=0.0)
        if not self.can_spend(amount):
            raise BudgetExhaustedError(
                f"Removing would spend {self.spent + amount:.6g} of a residual budget of {self.budget:.6g} "
                f"(sigma={self.sigma:g}, epsilon={self.epsilon:g}, delta={self.delta:g}); retrain the model "
                "(auto_retrain=True) or use a larger sigma or epsilon."
            )
        self.spent += amount
        self.history.append(amount)

    def reset(self, base: float = 0.0) -> None:
        """Start a new model (after retraining): the accumulated bound restarts at ``base``
        (the new model's training residual).

        Raises:
            InvalidConfigError: ``base`` is negative, or larger than the whole budget.
        """
        base = check_interval(self, "base", base, low=0.0)
        if base > self.budget:
            raise InvalidConfigError(
                f"The training residual {base:.3g} alone exceeds the removal budget {self.budget:.3g}; "
                "train to a smaller tolerance or use a larger sigma or epsilon."
            )
        self.spent = base
        self.history = [base]
        self.resets += 1

    _STATE_KEYS: ClassVar[frozenset[str]] = frozenset({"mechanism", "sigma", "epsilon", "delta", "spent", "history", "resets"})

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to restore the accountant, as JSON-friendly values."""
        return {
            "mechanism": self.mechanism(),
            "sigma": self.sigma,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "spent": self.spent,
            "history": list(self.history),
            "resets": self.resets,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (keys and mechanism are checked).

        Raises:
            InvalidConfigError: missing or unknown keys, another mechanism, or other σ/ε/δ.
        """
        if not isinstance(state, dict) or set(state) != self._STATE_KEYS:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise InvalidConfigError(f"RemovalBudget state must have keys {sorted(self._STATE_KEYS)}; got {got}.")
        if state["mechanism"] != self.mechanism():
            raise InvalidConfigError(f"RemovalBudget state is for mechanism {state['mechanism']!r}, not {self.mechanism()!r}.")
        for key in ("sigma", "epsilon", "delta"):
            if float(state[key]) != getattr(self, key):
                raise InvalidConfigError(
                    f"RemovalBudget state has {key}={state[key]!r}; this accountant has {getattr(self, key)!r}."
                )
        self.spent = float(state["spent"])
        self.history = [float(v) for v in state["history"]]
        self.resets = int(state["resets"])

    def __repr__(self) -> str:
        return f"RemovalBudget(spent={self.spent:.4g}, budget={self.budget:.4g}, epsilon_spent={self.epsilon_spent():.4g})"
