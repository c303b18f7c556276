"""``cosmic logs RUN``: the CloudWatch error of every failed partition of a run, next to its record."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("logs", help="CloudWatch errors of the failed partitions of a run (aws backend)")
    p.add_argument("run", help="run id (under runs/) or run folder")
    p.add_argument("--prefix", default=None, help="deployment prefix (default: from the run's execution ARN)")
    p.add_argument("--region", default=None, help="AWS region (default: from the run's execution ARN)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_logs)


def _logs(args: argparse.Namespace) -> int:
    from cosmic_utils.cloud.run_logs import RunLogsError, failure_logs

    try:
        result = failure_logs(args.run, prefix=args.prefix, region=args.region)
    except RunLogsError as exc:
        print(f"cosmic logs: {exc}", file=sys.stderr)
        return 1  # refused: no such run, or no record of it (exit-status contract: 1)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    if not result.failed:
        print(f"run {result.run_id}: no failed partitions")
        return 0
    print(f"run {result.run_id}: {len(result.failed)} failed partition(s); log group /aws/lambda/{result.function_name}")
    for f in result.failed:
        pid = str(f["partition_id"])
        print(f"{pid}  record: {f.get('error')}")
        errs = result.by_partition.get(pid) or []
        if not errs:
            print("    cloudwatch: no error found for this partition in the run's time window")
        for e in errs:
            print(f"    cloudwatch: {e.one_line()}")
    for e in result.unmatched:
        print(f"(not tied to a partition)  {e.one_line()}")
    return 0
