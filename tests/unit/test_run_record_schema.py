"""The run-record schema of ``run.json`` (issue 13, item 9): plain checks, the file and the field named."""

from __future__ import annotations

import copy

import pytest

from obliviate.errors import InvalidConfigError
from obliviate.runs import check_run_record

GOOD = {
    "kind": "train",
    "seed": 0,
    "method": None,
    "params": {"epochs": 1},
    "metrics": {"test_acc": 0.5},
    "timings": {"seconds": 1.0, "oracle_seconds": None, "speedup": None},
    "scenario": None,
    "train_set": {"dataset": "digits", "size": 10, "hash": "ab"},
    "origin": {
        "dataset": {"name": "digits", "root": None},
        "model": {"name": "cnn", "options": {"width": 8}, "seed": 0},
        "val_fraction": 0.1,
        "val_seed": 0,
        "recipe": {"epochs": 1},
    },
    "a_future_field": [1, 2],  # unknown fields are allowed
}


def test_a_good_record_and_a_minimal_one_pass() -> None:
    assert check_run_record(GOOD, "run.json") is GOOD
    minimal = {"origin": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "val_fraction": 0, "val_seed": 0}}
    assert check_run_record(minimal, "run.json") is minimal


def _with(path: str, value: object) -> dict:
    record = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = record
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return record


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("origin", KeyError, "origin"),
        ("origin.val_seed", KeyError, "origin.val_seed"),
        ("origin.dataset.name", KeyError, "origin.dataset.name"),
        ("origin.model.name", "", "origin.model.name"),
        ("origin.model.seed", -1, "origin.model.seed"),
        ("origin.model.seed", 2**63, "origin.model.seed"),
        ("origin.model.seed", True, "origin.model.seed"),
        ("origin.model.options", {"name": "mlp"}, "origin.model.options"),
        ("origin.val_fraction", float("nan"), "origin.val_fraction"),
        ("origin.val_fraction", "0.1", "origin.val_fraction"),
        ("origin.recipe", [], "origin.recipe"),
        ("seed", 1.5, "seed"),
        ("method", 3, "method"),
        ("params", None, "params"),
        ("train_set", {"dataset": "digits", "size": "zz", "hash": "ab"}, "train_set"),
        ("train_set", {"dataset": "digits", "size": 10}, "train_set"),
        ("evaluations", [1], "evaluations"),
        ("evaluations", {}, "evaluations"),
    ],
)
def test_each_bad_field_is_named_with_the_file(path: str, value: object, field: str) -> None:
    with pytest.raises(InvalidConfigError, match=rf"'runs/x/run\.json'.*field '{field}'") as info:
        check_run_record(_with(path, value), "runs/x/run.json")
    assert "\n" not in str(info.value)
