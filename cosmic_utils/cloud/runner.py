"""Run the pipeline on a backend and collect its records: what ``cosmic run`` and notebook 03 call.

:func:`run_pipeline` deploys, starts one execution, polls it with a progress bar and collects its
records, predictions and summary into the run folder (``runs/<run_id>/``); :func:`redrive` re-runs
only the failed partitions of a run into the same folder. The run folder's files, interruption
(exit 130 / 143) and redrives: docs/runner.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cosmic_utils import config, exits
from cosmic_utils.cloud.lock import run_lock
from cosmic_utils.provenance import stamped
from cosmic_utils.runtime.items import RunLayout, partition_id_for
from cosmic_utils.runtime.request import RunRequest, parse_request
from cosmic_utils.runtime.steps.common import RunExistsError  # noqa: F401  one class, raised here and by Init
from cosmic_utils.runtime.steps.init import execution_chain
from cosmic_utils.runtime.steps.summarize import summarize_records
from cosmic_utils.runtime.storage import durable_write

log = logging.getLogger(__name__)

#: records.csv columns, in order (docs/architecture.md "Run records"), then extras.
RECORD_COLUMNS: tuple[str, ...] = (
    "run_id", "partition_id", "status", "error", "samples", "data_bytes", "download_s", "load_s",
    "inference_s", "upload_s", "duration_s", "billed_duration_ms", "peak_rss_mb", "memory_mb",
    "cold_start", "engine", "batch_size", "backend", "worker_id",
)
EXTRA_COLUMNS: tuple[str, ...] = (
    "request_id", "key", "file_bytes", "model_load_s", "max_memory_used_mb", "init_duration_ms",
    "billed_source", "started_at", "attempt", "execution_id", "model_sha256",
)


@dataclass
class RunResult:
    """Where a run's outputs are and its summary."""

    run_dir: Path
    summary: dict[str, Any]
    status: str


def attach_reports(records: list[dict[str, Any]], report_lines: Iterable[str]) -> None:
    """Fill ``billed_duration_ms`` (and memory figures) of records from REPORT lines, by request id;
    an invocation of several partitions (world_size) is split over them by handler duration."""
    from cosmic_utils.cloud.cloudwatch import reports_by_request

    reports = reports_by_request(report_lines)
    by_req: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("request_id"):
            by_req[str(rec["request_id"])].append(rec)
    for req_id, recs in by_req.items():
        rep = reports.get(req_id)
        if rep is None:
            continue
        total = sum(float(r.get("duration_s") or 0.0) for r in recs) or float(len(recs))
        for r in recs:
            share = (float(r.get("duration_s") or 0.0) or 1.0) / total if total else 1.0 / len(recs)
            r["billed_duration_ms"] = int(math.ceil(rep.billed_duration_ms * share))
            r["max_memory_used_mb"] = rep.max_memory_used_mb
            r["init_duration_ms"] = rep.init_duration_ms
            r["memory_mb"] = rep.memory_size_mb
            r["billed_source"] = "report"


def write_records_csv(records: Iterable[Mapping[str, Any]], path: Path) -> int:
    """records.csv with the contract's columns first; returns the row count."""
    import csv

    rows = sorted(records, key=lambda r: str(r.get("partition_id")))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*RECORD_COLUMNS, *EXTRA_COLUMNS], extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in writer.fieldnames})
    return len(rows)


