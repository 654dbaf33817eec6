"""Implementations of the CLI commands (each takes the parsed arguments, returns an exit code).

A run directory's ``run.json`` is a run record plus an ``origin`` block holding what is needed
to rebuild the model and every scenario over exactly the training set it was trained on: the
dataset (name, root), the model (name, options, seed), the validation split (fraction, seed)
and the training recipe.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .cli import _parse_sets
from .data import DatasetSplits, Scenario, Subset, load_dataset, parse_scenario, validation_split
from .demo import DEMO_RECIPE, DEMO_SCENARIOS, run_demo
from .errors import InvalidConfigError, MissingDataError
from .evaluation import evaluate
from .io import MODEL_FILE, RUN_FILE, SCENARIO_FILE, read_json, save_model, write_json
from .methods import METHODS, make_method
from .metrics import METRICS
from .models import build_model
from .report import run_record
from .runs import Run
from .training import TrainConfig, accuracy, train


def _console() -> Any:
    from ._utils import console

    return console()


def demo(args: argparse.Namespace) -> int:
    run_demo(
        out=args.out,
        methods=args.methods,
        scenarios=args.scenarios or DEMO_SCENARIOS,
        seeds=args.seeds,
        quick=args.quick,
        device=args.device,
        sparsity=args.sparsity,
    )
    return 0


def methods(args: argparse.Namespace) -> int:
    from rich.table import Table

    con = _console()
    if args.action == "show" or args.name:
        if not args.name:
            raise InvalidConfigError("'obliviate methods show' needs a method name, e.g. 'obliviate methods show ssd'.")
        cls = METHODS.get(args.name)
        con.print(
            f"[bold]{args.name}[/bold] ({cls.__name__}); requires: {', '.join(sorted(cls.requires))}; "
            f"scenarios: {', '.join(sorted(cls.kinds))}; exact: {cls.exact}"
            + ("; needs the training recording (obliviate train --record)" if getattr(cls, "needs_recording", False) else "")
        )
        print(inspect.cleandoc(cls.__doc__ or ""))
        table = Table(title="hyperparameters", title_justify="left")
        for col in ("name", "default", "allowed"):
            table.add_column(col)
        defaults, constraints = cls().to_dict(), cls.constraints()
        for name, value in defaults.items():
            table.add_row(name, repr(value), constraints[name].describe() if name in constraints else "")
        con.print(table)
        for preset, values in sorted(cls.presets.items()):
            con.print(f"preset {preset!r}: {values}", markup=False)
        return 0
    table = Table(title="unlearning methods (obliviate methods show NAME for details)", title_justify="left")
    for col in ("name", "requires", "scenarios", "exact", "presets", "summary"):
        table.add_column(col)
    for name, cls in METHODS.items():
        info = cls.describe()
        kinds = "all" if len(info["kinds"]) == 4 else ",".join(info["kinds"])
        table.add_row(
            name, ",".join(info["requires"]), kinds, "yes" if cls.exact else "", ",".join(info["presets"]), info["summary"]
        )
    con.print(table)
    return 0


def _default_recipe(ds: DatasetSplits) -> dict[str, Any]:
    if ds.name in ("digits", "digits_coarse"):
        return dict(DEMO_RECIPE)
    return TrainConfig(augment=ds.augment).to_dict()


def _check_new_run_dir(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidConfigError(f"--out {out!r} is a file, not a directory.")
    if (path / RUN_FILE).exists() or (path / MODEL_FILE).exists():
        raise InvalidConfigError(f"Run directory {out!r} already holds a run; choose another --out or remove it first.")
    return path


def _new_run_dir(out: str) -> Path:
    path = _check_new_run_dir(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidConfigError(f"Cannot create run directory {out!r}: {e}") from None
    return path


def _load_run(run_dir: str) -> Run:
    from .runs import load_run

    return load_run(run_dir)


def _print_metrics(metrics: dict[str, Any], title: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if value is None:
            text = "-"
        elif (name in METRICS and METRICS.get(name).fraction) or name.endswith("_acc"):
            text = f"{100 * value:.2f} %"
        else:
            text = f"{value:.4g}"
        table.add_row(name, text)
    _console().print(table)


def train_command(args: argparse.Namespace) -> int:
    ds = load_dataset(args.dataset, root=args.root, download=args.download)
    options = _parse_sets(args.model_option, "--model-option")
    model = build_model(args.model, ds, seed=args.seed, **options)
    overrides = _parse_sets(args.set)
    for flag, key in ((args.epochs, "epochs"), (args.lr, "lr"), (args.batch_size, "batch_size")):
        if flag is not None:
            overrides[key] = flag
    recipe = TrainConfig.from_dict({**_default_recipe(ds), **overrides}).to_dict()  # validates before anything is written
    val_seed = getattr(args, "val_seed", 0)
    val = validation_split(ds, fraction=args.val_fraction, seed=val_seed)
    pool = np.setdiff1d(np.arange(len(ds.train)), val)  # type: ignore[arg-type]
    _check_new_run_dir(args.out)
    out = _new_run_dir(args.out)
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
    origin = {
        "dataset": {"name": ds.name, "root": args.root},
        "model": {"name": args.model, "options": options, "seed": args.seed},
        "val_fraction": args.val_fraction,
        "val_seed": val_seed,
        "recipe": result.config.to_dict(),
    }
    save_model(result.model, out / MODEL_FILE, {"dataset": ds.name, "model": args.model})
    if result.recording is not None:
        result.recording.save(out)  # recording.safetensors + recording.json, for sgu / amnesiac
        origin["recording"] = result.recording.summary()
    write_json(
        out / RUN_FILE,
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
    )
    _print_metrics(metrics, f"trained {args.model} on {ds.name} in {result.seconds:.1f} s -> {out}")
    return 0


def _load_run_masks(run_dir: str, model: nn.Module) -> dict[str, Any] | None:
    """The masks saved beside a run's checkpoint (``masks.safetensors``, see obliviate.pruning), or None."""
    from .io import load_masks
    from .pruning import MASKS_FILE
    from .training import resolve_masks

    path = Path(run_dir) / MASKS_FILE
    if not path.is_file():
        return None
    masks = load_masks(path)
    resolve_masks(model, masks)  # names and shapes must fit the model (IncompatibleModelError: exit 2)
    return masks


