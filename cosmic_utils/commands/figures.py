"""``cosmic figures``: redraw every figure of the report from stored records (no experiment re-run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("figures", help="redraw every figure from stored records into figures/")
    p.add_argument("--out", type=Path, help="output folder (default: figures/)")
    p.add_argument("--only", nargs="+", help="figure names to draw (default: all)")
    p.add_argument("--ship-records", action="store_true",
                   help="first copy the measured records of finished runs (runs/) into data/records/")
    p.set_defaults(func=_figures)


def _figures(args: argparse.Namespace) -> int:
    from cosmic_utils.analysis import plots

    if args.ship_records:
        from cosmic_utils.analysis.records import ship_records

        for p in ship_records():
            print("shipped", p)
    paths = plots.make_all_figures(out_dir=args.out, only=args.only)
    for p in paths:
        print(p)
    print(f"{len(paths)} files written")
    return 0
