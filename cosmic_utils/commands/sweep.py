"""``cosmic sweep GRID.yaml``: run a papermill grid sweep (resumable), print the combinations' status."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cosmic_utils.commands import cli_types


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="run a notebook once per combination of a grid file (papermill)")
    p.add_argument("grid", type=Path, nargs="+",
                   help="grid file, e.g. sweeps/batch_size.yaml (several only with --estimate: the whole study)")
    p.add_argument("--estimate", action="store_true",
                   help="run nothing: per point and in total the projected cost and wall clock, and the data "
                        "prepared and uploaded (each dataset once)")
    p.add_argument("--upload-mbit-s", type=cli_types.positive_float, default=100.0,
                   help="--estimate: assumed upload bandwidth to S3 (default 100 Mbit/s)")
    p.add_argument("--prepare-mb-s", type=cli_types.positive_float, default=None,
                   help="--estimate: preparation rate of `cosmic data prepare` on this machine (MB/s); no default "
                        "(no recorded rate)")
    p.add_argument("--dry-run", action="store_true", help="list the combinations and their folders, run nothing")
    p.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                   help="keep only combinations with this value (repeatable)")
    p.add_argument("--repeats", type=cli_types.positive_int, default=None,
                   help="runs of every point (default: the grid's 'repeats:', else 3); each repeat resumes on its own")
    p.add_argument("--kernel", help="Jupyter kernel (default: the grid's, else python3)")
    p.add_argument("--max-usd", type=cli_types.positive_float, default=None,
                   help="per point: a point whose projected cost is above this is refused before it starts")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from cosmic_utils import exits
    from cosmic_utils.analysis import sweep

    if args.estimate:  # --only applies to each grid that has its key
        grids = [_kept(sweep.load_grid(path), args.only, single=len(args.grid) == 1) for path in args.grid]
        _print_estimate(grids, args)
        return exits.OK
    if len(args.grid) > 1:
        raise exits.UsageError("several grid files only with --estimate; run one sweep at a time")
    args.grid = args.grid[0]
    refused = _project(args)
    if refused is not None:
        return refused
    extra = {"max_usd": args.max_usd} if args.max_usd is not None else None
    rows = sweep.run_sweep(args.grid, dry_run=args.dry_run, only=args.only, kernel=args.kernel,
                           extra_parameters=extra, repeats=args.repeats)
    for r in rows:
        print(f"{r['status']:>8}  {r['slug']}  {r['output_dir']}")
    print(f"{len(rows)} runs (combination x repeat): " + ", ".join(
        f"{s} {sum(r['status'] == s for r in rows)}" for s in ("done", "skipped", "failed", "planned")))
    if args.dry_run:  # the plan's time and cost too (the --estimate totals of the points kept)
        _print_estimate([_kept(sweep.load_grid(args.grid), args.only, single=True)], args, totals_only=True)
    failed = [r for r in rows if r["status"] == "failed"]
    # A failed point (notebook error, or a run with failed partitions) is never reported as done.
    exits.print_failures("cosmic sweep", failed, what="point", id_key="slug")
    return exits.PARTIAL if failed else exits.OK


def _project(args: argparse.Namespace) -> int | None:
    """aws grids (or with --max-usd): each point's projection and the total; 2 when a point is over budget."""
    import sys

    from cosmic_utils.analysis import sweep
    from cosmic_utils.analysis.projection import project_sweep

    grid = sweep.load_grid(args.grid)
    repeats = args.repeats or grid.repeats
    points = project_sweep(grid.parameters, sweep.select(grid, args.only))  # what --only keeps
    if args.max_usd is None and not any({**grid.parameters, **c}.get("backend") == "aws" for c, _ in points):
        return None
    total = 0.0
    over = []
    for combo, proj in points:
        if proj is None:
            print(f"  {sweep.slug(combo)}: no projection (data_gb / partition_mb not in the grid)")
            continue
        total += proj.cost_usd * repeats
        print(f"  {sweep.slug(combo)}: ~{proj.cost_usd:.4g} USD, ~{proj.wall_s:.0f} s ({proj.partitions} partitions)")
        if args.max_usd is not None and proj.cost_usd > args.max_usd:
            over.append(f"{sweep.slug(combo)} ({proj.cost_usd:.4g} USD)")
    print(f"PROJECTION of the sweep {grid.name}: ~{total:.4g} USD over {len(points)} points x {repeats} repeats")
    if over:
        print(f"cosmic sweep: refused: {len(over)} point(s) projected above --max-usd {args.max_usd:g}: "
              + ", ".join(over), file=sys.stderr)
        return 1  # refused (exit-status contract: 1)
    return None


def _kept(grid: Any, only: list[str], single: bool) -> Any:
    """The grid restricted to what ``--only`` keeps (with several grids, only the filters whose key
    the grid has apply; with one grid an unknown key is an error, as without --estimate)."""
    from dataclasses import replace

    from cosmic_utils.analysis import sweep

    mine = only if single else [o for o in only if o.split("=", 1)[0].strip() in {**grid.parameters, **grid.grid}]
    if not mine:
        return grid
    keep = sweep.select(grid, mine)
    return replace(grid, grid={k: sorted({c[k] for c in keep}, key=list(grid.grid[k]).index) for k in grid.grid})


def _print_estimate(grids: list[Any], args: argparse.Namespace, totals_only: bool = False) -> None:
    from cosmic_utils.analysis import estimate

    points = estimate.estimate_points(grids, args.repeats)
    totals = estimate.summarize(points, args.upload_mbit_s, args.prepare_mb_s)
    lines = estimate.render(points, totals, args.upload_mbit_s, args.prepare_mb_s)
    for line in lines[len(points) + 1:] if totals_only else lines:
        print(line)
