"""The demo's quality targets (issue: foundation), measured on the full 30-epoch demo, seed 0.

Timings and speedups are recorded by benchmarks/demo.py, never asserted here.
"""

import pytest

from obliviate.demo import run_demo


@pytest.fixture(scope="module")
def demo():
    return run_demo(out=None, progress=False)


def _runs(demo, scenario):
    return {r["method"]: r for r in demo.records if r["scenario"]["name"] == scenario}


@pytest.mark.slow
def test_every_run_succeeds_and_every_method_appears(demo):
    import obliviate as ob

    assert {r["status"] for r in demo.records} == {"ok"}
    kinds = {"class:3": "classwise", "random:0.1": "random", "subclass:3": "subclass"}
    for scenario, kind in kinds.items():  # methods whose paper rules a kind out are not run on it
        expected = {n for n in ob.METHODS.names() if kind in ob.METHODS.get(n).kinds}
        assert set(_runs(demo, scenario)) == expected | {"original"}


@pytest.mark.slow
def test_classwise_oracle_and_ssd_targets(demo):
    runs = _runs(demo, "class:3")
    assert runs["retrain"]["metrics"]["forget_acc"] <= 0.02
    ssd, original = runs["ssd"]["metrics"], runs["original"]["metrics"]
    assert ssd["forget_acc"] <= 0.05
    assert ssd["retain_acc"] >= original["retain_acc"] - 0.03


@pytest.mark.slow
def test_random_forgetting_some_method_is_closer_to_the_oracle_than_doing_nothing(demo):
    runs = _runs(demo, "random:0.1")
    baseline = runs["original"]["metrics"]["avg_gap"]
    better = [
        m
        for m, r in runs.items()
        if m not in ("retrain", "original") and r["metrics"]["avg_gap"] <= 0.03 and r["metrics"]["avg_gap"] <= baseline
    ]
    assert better, {m: r["metrics"]["avg_gap"] for m, r in runs.items()}
    assert runs["retrain"]["metrics"]["avg_gap"] == 0.0


ISSUE4_METHODS = ("bad_teacher", "unsir", "boundary_shrink", "boundary_expand", "scrub", "salun", "neggrad_plus")


@pytest.mark.slow
@pytest.mark.parametrize("method", ISSUE4_METHODS)
def test_classwise_baselines_reach_the_oracle_and_keep_retain_accuracy(demo, method):
    """Issue 4: forget accuracy within 5 points of the oracle's, retain accuracy within 5 of the original's."""
    runs = _runs(demo, "class:3")
    got, oracle, original = runs[method]["metrics"], runs["retrain"]["metrics"], runs["original"]["metrics"]
    assert abs(got["forget_acc"] - oracle["forget_acc"]) <= 0.05, got
    assert got["retain_acc"] >= original["retain_acc"] - 0.05, got


@pytest.mark.slow
def test_subclass_scenario_runs_on_digits_coarse_against_its_own_oracle(demo):
    runs = _runs(demo, "subclass:3")
    assert {r["scenario"]["dataset"] for r in runs.values()} == {"digits_coarse"}
    assert {r["scenario"]["kind"] for r in runs.values()} == {"subclass"}
    oracle, original = runs["retrain"]["metrics"], runs["original"]["metrics"]
    assert original["forget_acc"] >= 0.95 and oracle["forget_acc"] <= 0.3  # retraining without the 3s forgets them
    assert "boundary_shrink" not in runs and "unsir" in runs  # class-only vs class-level methods


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["class:3", "random:0.1", "subclass:3"])
def test_amnesiac_with_its_repair_keeps_retain_accuracy(demo, scenario):
    """Issue 6: every demo batch holds forget samples, so amnesiac relies on its 4 repair epochs;
    retain accuracy within 5 points of the original's, forget accuracy at most 5 above the oracle's.
    """
    runs = _runs(demo, scenario)
    got, oracle, original = runs["amnesiac"]["metrics"], runs["retrain"]["metrics"], runs["original"]["metrics"]
    assert got["retain_acc"] >= original["retain_acc"] - 0.05, got
    assert got["forget_acc"] <= oracle["forget_acc"] + 0.05, got


@pytest.mark.slow
def test_sgu_on_its_scope_a_random_forget_set(demo):
    """Issue 6: sgu's digits preset is tuned for a small forget set spread over the run (random:0.1);
    on class and sub-class forget sets the first-order correction overshoots (documented, not asserted).
    """
    runs = _runs(demo, "random:0.1")
    assert runs["sgu"]["metrics"]["avg_gap"] <= 0.05, runs["sgu"]["metrics"]
    assert 0.9 <= runs["sgu"]["diagnostics"]["forget_step_fraction"] <= 1.0


@pytest.mark.slow
def test_every_run_is_timed_cold(demo):
    """Issue 11, item 2: class:3 runs first on the same model; random:0.1's SSD/LFSSD must not reuse its
    importance over D (a warm cache made SSD look 34x faster than retraining instead of about 5x).
    """
    for scenario in ("class:3", "random:0.1"):
        runs = _runs(demo, scenario)
        for method in ("ssd", "lfssd"):
            diag = runs[method]["diagnostics"]
            assert diag["importance_cached"] == 0.0, (scenario, method, diag)
            assert diag["passes"] >= 1.0, (scenario, method, diag)  # the pass over D was paid in this run
