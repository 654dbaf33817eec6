"""Issue 13 item 4: a collapsed model whose weights blew up is never reported ``ok``.

Each repro of the issue runs through the CLI (in-process, :func:`obliviate.cli.main`) against one small
trained run per model (2 epochs on digits, made once per module). Before the fix, some of them exited 0
with status "ok", retain accuracy at chance and weights up to 1e20; now each one must exit 1 with a
one-line error naming the method and the fix, and must write no run directory.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from obliviate.cli import main

REPROS = {
    "l1_sparse": ["--method", "l1_sparse", "--set", "lr=1e5", "--set", "epochs=1"],
    "gradient_ascent": ["--method", "gradient_ascent", "--set", "lr=1e4"],
    "ga_l1": ["--method", "ga_l1", "--set", "lr=1e4"],
    "finetune_adam": ["--method", "finetune", "--set", "optimizer=adam", "--set", "lr=1e3"],
}


def _cli(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


@pytest.fixture(scope="module", params=["cnn", "mlp"])
def trained_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(f"diverge-{request.param}") / "base"
    code, err = _cli("train", "--dataset", "digits", "--model", request.param, "--epochs", 2, "--out", out)
    assert code == 0, err
    return out


@pytest.mark.parametrize("repro", sorted(REPROS))
def test_blown_up_weights_exit_1_and_write_no_ok_run(trained_run: Path, tmp_path: Path, repro: str) -> None:
    out = tmp_path / "unlearned"
    code, err = _cli("unlearn", trained_run, "--scenario", "class:3", *REPROS[repro], "--out", out)
    record = out / "run.json"
    status = json.loads(record.read_text())["status"] if record.exists() else None
    assert (code, status) == (1, None), f"{repro}: exit {code}, status {status!r}; stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "diverged" in lines[0] and "lower" in lines[0] and "learning rate" in lines[0], lines[0]
    assert REPROS[repro][1] in lines[0], lines[0]  # the method's name
    assert not (out / "model.safetensors").exists()
