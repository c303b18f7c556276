"""``cosmic readme`` and ``cosmic report``: the README's "What it measures" table and docs/report.md
(the seed study, claim by claim), each regenerated from the stored records (``--check``: compare only)."""

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

    p = subparsers.add_parser("report", help="write docs/report.md from data/records/ (figures: cosmic figures)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when docs/report.md differs from what the records give")
    p.add_argument("--out", type=Path, help="report file (default: docs/report.md)")
    p.add_argument("--records", type=Path, help="records folder (default: data/records/)")
    p.add_argument("--reference", type=Path, help="published reference folder (default: data/reference/)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from cosmic_utils import config, exits
    from cosmic_utils.analysis.report import ReportError, Sources, write_doc_block, write_report

    src = Sources(records=args.records or config.RECORDS_DIR, reference=args.reference or config.REFERENCE_DIR)
    out = args.out or config.PROJECT_ROOT / "docs" / "report.md"
    try:
        changed = write_report(out, src, check=args.check)
        doc = config.PROJECT_ROOT / "docs" / "cost_and_simulation.md"
        doc_changed = write_doc_block(doc, src, check=args.check) if args.out is None else False
    except ReportError as exc:
        print(f"cosmic report: refused: {exc}", file=sys.stderr)
        return exits.FAILED
    if args.check:
        if changed or doc_changed:
            stale = ", ".join(str(p) for p, c in ((out, changed), (doc, doc_changed)) if c)
            print(f"{stale}: differs from what data/records/ gives; run `make report`", file=sys.stderr)
            return exits.FAILED
        print(f"{out}: matches data/records/")
        return exits.OK
    print(f"{out}: " + ("written from data/records/" if changed else "already up to date"))
    if doc_changed:
        print(f"{doc}: decomposition block written from data/records/")
    return exits.OK


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