def predictions_problem(run_dir: Path, rec: Mapping[str, Any]) -> str | None:
    """Why an "ok" record's predictions are not on disk as its ``predictions_file`` / bytes / sha256
    say (``None``: they are); an older record without those fields needs a non-empty file of its name."""
    name = rec.get("predictions_file")
    if not name:
        found = sorted((run_dir / "predictions").glob(f"{rec.get('partition_id')}.*"))
        if not found:
            return "no predictions file in the run folder"
        return None if found[0].stat().st_size > 0 else f"predictions file {found[0].name} is empty"
    path = run_dir / "predictions" / str(name)
    try:
        body = path.read_bytes()
    except OSError as exc:
        return f"predictions file {name} not readable ({exc.strerror or exc})"
    want = rec.get("predictions_bytes")
    if want is not None and len(body) != int(want):
        return f"predictions file {name} has {len(body):,} bytes, its record says {int(want):,}"
    sha = rec.get("predictions_sha256")
    if sha and hashlib.sha256(body).hexdigest() != sha:
        return f"predictions file {name} does not match its record's sha256"
    return None


def _fail_record(rec: dict[str, Any], why: str) -> None:
    rec.update(status="failed", error=why, samples=0, data_bytes=0)
    rec.pop("accuracy", None)


def _save_predictions(results: Any, layout: Any, merged: dict[str, dict[str, Any]], pred_dir: Path,
                      fresh_ids: set[str]) -> None:
    """Copy the ok partitions' predictions of this execution into ``pred_dir``, failing those that do not
    match their record; a kept record (earlier execution, not re-run) is only re-checked on disk."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    keys = {k.rsplit("/", 1)[-1]: k for k in results.list_keys(layout.predictions_prefix)}
    for pid, rec in merged.items():
        if rec.get("status") != "ok":
            continue
        if pid not in fresh_ids:
            problem = predictions_problem(pred_dir.parent, rec)
            if problem:
                _fail_record(rec, f"partition {pid}: {problem}; re-run it with cosmic run --redrive")
            continue
        name = rec.get("predictions_file") or next((n for n in keys if n.rsplit(".", 1)[0] == pid), None)
        if name is None or name not in keys:
            _fail_record(rec, f"partition {pid}: its predictions object is missing from the results store")
            continue
        body = results.read_bytes(keys[name])
        if rec.get("predictions_bytes") is not None and (len(body) != int(rec["predictions_bytes"]) or
                                                         hashlib.sha256(body).hexdigest() != rec.get("predictions_sha256")):
            _fail_record(rec, f"partition {pid}: predictions object {name} does not match its record "
                              f"({len(body):,} bytes)")
            continue
        try:
            durable_write(pred_dir / name, body)
        except OSError as exc:
            _fail_record(rec, f"partition {pid}: predictions not saved in the run folder "
                              f"({exc.strerror or exc}); free the space, then cosmic run --redrive")
            log.error("partition %s: predictions not saved (%s)", pid, exc.strerror or exc)
            continue
        rec["predictions_file"] = name
        rec.setdefault("predictions_bytes", len(body))
        rec.setdefault("predictions_sha256", hashlib.sha256(body).hexdigest())


def _read_run_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    recs = (json.loads(path.read_text()) for path in sorted((run_dir / "records").glob("*.json")))
    return {str(rec["partition_id"]): rec for rec in recs}


class RunNotFoundError(FileNotFoundError):
    """``--redrive RUN``: no run folder by that id or path; the message lists where it looked."""


class RunInterrupted(exits.Interrupted):
    """The run was stopped by SIGINT / SIGTERM; ``result`` holds what finished (None before Init)."""

    def __init__(self, signum: int, run_dir: Path, result: RunResult | None) -> None:
        super().__init__(signum, f"run {run_dir.name} interrupted")
        self.run_dir = run_dir
        self.result = result


def _stop_after_interrupt(be: Any, arn: str, label: str, signal_name: str) -> None:
    """StopExecution (best effort: it may have ended meanwhile) and, locally, end the handler processes."""
    if label == "local":
        from cosmic_utils.cloud import moto_hook

        moto_hook.abort_invocations()
    try:
        be.client("stepfunctions").stop_execution(executionArn=arn, error="Interrupted",
                                                  cause=f"cosmic run interrupted by {signal_name}")
    except Exception as exc:  # noqa: BLE001 - already finished, or the service is unreachable
        log.warning("could not stop execution %s: %s", arn, exc)


def _open_backend(stack: ExitStack, backend: str, request: RunRequest, concurrency: int | None,
                  region: str | None, run_dir: Path, local_stack: Any = None) -> tuple[Any, str]:
    if backend == "local":
        from cosmic_utils.cloud import moto_hook
        from cosmic_utils.cloud.local import LocalStack

        if local_stack is not None:  # a server shared by several runs (the reliability harness)
            return local_stack.backend(), "local"
        conc = concurrency or moto_hook.default_concurrency(request.max_concurrency)
        local = stack.enter_context(LocalStack(concurrency=conc))
        stack.callback(local.copy_logs, run_dir / "lambda-logs")
        return local.backend(), "local"
    if backend == "aws":
        from cosmic_utils.cloud.aws import AwsBackend

        return AwsBackend(region=region), "aws"
    raise ValueError(f"unknown backend {backend!r}; expected 'local' or 'aws'")


@dataclass
class _Execution:
    """What the phases of :func:`execute` share: the backend, the request, its store, what the execution did."""

    be: Any
    label: str
    request: RunRequest
    run_dir: Path
    previous: Mapping[str, Mapping[str, Any]] | None
    attempt: int
    results: Any = None
    arn: str = ""
    desc: dict[str, Any] = field(default_factory=dict)
    t_start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    interrupted: exits.Interrupted | None = None

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.request.run_id)

    @property
    def redriven(self) -> set[str]:
        return {partition_id_for(k) for k in (self.request.partitions or [])}

    @property
    def wall_s(self) -> float | None:
        start, stop = self.desc.get("startDate"), self.desc.get("stopDate")
        return (stop - start).total_seconds() if start and stop else None


def execute(
    request: RunRequest,
    *,
    backend: str = "local",
    run_dir: Path | None = None,
    prefix: str = "cosmic",
    concurrency: int | None = None,
    region: str | None = None,
    with_deps: bool | None = None,
    stage_data: bool = False,
    progress: bool = True,
    timeout_s: float | None = None,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
    attempt: int = 1,
    local_stack: Any = None,
    allowed_read: list[str] | None = None,
    allowed_results: list[str] | None = None,
) -> RunResult:
    """Deploy, run one execution of ``request`` and collect everything into ``run_dir``. ``previous``: a
    redrive's records by partition id; ``local_stack``: a started LocalStack; ``allowed_read`` /
    ``allowed_results``: the allow-list Init enforces (default: the request's own locations)."""
    from cosmic_utils.runtime.storage import open_storage

    run_dir = Path(run_dir or config.RUNS_DIR / request.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    hold = ExitStack()  # entered first, left last: once interrupted, signals stay held until the backend is closed
    with hold, ExitStack() as stack:
        be, label = _open_backend(stack, backend, request, concurrency, region, run_dir, local_stack)
        run = _Execution(be, label, _placed_request(be, label, request, stage_data), run_dir, previous, attempt)
        cfg = _deploy_config(run, prefix, with_deps, allowed_read, allowed_results)
        deployment = be.deploy(cfg)
        run.results = open_storage(run.request.results, s3_client=be.client("s3"))
        _prepare_results(run)
        (run_dir / "request.json").write_text(run.request.model_dump_json(indent=2))
        _start_and_wait(run, deployment.state_machine_arn, progress, timeout_s, hold, stack, local_stack is not None)
        if run.results.exists(run.layout.partitions):
            summary = _finalise(run, cfg, *_collect(run, cfg))
        else:  # Init failed: nothing ran
            summary = _init_failed_summary(run)
        (run_dir / "summary.json").write_text(json.dumps(stamped(summary), indent=2))
    result = RunResult(run_dir, summary, str(run.desc["status"]))
    if run.interrupted is not None:
        raise RunInterrupted(run.interrupted.signum, run_dir, result)
    return result


def _placed_request(be: Any, label: str, request: RunRequest, stage_data: bool) -> RunRequest:
    """The request with the locations the backend reads (local: moto's buckets), or ValueError."""
    if label == "local":
        from cosmic_utils.cloud.local import LOCAL_DATA_BUCKET, LOCAL_RESULTS_URI, stage_folder

        updates: dict[str, Any] = {}
        if not request.results.startswith("s3://"):
            updates["results"] = LOCAL_RESULTS_URI
        if stage_data and not request.data.startswith("s3://"):
            be.client("s3")  # bucket created by stage_folder
            updates["data"] = stage_folder(be, Path(request.data), LOCAL_DATA_BUCKET, request.run_id)
        request = request.model_copy(update=updates)
    if not request.results.startswith("s3://"):
        raise ValueError(f"results {request.results!r}: the state machine's ItemReader needs s3://bucket/prefix")
    if label == "aws":
        local = [f"{n}={u!r}" for n, u in (("data", request.data), ("model", request.model))
                 if not u.startswith("s3://")]
        if local:
            raise ValueError(f"backend aws: {', '.join(local)} must be s3:// locations Lambda can read")
    return request


def _deploy_config(run: _Execution, prefix: str, with_deps: bool | None, allowed_read: list[str] | None,
                   allowed_results: list[str] | None) -> Any:
    """The deployment of this run (create-or-update): buckets, allow-list, function settings."""
    from cosmic_utils.cloud.aws import DeployConfig

    req, label = run.request, run.label
    if with_deps is None:  # aws packages carry Lambda's wheels; COSMIC_LAMBDA_DEPS=0: code only (a stand-in account)
        with_deps = label == "aws" and os.environ.get("COSMIC_LAMBDA_DEPS", "1") != "0"
    return DeployConfig(
        results_uri=req.results, prefix=prefix,
        read_uris=[u for u in (req.data, req.model) if u.startswith("s3://")],
        allowed_read=list([req.data, req.model] if allowed_read is None else allowed_read),
        allowed_results=list([req.results] if allowed_results is None else allowed_results),
        memory_mb=req.memory_mb, timeout_s=req.timeout_s,
        with_deps=with_deps, backend_label=label,
        build_dir=run.run_dir.parent / ".build" / label if label == "local" else None,
    )


def _prepare_results(run: _Execution) -> None:
    """A fresh run: refuse (or, with overwrite, delete) what an earlier run left under its id. A redrive:
    put back the partition list, the chain and the kept records Summarize needs (a fresh moto is empty)."""
    results, layout, request = run.results, run.layout, run.request
    if run.previous is None:
        left = results.list_keys(f"{layout.root}/")
        if left and not request.overwrite:
            raise RunExistsError(
                f"run id {request.run_id!r} already has {len(left)} objects under {results.uri(layout.root)}: "
                "choose another run id, redrive it (cosmic run --redrive) or overwrite (--overwrite)")
        for key in left:
            results.delete(key)
        return
    if not results.exists(layout.partitions) and (run.run_dir / "partitions.json").exists():
        results.write_text(layout.partitions, (run.run_dir / "partitions.json").read_text())
    _restore_chain(results, layout, run.run_dir, run.previous)
    redriven = run.redriven
    for pid, rec in run.previous.items():
        if pid not in redriven and not results.exists(layout.record(pid)):  # kept (docs/runner.md)
            results.write_text(layout.record(pid), json.dumps(rec))


def _start_and_wait(run: _Execution, state_machine_arn: str, show_progress: bool, timeout_s: float | None,
                    hold: ExitStack, stack: ExitStack, shared: bool) -> None:
    """Start the execution and wait for its end, with a bar of partitions done; on SIGINT / SIGTERM
    stop it, hold further signals and record the interruption (``shared``: the LocalStack serves on)."""
    from cosmic_utils.progress import progress

    be, results, layout, request = run.be, run.results, run.layout, run.request
    name = f"{request.run_id[:56]}-{run.attempt}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"[:80]
    records_uri = results.uri(layout.records_prefix.rstrip("/"))
    before = be.count_keys(records_uri)
    run.t_start = datetime.now(timezone.utc)
    run.arn = be.start_execution(state_machine_arn, request.to_json(), name)
    bar = progress(total=len(request.partitions) if request.partitions else request.partition_limit,
                   desc="partitions", unit="part", disable=not show_progress, leave=True)

    def poll() -> None:
        if bar.total is None and results.exists(layout.partitions):
            bar.total = len(request.partitions) if request.partitions else \
                len(json.loads(results.read_text(layout.partitions)))
            bar.refresh()
        done = be.count_keys(records_uri) - (before if run.previous else 0)
        bar.update(max(0, done - bar.n))

    try:
        run.desc = be.wait_execution(run.arn, poll_s=1.0 if run.label == "local" else 3.0, timeout_s=timeout_s,
                                     on_poll=poll)
    except KeyboardInterrupt as exc:
        run.interrupted = interrupted = exc if isinstance(exc, exits.Interrupted) else exits.Interrupted()
        hold.enter_context(exits.signals_deferred())
        log.warning("run %s: %s; stopping the execution and keeping the finished partitions",
                    request.run_id, interrupted.signal_name)
        _stop_after_interrupt(be, run.arn, run.label, interrupted.signal_name)
        if shared:  # a shared server keeps serving other runs
            from cosmic_utils.cloud import moto_hook

            stack.callback(moto_hook.resume_invocations)
        run.desc = be.describe_execution(run.arn)
        for _ in range(20):  # StopExecution is asynchronous: give it a moment to show ABORTED
            if run.desc["status"] != "RUNNING":
                break
            time.sleep(0.25)
            run.desc = be.describe_execution(run.arn)
    finally:
        bar.close()


def _init_failed_summary(run: _Execution) -> dict[str, Any]:
    """summary.json of an execution whose Init failed (no partition list: nothing ran)."""
    summary = {"run_id": run.request.run_id, "backend": run.label, "execution_status": str(run.desc["status"]),
               "execution_arn": run.arn, "execution_error": run.desc.get("error"),
               "execution_cause": run.desc.get("cause"), "partitions": 0, "partitions_ok": 0,
               "partitions_failed": 0, "failed": [], "wall_s": run.wall_s}
    if run.interrupted is not None:
        summary["interrupted"] = _interrupted_note(run.interrupted, run.run_dir, 0)
    return summary


def _collect(run: _Execution, cfg: Any) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], list[str] | None, int]:
    """Records of this run's chain (billed from REPORT lines) merged with the kept ones, predictions
    saved and checked, records and records.csv written; returns (merged, expected, chain, REPORT lines)."""
    results, layout, run_dir, request = run.results, run.layout, run.run_dir, run.request
    expected = json.loads(results.read_text(layout.partitions))
    (run_dir / "partitions.json").write_text(json.dumps(expected, indent=1))
    chain = execution_chain(results, request.run_id)
    if chain is not None:
        (run_dir / "executions.json").write_text(json.dumps({"run_id": request.run_id, "executions": chain}))
    fresh = [json.loads(results.read_text(k)) for k in results.list_keys(layout.records_prefix)]
    # Only records of this run's execution chain (an earlier run under the same id is not ours).
    fresh = [r for r in fresh if chain is None or str(r.get("execution_id")) in chain]
    reports = list(run.be.report_lines(cfg.names.function("inference"), run.t_start))
    attach_reports(fresh, reports)
    wanted = {str(e["partition_id"]) for e in expected}
    redriven = run.redriven
    merged: dict[str, dict[str, Any]] = {}
    for rec in fresh:
        rec["billed_source"] = rec.get("billed_source") or "estimated"
        if rec.get("attempt") is None:
            rec["attempt"] = run.attempt
        merged[str(rec["partition_id"])] = rec
    for pid, rec in (run.previous or {}).items():
        if pid not in redriven:  # kept as it was: a redrive re-ran only the others
            merged[pid] = dict(rec)
    merged = {pid: rec for pid, rec in merged.items() if pid in wanted}
    # Predictions first, durably, each checked against its record: a partition whose file is not
    # complete on disk is failed before any record says "ok" (docs/runner.md).
    _save_predictions(results, layout, merged, run_dir / "predictions",
                      fresh_ids={str(r["partition_id"]) for r in fresh
                                 if not redriven or str(r["partition_id"]) in redriven})
    rec_dir = run_dir / "records"
    rec_dir.mkdir(exist_ok=True)
    for pid, rec in merged.items():
        durable_write(rec_dir / f"{pid}.json", json.dumps(rec).encode())
    write_records_csv(merged.values(), run_dir / "records.csv")
    return merged, expected, chain, len(reports)


