"""``cosmic records ship | check``: the one way a run enters data/records/, and a check of what is there."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("records", help="ship admitted runs from runs/ into data/records/, or check the shipped set")
    sub = p.add_subparsers(dest="records_command", metavar="SUBCOMMAND", required=True)
    ship = sub.add_parser("ship", help="apply the admission rules (docs/records.md) to every run in runs/ and copy "
                                       "the admitted ones into data/records/; one line per refusal")
    ship.add_argument("--dry-run", action="store_true", help="say what would be shipped; write nothing")
    ship.add_argument("--runs", type=Path, help="runs folder (default: runs/)")
    ship.add_argument("--records", type=Path, help="records folder (default: data/records/)")
    ship.set_defaults(func=_ship)
    check = sub.add_parser("check", help="exit 1 when a shipped record neither passes the rules nor is listed in "
                                         "data/records/admitted_before_rules.txt")
    check.add_argument("--records", type=Path, help="records folder (default: data/records/)")
    check.set_defaults(func=_check)


def _ship(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.analysis.admission import ship

    res = ship(args.runs, args.records, dry_run=args.dry_run)
    for line in res.shipped:
        print(line)
    for line in res.refused:
        print(line, file=sys.stderr)
    print(f"{len(res.shipped)} shipped, {len(res.refused)} refused", file=sys.stderr)
    return exits.PARTIAL if res.refused else exits.OK


def _check(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.analysis.admission import check_shipped

    problems = check_shipped(args.records)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return exits.FAILED
    print("every shipped record passes the admission rules or is listed as admitted before them")
    return exits.OK
