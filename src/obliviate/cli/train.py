"""``obliviate train``: train a model on a dataset's train split minus its validation split."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import parse_sets, print_metrics


def add_parser(sub: Any) -> None:
    """Register the ``train`` command."""
    t = sub.add_parser("train", help="train a model on a dataset's train split minus its validation split")
    t.add_argument("--dataset", required=True, help="registered dataset name (digits, cifar10, ...)")
    t.add_argument("--root", default=None, help="directory of the torchvision dataset files")
    t.add_argument("--download", action="store_true", help="let torchvision download missing files")
    t.add_argument("--model", default="cnn", help="registered model name (default: cnn)")
    t.add_argument("--model-option", action="append", metavar="KEY=VALUE", help="architecture option, e.g. width=32")
    t.add_argument("--epochs", type=int, default=None, help="training epochs")
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--batch-size", type=int, default=None, help="batch size")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="any TrainConfig field, e.g. schedule=cosine")
    t.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    t.add_argument("--val-fraction", type=float, default=0.1, help="share of each class held out (default: 0.1)")
    t.add_argument("--val-seed", type=int, default=0, help="seed of the held-out validation split (default: 0)")
    t.add_argument("--device", default="auto")
    t.add_argument("--record", action="store_true", help="keep the training recording (for sgu, amnesiac, verification error)")
    t.add_argument("--record-updates", action="store_true", help="also keep every step's parameter update (amnesiac)")
    t.add_argument("--out", required=True, help="run directory to create")


def run(args: argparse.Namespace) -> int:
    """Claim the run directory, train, then write it (model, run record with its origin, recording)."""
    import numpy as np

    from ..data import Subset, load_dataset, validation_split
    from ..errors import InvalidConfigError
    from ..models import build_model
    from ..report import run_record
    from ..runs import RunDir, default_recipe, make_origin
    from ..training import TrainConfig, accuracy, train

    ds = load_dataset(args.dataset, root=args.root, download=args.download)
    options = parse_sets(args.model_option, "--model-option")
    reserved = sorted({"seed", "name", "dataset"} & set(options))
    if reserved:
        raise InvalidConfigError(
            f"--model-option {reserved[0]}={options[reserved[0]]!r} is not an architecture option: "
            "name the model with --model, its dataset with --dataset and its seed with --seed."
        )
    model = build_model(args.model, ds, seed=args.seed, **options)
    overrides = parse_sets(args.set)
    for flag, key in ((args.epochs, "epochs"), (args.lr, "lr"), (args.batch_size, "batch_size")):
        if flag is not None:
            overrides[key] = flag
    recipe = TrainConfig.from_dict({**default_recipe(ds), **overrides}).to_dict()  # validates before anything is written
    val_seed = getattr(args, "val_seed", 0)
    val = validation_split(ds, fraction=args.val_fraction, seed=val_seed)
    pool = np.setdiff1d(np.arange(len(ds.train)), val)  # type: ignore[arg-type]
    # Claimed before the compute, held until the files are in: a second command into the same --out is refused.
    with RunDir.create(args.out, flag="--out") as out:
        record = bool(getattr(args, "record", False) or getattr(args, "record_updates", False))
        result = train(
            model,
            Subset(ds.train, pool, train_split_of=ds.name),
            seed=args.seed,
            device=args.device,
            record=record,
            record_updates=bool(getattr(args, "record_updates", False)),
            **recipe,
        )
        metrics = {
            "train_acc": accuracy(result.model, Subset(ds.train, pool)),
            "val_acc": accuracy(result.model, Subset(ds.train, val)) if len(val) else None,
            "test_acc": accuracy(result.model, ds.test),
        }
        origin = make_origin(
            ds,
            args.model,
            options=options,
            seed=args.seed,
            val_fraction=args.val_fraction,
            val_seed=val_seed,
            recipe=result.config.to_dict(),
            root=args.root,
        )
        if result.recording is not None:  # recording.safetensors + recording.json, for sgu / amnesiac
            origin["recording"] = result.recording.summary()
        out.save(
            result.model,
            run_record(
                scenario=None,
                method=None,
                params=result.config.to_dict(),
                seed=args.seed,
                metrics=metrics,
                seconds=result.seconds,
                kind="train",
                origin=origin,
                history=result.history,
                train_set=result.training_set.to_json() if result.training_set is not None else None,
            ),
            recording=result.recording,
            metadata={"dataset": ds.name, "model": args.model},
        )
    print_metrics(metrics, f"trained {args.model} on {ds.name} in {result.seconds:.1f} s -> {out.path}")
    return 0
