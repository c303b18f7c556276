"""``cosmic bench``: engines x batch sizes against the published loop (:mod:`cosmic_utils.inference.bench`;
what ``make bench`` runs and how long it takes: docs/inference.md)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cosmic_utils.commands import cli_types
from cosmic_utils.inference.engines import ENGINE_NAMES


def _csv_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _threads_sizes(text: str) -> tuple[int, list[int]]:
    t, sep, sizes = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected THREADS:B1,B2 (e.g. 1:256), got {text!r}")
    try:
        threads = int(t)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer thread count before ':', got {text!r}") from exc
    if threads < 1:
        raise argparse.ArgumentTypeError(f"thread count must be >= 1, got {text!r}")
    return threads, _csv_ints(sizes)


def _csv_ints_or_all(text: str) -> list[int] | str:
    return "all" if text.strip() == "all" else _csv_ints(text)


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="engines x batch sizes vs the published loop, accuracy checks, peak RSS")
    p.add_argument("--json", default=None, help="write the result document here (default runs/bench/bench.json; --quick: bench_quick.json)")
    p.add_argument("--model", default=None, help="model artifact folder (default models/default; an untrained "
                   "artifact, clearly labelled, when that does not exist)")
    p.add_argument("--engines", type=_csv, default=None,
                   help=f"comma-separated engines (default: all of {','.join(ENGINE_NAMES)})")
    p.add_argument("--batch-sizes", type=_csv_ints, default=None, help="comma-separated batch sizes (default 32,64,128,256,512)")
    p.add_argument("--samples", type=cli_types.positive_int, default=None, help="samples per (engine, batch size) pass (default 512, at least 2 batches)")
    p.add_argument("--repeats", type=cli_types.positive_int, default=None, help="interleaved passes; the best counts (default 3)")
    p.add_argument("--threads", type=cli_types.positive_int, nargs="+", default=None,
                   help="intra-op threads of every engine and of the published loop; several (e.g. --threads 1 2) "
                   "measure each in one run, ratios against the published loop at the same count (default: all CPUs)")
    p.add_argument("--batch-sizes-at", type=_threads_sizes, action="append", default=None, metavar="T:B1,B2",
                   help="batch sizes at thread count T (repeatable; default: --batch-sizes at the largest count, "
                   "256 at the others)")
    p.add_argument("--compile-batch-sizes", type=_csv_ints_or_all, default=None,
                   help="batch sizes at which torch-compile is timed (default 256: each shape compiles ~20-70 s; 'all')")
    p.add_argument("--budget-s", type=cli_types.positive_float, default=None,
                   help="time budget of the run: the speed phases are ESTIMATED from the check speeds and the plan "
                   "trimmed (repeats, batch sizes other than 256) when they would not fit; printed")
    p.add_argument("--check-rows", type=cli_types.positive_int, default=None, help="validation galaxies for the accuracy checks (default 2500)")
    p.add_argument("--checks-json", default=None, help="where to write the accuracy checks "
                   "(default engine_checks.json next to --json; --quick: engine_checks_quick.json)")
    p.add_argument("--quick", action="store_true", help="batch sizes 32 and 256, 256 samples, one pass, 500 check rows")
    p.add_argument("--stream-gb", type=cli_types.positive_float, default=None, help="also stream this many GB in a fresh process and "
                   "record its peak RSS (target < 1.5 GB)")
    p.add_argument("--dataset", default=None, help="dataset folder to reuse for --stream-gb")
    p.add_argument("--stream-engine", default=None, help="engine of the streaming check (default onnx, the Lambda engine)")
    p.add_argument("--compare", nargs="*", default=None, metavar="RECORD",
                   help="measure nothing: print shipped bench records side by side, one column per machine "
                   "(default: data/records/bench.json and data/records/machines/*/bench.json)")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    if args.compare is not None:
        from cosmic_utils.inference.bench_compare import bench_record_paths, compare_table

        paths = [Path(p) for p in args.compare] or bench_record_paths()
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"no bench record at {', '.join(missing)}")
        print(compare_table(paths))
        return 0
    from cosmic_utils.inference.bench import BenchConfig, format_table, run_bench

    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter's INFO chatter (untrained fallback)
        logging.getLogger(noisy).setLevel(logging.WARNING)

    kw = dict(
        model_dir=Path(args.model) if args.model else None, engines=args.engines, batch_sizes=args.batch_sizes,
        samples=args.samples, repeats=args.repeats, threads=args.threads, check_rows=args.check_rows,
        json_out=Path(args.json) if args.json else None, checks_out=Path(args.checks_json) if args.checks_json else None,
        stream_gb=args.stream_gb, stream_dataset=Path(args.dataset) if args.dataset else None,
        stream_engine=args.stream_engine, budget_s=args.budget_s,
        batch_sizes_by_threads=dict(args.batch_sizes_at) if args.batch_sizes_at else None,
    )
    if args.compile_batch_sizes is not None:
        kw["compile_batch_sizes"] = () if args.compile_batch_sizes == "all" else args.compile_batch_sizes
    cfg = BenchConfig.quick_config(**kw) if args.quick else BenchConfig(**{k: v for k, v in kw.items() if v is not None})
    doc = run_bench(cfg)
    print(format_table(doc))
    print(json.dumps(doc["summary"], indent=2))
    return 0
