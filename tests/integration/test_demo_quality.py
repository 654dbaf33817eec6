"""The demo's quality targets (issue: foundation), measured on the full 30-epoch demo over 3 seeds.

An approximate method is judged against the no-op original and the retrained oracle over the
3 seeds, never on one seed (issue 11, item 4). Timings and speedups are recorded by
benchmarks/demo.py, never asserted here.
"""

import numpy as np
import pytest

from obliviate.demo import run_demo

SEEDS = 3
MARGIN = 3.0  # points around the health check's 10-point threshold


@pytest.fixture(scope="module")
def demo():
    return run_demo(out=None, progress=False, seeds=SEEDS)


def _runs(demo, scenario, seed=0):
    return {r["method"]: r for r in demo.records if r["scenario"]["name"] == scenario and r["seed"] == seed}


def _per_seed(demo, scenario):
    return [_runs(demo, scenario, seed) for seed in range(SEEDS)]


def _mean(values):
    return float(np.mean(values))


@pytest.mark.slow
def test_every_run_succeeds_and_every_method_appears(demo):
    import obliviate as ob

    # Every run gives a result; the health check flags the collapsed ones, which must be the known ones:
    # sgu (a single-gradient correction, made for a few random deletions) on whole classes and on 10 %
    # of the data, and ssd's digits preset on one random:0.1 draw. A drop within MARGIN of the
    # 10-point threshold may go either way across platforms.
    assert {r["status"] for r in demo.records} <= {"ok", "collapsed"}
    checked = [r for r in demo.records if r["method"] != "original"]  # the original is not an unlearning result
    drops = {(r["method"], r["scenario"]["name"], r["seed"]): r["diagnostics"]["val_acc_drop"] for r in checked}
    for r in checked:
        drop = drops[(r["method"], r["scenario"]["name"], r["seed"])]
        assert r["status"] == ("collapsed" if drop > 10 else "ok"), (r["method"], r["scenario"]["name"], r["seed"], drop)
    clearly = {key for key, drop in drops.items() if drop > 10 + MARGIN}
    unknown = {key for key in clearly if key[0] != "sgu" and key[:2] != ("ssd", "random:0.1")}
    assert not unknown, f"collapsed beyond the known cases: {sorted(unknown)}"
    kinds = {"class:3": "classwise", "random:0.1": "random", "subclass:3": "subclass"}
    for scenario, kind in kinds.items():  # methods whose paper rules a kind out are not run on it
        expected = {n for n in ob.METHODS.names() if kind in ob.METHODS.get(n).kinds}
        for runs in _per_seed(demo, scenario):
            assert set(runs) == expected | {"original"}


@pytest.mark.slow
def test_classwise_oracle_and_ssd_targets(demo):
    seeds = _per_seed(demo, "class:3")
    assert all(runs["retrain"]["metrics"]["forget_acc"] <= 0.02 for runs in seeds)
    assert _mean([runs["ssd"]["metrics"]["forget_acc"] for runs in seeds]) <= 0.05
    drops = [runs["original"]["metrics"]["retain_acc"] - runs["ssd"]["metrics"]["retain_acc"] for runs in seeds]
    assert _mean(drops) <= 0.03 and max(drops) <= 0.10, drops


@pytest.mark.slow
def test_random_forgetting_some_method_is_closer_to_the_oracle_than_doing_nothing(demo):
    """Over 3 seeds: some method's mean gap to the oracle is below the no-op's, and it beats the no-op on at
    least 2 of the 3 seeds.
    """
    seeds = _per_seed(demo, "random:0.1")
    noop = [runs["original"]["metrics"]["avg_gap"] for runs in seeds]
    better = []
    for method in seeds[0]:
        if method in ("retrain", "original"):
            continue
        gaps = [runs[method]["metrics"]["avg_gap"] for runs in seeds]
        wins = sum(g < n for g, n in zip(gaps, noop, strict=True))
        if _mean(gaps) < _mean(noop) and _mean(gaps) <= 0.03 and wins >= 2:
            better.append(method)
    assert better, {m: [runs[m]["metrics"]["avg_gap"] for runs in seeds] for m in seeds[0]}
    assert all(runs["retrain"]["metrics"]["avg_gap"] == 0.0 for runs in seeds)