def _finalise(run: _Execution, cfg: Any, merged: dict[str, dict[str, Any]], expected: list[dict[str, Any]],
              chain: list[str] | None, n_reports: int) -> dict[str, Any]:
    """summary.json: :func:`summarize_records` over ``merged`` plus the execution history (one entry
    per execution of the run), interruption, CloudWatch errors of failed partitions (aws), admission."""
    results, layout, run_dir, status = run.results, run.layout, run.run_dir, str(run.desc["status"])
    in_exec = json.loads(results.read_text(layout.summary)) if results.exists(layout.summary) else None
    prev_summary = _load_json(run_dir / "summary.json") if run.previous is not None else None
    this = {"execution_arn": run.arn, "wall_s": run.wall_s, "status": status}
    extra: dict[str, Any] = {
        "execution_status": status,
        "execution_arn": run.arn,
        "execution_error": run.desc.get("error"),
        "summary_in_execution": in_exec,
        "wall_s_note": "Step Functions execution wall clock (startDate to stopDate)",
        "report_lines": n_reports,
    }
    for key in ("unlisted", "unlisted_keys"):  # files the manifest does not list: ignored, reported
        if in_exec and in_exec.get(key):
            extra[key] = in_exec[key]
    if prev_summary is not None:
        history = list(prev_summary.get("executions", [])) or [
            {"execution_arn": prev_summary.get("execution_arn"), "wall_s": prev_summary.get("wall_s"),
             "status": prev_summary.get("execution_status")}]
        extra["executions"] = history + [this]
        extra["redrives"] = int(prev_summary.get("redrives", 0)) + 1
        wall_total = sum(float(e.get("wall_s") or 0.0) for e in extra["executions"])
    else:
        extra["executions"] = [this]
        extra["redrives"] = 0
        wall_total = run.wall_s
    original = parse_request(json.loads((run_dir / "request.original.json").read_text())) \
        if (run_dir / "request.original.json").exists() else run.request
    summary = summarize_records(merged.values(), expected, original, wall_total, extra, executions=chain)
    summary["backend"] = run.label
    if run.interrupted is not None:
        kept = sum(1 for r in merged.values() if r.get("status") == "ok")
        summary["interrupted"] = _interrupted_note(run.interrupted, run_dir, kept)
        for fail in summary.get("failed", []):
            if str(fail.get("partition_id")) not in merged:
                fail["error"] = f"not finished: the run was interrupted ({run.interrupted.signal_name})"
    if run.label == "aws" and summary.get("failed"):
        _attach_cloudwatch_errors(run.be, cfg.names.function("inference"), summary["failed"], run.t_start,
                                  run.desc.get("stopDate"))
    summary.update(admission_fields(original))
    return summary


