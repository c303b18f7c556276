"""``cosmic readme``: regenerate the README's "What it measures" table from data/records/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("readme", help="regenerate the README's measured table from the shipped records")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the README's table differs from the records")
    p.add_argument("--readme", type=Path, help="README file (default: README.md of the project)")
    p.add_argument("--records", type=Path, help="records folder (default: data/records/)")
    p.set_defaults(func=_readme)


def _readme(args: argparse.Namespace) -> int:
    from cosmic_utils.analysis.readme import update_readme

    try:
        stale = update_readme(args.readme, args.records, check=args.check)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if stale:
            print("README.md: the measured table differs from data/records/; run `make readme`", file=sys.stderr)
            return 1
        print("README.md: the measured table matches data/records/")
        return 0
    print("README.md: measured table " + ("rewritten from data/records/" if stale else "already up to date"))
    return 0
