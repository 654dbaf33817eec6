"""Per-sample Fisher through the vectorised helper vs a per-sample backward loop, same process.

The diagonal Fisher of the demo CNN (digits, ``cnn``, trained with a shortened demo recipe)
over ``--samples`` retain samples of class:3, computed two ways in the same process:

- ``helper``: :func:`obliviate.per_sample.per_sample_fisher` (``vmap(jacrev)`` over samples,
  C classes per sample vectorised);
- ``loop``: the seed code's way (the SSD system's FisherForgetting): one forward per sample and
  one backward pass per (sample, class), accumulated in Python.

Both the expected Fisher (C = 10 backward passes per sample) and the empirical Fisher (one
per sample) are timed (best of ``--repeats`` after one warm-up call), their values compared
(maximum relative difference per parameter), and the speedup loop / helper recorded in
``benchmarks/results/per_sample_fisher.json``. Target: >= 5x with the same values.

    python benchmarks/per_sample_fisher.py [--samples 512] [--batch-size 256] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import RESULTS, provenance, stat, write_result

import obliviate as ob
from obliviate.data.base import Subset, iterate_batches
from obliviate.demo import DEMO_RECIPE
from obliviate.per_sample import per_sample_fisher

CPU = torch.device("cpu")


def loop_fisher(model: torch.nn.Module, data, kind: str) -> dict[str, torch.Tensor]:
    """One forward per sample, one backward per (sample, class): the seed code's batch-size-1 loop."""
    model.eval()
    names = [n for n, _ in model.named_parameters()]
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for x, y in iterate_batches(data, 1, device=CPU):
        log_p = torch.log_softmax(model(x), dim=1)[0]
        classes = range(log_p.shape[0]) if kind == "expected" else [int(y[0])]
        for k in classes:
            grads = torch.autograd.grad(log_p[k], params, retain_graph=True)
            weight = log_p[k].detach().exp() if kind == "expected" else 1.0
            for t, g in zip(total, grads, strict=True):
                t += weight * g.square()
    return dict(zip(names, total, strict=True))


def best_of(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return stat(times)["min"], out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the demo CNN (values only)")
    parser.add_argument("--out", default=str(RESULTS / "per_sample_fisher.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ds = ob.load_dataset("digits")
    sc = ob.Scenario.classwise(ds, forget_class=3, seed=0)
    recipe = dict(DEMO_RECIPE, epochs=args.epochs)
    model = ob.train(ob.build_model("cnn", ds, seed=0), sc.train, seed=0, device="cpu", progress=False, **recipe).model
    data = Subset(sc.retain, range(min(args.samples, len(sc.retain))))
    results = {}
    for kind in ("expected", "empirical"):
        t_helper, (fast, n) = best_of(
            lambda kind=kind: per_sample_fisher(model, data, kind=kind, batch_size=args.batch_size, device=CPU), args.repeats
        )
        t_loop, slow = best_of(lambda kind=kind: loop_fisher(model, data, kind), args.repeats)
        rel = max(float((fast[k] - slow[k]).abs().max() / slow[k].abs().max().clamp_min(1e-30)) for k in slow)
        results[kind] = {
            "samples": n,
            "helper_seconds": t_helper,
            "loop_seconds": t_loop,
            "speedup": t_loop / t_helper,
            "max_relative_difference": rel,
        }
        print(
            f"{kind:9s}: helper {t_helper:.3f} s, loop {t_loop:.3f} s, speedup {t_loop / t_helper:.1f}x, max rel diff {rel:.2e}"
        )
    doc = {
        "benchmark": "per_sample_fisher",
        "provenance": provenance(),
        "model": {"name": "cnn", "parameters": sum(p.numel() for p in model.parameters()), "train_epochs": args.epochs},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "results": results,
    }
    write_result(args.out, doc)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