def _attach_cloudwatch_errors(be: Any, function_name: str, failed: list[dict[str, Any]],
                              start: datetime, stop: datetime | None) -> None:
    """Put each failed partition's CloudWatch error (request id, log stream) into the summary's failed
    list, where alone an AWS crash or timeout shows; best effort (``cosmic logs RUN`` asks again later)."""
    from cosmic_utils.cloud.cloudwatch import failed_partition_errors
    from cosmic_utils.cloud.run_logs import WINDOW_MARGIN_MS, annotate_failed

    start_ms = int(start.timestamp() * 1000) - WINDOW_MARGIN_MS
    stop_ms = int(stop.timestamp() * 1000) + WINDOW_MARGIN_MS if stop else None
    try:
        by_part, _ = failed_partition_errors(be.client("logs"), function_name,
                                             [str(f["partition_id"]) for f in failed], start_ms, stop_ms)
    except Exception as exc:
        log.warning("CloudWatch errors of the failed partitions not fetched (%s); try `cosmic logs`", exc)
        return
    annotate_failed(failed, by_part)


def _restore_chain(results: Any, layout: RunLayout, run_dir: Path,
                   previous: Mapping[str, Mapping[str, Any]]) -> None:
    """Put the run's execution chain back into an empty results store before a redrive, so Init appends
    to it and Summarize counts the kept records; without executions.json the kept records' ids seed it."""
    if results.exists(layout.executions):
        return
    saved = _load_json(run_dir / "executions.json")
    chain = [str(x) for x in (saved or {}).get("executions", [])]
    for rec in previous.values():
        if rec.get("status") == "ok" and str(rec.get("execution_id")) not in chain:
            chain.append(str(rec.get("execution_id")))
    results.write_text(layout.executions, json.dumps({"run_id": layout.run_id, "executions": chain}))


