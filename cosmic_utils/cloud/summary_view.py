"""A short human-readable view of a run's summary.json (CLI, demo and notebook 03 print it).

Lives below the CLI so that notebooks print a run without importing ``commands`` (the
``notebooks-off-cli`` import-linter contract). The summary's fields: docs/records.md.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any


def print_summary(summary: dict[str, Any], out: Any = None) -> None:
    """A short human-readable view of summary.json."""
    out = out or sys.stdout
    thr = summary.get("throughput") or {}
    bill = summary.get("billing") or {}
    acc = summary.get("accuracy") or {}
    cost = summary.get("cost") or {}

    def f(v: Any, fmt: str = ".4g") -> str:
        return "n/a" if v is None else format(v, fmt)

    print(f"run {summary.get('run_id')} ({summary.get('backend')}): execution {summary.get('execution_status')}", file=out)
    if summary.get("interrupted"):
        intr = summary["interrupted"]
        print(f"  INTERRUPTED by {intr.get('signal')}: {intr.get('partitions_kept')} finished partitions kept; "
              f"complete it with: cosmic run --redrive {intr.get('run_dir') or summary.get('run_id')}", file=out)
    if summary.get("execution_error") and not summary.get("partitions"):
        print(f"  execution error: {execution_reason(summary)}", file=out)
    print(f"  partitions {summary.get('partitions')}: ok {summary.get('partitions_ok')}, "
          f"failed {summary.get('partitions_failed')}", file=out)
    for fail in summary.get("failed", [])[:10]:
        print(f"    FAILED {fail['partition_id']}: {fail['error']}", file=out)
        if fail.get("cloudwatch_error"):
            print(f"      cloudwatch: {fail['cloudwatch_error']} (request {fail.get('request_id')})", file=out)
    print(f"  data {f(summary.get('data_gb'))} GB, {summary.get('samples')} samples, wall {f(summary.get('wall_s'))} s",
          file=out)
    print(f"  throughput end-to-end {f(thr.get('end_to_end_gb_s'))} GB/s; per-worker (published) "
          f"{f(thr.get('per_worker_gb_s'))} GB/s", file=out)
    print(f"  billed {bill.get('billed_ms_total')} ms, {f(bill.get('gb_seconds'))} GB-s "
          f"at {bill.get('memory_mb_configured')} MB; cost {f(cost.get('total_usd'))} USD", file=out)
    if (summary.get("model_info") or {}).get("model_trained") is False:
        print("  UNTRAINED model: speeds and costs only; the accuracy below is meaningless", file=out)
    if acc.get("labelled_samples"):
        print(f"  {'UNTRAINED model ' if (summary.get('model_info') or {}).get('model_trained') is False else ''}"
              f"accuracy: MAE {f(acc.get('mae'))}, sigma_NMAD {f(acc.get('sigma_nmad'))}, "
              f"outliers(>0.15) {f(acc.get('outlier_015'))}", file=out)


def execution_reason(summary: dict[str, Any]) -> str:
    """``ErrorType: message`` of a failed execution (the Lambda error payload's message when there is one)."""
    error = summary.get("execution_error") or "execution failed"
    cause = summary.get("execution_cause") or ""
    with contextlib.suppress(ValueError, AttributeError):
        cause = json.loads(cause).get("errorMessage") or cause
    return " ".join(f"{error}: {cause}".split()) if cause else str(error)
