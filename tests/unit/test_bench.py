"""obliviate.bench.run: the one experiment runner (records, oracle and no-op rows, failures, seeds, cold timing)."""

from __future__ import annotations

import pytest

import obliviate.bench.runner as runner
from obliviate.bench import run, stat, summarize
from obliviate.errors import DivergenceError, InvalidConfigError, UnknownNameError, UnlearningError
from obliviate.methods.ssd import clear_importance_cache
from obliviate.report import RESULTS_SCHEMA, aggregate, results_document
from obliviate.testing import toy_dataset

RECIPE = {"epochs": 1, "lr": 0.05, "batch_size": 64, "schedule": "cosine"}
FAST = {"epochs": 1, "lr": 0.01, "batch_size": 64}
METRICS = ("forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap")


def _run(scenarios, variants, seeds=1, **kw):
    kw.setdefault("dataset", toy_dataset())
    kw.setdefault("model", "mlp")
    kw.setdefault("recipe", RECIPE)
    kw.setdefault("device", "cpu")
    kw.setdefault("metrics", METRICS)
    return run(scenarios, variants, seeds, **kw)


@pytest.fixture(scope="module")
def records():
    variants = [
        ("finetune", "finetune", FAST),
        ("ft lr 0.05", "finetune", {"preset": "digits", **FAST, "lr": 0.05}),
        ("ssd", "ssd", {"batch_size": 256}),
    ]
    return _run(["class:3", "random:0.1"], variants, seeds=2)


def _by(records, seed, scenario):
    return [r for r in records if r["seed"] == seed and r["scenario"]["name"] == scenario]


def test_records_come_in_order_with_the_oracle_then_the_no_op_then_the_variants(records):
    assert results_document(records)["schema"] == RESULTS_SCHEMA
    for seed in (0, 1):
        for sc in ("class:3", "random:0.1"):
            labels = [r.get("label", r["method"]) for r in _by(records, seed, sc)]
            assert labels == ["retrain", "original", "finetune", "ft lr 0.05", "ssd"]
    for r in records:
        assert set(r) >= {
            "scenario",
            "method",
            "params",
            "seed",
            "status",
            "error",
            "metrics",
            "timings",
            "diagnostics",
            "versions",
        }
        assert r["status"] == "ok" and r["error"] is None
        assert set(r["metrics"]) >= set(METRICS)
        assert r["scenario"]["seed"] == r["seed"]


def test_the_oracle_row_is_the_retrain_with_the_original_recipe_and_everything_is_timed_against_it(records):
    for seed in (0, 1):
        oracle, original, ft, ft2, ssd = _by(records, seed, "class:3")
        assert oracle["method"] == "retrain" and oracle["preset"] == "original recipe"
        assert {k: oracle["params"][k] for k in RECIPE} == RECIPE
        assert oracle["metrics"]["avg_gap"] == 0.0
        t = oracle["timings"]["oracle_seconds"]
        assert t > 0 and oracle["timings"]["seconds"] == t and oracle["timings"]["speedup"] == pytest.approx(1.0)
        # the no-op original: evaluated against the oracle, no time of its own
        assert original["method"] == "original" and original["params"] == {} and original["preset"] is None
        assert original["timings"] == {"seconds": None, "oracle_seconds": t, "speedup": None}
        assert original["metrics"]["forget_acc"] > oracle["metrics"]["forget_acc"]  # it still knows the class
        for r in (ft, ft2, ssd):
            assert r["timings"]["oracle_seconds"] == t
            assert r["timings"]["speedup"] == pytest.approx(t / r["timings"]["seconds"])
        # variants of one method: the registry name in "method", the label beside it, the params applied
        assert ft["method"] == ft2["method"] == "finetune" and "label" not in ft and ft2["label"] == "ft lr 0.05"
        assert ft["params"]["lr"] == 0.01 and ft2["params"]["lr"] == 0.05
        assert ft2["preset"] == "digits" and ft["preset"] is None and ssd["preset"] is None


def test_seeds_give_different_originals_and_aggregate_groups_by_label(records):
    a, b = (_by(records, s, "class:3")[1]["metrics"] for s in (0, 1))
    assert a != b
    rows = {(r["scenario"], r["method"]): r for r in aggregate(records)}
    assert rows["class:3", "ft lr 0.05"]["n"] == 2 and rows["class:3", "finetune"]["n"] == 2
    assert rows["class:3", "finetune"]["retain_acc"][1] is not None  # a spread over the 2 seeds