def admission_fields(request: Any) -> dict[str, Any]:
    """What ``cosmic records ship`` needs to admit a run's summary: ``model_info`` and ``data_info``
    (the distinct galaxies of a local dataset; empty for ``s3://`` data)."""
    from cosmic_utils.data.dataset import distinct_galaxies
    from cosmic_utils.provenance import model_fields

    data = str(getattr(request, "data", "") or "")
    return {"model_info": model_fields(getattr(request, "model", None)),
            "data_info": distinct_galaxies(data) if data and not data.startswith("s3://") else {}}


def _interrupted_note(exc: exits.Interrupted, run_dir: Path, kept: int) -> dict[str, Any]:
    """What summary.json says about an interrupted run (``"interrupted"``)."""
    return {"status": "interrupted", "signal": exc.signal_name, "partitions_kept": kept,
            "at": datetime.now(timezone.utc).isoformat(), "run_dir": str(run_dir),
            "resume": f"cosmic run --redrive {run_dir}"}


def _load_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_pipeline(request: RunRequest | Mapping[str, Any], **kwargs: Any) -> RunResult:
    """Run ``request`` (validated here) on ``backend`` ("local" or "aws"); see :func:`execute`."""
    req = parse_request(request)
    run_dir = Path(kwargs.pop("run_dir", None) or config.RUNS_DIR / req.run_id)
    with run_lock(run_dir):  # a second writer into this folder is refused with our pid
        taken = [n for n in ("summary.json", "records") if (run_dir / n).exists()]
        if taken and not req.overwrite:
            raise RunExistsError(
                f"run folder {run_dir} already holds {', '.join(taken)} of an earlier run: choose another run "
                f"id or --out, redrive it (cosmic run --redrive {run_dir.name}) or overwrite (--overwrite)")
        if taken:
            for name in ("records", "predictions", "lambda-logs"):
                if (run_dir / name).exists():
                    shutil.rmtree(run_dir / name)
            for name in ("summary.json", "records.csv", "partitions.json", "request.json"):
                (run_dir / name).unlink(missing_ok=True)
        (run_dir / "request.original.json").write_text(req.model_dump_json(indent=2))
        return execute(req, run_dir=run_dir, **kwargs)


