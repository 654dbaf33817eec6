"""Helpers shared by the command modules: the one-line-error parser, ``key=value`` options, printing.

Import-light on purpose (argparse and json only): ``obliviate --help`` builds every command's parser
without importing torch; each command imports the library inside its ``run``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import InvalidConfigError

__all__ = ["Parser", "csv", "parse_sets", "console", "print_metrics"]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"obliviate: error: {message} (see '{self.prog} --help')\n")


def csv(text: str) -> list[str]:
    """Comma-separated words, blanks dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_sets(items: Sequence[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``key=value`` pairs; values are read as JSON when they parse (numbers, lists, true, null).

    Raises:
        InvalidConfigError: an item has no ``=`` or no key.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidConfigError(f"{flag} expects key=value; got {item!r}.")
        lowered = raw.strip().lower()
        if lowered in ("none", "null"):
            value: Any = None
        elif lowered in ("true", "false"):
            value = lowered == "true"
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        out[key.strip()] = value
    return out


def console() -> Any:
    """The shared rich console."""
    from .._utils import console as _console

    return _console()


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    """A two-column table of metric values; fractions (and ``*_acc``) as percentages."""
    from rich.table import Table

    from ..metrics import METRICS

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
    console().print(table)


def print_notes(notes: Sequence[str], status: str = "ok") -> None:
    """The warnings a run raised, after its results, one line each on stderr; a collapse stands out."""
    import sys

    if status == "collapsed":
        collapse = [n for n in notes if "collapsed the model" in n]
        for n in collapse:
            print(f"obliviate: WARNING, status collapsed: {n.split(': ', 1)[-1]}", file=sys.stderr)
        notes = [n for n in notes if n not in collapse]
    for n in notes:
        print(f"obliviate: note: {n}", file=sys.stderr)


def unlearn_provenance(args: Any, source: Any, scenario: Any, parent_digest: str) -> dict[str, Any]:
    """The run-record fields of an unlearned run that say where it came from (``unlearn`` and ``tune``)."""
    from pathlib import Path

    return {
        "scenario": scenario.summary(),
        "method": args.method,
        "seed": args.seed,
        "kind": "unlearn",
        "preset": args.preset,
        "origin": source.origin,
        "parent": str(Path(args.run_dir)),
        "parent_model_sha256": parent_digest,
        "train_set": scenario.retain_set.to_json(),
    }


def print_from_recipe(values: dict[str, Any]) -> None:
    """Say which defaults came from the source run's training recipe (nothing when none did)."""
    if values:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        console().print(f"defaults from the run's training recipe: {shown}", markup=False)


def unlearn_inputs(args: Any, source: Any, model: Any, method_cls: Any) -> tuple[Any, Any, str]:
    """What an unlearning run takes from its source run: (recording or None, masks or None, model SHA-256).

    Raises:
        MissingDataError: the method needs the training recording and the source run has none.
    """
    from ..errors import MissingDataError
    from ..io import MODEL_FILE
    from ..runs import file_sha256

    recording = None
    if getattr(method_cls, "needs_recording", False):
        if not source.has_recording:
            raise MissingDataError(
                f"{args.method} needs the training recording, but {str(args.run_dir)!r} has none: "
                "train with 'obliviate train ... --record' (amnesiac: --record-updates)."
            )
        recording = source.recording()
    masks = source.masks(model)  # a pruned model's masks.safetensors, kept in every method
    return recording, masks, file_sha256(source.path / MODEL_FILE)  # the digest lets evaluate refuse the original