ISSUE4_METHODS = ("bad_teacher", "unsir", "boundary_shrink", "boundary_expand", "scrub", "salun", "neggrad_plus")


@pytest.mark.slow
@pytest.mark.parametrize("method", ISSUE4_METHODS)
def test_classwise_baselines_reach_the_oracle_and_keep_retain_accuracy(demo, method):
    """Issue 4, over 3 seeds: mean forget accuracy within 5 points of the oracle's, mean retain accuracy within
    5 of the original's, and no seed loses more than 10 retain points.
    """
    seeds = _per_seed(demo, "class:3")
    gaps = [abs(runs[method]["metrics"]["forget_acc"] - runs["retrain"]["metrics"]["forget_acc"]) for runs in seeds]
    drops = [runs["original"]["metrics"]["retain_acc"] - runs[method]["metrics"]["retain_acc"] for runs in seeds]
    assert _mean(gaps) <= 0.05, gaps
    assert _mean(drops) <= 0.05 and max(drops) <= 0.10, drops


@pytest.mark.slow
def test_subclass_scenario_runs_on_digits_coarse_against_its_own_oracle(demo):
    for runs in _per_seed(demo, "subclass:3"):
        assert {r["scenario"]["dataset"] for r in runs.values()} == {"digits_coarse"}
        assert {r["scenario"]["kind"] for r in runs.values()} == {"subclass"}
        oracle, original = runs["retrain"]["metrics"], runs["original"]["metrics"]
        assert original["forget_acc"] >= 0.95 and oracle["forget_acc"] <= 0.3  # retraining without the 3s forgets them
        assert "boundary_shrink" not in runs and "unsir" in runs  # class-only vs class-level methods


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["class:3", "random:0.1", "subclass:3"])
def test_amnesiac_with_its_repair_keeps_retain_accuracy(demo, scenario):
    """Issue 6: every demo batch holds forget samples, so amnesiac relies on its 4 repair epochs; over 3 seeds
    mean retain accuracy within 5 points of the original's and mean forget accuracy at most 5 above the oracle's.
    """
    seeds = _per_seed(demo, scenario)
    drops = [runs["original"]["metrics"]["retain_acc"] - runs["amnesiac"]["metrics"]["retain_acc"] for runs in seeds]
    excess = [runs["amnesiac"]["metrics"]["forget_acc"] - runs["retrain"]["metrics"]["forget_acc"] for runs in seeds]
    assert _mean(drops) <= 0.05, drops
    assert _mean(excess) <= 0.05, excess


@pytest.mark.slow
def test_sgu_steps_over_the_forget_samples_of_the_run(demo):
    """The quality of sgu against the no-op over 3 seeds is tested in tests/unit/methods/test_unrolling.py (it does not
    beat doing nothing on random:0.1; see its docstring); here only that its correction covers the recorded steps
    that saw D_f, on every seed.
    """
    for runs in _per_seed(demo, "random:0.1"):
        assert 0.9 <= runs["sgu"]["diagnostics"]["forget_step_fraction"] <= 1.0


@pytest.mark.slow
def test_every_run_is_timed_cold(demo):
    """Issue 11, item 2: class:3 runs first on the same model; random:0.1's SSD/LFSSD must not reuse its
    importance over D (a warm cache made SSD look 34x faster than retraining instead of about 5x).
    """
    for scenario in ("class:3", "random:0.1"):
        runs = _runs(demo, scenario, SEEDS - 1)  # the last seed: after every other scenario and seed
        for method in ("ssd", "lfssd"):
            diag = runs[method]["diagnostics"]
            assert diag["importance_cached"] == 0.0, (scenario, method, diag)
            assert diag["passes"] >= 1.0, (scenario, method, diag)  # the pass over D was paid in this run
