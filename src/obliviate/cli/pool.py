"""``obliviate pool ls|gc``: the model pool of ``obliviate bench`` (trained originals and oracles).

``pool ls [DIR] [--pool P]`` lists the entries (kind, dataset, model, seed, size, created);
``pool gc DIR [--pool P] [--yes]`` removes the entries no record in DIR's result store references
(a dry run unless ``--yes``).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Register the ``pool`` command."""
    from ._common import Parser

    p = sub.add_parser("pool", help="list or clean the model pool of 'obliviate bench'")
    cmds = p.add_subparsers(dest="pool_command", metavar="ls|gc", parser_class=Parser)
    cmds.required = True
    ls = cmds.add_parser("ls", help="list the pool's models")
    ls.add_argument("dir", nargs="?", default=None, metavar="DIR", help="a bench output directory (its pool/)")
    ls.add_argument("--pool", default=None, help="the pool directory (default: DIR/pool)")
    gc = cmds.add_parser("gc", help="remove the models no record of DIR's result store uses")
    gc.add_argument("dir", metavar="DIR", help="the bench output directory whose store says what is used")
    gc.add_argument("--pool", default=None, help="the pool directory (default: DIR/pool)")
    gc.add_argument("--yes", action="store_true", help="delete (default: only list what would be deleted)")


def _pool_dir(args: argparse.Namespace) -> Any:
    from pathlib import Path

    from ..bench.pool import POOL_DIR
    from ..errors import InvalidConfigError, MissingDataError

    if args.pool is None and args.dir is None:
        raise InvalidConfigError("pool ls needs a bench output directory DIR or --pool PATH.")
    path = Path(args.pool) if args.pool is not None else Path(args.dir) / POOL_DIR
    if not path.is_dir():
        raise MissingDataError(f"No model pool at {str(path)!r}: run 'obliviate bench SPEC --out DIR' first, or pass --pool.")
    return path


def run(args: argparse.Namespace) -> int:
    """List or collect the pool."""
    import datetime
    from pathlib import Path

    from ..bench.pool import ModelPool
    from ..bench.store import STORE_FILE, ResultStore
    from ..errors import MissingDataError

    pool = ModelPool(_pool_dir(args))
    entries = pool.entries()
    if args.pool_command == "ls":
        print(f"{'key':12}  {'kind':8} {'dataset':10} {'model':8} {'seed':>4} {'size':>10}  created")
        for e in entries:
            created = datetime.datetime.fromtimestamp(e.get("created", 0)).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{e['key'][:12]}  {e['kind']:8} {e['dataset']:10} {e['model']:8} {e['seed']:>4} {e['size']:>10}  {created}")
        print(f"{len(entries)} models, {sum(e['size'] for e in entries)} bytes in {str(pool.path)!r}")
        return 0
    if not (Path(args.dir) / STORE_FILE).is_file():
        raise MissingDataError(
            f"{str(args.dir)!r} holds no result store ({STORE_FILE}); pool gc needs the bench output directory."
        )
    with ResultStore(args.dir) as store:
        used = store.pool_keys()
        stored = store.keys()
    unused = [e for e in entries if e["key"] not in used]
    from ..bench.pools import outputs_dir

    outputs = sorted(outputs_dir(pool.path).glob("*.json")) if outputs_dir(pool.path).is_dir() else []
    orphans = [p for p in outputs if p.stem not in stored]  # a pool member's outputs no stored run is
    for p in orphans:
        print(f"{'removing' if args.yes else 'would remove'} pool-member outputs {p.stem[:12]}")
        if args.yes:
            p.with_suffix(".safetensors").unlink(missing_ok=True)
            p.unlink(missing_ok=True)
    for e in unused:
        what = f"{e['key'][:12]} ({e['kind']}, {e['dataset']}, seed {e['seed']}, {e['size']} bytes)"
        print(f"{'removing' if args.yes else 'would remove'} {what}")
        if args.yes:
            pool.remove(e["key"])
    stale = pool.leftovers()
    for path in stale:  # temporary files of a write a kill cut short, locks of complete entries
        print(f"{'removing' if args.yes else 'would remove'} leftover file {path.name}")
        if args.yes:
            path.unlink(missing_ok=True)
    verb = "removed" if args.yes else "unused (pass --yes to delete them)"
    print(f"{len(unused)} of {len(entries)} models {verb}; {len(entries) - len(unused)} in use by {str(args.dir)!r}")
    if outputs:
        print(f"{len(orphans)} of {len(outputs)} pool-member outputs {verb.split(' (')[0]}")
    return 0