def resolve_run_dir(run: str | Path) -> Path:
    """The run folder of ``run``: a path (anything with a separator, or an existing run folder
    relative to the current directory) or a run id under ``config.RUNS_DIR``, from any directory."""
    text = str(run)
    as_path = Path(text).expanduser()
    by_id = config.RUNS_DIR / text
    looks_like_path = as_path.is_absolute() or "/" in text or text.startswith(".")
    candidates = [as_path] if looks_like_path else [by_id, as_path]
    for cand in candidates:
        if cand.is_dir() and any((cand / n).exists() for n in ("request.json", "request.original.json")):
            return cand.resolve()
    tried = ", ".join(str(c.resolve()) for c in candidates)
    raise RunNotFoundError(f"no run folder {text!r} (looked for request.json in {tried}); give a run id under "
                           f"{config.RUNS_DIR} or the run folder's path")


def failed_partitions(run_dir: Path) -> list[str]:
    """Keys of a run's partitions that failed or left no record (a refused manifest key stays failed)."""
    expected = json.loads((run_dir / "partitions.json").read_text())
    records = _read_run_records(run_dir)

    def done(pid: str) -> bool:  # ok, and its predictions are on disk as the record says
        rec = records.get(pid, {})
        return rec.get("status") == "ok" and predictions_problem(run_dir, rec) is None

    return [e["key"] for e in expected if not done(e["partition_id"]) and not e.get("invalid_key")]


