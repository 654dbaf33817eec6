"""``obliviate study unrolling`` and the recording through the command line (train --record, unlearn sgu)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from obliviate.cli import main
from obliviate.errors import InvalidConfigError
from obliviate.recording import RECORDING_FILE, RECORDING_META
from obliviate.studies import run_unrolling_study


def test_the_study_writes_its_points_plot_and_correlation(tmp_path):
    grid = {"lr": (0.02, 0.05, 0.2), "epochs": (1,), "std_reg": (0.0,)}
    study = run_unrolling_study(out=tmp_path, grid=grid, privacy=False, progress=False)
    doc = json.loads((tmp_path / "points.json").read_text())
    assert doc["schema"] == "obliviate.study.unrolling/1" and len(doc["points"]) == 3
    assert study.plot == tmp_path / "ve_vs_ue.png" and study.plot.read_bytes()[:4] == b"\x89PNG"
    ve = [p["verification_error"] for p in doc["points"]]
    ue = [p["unlearning_error"] for p in doc["points"]]
    assert doc["spearman_ve_ue"] == pytest.approx(spearmanr(ve, ue)[0])
    assert all(p["steps"] == 41 and p["sigma_measurements"] == 9 for p in doc["points"])
    # both errors grow with the learning rate on this grid (second order in η)
    assert np.all(np.diff(ve) > 0) and np.all(np.diff(ue) > 0) and study.spearman == pytest.approx(1.0)
    assert doc["summary"]["sgu_beats_noop"] == sum(p["verification_error"] < p["verification_error_noop"] for p in doc["points"])


def test_cli_records_a_run_and_unlearns_it_with_sgu(tmp_path, capsys):
    base, out = tmp_path / "base", tmp_path / "sgu"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--record-updates", "--out", str(base)]) == 0
    assert (base / RECORDING_FILE).is_file() and (base / RECORDING_META).is_file()
    assert json.loads((base / "run.json").read_text())["origin"]["recording"]["updates_kept"] > 0
    assert main(["unlearn", str(base), "--scenario", "random:n=20", "--method", "sgu", "--out", str(out)]) == 0
    assert main(["unlearn", str(base), "--scenario", "class:3", "--method", "amnesiac", "--out", str(tmp_path / "am")]) == 0
    plain = tmp_path / "plain"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(plain)]) == 0
    capsys.readouterr()
    assert main(["unlearn", str(plain), "--scenario", "class:3", "--method", "sgu", "--out", str(tmp_path / "x")]) == 2
    assert "--record" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_study_quick(tmp_path, capsys):
    assert main(["study", "unrolling", "--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "points.json").read_text())
    assert len(doc["points"]) == 8 and np.isfinite(doc["spearman_ve_ue"])
    assert {"privacy_risk", "privacy_risk_retrained", "privacy_risk_sgu"} <= set(doc["points"][0])
    assert "Spearman(VE, UE)" in capsys.readouterr().out
    assert main(["study", "nothing"]) == 2


def test_the_study_never_overwrites_an_earlier_one_silently(tmp_path, capsys):
    """Issue 13 items 6-7: an earlier study's files are refused (exit 2) unless --force; the claim is released."""
    grid = {"lr": (0.05,), "epochs": (1,), "std_reg": (0.0,)}
    run_unrolling_study(out=tmp_path, grid=grid, privacy=False, progress=False)
    before = (tmp_path / "points.json").read_bytes()
    with pytest.raises(InvalidConfigError, match=r"points\.json.*--force"):
        run_unrolling_study(out=tmp_path, grid=grid, privacy=False, progress=False)
    assert (tmp_path / "points.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.json", "ve_vs_ue.png"]  # no claim, no staging left
    run_unrolling_study(out=tmp_path, grid={**grid, "lr": (0.02,)}, privacy=False, progress=False, force=True)
    assert json.loads((tmp_path / "points.json").read_text())["points"][0]["lr"] == 0.02