def unlearn_command(args: argparse.Namespace) -> int:
    run = _load_run(args.run_dir)
    record, ds, model = run.record, run.dataset, run.model
    origin = record["origin"]
    sc = parse_scenario(args.scenario, ds, seed=args.seed, val_fraction=origin["val_fraction"], val_seed=origin["val_seed"])
    hyper = _parse_sets(args.set)
    if args.method == "retrain" and args.preset is None:
        hyper = {**origin.get("recipe", {}), **hyper}  # the oracle retrains with the original recipe
    method = make_method(args.method, preset=args.preset, **hyper)  # validates before anything is written
    _check_new_run_dir(args.out)
    recording = None
    if getattr(type(method), "needs_recording", False):
        from .recording import RECORDING_META, Recording

        if not (Path(args.run_dir) / RECORDING_META).is_file():
            raise MissingDataError(
                f"{args.method} needs the training recording, but {args.run_dir!r} has none: "
                "train with 'obliviate train ... --record' (amnesiac: --record-updates)."
            )
        recording = Recording.load(args.run_dir)
    masks = _load_run_masks(args.run_dir, model)  # a pruned model's masks.safetensors, kept in every method
    result = method.unlearn(run, sc, seed=args.seed, device=args.device, recording=recording, masks=masks)
    out_dir = _new_run_dir(args.out)
    ev = evaluate(result, sc)
    save_model(result.model, out_dir / MODEL_FILE, {"dataset": ds.name, "method": args.method})
    if masks is not None:
        from .io import save_masks
        from .pruning import MASKS_FILE

        save_masks(masks, out_dir / MASKS_FILE)
    sc.save(out_dir / SCENARIO_FILE)
    write_json(
        out_dir / RUN_FILE,
        run_record(
            scenario=sc.summary(),
            method=args.method,
            params=result.config,
            seed=args.seed,
            metrics=ev.to_dict(),
            seconds=result.seconds,
            diagnostics=result.diagnostics,
            kind="unlearn",
            preset=args.preset,
            origin=origin,
            parent=str(Path(args.run_dir)),
            train_set=sc.retain_set.to_json(),
        ),
    )
    _print_metrics(ev.to_dict(), f"{args.method} on {sc.name} in {result.seconds:.2f} s -> {out_dir}")
    return 0


