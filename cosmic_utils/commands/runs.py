"""``cosmic runs``: every run in runs/ and every shipped record, one line each (a pandas table)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("runs", help="list every scratch run (runs/) and shipped record with model, data, "
                                           "machine, engine, status and whether it is shipped")
    p.add_argument("--origin", choices=("scratch", "shipped"), help="only scratch runs or only shipped records")
    p.add_argument("--kind", help="only this kind (local_cpu, pipeline, sweep_point, bench)")
    p.add_argument("--machine", help="only machines whose name contains this text (case-insensitive)")
    p.add_argument("--csv", type=Path, help="also write the table to this CSV file")
    p.add_argument("--runs", type=Path, help="runs folder (default: runs/)")
    p.add_argument("--records", type=Path, help="records folder (default: data/records/)")
    p.set_defaults(func=_runs)


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from cosmic_utils import exits
    from cosmic_utils.analysis.runs_index import runs_table

    df = runs_table(args.runs, args.records)
    if args.origin:
        df = df[df["origin"] == args.origin]
    if args.kind:
        df = df[df["kind"] == args.kind]
    if args.machine:
        df = df[df["machine"].astype(str).str.contains(args.machine, case=False, regex=False)]
    if args.csv:
        df.to_csv(args.csv, index=False)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250,
                           "display.max_colwidth", 40):
        print(df.drop(columns=["path"]).to_string(index=False) if not df.empty else "no runs and no shipped records")
    return exits.OK
