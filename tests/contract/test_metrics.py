"""Every registered metric passes the shipped contract suite (obliviate.testing.check_metric)."""

from __future__ import annotations

from pathlib import Path

import pytest

import obliviate as ob
from obliviate.metrics import Metric, register_metric
from obliviate.metrics import functional as MF
from obliviate.testing import check_metric

TESTS = Path(__file__).resolve().parents[1]
EXPECTED_CHECKS = {"declarations", "inputs", "deterministic", "range", "missing_data", "reference_test"}
# opt-in metrics train networks or replay the recorded run: seconds each on a quiet CPU
SLOW = {"mia_adversarial", "privacy_risk", "unlearning_error", "verification_error", "verification_error_noop"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ob.METRICS.names()])
def test_metric_passes_the_contract(name):
    report = check_metric(name, tests_dir=TESTS)
    assert set(report) == EXPECTED_CHECKS and set(report.values()) == {"ok"}


@pytest.fixture
def registered():
    """Register test metrics under throw-away names; unregister them afterwards."""
    names: list[str] = []

    def add(name: str, cls: type[Metric]) -> str:
        register_metric(name)(cls)
        names.append(name)
        return name

    yield add
    for n in names:
        ob.METRICS.unregister(n)


class _ForgetAcc(Metric):
    """Accuracy on D_f, declared honestly (the base of the broken variants below)."""

    description = "accuracy on D_f"
    requires = ("forget",)
    reference_test = (
        "tests/reference/test_metrics_reference.py::test_accuracy_equals_sklearn_accuracy_score_on_labels_and_on_logits"
    )

    def compute(self, ctx):
        return MF.accuracy(ctx.forget.probs, ctx.forget.labels)


def test_an_honest_metric_passes(registered):
    assert set(check_metric(registered("contract_honest", _ForgetAcc), tests_dir=TESTS).values()) == {"ok"}


def test_a_metric_reading_an_undeclared_split_fails(registered):
    class Sneaky(_ForgetAcc):
        def compute(self, ctx):
            return MF.accuracy(ctx.retain.probs, ctx.retain.labels)

    with pytest.raises(AssertionError, match=r"\[inputs\].*'retain'"):
        check_metric(registered("contract_sneaky", Sneaky))


def test_a_metric_reading_an_undeclared_reference_fails(registered):
    class NeedsOracle(_ForgetAcc):
        def compute(self, ctx):
            return MF.js_divergence(ctx.forget.probs, ctx.reference.forget_probs)

    with pytest.raises(AssertionError, match=r"\[inputs\].*'reference'"):
        check_metric(registered("contract_needs_oracle", NeedsOracle))


def test_a_metric_declaring_an_input_it_never_reads_fails(registered):
    class Overdeclared(_ForgetAcc):
        requires = ("forget", "val")

    with pytest.raises(AssertionError, match=r"\[inputs\].*never reads \['val'\]"):
        check_metric(registered("contract_overdeclared", Overdeclared))


def test_a_nondeterministic_metric_fails(registered):
    calls = []

    class Drifting(_ForgetAcc):
        def compute(self, ctx):
            calls.append(1)
            return 0.1 * len(calls) + 0.0 * super().compute(ctx)

    with pytest.raises(AssertionError, match=r"\[deterministic\]"):
        check_metric(registered("contract_drifting", Drifting))


def test_a_fraction_outside_the_unit_interval_fails(registered):
    class Percent(_ForgetAcc):
        def compute(self, ctx):
            return 100.0 + super().compute(ctx)

    with pytest.raises(AssertionError, match=r"\[range\]"):
        check_metric(registered("contract_percent", Percent))


def test_a_missing_reference_test_fails(registered):
    class Untested(_ForgetAcc):
        reference_test = "tests/reference/test_metrics_reference.py::test_no_such_test"

    with pytest.raises(AssertionError, match=r"\[reference_test\].*test_no_such_test"):
        check_metric(registered("contract_untested", Untested), tests_dir=TESTS)
    assert "reference_test" not in check_metric("contract_untested")  # without tests_dir it is not checked
