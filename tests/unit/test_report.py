import csv
import io

import pytest

from obliviate.errors import InvalidConfigError
from obliviate.report import aggregate, csv_text, format_cell, markdown_table, results_document, run_record


def _rec(method, seed, forget, seconds, scenario="class:3"):
    return run_record(
        scenario={"name": scenario},
        method=method,
        seed=seed,
        metrics={"forget_acc": forget, "avg_gap": 0.01},
        seconds=seconds,
        oracle_seconds=2.0,
    )


def test_run_record_has_the_design_fields_and_derives_speedup():
    r = _rec("ssd", 0, 0.0, 0.5)
    assert set(r) >= {"scenario", "method", "params", "seed", "status", "error", "metrics", "timings", "versions"}
    assert r["timings"] == {"seconds": 0.5, "oracle_seconds": 2.0, "speedup": 4.0}
    assert set(r["versions"]) >= {"obliviate", "torch", "python"}
    assert run_record(scenario=None, method="original", oracle_seconds=2.0)["timings"]["speedup"] is None
    with pytest.raises(InvalidConfigError):
        run_record(scenario=None, method="x", status="weird")
    assert results_document([r]) == {"schema": "obliviate.results/1", "runs": [r]}


def test_aggregate_gives_mean_and_std_over_seeds_and_skips_failed_runs():
    records = [_rec("ssd", 0, 0.0, 1.0), _rec("ssd", 1, 0.2, 3.0), _rec("ft", 0, 0.5, 1.0)]
    records.append(run_record(scenario={"name": "class:3"}, method="ft", seed=1, status="failed", error="boom"))
    rows = {r["method"]: r for r in aggregate(records)}
    assert rows["ssd"]["forget_acc"] == pytest.approx((0.1, 0.1))
    assert rows["ssd"]["seconds"] == pytest.approx((2.0, 1.0))
    assert rows["ft"]["forget_acc"] == (0.5, None) and rows["ft"]["status"] == "failed,ok" and rows["ft"]["n"] == 2


def test_cells_print_fractions_as_percent_and_timings_plainly():
    assert format_cell("forget_acc", (0.1234, None)) == "12.3"
    assert format_cell("forget_acc", (0.1, 0.05)) == "10.0 ± 5.0"
    assert format_cell("speedup", (7.25, None)) == "7.2x"
    assert format_cell("seconds", (0.5, None)) == "0.50"
    assert format_cell("weight_distance", (1.23456, None)) == "1.235"
    assert format_cell("forget_acc", None) == "-"


def test_markdown_and_csv_outputs():
    records = [_rec("ssd", 0, 0.0, 1.0), _rec("ft", 0, 0.5, 2.0)]
    md = markdown_table(aggregate(records))
    lines = md.splitlines()
    assert lines[0].startswith("| method | forget acc") and len(lines) == 4 and "| ssd | 0.0 |" in md
    rows = list(csv.DictReader(io.StringIO(csv_text(records))))
    assert [r["method"] for r in rows] == ["ssd", "ft"] and rows[1]["forget_acc"] == "0.5" and rows[0]["speedup"] == "2.0"


def test_stat_is_the_one_summary_over_seeds_and_aggregate_uses_it():
    from obliviate.report import record_value, stat

    assert stat([0.0, 0.2, None]) == pytest.approx({"mean": 0.1, "std": 0.1, "min": 0.0, "max": 0.2})
    assert stat([]) is None
    r = _rec("ssd", 0, float("nan"), 0.5)
    r["diagnostics"] = {"passes": 3.0}
    assert record_value(r, "forget_acc") is None and record_value(r, "speedup") == 4.0 and record_value(r, "passes") == 3.0
    assert record_value(r, "missing") is None


def test_aggregate_groups_the_variants_of_one_method_by_their_label():
    a, b = _rec("fisher", 0, 0.1, 1.0), _rec("fisher", 0, 0.3, 1.0)
    b["label"] = "fisher (noise only)"
    rows = aggregate([a, b])
    assert [(r["method"], r["forget_acc"]) for r in rows] == [("fisher", (0.1, None)), ("fisher (noise only)", (0.3, None))]


def test_collapsed_runs_are_flagged_and_notes_sit_beside_their_row() -> None:
    """Issue 14 item 1: a collapsed seed is counted in the row and flagged; a run's warnings become numbered notes."""
    sc = {"name": "class:3"}
    runs = [
        run_record(scenario=sc, method="ssd", seed=0, metrics={"forget_acc": 0.0}, status="ok"),
        run_record(
            scenario=sc, method="ssd", seed=1, metrics={"forget_acc": 0.2}, status="collapsed", notes=["UnlearningWarning: a"]
        ),
        run_record(scenario=sc, method="sgu", seed=0, metrics={"forget_acc": 0.5}, notes=["UnlearningWarning: momentum"]),
    ]
    rows = aggregate(runs, columns=["forget_acc"])
    assert rows[0]["flags"] == "collapsed 1/2" and rows[0]["forget_acc"][0] == pytest.approx(0.1)
    text = markdown_table(rows, columns=["forget_acc"])
    assert "| ssd (collapsed 1/2) [1] |" in text and "| sgu [2] |" in text
    assert text.splitlines()[-2:] == ["[1] UnlearningWarning: a", "[2] UnlearningWarning: momentum"]
    with pytest.raises(InvalidConfigError, match="status"):
        run_record(scenario=sc, method="ssd", status="fine")
