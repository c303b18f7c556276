"""``cosmic doctor``: credentials, region, prices and quotas before a deploy or a sweep (no change made)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check credentials, region, price row and the Lambda concurrency quota "
                                             "(read from the account), and warn when a grid would be throttled")
    p.add_argument("--grid", type=Path, action="append", default=[], help="sweep grid(s) to check (repeatable)")
    p.add_argument("--region", default=None)
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from cosmic_utils.analysis import simulate, sweep
    from cosmic_utils.cloud import aws, preflight
    from cosmic_utils.runtime import prices

    backend = aws.AwsBackend(region=args.region)
    print(f"region: {backend.region}")
    try:
        table = prices.region_prices(backend.region)
        print(f"prices: row {backend.region} as of {table['as_of']} ({table['source']}; "
              f"{'checked' if table['checked'] else 'NOT checked against AWS, read it before relying on it'})")
    except prices.UnknownRegion as exc:
        print(f"cosmic doctor: {exc}", file=sys.stderr)
        return 1
    print("runtime: python3.12 on x86_64 and arm64 (offered in every region of the price table; no API lists them)")
    try:
        ident = backend.client("sts").get_caller_identity()
    except Exception as exc:  # noqa: BLE001 - no credentials: say so in one line
        print(f"cosmic doctor: error: no usable AWS credentials: {' '.join(str(exc).split())[:200]}", file=sys.stderr)
        return 1
    print(f"account: {preflight.mask_account(str(ident['Account']))}")
    conc = preflight.read_concurrency(backend.client("lambda"), backend.client("service-quotas"))
    if conc.limit is None:
        print(f"lambda concurrency: {conc.source}")
    else:
        print(f"lambda concurrency: {conc.limit} concurrent executions"
              + (f", {conc.unreserved} unreserved" if conc.unreserved is not None else "") + f" ({conc.source})")
    print(f"step functions: Distributed Map up to {preflight.DISTRIBUTED_MAP_MAX_CONCURRENCY:,} parallel child "
          "executions, 256 KiB payloads (fixed service limits, not read from the account)")
    warnings = 0
    for path in args.grid:
        grid = sweep.load_grid(path)
        points = [(sweep.slug(c), p, simulate.partitions_for(float(p["data_gb"]), float(p["partition_mb"])))
                  for c in grid.combinations() for p in [{**grid.parameters, **c}]
                  if p.get("data_gb") is not None and p.get("partition_mb") is not None]
        checks = preflight.check_points(points, conc)
        top = max((c.parallel for c in checks), default=0)
        print(f"grid {grid.name}: {len(checks)} points, up to {top} parallel invocations")
        for c in checks:
            if c.warning:
                warnings += 1
                print(f"  WARNING {c.slug}: {c.warning}")
    print(f"doctor: {warnings} warning(s)")
    return 0
