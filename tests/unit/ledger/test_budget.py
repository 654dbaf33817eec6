"""The removal-budget accountant: (epsilon, delta) <-> c, the budget, charging, resets, state."""

from __future__ import annotations

import math

import pytest

from obliviate.errors import BudgetExhaustedError, InvalidConfigError
from obliviate.ledger import RemovalBudget, budget_from, c_from_delta, certified_epsilon, delta_from_c


def test_c_and_delta_round_trip_and_the_spec_example():
    assert c_from_delta(1e-4) == pytest.approx(math.sqrt(2 * math.log(1.5e4)))
    assert c_from_delta(1e-4) == pytest.approx(4.385, abs=5e-4)
    for delta in (1e-2, 1e-4, 1e-8):
        assert delta_from_c(c_from_delta(delta)) == pytest.approx(delta, rel=1e-12)
    # sigma = 10, epsilon = 1, delta = 1e-4 -> budget 2.28 (theory-seeds.md 3.6)
    assert budget_from(10.0, 1.0, 1e-4) == pytest.approx(2.2803, abs=1e-4)
    assert certified_epsilon(budget_from(10.0, 1.0, 1e-4), 10.0, 1e-4) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0.0, 1.0, -1e-3, float("nan"), "x"])
def test_delta_outside_0_1_is_refused(bad):
    with pytest.raises(InvalidConfigError, match="delta"):
        c_from_delta(bad)


def test_charging_up_to_the_budget_is_allowed_and_beyond_it_raises_without_charging():
    acc = RemovalBudget(sigma=10.0, epsilon=1.0, delta=1e-4)
    half = acc.budget / 2
    acc.step(half)
    assert acc.can_spend(acc.budget - acc.spent)  # exactly at the threshold is allowed (<=)
    acc.step(acc.budget - acc.spent)
    assert acc.remaining() == 0.0
    before = (acc.spent, list(acc.history))
    with pytest.raises(BudgetExhaustedError, match="retrain"):
        acc.step(1e-9)
    assert (acc.spent, acc.history) == before
    assert acc.epsilon_spent() == pytest.approx(1.0)


def test_epsilon_spent_is_monotone_and_reset_restarts_from_the_base():
    acc = RemovalBudget(sigma=5.0, epsilon=2.0, delta=1e-5)
    eps = []
    for amount in (0.1, 0.0, 0.3, 0.05):
        acc.step(amount)
        eps.append(acc.epsilon_spent())
    assert eps == sorted(eps)
    assert acc.history == [0.0, 0.1, 0.0, 0.3, 0.05]
    acc.reset(1e-12)
    assert acc.spent == 1e-12 and acc.history == [1e-12] and acc.resets == 1
    with pytest.raises(InvalidConfigError, match="exceeds the removal budget"):
        acc.reset(acc.budget * 2)
    with pytest.raises(InvalidConfigError, match="amount"):
        acc.step(-1.0)


def test_state_dict_round_trip_and_checks():
    acc = RemovalBudget(sigma=10.0, epsilon=1.0, delta=1e-4)
    acc.step(0.5)
    acc.reset(0.01)
    acc.step(0.2)
    other = RemovalBudget(sigma=10.0, epsilon=1.0, delta=1e-4)
    other.load_state_dict(acc.state_dict())
    assert (other.spent, other.history, other.resets) == (acc.spent, acc.history, acc.resets)
    with pytest.raises(InvalidConfigError, match="keys"):
        other.load_state_dict({"spent": 1.0})
    wrong = RemovalBudget(sigma=1.0, epsilon=1.0, delta=1e-4)
    with pytest.raises(InvalidConfigError, match="sigma"):
        wrong.load_state_dict(acc.state_dict())
    state = acc.state_dict() | {"mechanism": "laplace"}
    with pytest.raises(InvalidConfigError, match="mechanism"):
        other.load_state_dict(state)


@pytest.mark.parametrize("kwargs", [{"sigma": 0.0}, {"epsilon": -1.0}, {"delta": 1.5}, {"sigma": True}])
def test_invalid_parameters(kwargs):
    with pytest.raises(InvalidConfigError):
        RemovalBudget(**({"sigma": 1.0, "epsilon": 1.0, "delta": 1e-4} | kwargs))