def redrive(run: str | Path, **kwargs: Any) -> RunResult:
    """Re-run only the failed partitions of ``run`` (a run id or folder) into the same run folder; a run
    without failures is left as is, one that never listed its partitions is run again whole."""
    run_dir = resolve_run_dir(run)
    with run_lock(run_dir):  # a second writer into this folder is refused with our pid
        return _redrive_locked(run_dir, **kwargs)


def _redrive_locked(run_dir: Path, **kwargs: Any) -> RunResult:
    summary = _load_json(run_dir / "summary.json") or {}
    original_path = run_dir / "request.original.json"
    original = parse_request(json.loads((original_path if original_path.exists() else run_dir / "request.json")
                                        .read_text()))
    if not (run_dir / "partitions.json").exists():
        log.info("run %s: never listed its partitions (interrupted or refused early); running it whole", run_dir.name)
        # Nothing of it was accounted for, so nothing can be overwritten: Init may take the run id again.
        req = parse_request(original.model_copy(update={"overwrite": True}).model_dump(mode="json"))
        return execute(req, run_dir=run_dir, previous={}, attempt=2, **kwargs)
    failed = failed_partitions(run_dir)
    if not failed:
        log.info("run %s: every partition succeeded; nothing to redrive", run_dir.name)
        if summary.pop("interrupted", None) is not None:
            # The signal came after the last partition had finished: the run is complete, so its
            # summary must not go on saying it was cut short.
            summary["completed_by_redrive"] = datetime.now(timezone.utc).isoformat()
            (run_dir / "summary.json").write_text(json.dumps(stamped(summary), indent=2))
        return RunResult(run_dir, summary, "NOTHING_TO_REDRIVE")
    if len(failed) > 10_000:
        raise ValueError(f"run {run_dir.name}: {len(failed):,} failed partitions; a redrive carries at most "
                         "10,000 keys in the execution input (256 KiB): re-run the whole run instead")
    world = min(original.world_size, len(failed)) if original.world_size else None
    executed_path = run_dir / "request.json"
    executed = parse_request(json.loads(executed_path.read_text())) if executed_path.exists() else original
    req = original.model_copy(update={"partitions": failed, "partition_limit": None, "world_size": world,
                                      "redrive": True, "overwrite": False,
                                      "results": executed.results if kwargs.get("backend") == "aws"
                                      else original.results})
    req = parse_request(req.model_dump(mode="json"))
    records = _read_run_records(run_dir)
    attempt = 1 + max((int(r.get("attempt") or 1) for r in records.values()), default=1)
    return execute(req, run_dir=run_dir, previous=records, attempt=attempt, **kwargs)
