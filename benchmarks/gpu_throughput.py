"""Training throughput of ``ob.train`` against a plain PyTorch loop: ResNet-18 on synthetic 32x32 images.

Issue 15's GPU check. Both loops train the same ResNet-18 (``build_model("resnet18")``, fresh
from the same seed) on the same in-memory ``synthetic32`` training split (CIFAR's shape; nothing
to download) for one epoch with the same batch size and optimiser (SGD, lr 0.1, momentum 0.9,
weight decay 5e-4, no schedule within the epoch, no augmentation):

- ``ob.train``: ``ob.train(model, ds.train, epochs=1, ...)``, the library's one training loop.
- ``plain``: the loop a user writes by hand: a random permutation per epoch, the batch gathered
  from the CPU tensor (pinned on a GPU) and moved with ``non_blocking=True``, forward, cross
  entropy, backward, step.

Each is timed per epoch, synchronised on a GPU, after one warm-up epoch of each (CUDA context,
cuDNN autotuning: the timings are labelled warm); the two alternate ``--repeats`` times in the
same process. Writes ``benchmarks/results/gpu_throughput.json``: images per second of each
(mean, std over repeats), the ratio ``ob.train / plain`` (the goal is >= 0.95), and with
``--grid`` the wall time of ``obliviate bench benchmarks/specs/synthetic32-gpu.toml --device``.

    python benchmarks/gpu_throughput.py --device cuda [--n-train 50000] [--repeats 3] [--grid]
    python benchmarks/gpu_throughput.py --device cpu --n-train 512 --repeats 1 --out /tmp/gpu.json   # smoke test
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import RESULTS, provenance, stat, write_result

import obliviate as ob

ROOT = Path(__file__).resolve().parent.parent
RECIPE = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "optimizer": "sgd", "schedule": "constant"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def epoch_ob(ds, device: torch.device, batch_size: int, seed: int) -> float:
    model = ob.build_model("resnet18", ds, seed=seed)
    sync(device)
    t0 = time.perf_counter()
    ob.train(model, ds.train, epochs=1, batch_size=batch_size, device=device, seed=seed, progress=False, **RECIPE)
    sync(device)
    return time.perf_counter() - t0


def epoch_plain(ds, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int, seed: int) -> float:
    model = ob.build_model("resnet18", ds, seed=seed).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"], weight_decay=RECIPE["weight_decay"])
    g = torch.Generator().manual_seed(seed)
    sync(device)
    t0 = time.perf_counter()
    model.train()
    order = torch.randperm(len(y), generator=g)
    for start in range(0, len(y), batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        if device.type == "cuda":
            xb, yb = xb.pin_memory(), yb.pin_memory()
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    sync(device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--n-train", type=int, default=50000, help="training images per epoch (50000: a CIFAR epoch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--grid", action="store_true", help="also time the short grid of benchmarks/specs/synthetic32-gpu.toml")
    p.add_argument("--out", type=Path, default=RESULTS / "gpu_throughput.json")
    args = p.parse_args()
    device = torch.device(args.device)
    ds = ob.load_dataset("synthetic32", n_train=args.n_train, n_test=max(args.n_train // 5, 10))
    x = torch.stack([ds.train[i][0] for i in range(len(ds.train))])
    y = torch.as_tensor([int(ds.train[i][1]) for i in range(len(ds.train))])
    print("warm-up", flush=True)
    epoch_ob(ds, device, args.batch_size, 0)
    epoch_plain(ds, x, y, device, args.batch_size, 0)
    times: dict[str, list[float]] = {"ob_train": [], "plain": []}
    for r in range(args.repeats):
        times["ob_train"].append(epoch_ob(ds, device, args.batch_size, r + 1))
        times["plain"].append(epoch_plain(ds, x, y, device, args.batch_size, r + 1))
        print(f"repeat {r}: ob.train {times['ob_train'][-1]:.2f} s, plain {times['plain'][-1]:.2f} s", flush=True)
    ips = {k: [args.n_train / s for s in v] for k, v in times.items()}
    ratios = [a / b for a, b in zip(ips["ob_train"], ips["plain"], strict=True)]
    doc = {
        "benchmark": "gpu_throughput",
        "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "timing": "warm (one warm-up epoch of each loop first)",
        "seconds": {k: stat(v) for k, v in times.items()},
        "images_per_second": {k: stat(v) for k, v in ips.items()},
        "throughput_ratio_ob_over_plain": stat(ratios),
        "goal": ">= 0.95",
        "provenance": provenance(),
    }
    if args.grid:
        spec = ROOT / "benchmarks" / "specs" / "synthetic32-gpu.toml"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "obliviate", "bench", str(spec), "--out", tmp, "--device", args.device, "--no-progress"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            doc["grid"] = {
                "command": f"obliviate bench benchmarks/specs/synthetic32-gpu.toml --out OUT --device {args.device}",
                "wall_seconds": time.perf_counter() - t0,
                "exit_status": done.returncode,
                "summary": done.stdout.strip().splitlines()[-1:] if done.stdout else [],
                "stderr_tail": done.stderr[-2000:] if done.returncode else "",
            }
    print(doc["throughput_ratio_ob_over_plain"])
    write_result(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
