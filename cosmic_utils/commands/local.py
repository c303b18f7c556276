"""``cosmic local data-size``: the local streaming data-size study (peak RSS per size) -> data/records/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmic_utils.commands import cli_types


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("local", help="local studies on this computer (data-size)")
    sub = p.add_subparsers(dest="local_command", metavar="STUDY", required=True)
    d = sub.add_parser("data-size", help="stream growing data sizes through one engine, one fresh process per "
                                         "size (peak RSS its own) -> data/records/local_data_size.csv")
    d.add_argument("--gb", type=cli_types.positive_float, nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                   help="data sizes in GB (1e9 bytes; default 1 2 4 8)")
    d.add_argument("--repeats", type=cli_types.positive_int, default=1, help="runs per size (default 1)")
    d.add_argument("--engine", default="auto",
                   help="engine name, or auto: the fastest accurate engine cosmic bench measured on this CPU type")
    d.add_argument("--batch-size", type=cli_types.batch_size, default=256)
    d.add_argument("--threads", type=cli_types.positive_int, default=None, help="engine threads (default: all cores)")
    d.add_argument("--base-gb", type=cli_types.positive_float, default=1.0,
                   help="rendered once; larger sizes list its partitions repeatedly (default 1 GB)")
    d.add_argument("--model", type=Path, default=None, help="model artifact folder (default models/default)")
    d.add_argument("--out", type=Path, default=None, help="CSV to write (default data/records/local_data_size.csv)")
    d.set_defaults(func=_data_size)


def _data_size(args: argparse.Namespace) -> int:
    from cosmic_utils.jobs.local_data_size import run_study

    try:
        df = run_study(args.gb, repeats=args.repeats, engine=args.engine, batch_size=args.batch_size,
                       threads=args.threads, base_gb=args.base_gb, model_dir=args.model, out=args.out)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"cosmic local data-size: {exc}", file=sys.stderr)
        return 1
    print(df[["requested_gb", "repeat", "samples", "wall_s", "gb_per_s", "peak_rss_mb", "engine"]].to_string(index=False))
    return 0
