"""``cosmic cost`` (prices, published table vs billed, cost of a recorded run) and ``cosmic simulate``."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

from cosmic_utils.commands import cli_types


def _print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
        return str(v)

    cells = [columns, *([fmt(r.get(c, "")) for c in columns] for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("cost", help="AWS cost: price table, published formulas vs billed, a recorded run")
    p.add_argument("--prices", type=Path, help="YAML file overriding (part of) the price table")
    p.add_argument("--published", action="store_true",
                   help="recompute the seed project's table (published formulas) with the billed cost next to it")
    p.add_argument("--assumed-memory-mb", type=cli_types.positive_float, default=None,
                   help="configured memory assumed for the published runs (default 10240, the published size)")
    p.add_argument("--records", type=Path, help="records.csv of a pipeline run (one row per partition)")
    p.add_argument("--memory-mb", type=cli_types.positive_float, help="configured memory of the Inference function (with --records)")
    p.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"])
    p.add_argument("--wall-s", type=cli_types.positive_float, help="Step Functions wall clock of the run (end-to-end figures)")
    p.set_defaults(func=_cost)

    s = subparsers.add_parser("simulate", help="predict wall clock and cost at any data size (scale simulator)")
    s.add_argument("--gb", type=cli_types.positive_float, nargs="+", default=[1.0], help="data sizes (GB = 1e9 bytes)")
    s.add_argument("--partition-mb", type=cli_types.positive_float, nargs="+", default=[25.0], help="partition sizes (2**20-byte MB)")
    s.add_argument("--memory-mb", type=cli_types.positive_float, nargs="+", default=None,
                   help="configured Lambda memory sizes (default 10240; with --project the projection's seven, lambda_model.MEMORY_SIZES_MB)")
    s.add_argument("--concurrency", type=cli_types.positive_int, default=1000, help="account Lambda concurrency (default quota 1000)")
    s.add_argument("--max-concurrency", type=cli_types.nonnegative_int, default=0, help="Map MaxConcurrency (0: none)")
    s.add_argument("--seed", type=cli_types.nonnegative_int, default=0)
    s.add_argument("--validate", action="store_true",
                   help="fit on part of the published runs, print the per-row table and the median abs error")
    s.add_argument("--save", action="store_true", help="with --validate: write data/records/simulator_validation.*")
    s.add_argument("--project", action="store_true",
                   help="PROJECTION of the Lambda engine: duration and billed $/GB per memory size from its measured "
                        "1-thread speed (bench.json) per CPU type, the decomposition of the published REPORT "
                        "durations, the cheapest memory, the 12.6 GB wall clock (the one Lambda model)")
    s.add_argument("--json", type=Path, metavar="FILE", dest="json_out",
                   help="with --project: write the projection record to FILE "
                        "(shipped: data/records/lambda_projection.json)")
    s.add_argument("--bench", type=Path, help="with --project: bench record to read (default data/records/bench.json)")
    s.add_argument("--allow-two-thread", action="store_true",
                   help="with --project: without a threads=1 bench row, use the threads=2 rows (labelled FALLBACK)")
    s.add_argument("--engine", choices=["onnx", "onnx-int8"],
                   help="with --project: the Lambda engine (default: the one the bench names for Lambda)")
    s.add_argument("--deadline-s", type=cli_types.positive_float, help="also print the cheapest memory size meeting this wall clock")
    s.add_argument("--records", type=Path,
                   help="per-partition records.csv (local or AWS run) to draw partition timings from")
    s.set_defaults(func=_simulate)


def _cost(args: argparse.Namespace) -> int:
    from cosmic_utils import config
    from cosmic_utils.analysis import cost

    prices = cost.load_prices(args.prices)
    if args.records:
        if args.memory_mb is None:
            raise SystemExit("--records needs --memory-mb (the CONFIGURED memory of the Inference function)")
        with open(args.records, encoding="utf-8") as fh:
            recs = list(csv.DictReader(fh))
        print(json.dumps(cost.summarize_pipeline_cost(recs, args.memory_mb, args.arch, wall_s=args.wall_s,
                                                      prices=prices), indent=2))
        return 0
    if args.published:
        with open(config.REFERENCE_DIR / "team6" / "lambda_table.csv", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        mem = args.assumed_memory_mb or cost.ASSUMED_PUBLISHED_MEMORY_MB
        out = cost.reproduce_published_table(rows, configured_memory_mb=mem, prices=prices)
        for r in out:
            r["cost_usd"] = float(r["cost_usd"])
        print(f"Seed project's table recomputed with its formulas (published), and what AWS would have billed\n"
              f"(ASSUMED configured memory {mem:.0f} MB, prices as of {prices['as_of']}, {prices['region']}):")
        _print_table(out, ["section", "partition_mb", "lambdas", "avg_runtime_s", "cost_usd", "published_cost_usd",
                           "published_perf_efficiency_gb_s_per_usd", "billed_total_usd",
                           "billed_perf_efficiency_gb_s_per_usd"])
        return 0
    print(json.dumps(prices, indent=2))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cosmic_utils.analysis import simulate

    if args.validate:
        table, summary = simulate.validate(seed=args.seed)
        _print_table(table, ["split", "source", "partition_mb", "data_gb", "run", "workers", "inference_s",
                             "wall_s", "predicted_wall_s", "error_rel"])
        print(json.dumps({k: v for k, v in summary.items()}, indent=2))
        print(f"median |error| all rows {summary['median_abs_error']:.1%}, held-out "
              f"{summary['median_abs_error_held_out']:.1%} ({summary['held_out_rows']} rows), "
              f"train {summary['median_abs_error_train']:.1%} ({summary['train_rows']} rows)")
        if args.save:
            paths = simulate.save_validation(seed=args.seed)
            print("wrote", *paths)
        return 0
    if args.project:
        return _project_engine(args)
    if args.json_out:
        raise SystemExit("--json FILE goes with --project")
    fitted = simulate.load_fitted()
    timing, orch = fitted if fitted else (simulate.PartitionTiming(), simulate.Orchestration())
    orch = replace(orch, account_concurrency=args.concurrency, max_concurrency=args.max_concurrency)
    if args.records:
        with open(args.records, encoding="utf-8") as fh:
            timing = simulate.PartitionTiming.from_records(list(csv.DictReader(fh)))
        print(f"partition timings from {args.records} (reference memory {timing.reference_memory_mb:.0f} MB)")
    rows = simulate.sweep_scale(args.gb, args.partition_mb, args.memory_mb or [10240.0], timing=timing, orch=orch, seed=args.seed)
    print("simulated (parameters fitted on the published runs" + ("" if fitted else " NOT found: defaults") + "):")
    _print_table(rows, ["label", "data_gb", "partition_mb", "memory_mb", "partitions", "wall_s", "mean_duration_s",
                        "cost_usd", "usd_per_gb", "throughput_e2e_gb_s"])
    if args.deadline_s:
        for gb in args.gb:
            for mb in args.partition_mb:
                r = simulate.right_size_memory(gb, mb, args.deadline_s, timing=timing, orch=orch, seed=args.seed)
                verdict = "meets" if r["meets_deadline"] else "cannot meet (fastest shown)"
                print(f"{gb} GB / {mb} MB: {r['memory_mb']:.0f} MB {verdict} the {args.deadline_s} s deadline")
    return 0


def _project_engine(args: argparse.Namespace) -> int:
    """``cosmic simulate --project``: the Lambda engine's projection (inputs, per-memory table, 12.6 GB)."""
    import sys

    from cosmic_utils.analysis import projection as lp

    memory = args.memory_mb or list(lp.MEMORY_SIZES_MB)
    try:
        rec = lp.project(bench_path=args.bench, allow_two_thread=args.allow_two_thread, engine=args.engine,
                         memory_mbs=memory, partition_mb=args.partition_mb[0], concurrency=args.concurrency,
                         seed=args.seed)
    except lp.ProjectionRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lp.describe(rec)))
    print("\n".join(lp.describe_decomposition(rec)))
    print(f"per memory size, {rec['inputs']['partition_mb']:g} MB partitions, x86_64, {rec['best']['machine']} "
          "(projected; arm64: not measured; USD = Lambda only: billed duration + request charge):")
    _print_table(rec["memory"], ["memory_mb", "vcpu", "engine_speed_rel", "duration_s", "billed_ms", "usd_per_gb",
                                 "usd_per_gb_low", "usd_per_gb_high", "usd_per_gb_cold", "best_memory"])
    print("\n".join(lp.describe_cheapest(rec)))
    rows = [{"memory_mb": w["memory_mb"], "partition_mb": w["partition_mb"], "partitions": w["partitions"],
             "map": f"{w['map']['mode']} {w['map']['slots']} slots" + (" queued" if w["map"]["queued"] else ""),
             "wall_s": w["wall_s"], "lambda_usd_per_gb": w["lambda_usd_per_gb"], "usd_per_gb": w["usd_per_gb"]}
            for w in rec["wall_clock_12_6gb"]]
    print(f"{lp.LARGEST_PUBLISHED_GB} GB end to end at account concurrency {args.concurrency} (projected, simulated "
          "schedule; usd_per_gb = Lambda + Step Functions + S3 requests; Lambda billed on warm durations, "
          "cold starts count in wall_s only):")
    _print_table(rows, ["memory_mb", "partition_mb", "partitions", "map", "wall_s", "lambda_usd_per_gb", "usd_per_gb"])
    for w in rec["published"]["wall_12_6gb"]:
        print(f"  published {w['partition_mb']:g} MB: median {w['median_s']:.1f} s (runs "
              + ", ".join(f"{x:.1f}" for x in w["runs_s"]) + ")")
    print("\n".join(lp.describe_fastest(rec)))
    if args.json_out:
        print("wrote", lp.write(rec, args.json_out))
    return 0