def test_one_original_per_dataset_and_seed_recorded_only_when_a_method_needs_it(monkeypatch):
    calls = []
    real = runner.train

    def spy(model, data, **kw):
        calls.append(kw)
        return real(model, data, **kw)

    monkeypatch.setattr(runner, "train", spy)
    out = _run(["class:3", "random:0.1"], [("finetune", "finetune", FAST)], seeds=[3], oracle=False, metrics=METRICS[:2])
    assert len(calls) == 1 and "record" not in calls[0] and calls[0]["seed"] == 3
    assert {r["seed"] for r in out} == {3} and "retrain" not in {r["method"] for r in out}
    assert all("avg_gap" not in r["metrics"] and r["timings"]["speedup"] is None for r in out)
    calls.clear()
    out = _run(["class:3"], ["amnesiac"], oracle=False, metrics=METRICS[:2])
    assert len(calls) == 1 and calls[0]["record"] is True and calls[0]["record_updates"] is True
    assert [r["status"] for r in out] == ["ok", "ok"]


def test_a_failing_or_diverging_variant_becomes_a_record_and_the_run_goes_on(monkeypatch):
    real = runner.unlearn

    def flaky(model, sc, method, **kw):
        if method == "gradient_ascent":
            raise DivergenceError("the loss blew up")
        if method in ("random_label", "unsir"):
            raise UnlearningError("no retain data")
        return real(model, sc, method, **kw)

    monkeypatch.setattr(runner, "unlearn", flaky)
    seen = []
    variants = ["gradient_ascent", ("rl", "random_label", {}), "unsir", ("finetune", "finetune", FAST)]
    out = _run(["class:3", "random:0.1"], variants, on_record=seen.append, metrics=METRICS[:2])
    assert seen == out
    status = {r.get("label", r["method"]): (r["status"], r["error"]) for r in out}
    assert status["gradient_ascent"] == ("diverged", "the loss blew up")
    assert status["rl"] == ("failed", "no retain data")
    assert status["finetune"] == ("ok", None)
    # UNSIR's paper covers class-wise requests only: it is not run on random:0.1 (no record at all)
    assert [r["scenario"]["name"] for r in out if r["method"] == "unsir"] == ["class:3"]
    failed = out[2]
    assert failed["metrics"] == {} and failed["timings"]["seconds"] is None and failed["timings"]["oracle_seconds"] > 0
    row = {r["method"]: r for r in aggregate(out)}["gradient_ascent"]
    assert row["status"] == "diverged" and row["forget_acc"] is None


def test_every_run_is_timed_cold(monkeypatch):
    # two SSD runs on the same model and data: the second would reuse the importance over D if
    # the cache were not emptied before it
    out = _run(
        ["class:3"],
        [("a", "ssd", {"alpha": 5.0, "batch_size": 256}), ("b", "ssd", {"alpha": 10.0, "batch_size": 256})],
        oracle=False,
        metrics=METRICS[:2],
    )
    assert [r["diagnostics"]["importance_cached"] for r in out[1:]] == [0.0, 0.0]
    clear_importance_cache()
    monkeypatch.setattr(runner, "clear_importance_cache", lambda: None)
    out = _run(
        ["class:3"],
        [("a", "ssd", {"alpha": 5.0, "batch_size": 256}), ("b", "ssd", {"alpha": 10.0, "batch_size": 256})],
        oracle=False,
        metrics=METRICS[:2],
    )
    assert [r["diagnostics"]["importance_cached"] for r in out[1:]] == [0.0, 1.0]


def test_derived_originals_tag_their_records():
    seen = []

    def halve(base, sc, seed, record):
        seen.append((sc.name, seed, record))
        return base

    out = _run(
        ["class:3", "random:0.1"],
        [("finetune", "finetune", FAST)],
        originals={"dense": None, "copy": halve},
        oracle=False,
        metrics=METRICS[:2],
    )
    assert seen == [("class:3", 0, False)]  # once per (dataset, seed)
    assert [(r["scenario"]["name"], r["variant"], r["method"]) for r in out] == [
        (sc, v, m) for sc in ("class:3", "random:0.1") for v in ("dense", "copy") for m in ("original", "finetune")
    ]


def test_bad_arguments_fail_before_any_training(monkeypatch):
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(UnknownNameError):
        _run(["class:3"], ["no_such_method"])
    with pytest.raises(InvalidConfigError):
        _run(["class:3"], [("x", "finetune", {}), ("x", "ssd", {})])
    with pytest.raises(InvalidConfigError):
        _run("class:3", ["finetune"])
    with pytest.raises(InvalidConfigError):
        _run(["class:3", "nonsense:1"], ["finetune"])
    with pytest.raises(InvalidConfigError):
        _run(["class:3"], ["finetune"], seeds=0)


def test_stat_and_summarize():
    assert stat([1.0, None, 3.0]) == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert stat([None]) is None and stat([]) is None
    recs = [
        {"metrics": {"forget_acc": 0.5}, "timings": {"seconds": 2.0}, "diagnostics": {"passes": 1.0}},
        {"metrics": {"forget_acc": float("nan")}, "timings": {"seconds": 4.0}, "diagnostics": {"passes": 3.0}},
    ]
    s = summarize(recs, ["forget_acc", "seconds", "passes", "speedup"])
    assert s["forget_acc"] == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}
    assert s["seconds"]["mean"] == 3.0 and s["passes"]["max"] == 3.0 and s["speedup"] is None
