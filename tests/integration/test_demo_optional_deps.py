"""The demo without an optional extra: methods that need it are skipped and reported, not failed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.console import Console

from obliviate.demo import run_demo
from obliviate.errors import MissingDependencyError


@pytest.fixture
def no_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError


@pytest.mark.slow
def test_the_demo_skips_a_method_whose_extra_is_missing_and_says_so(no_peft: None, tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    result = run_demo(out=tmp_path, methods=None, scenarios=["class:3"], quick=True, progress=False, console=console)
    assert "skipped prune_lora: LoRA needs the peft package: pip install obliviate[lora]" in console.export_text()
    assert set(result.skipped) == {"prune_lora"}
    assert "pip install obliviate[lora]" in result.skipped["prune_lora"]
    assert "prune_lora" not in {r["method"] for r in result.records}
    assert all(r["status"] in ("ok", "collapsed") for r in result.records)  # every run has a result (none failed)
    assert {"finetune", "ssd", "retrain", "original"} <= {r["method"] for r in result.records}
    report = (tmp_path / "report.md").read_text()
    assert "## Skipped" in report and "prune_lora" in report


def test_a_method_named_explicitly_fails_before_any_training(no_peft: None, tmp_path: Path) -> None:
    with pytest.raises(MissingDependencyError, match=r"obliviate\[lora\]"):
        run_demo(out=tmp_path, methods=["finetune", "prune_lora"], scenarios=["class:3"], quick=True, progress=False)
    assert not (tmp_path / "results.json").exists()
