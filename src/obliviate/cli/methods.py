"""``obliviate methods [show NAME]``: the registered unlearning methods."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from ..errors import InvalidConfigError
from ._common import console


def add_parser(sub: Any) -> None:
    """Register the ``methods`` command."""
    m = sub.add_parser("methods", help="list the unlearning methods, or show one")
    m.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    m.add_argument("name", nargs="?", help="method to show")


def run(args: argparse.Namespace) -> int:
    """List the methods, or show one's requirements, docstring, hyperparameters and presets."""
    from rich.table import Table

    from ..data.scenario import SCENARIO_KINDS
    from ..methods import METHODS

    con = console()
    if args.action == "show" or args.name:
        if not args.name:
            raise InvalidConfigError("'obliviate methods show' needs a method name, e.g. 'obliviate methods show ssd'.")
        cls = METHODS.get(args.name)
        con.print(
            f"[bold]{args.name}[/bold] ({cls.__name__}); requires: {', '.join(sorted(cls.requires))}; "
            f"scenarios: {', '.join(cls.describe()['kinds'])}; exact: {cls.exact}"
            + ("; needs the training recording (obliviate train --record)" if getattr(cls, "needs_recording", False) else "")
        )
        print(inspect.cleandoc(cls.__doc__ or ""))
        table = Table(title="hyperparameters", title_justify="left")
        for col in ("name", "default", "allowed", "tuned over (--tune)"):
            table.add_column(col)
        defaults, constraints, space = cls().to_dict(), cls.constraints(), cls.search_space()
        for name, value in defaults.items():
            allowed = constraints[name].describe() if name in constraints else ""
            table.add_row(name, repr(value), allowed, space[name].describe() if name in space else "")
        con.print(table)
        for preset, values in sorted(cls.presets.items()):
            con.print(f"preset {preset!r}: {values}", markup=False)
        if cls.from_recipe:
            con.print("with the original training recipe known (a run directory, a TrainResult or recipe=), the defaults of:")
            for name in cls.from_recipe:
                con.print(f"  {name}: {cls.describe_rule(name)}", markup=False)
        return 0
    table = Table(title="unlearning methods (obliviate methods show NAME for details)", title_justify="left")
    for col in ("name", "requires", "scenarios", "exact", "presets", "summary"):
        table.add_column(col)
    for name, cls in METHODS.items():
        info = cls.describe()
        kinds = "all" if len(info["kinds"]) == len(SCENARIO_KINDS) else ",".join(info["kinds"])
        table.add_row(
            name, ",".join(info["requires"]), kinds, "yes" if cls.exact else "", ",".join(info["presets"]), info["summary"]
        )
    con.print(table)
    return 0