def _scenario_of(run_dir: str, record: dict[str, Any], ds: DatasetSplits, spec: str | None) -> tuple[Scenario, bool]:
    path = Path(run_dir) / SCENARIO_FILE
    if path.is_file():
        return Scenario.load(path, ds), True
    if spec is None:
        raise MissingDataError(f"{run_dir!r} has no {SCENARIO_FILE}; pass --scenario (e.g. class:3) to evaluate it on one.")
    origin = record["origin"]
    return parse_scenario(
        spec, ds, seed=int(record.get("seed", 0)), val_fraction=origin["val_fraction"], val_seed=origin["val_seed"]
    ), False


def evaluate_command(args: argparse.Namespace) -> int:
    run = _load_run(args.run_dir)
    record, ds = run.record, run.dataset
    sc, own = _scenario_of(args.run_dir, record, ds, args.scenario)
    reference: Run | None = None
    ref_record: dict[str, Any] = {}
    if args.reference:
        reference = _load_run(args.reference)
        ref_record, ref_ds = reference.record, reference.dataset
        if ref_ds.name != ds.name:
            raise InvalidConfigError(f"The reference run is on {ref_ds.name!r}, the evaluated run on {ds.name!r}.")
        ref_sc = Path(args.reference) / SCENARIO_FILE
        if ref_sc.is_file() and read_json(ref_sc).get("hash") != sc.hash:
            raise InvalidConfigError("The reference run was unlearned on another scenario (its scenario hash differs).")
    ev = evaluate(run, sc, reference, device=None if args.device == "auto" else args.device)
    if own:
        record["metrics"] = {**record.get("metrics", {}), **ev.to_dict()}
        oracle_seconds = (ref_record.get("timings") or {}).get("seconds") if ref_record.get("method") == "retrain" else None
        timings = record.setdefault("timings", {})
        if oracle_seconds is not None:
            timings["oracle_seconds"] = oracle_seconds
            if timings.get("seconds"):
                timings["speedup"] = oracle_seconds / timings["seconds"]
        write_json(Path(args.run_dir) / RUN_FILE, record)
    _print_metrics(
        ev.to_dict(),
        f"{record.get('method') or 'trained model'} on {sc.name}" + (" vs reference" if reference is not None else ""),
    )
    return 0


def study_command(args: argparse.Namespace) -> int:
    if args.study == "unrolling":
        from .studies.unrolling import run_unrolling_study

        run_unrolling_study(out=args.out, quick=args.quick, seed=args.seed, privacy=not args.no_privacy, device=args.device)
        return 0
    raise InvalidConfigError(f"Unknown study {args.study!r}; valid: unrolling.")  # argparse already refuses it


def certified_command(args: argparse.Namespace) -> int:
    from .certified._cli import certified_command as run  # the logic lives in obliviate.certified

    return run(args)


COMMANDS = {
    "demo": demo,
    "methods": methods,
    "train": train_command,
    "unlearn": unlearn_command,
    "evaluate": evaluate_command,
    "study": study_command,
    "certified": certified_command,
}
