"""``cosmic figures``: redraw every figure of the report from stored records (no experiment re-run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmic_utils import exits


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("figures", help="redraw every figure from stored records into figures/")
    p.add_argument("--out", type=Path, help="output folder (default: figures/)")
    p.add_argument("--only", nargs="+", help="figure names to draw (default: all)")
    p.add_argument("--include-runs", action="store_true",
                   help="also draw the scratch runs in runs/, as their own labelled series (default: shipped "
                        "records only; use --out to keep such figures out of figures/)")
    p.set_defaults(func=_figures)


def _figures(args: argparse.Namespace) -> int:
    from cosmic_utils.analysis import plots

    failed: list[str] = []
    paths = plots.make_all_figures(out_dir=args.out, only=args.only, include_runs=args.include_runs, failed=failed)
    for p in paths:
        print(p)
    print(f"{len(paths)} files written")
    for name in failed:  # its old file, if any, is stale: say so and exit partial (3)
        print(f"cosmic figures: figure {name} failed (not redrawn; rerun with -v for the traceback)", file=sys.stderr)
    return exits.PARTIAL if failed else exits.OK
