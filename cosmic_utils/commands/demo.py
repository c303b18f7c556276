"""``cosmic demo``: the main job on the local backend (see :mod:`cosmic_utils.jobs.demo`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cosmic_utils import exits
from cosmic_utils.commands import cli_types


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="the main job: data -> model -> local state machine -> summary, figures")
    p.add_argument("--data-gb", type=cli_types.positive_float, default=0.2, help="dataset size in GB (default 0.2)")
    p.add_argument("--partition-mb", type=cli_types.positive_float, default=25.0, help="partition size in MB (default 25)")
    p.add_argument("--batch-size", type=cli_types.batch_size, default=256)
    p.add_argument("--max-concurrency", type=cli_types.positive_int, default=4)
    p.add_argument("--train-config", default="default", help="training configuration (default | quick)")
    p.add_argument("--no-figures", action="store_true", help="skip redrawing the figures")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cosmic_utils.cloud.summary_view import print_summary
    from cosmic_utils.jobs.demo import DemoConfig, run_demo

    cfg = DemoConfig(data_gb=args.data_gb, partition_mb=args.partition_mb, batch_size=args.batch_size,
                     max_concurrency=args.max_concurrency, train_config=args.train_config,
                     figures=not args.no_figures)
    summary = run_demo(cfg)
    print_summary(summary)
    print("step timings (s):", json.dumps(summary["demo_timings_s"]))
    print("run folder:", summary["run_dir"])
    failed = summary.get("failed") or []
    if failed or summary.get("partitions_failed"):
        exits.print_failures("cosmic demo", failed)
        return exits.PARTIAL
    if summary.get("execution_status") not in (None, "SUCCEEDED") or not summary.get("partitions"):
        print(f"cosmic demo: error: execution {summary.get('execution_status')}: "
              f"{summary.get('execution_cause') or summary.get('execution_error')}", file=sys.stderr)
        return exits.FAILED
    for name in summary["figures_failed"]:
        print(f"cosmic demo: figure {name} failed (not redrawn; `cosmic figures -v` shows why)", file=sys.stderr)
    return exits.PARTIAL if summary["figures_failed"] else exits.OK
