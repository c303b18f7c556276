"""``cosmic reliability``: every bad-input and fault scenario, then the load test; prints the table.
Exit 0 only when every scenario passed and no partition was lost (docs/reliability.md)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from cosmic_utils import config
from cosmic_utils.commands import cli_types


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reliability", help="bad inputs, injected faults and load on the local backend: "
                                                  "a table of outcomes (nothing lost)")
    p.add_argument("--out", type=Path, default=config.RUNS_DIR / "reliability",
                   help="where reliability.csv / .md go (default runs/reliability)")
    p.add_argument("--load-partitions", type=cli_types.nonnegative_int, default=2000,
                   help="partitions of the load test (0 skips it; default 2,000)")
    p.add_argument("--load-concurrency", type=cli_types.positive_int, default=8, help="MaxConcurrency of the load run (default 8)")
    p.add_argument("--only", default=None, help="comma-separated scenario names (default: all)")
    p.add_argument("--load-only", action="store_true", help="run only the load test (make load)")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.set_defaults(func=_reliability)


def _reliability(args: argparse.Namespace) -> int:
    from cosmic_utils.jobs import reliability

    work = args.workdir or Path(tempfile.mkdtemp(prefix="cosmic-reliability-"))
    t0 = time.perf_counter()

    def show(o: reliability.Outcome) -> None:
        flag = "ok  " if o.passed else "FAIL"
        print(f"[{flag}] {o.scenario:<28} {o.seconds:5.1f} s  ok {o.ok} failed {o.failed} lost {o.lost}  "
              f"{o.error[:100]}", flush=True)

    try:
        names = args.only.split(",") if args.only else None
        outcomes = [] if args.load_only else reliability.run_scenarios(work / "scenarios", names=names,
                                                                        progress=show)
        if args.load_partitions > 0:
            print(f"load test: {args.load_partitions:,} partitions, MaxConcurrency {args.load_concurrency} ...",
                  flush=True)
            load = reliability.load_test(work / "load", partitions=args.load_partitions,
                                         max_concurrency=args.load_concurrency)
            show(load)
            outcomes.append(load)
        csv_path, md_path = reliability.write_table(outcomes, args.out)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(reliability.markdown_table(outcomes))
    for o in outcomes:
        if o.scenario == "load":
            d = o.details
            print(f"load: {o.partitions:,} partitions in {d.get('run_s', 0):.1f} s "
                  f"({d.get('partitions_per_s') or 0:.1f}/s, {d.get('s_per_1000_partitions') or 0:.1f} s per 1,000; "
                  f"execution wall {d.get('execution_wall_s')} s); "
                  f"peak RSS: Summarize {d.get('summarize_peak_rss_mb')} MB, inference child "
                  f"{d.get('inference_peak_rss_mb') or 0:.0f} MB, harness {d.get('harness_peak_rss_mb', 0):.0f} MB")
    print(f"written: {csv_path}, {md_path} ({time.perf_counter() - t0:.0f} s)")
    ok = all(o.passed for o in outcomes) and sum(o.lost for o in outcomes) == 0
    return 0 if ok else 1


