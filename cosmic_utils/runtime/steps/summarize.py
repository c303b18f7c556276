"""Summarize step (lambda/summarize/handler.py): stream a run's records, derive ok / failed from the
partition list, aggregate timings, accuracy and cost (docs/pipeline.md). No numpy (its zip has none)."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from cosmic_utils.runtime import prices, units
from cosmic_utils.runtime.items import RunLayout
from cosmic_utils.runtime.request import RunRequest, parse_request
from cosmic_utils.runtime.steps.common import (
    BACKEND_ENV,
    HIST_BIN,
    NO_RECORD,
    SUMMARY_VERSION,
    _infra,
    _now_iso,
)
from cosmic_utils.runtime.steps.init import execution_chain
from cosmic_utils.runtime.storage import StorageError, open_storage
from cosmic_utils.runtime.strict import jsonable
from cosmic_utils.runtime.units import NMAD_FACTOR

log = logging.getLogger(__name__)


def _hist_quantile(hist: Mapping[int, int], q: float) -> float:
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    run = 0
    for b in sorted(hist):
        run += hist[b]
        if run >= q * total:
            return b * HIST_BIN
    return max(hist) * HIST_BIN


class RunAggregate:
    """Streaming aggregation of records in bounded state (counters, per-worker sums, one histogram)."""

    def __init__(self, expected: Iterable[Mapping[str, Any]], executions: Iterable[str] | None = None) -> None:
        self.expected: dict[str, Mapping[str, Any]] = {e["partition_id"]: e for e in expected}
        #: The run's execution chain; a record of any other execution is not counted (None: no filter).
        self.executions: set[str] | None = None if executions is None else {str(x) for x in executions}
        self.other_execution = 0
        #: ok partitions per model_sha256 (a handful of models at most: bounded).
        self.models: dict[str, int] = defaultdict(int)
        self.seen: set[str] = set()
        self.stale = self.ok = self.samples = self.data_bytes = self.cold = 0
        self.failed: list[dict[str, Any]] = []
        self.billed_ms: list[int] = []
        self.billed_source = {"report": 0, "estimated": 0}
        self.gb_seconds = 0.0
        # per invocation: data bytes, inference seconds, handler seconds
        self.workers: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.sum_inference_s = self.sum_duration_s = self.max_peak_rss_mb = 0.0
        self.memory_mb: set[int] = set()
        self.acc = {k: 0.0 for k in ("n", "sum_dz", "sum_abs_dz", "sum_dz2", "sum_z", "sum_z2", "sum_x",
                                     "outliers_005", "outliers_015")}
        self.hist: dict[int, int] = defaultdict(int)
        self.engines: dict[str, int] = defaultdict(int)  # engine used -> records
        self.fallbacks: set[str] = set()

    def add(self, rec: Mapping[str, Any]) -> None:
        pid = str(rec.get("partition_id"))
        if self.executions is not None and str(rec.get("execution_id")) not in self.executions:
            self.other_execution += 1  # e.g. the earlier run's record under an overwritten run id
            return
        if pid not in self.expected or pid in self.seen:
            self.stale += 1
            return
        self.seen.add(pid)
        memory = int(rec.get("memory_mb") or 0)
        self.memory_mb.add(memory)
        billed = rec.get("billed_duration_ms")
        if billed is None or (isinstance(billed, float) and math.isnan(billed)):
            billed = math.ceil(float(rec.get("duration_s") or 0.0) * 1000.0)
            self.billed_source["estimated"] += 1
        else:
            billed = int(math.ceil(float(billed)))
            self.billed_source["report"] += 1
        self.billed_ms.append(billed)
        self.gb_seconds += memory / 1024.0 * billed / 1000.0
        self.cold += bool(rec.get("cold_start"))
        self.max_peak_rss_mb = max(self.max_peak_rss_mb, float(rec.get("peak_rss_mb") or 0.0))
        self.engines[str(rec.get("engine"))] += 1
        if rec.get("engine_fallback_reason"):
            self.fallbacks.add(str(rec["engine_fallback_reason"]))
        if rec.get("status") != "ok":
            self.failed.append({"partition_id": pid, "key": rec.get("key"), "error": rec.get("error") or "failed"})
            return
        self.ok += 1
        self.models[str(rec.get("model_sha256") or "unknown")] += 1
        nbytes = int(rec.get("data_bytes") or 0)
        self.samples += int(rec.get("samples") or 0)
        self.data_bytes += nbytes
        inf_s = float(rec.get("inference_s") or 0.0)
        dur_s = float(rec.get("duration_s") or 0.0)
        # a worker is one invocation (its request id: a redrive's worker ids restart at 0)
        w = self.workers[rec.get("request_id") or f"worker-{rec.get('worker_id')}"]
        w[:] = [w[0] + nbytes, w[1] + inf_s, w[2] + dur_s]
        self.sum_inference_s += inf_s
        self.sum_duration_s += dur_s
        acc = rec.get("accuracy") or {}
        if acc.get("n"):
            for k in self.acc:
                self.acc[k] += float(acc.get(k, 0.0))
            for b, c in (acc.get("hist") or {}).items():
                self.hist[int(b)] += int(c)

    def accuracy(self) -> dict[str, Any]:
        n = self.acc["n"]
        if not n:
            return {"labelled_samples": 0}
        a = self.acc
        sst = a["sum_z2"] - a["sum_z"] ** 2 / n
        med = _hist_quantile(self.hist, 0.5)
        dev: dict[int, int] = defaultdict(int)
        for b, c in self.hist.items():
            dev[abs(b - round(med / HIST_BIN))] += c
        mad = _hist_quantile(dev, 0.5)
        return {  # the keys and definitions of cosmic_utils.runtime.metrics.redshift_metrics
            "labelled_samples": int(n),
            "sigma_nmad": NMAD_FACTOR * mad,
            "outlier_005": a["outliers_005"] / n,
            "outlier_015": a["outliers_015"] / n,
            "bias": a["sum_x"] / n,
            "mae": a["sum_abs_dz"] / n,
            "mse": a["sum_dz2"] / n,
            "r2": 1.0 - a["sum_dz2"] / sst if sst > 0 else float("nan"),
            "median_dz": med,
            "mean_error": a["sum_dz"] / n,
            "note": "dz = (z_pred - z_spec)/(1 + z_spec); sigma_NMAD and median from a histogram of dz "
                    f"in {HIST_BIN:g} bins (exact to one bin)",
        }

    def missing(self) -> list[dict[str, Any]]:
        return [{"partition_id": pid, "key": e.get("key"), "error": NO_RECORD}
                for pid, e in self.expected.items() if pid not in self.seen]


def summarize_records(records: Iterable[Mapping[str, Any]], expected: Iterable[Mapping[str, Any]],
                      request: RunRequest, wall_s: float | None, extra: Mapping[str, Any] | None = None,
                      executions: Iterable[str] | None = None) -> dict[str, Any]:
    """The run summary from records of ``executions`` and Init's partition list. Pure: the runner
    calls it again with billed durations."""
    agg = RunAggregate(expected, executions)
    for rec in records:
        agg.add(rec)
    failed = agg.failed + agg.missing()
    data_gb = agg.data_bytes / units.GB
    per_worker = sum(b / i for b, i, _ in agg.workers.values() if i > 0)
    per_worker_handler = sum(b / d for b, _, d in agg.workers.values() if d > 0)
    memory = sorted(agg.memory_mb) or [request.memory_mb]
    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION, "run_id": request.run_id,
        "backend": os.environ.get(BACKEND_ENV, "aws"), "created": _now_iso(),
        "request": request.model_dump(mode="json"),
        "partitions": len(agg.expected), "partitions_ok": agg.ok, "partitions_failed": len(failed),
        "failed": sorted(failed, key=lambda f: str(f["partition_id"])),
        "stale_records_ignored": agg.stale,
        "execution_chain": sorted(agg.executions) if agg.executions is not None else None,
        "records_of_other_executions_ignored": agg.other_execution,
        "model_sha256": next(iter(agg.models)) if len(agg.models) == 1 else None,
        "models": [{"model_sha256": m, "partitions_ok": n} for m, n in sorted(agg.models.items())],
        "workers": len(agg.workers), "samples": agg.samples, "data_bytes": agg.data_bytes,
        "data_gb": data_gb, "wall_s": wall_s,
        "throughput": {
            "end_to_end_gb_s": data_gb / wall_s if wall_s and wall_s > 0 else None,
            "end_to_end_note": "data of succeeded partitions / wall clock of the whole execution",
            "per_worker_gb_s": per_worker / units.GB,
            "per_worker_note": "published figure: sum over workers of worker data / its own inference time",
            "per_worker_handler_gb_s": per_worker_handler / units.GB,
            "per_worker_handler_note": "sum over workers of worker data / its handler time (download+load+infer+upload)",
        },
        "timing": {"sum_inference_s": agg.sum_inference_s, "sum_duration_s": agg.sum_duration_s,
                   "cold_starts": agg.cold, "max_peak_rss_mb": agg.max_peak_rss_mb},
        "billing": {
            "memory_mb_configured": memory[-1] if len(memory) == 1 else memory,
            "invocation_records": len(agg.billed_ms), "billed_ms_total": sum(agg.billed_ms),
            "gb_seconds": agg.gb_seconds, "billed_source": agg.billed_source,
            "note": "configured memory x billed duration; 'estimated' = handler duration rounded up to 1 ms",
        },
        "accuracy": agg.accuracy(),
        "engine": {"requested": request.engine, "used": dict(agg.engines),
                   "fallback_reasons": sorted(agg.fallbacks)},
    }
    try:
        lam = prices.lambda_cost(agg.billed_ms, memory[-1], already_billed=True)
        items = len(agg.expected) if request.world_size is None else min(request.world_size, len(agg.expected))
        sfn = prices.stepfunctions_cost(items)
        s3 = prices.s3_cost(**prices.pipeline_s3_requests(items, agg.cold))
        total = lam.total_usd + sfn + s3
        summary["cost"] = {
            "lambda_usd": lam.total_usd, "stepfunctions_usd": sfn, "s3_usd": s3, "total_usd": total,
            "usd_per_gb": total / data_gb if data_gb > 0 else None,
        }
    except Exception as exc:  # the price table is optional inside Lambda; the summary is not
        summary["cost"] = {"error": f"cost model unavailable: {exc}"}
    if len(agg.models) > 1:
        summary["models_note"] = (f"the ok partitions of this run were produced by {len(agg.models)} different "
                                  "models (a model was replaced during the run or between a run and its redrive); "
                                  "each record's model_sha256 says which")
    if extra:
        summary.update(extra)
    return jsonable(summary)


def iter_records(results: Any, run_id: str) -> Iterable[dict[str, Any]]:
    """Every record JSON of a run, read one at a time."""
    layout = RunLayout(run_id)
    for key in results.list_keys(layout.records_prefix):
        if key.endswith(".json"):
            yield json.loads(results.read_text(key))


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def summarize_step(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Write summary.json. Event: ``{"state": <Init output (+ map_error)>, "execution": {"id",
    "start_time"}}``, or a bare request."""
    state = event.get("state", event)
    request = parse_request(state.get("request", state))
    layout = RunLayout(request.run_id)
    results = open_storage(request.results)
    try:
        expected = json.loads(results.read_text(layout.partitions))
    except Exception as exc:
        raise _infra(f"reading the partition list of run {request.run_id}", exc) from exc
    execution = event.get("execution") or {}
    started = _parse_time(execution.get("start_time"))
    wall_s = (datetime.now(timezone.utc) - started).total_seconds() if started else None
    extra: dict[str, Any] = {"execution_id": execution.get("id")}
    if state.get("map_error"):
        extra["map_error"] = state["map_error"]
    if state.get("unlisted"):
        extra["unlisted"] = state["unlisted"]
        extra["unlisted_keys"] = state.get("unlisted_keys", [])
    try:
        chain = execution_chain(results, request.run_id)
        if chain is not None and execution.get("id") and str(execution["id"]) not in chain:
            chain = [str(execution["id"])]  # superseded by a later overwrite: count only our own records
        summary = summarize_records(iter_records(results, request.run_id), expected, request, wall_s, extra,
                                    executions=chain)
        results.write_text(layout.summary, json.dumps(summary, indent=2))
    except StorageError as exc:
        raise _infra(f"summarising run {request.run_id}", exc) from exc
    return {"summary": results.uri(layout.summary),
            **{k: summary[k] for k in ("partitions", "partitions_ok", "partitions_failed")}}
