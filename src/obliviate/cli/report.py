"""``obliviate report DIR --out R``: the HTML and markdown reports (and a CSV) of a bench result store.

Reads ``DIR/results.sqlite`` (written by ``obliviate bench``), prints one table per dataset and
scenario, and writes ``R/report.html`` (self-contained: tables and plots, loads nothing),
``R/report.md`` and ``R/results.csv``. An earlier report in ``R`` is not overwritten unless
``--force`` is given.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]

REPORT_FILE = "report.md"
HTML_FILE = "report.html"
CSV_FILE = "results.csv"


def add_parser(sub: Any) -> None:
    """Register the ``report`` command."""
    r = sub.add_parser("report", help="write the HTML and markdown reports of a bench result store")
    r.add_argument("directory", metavar="DIR", help="the --out directory of 'obliviate bench' (holds results.sqlite)")
    r.add_argument("--out", required=True, help="directory to write report.html, report.md and results.csv into")
    r.add_argument("--force", action="store_true", help="overwrite an earlier report in --out")


def run(args: argparse.Namespace) -> int:
    """Read the store, print the tables, write the files."""
    from pathlib import Path

    from ..bench.html import html_report
    from ..bench.report import REPORT_COLUMNS, group_records, markdown_report, split_records
    from ..bench.store import STORE_FILE, ResultStore
    from ..errors import InvalidConfigError
    from ..report import aggregate, csv_text, rich_table
    from ._common import console

    store_dir = Path(args.directory)
    if not (store_dir / STORE_FILE).is_file():
        raise InvalidConfigError(
            f"{str(store_dir)!r} holds no {STORE_FILE}: pass the --out directory of 'obliviate bench SPEC --out DIR'."
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidConfigError(f"--out {str(out)!r} is a file, not a directory.")
    existing = [name for name in (REPORT_FILE, CSV_FILE, HTML_FILE) if (out / name).exists()]
    if existing and not args.force:
        raise InvalidConfigError(f"--out {str(out)!r} already holds {existing[0]}; choose another --out or pass --force.")
    with ResultStore(store_dir) as store:
        records = store.records()
    if not records:
        raise InvalidConfigError(f"The result store of {str(store_dir)!r} holds no runs yet; run 'obliviate bench' first.")
    classic, pools = split_records(records)
    for (dataset, scenario), runs in group_records(classic).items():
        console().print(rich_table(aggregate(runs, REPORT_COLUMNS), f"{dataset} · {scenario}", REPORT_COLUMNS))
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_FILE).write_text(markdown_report(records))
    (out / CSV_FILE).write_text(csv_text(classic + pools))  # the pools' members are their raw material, not results
    (out / HTML_FILE).write_text(html_report(records), encoding="utf-8")
    console().print(f"{len(records)} runs -> {out / HTML_FILE}, {out / REPORT_FILE}, {out / CSV_FILE}", markup=False)
    return 0
