"""``certified fit`` claims its --out before the compute, like train and unlearn (issue 13 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.runs import CLAIM_FILE, DirClaim

FIT = ["certified", "fit", "--dataset", "digits", "--classes", "3,8", "--lam", "0.01", "--sigma", "10"]


def test_a_fit_into_a_directory_being_written_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with DirClaim.acquire(out, flag="--out"):  # another process is writing here
        code = main([*FIT, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and "another obliviate process" in err
        assert sorted(p.name for p in out.iterdir()) == [CLAIM_FILE]  # nothing of a run was written
    assert main([*FIT, "--out", str(out)]) == 0  # once the claim is released
    assert not (out / CLAIM_FILE).exists()


def test_a_fit_that_fails_midway_releases_its_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import obliviate.certified.run as run_module

    def crash(point: str) -> None:
        if point == "fit_after_spec":
            raise RuntimeError("stopped here")

    monkeypatch.setattr(run_module, "_crash_point", crash)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped here"):
        main([*FIT, "--out", str(out)])
    capsys.readouterr()
    assert not (out / CLAIM_FILE).exists()  # the claim went with the failed fit
    monkeypatch.undo()
    code = main(["certified", "status", str(out)])
    assert code == 2 and "incomplete certified fit" in capsys.readouterr().err
