"""Issue 13 item 12: the same seed gives the same file bytes, across processes.

The tensors always matched, but the safetensors writer keeps header metadata in a hash map whose
order changes from one process to the next, so two identical runs wrote different
``model.safetensors`` bytes and a SHA-256 reproducibility check failed. Each test here starts
fresh Python processes (at the same time, to keep it short) and compares the files they write.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate.io import read_metadata

# Saves a seeded model with several metadata keys, masks, and a whole `obliviate train` run directory.
SCRIPT = """
import sys, torch
from pathlib import Path
from obliviate.io import save_masks, save_model
out = Path(sys.argv[1])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
meta = {"dataset": "digits", "method": "ssd", "model": "mlp", "seed": "0", "alpha": "10", "zeta": "z", "beta": "b"}
save_model(model, out / "model.safetensors", meta)
save_masks({n: p > 0 for n, p in model.named_parameters()}, out / "masks.safetensors")
if len(sys.argv) > 2:
    from obliviate.cli import main
    code = main(["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--seed", "3", "--out", str(out / "run")])
    sys.exit(code)
"""


def _run_processes(tmp_path: Path, count: int, *extra: str) -> list[Path]:
    outs = [tmp_path / f"p{i}" for i in range(count)]
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    procs = []
    for out in outs:
        out.mkdir()
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), *extra], env=env, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    return outs


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_same_model_and_metadata_give_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    outs = _run_processes(tmp_path, 3)
    for name in ("model.safetensors", "masks.safetensors"):
        digests = {_digest(out / name) for out in outs}
        assert len(digests) == 1, f"{name}: {len(digests)} different files from 3 identical processes"


@pytest.mark.slow
def test_two_train_runs_with_the_same_seed_write_byte_identical_models(tmp_path: Path) -> None:
    outs = _run_processes(tmp_path, 3, "train")  # three: with the former writer, all three agreed by chance 1 time in 36
    digests = {_digest(out / "run" / "model.safetensors") for out in outs}
    assert len(digests) == 1, f"{len(digests)} different model files from 3 identical train runs"
    assert read_metadata(outs[0] / "run" / "model.safetensors") == {"format": "obliviate", "dataset": "digits", "model": "mlp"}
