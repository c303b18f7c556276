"""Run the pipeline on a backend and collect its records: what ``cosmic run`` and notebook 03 call.

:func:`run_pipeline` deploys (create-or-update), starts one execution with the validated request,
shows a progress bar (cosmic_utils.progress) of partitions done (by polling the records prefix), and when the execution ends
writes under the run folder (``runs/<run_id>/`` by default):

* ``request.json``  the request as executed;
* ``partitions.json`` the partition list Init wrote (what the run must account for);
* ``records/<partition>.json`` and ``records.csv`` (one row per partition, the columns of
  docs/architecture.md "Run records", plus request_id, key and REPORT-line figures);
* ``predictions/`` the per-partition predictions;
* ``summary.json`` recomputed here with the same :func:`~cosmic_utils.runtime.steps.summarize.summarize_records`
  as the Summarize step, after attaching billed durations from CloudWatch REPORT lines and the
  execution's own wall clock; the Summarize step's version is kept as ``summary_in_execution``.

:func:`redrive` re-runs only the failed partitions of a run (same run id, so a retried
partition overwrites only its own outputs) and merges the new records into the same folder; a
run without failures is left untouched.

Interruption (Ctrl-C, SIGTERM: :class:`cosmic_utils.exits.Interrupted`): the execution is stopped
(``StopExecution``), the local backend's handler processes are ended, the records of every
partition that finished are collected as usual, ``summary.json`` says ``"interrupted"``, and
:class:`RunInterrupted` is raised (exit 130 / 143). Further signals are held until that cleanup is
done. ``cosmic run --redrive`` then re-runs the unfinished partitions (or the whole request when
Init had not listed them yet).
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
from dataclasses import dataclass
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

    @property
    def failed(self) -> list[dict[str, Any]]:
        return list(self.summary.get("failed", []))


# ------------------------------------------------------------------ billing from REPORT lines
def attach_reports(records: list[dict[str, Any]], report_lines: Iterable[str]) -> None:
    """Fill ``billed_duration_ms`` (and memory figures) of records from REPORT lines, by request id.

    An invocation that processed several partitions (world_size) is billed once; its billed
    duration is split over its records in proportion to their handler durations.
    """
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
    """Why an "ok" record's predictions are not on disk as the record says (``None``: they are).

    The record names the file (``predictions_file``) with its size and sha256, as the handler
    wrote them; a record from before those fields is checked for a non-empty file of its name.
    """
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
    """Copy the ok partitions' predictions of this execution into ``pred_dir``; fail the others.

    A kept record (an earlier execution's, not re-run by a redrive) is only re-checked on disk.
    """
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
    out = {}
    for path in sorted((run_dir / "records").glob("*.json")):
        rec = json.loads(path.read_text())
        out[str(rec["partition_id"])] = rec
    return out


# ------------------------------------------------------------------ backends
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


def _default_with_deps(label: str) -> bool:
    """aws packages carry Lambda's wheels; ``COSMIC_LAMBDA_DEPS=0`` builds code-only ones for a stand-in
    account (:mod:`.standin`), whose handler processes use this interpreter's site-packages."""
    return label == "aws" and os.environ.get("COSMIC_LAMBDA_DEPS", "1") != "0"


def _progress(total: int | None, enabled: bool) -> Any:
    from cosmic_utils.progress import progress

    return progress(total=total, desc="partitions", unit="part", disable=not enabled, leave=True)


def _execution_name(run_id: str, attempt: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{run_id[:56]}-{attempt}-{stamp}"[:80]


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
    """Deploy, run one execution of ``request`` and collect everything into ``run_dir``.

    ``previous`` (records by partition id, for a redrive) are restored into an empty results
    store (a fresh local moto) and merged with the new records. ``local_stack`` runs on an
    already started :class:`~cosmic_utils.cloud.local.LocalStack` instead of a new one.
    ``allowed_read`` / ``allowed_results`` set the deployment's allow-list (default: the request's
    own locations, and on the local backend its own folders), which Init enforces.
    """
    from cosmic_utils.cloud.aws import DeployConfig
    from cosmic_utils.runtime.storage import open_storage

    run_dir = Path(run_dir or config.RUNS_DIR / request.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    interrupted: exits.Interrupted | None = None
    # Entered first, left last: once interrupted, signals stay held until the backend is closed.
    hold = ExitStack()
    with hold, ExitStack() as stack:
        be, label = _open_backend(stack, backend, request, concurrency, region, run_dir, local_stack)
        if label == "local":
            from cosmic_utils.cloud.local import LOCAL_DATA_BUCKET, LOCAL_RESULTS_URI, stage_folder

            updates: dict[str, Any] = {}
            if not request.results.startswith("s3://"):
                updates["results"] = LOCAL_RESULTS_URI
            if stage_data and not request.data.startswith("s3://"):
                be.client("s3")  # bucket created by stage_folder
                updates["data"] = stage_folder(be, Path(request.data), LOCAL_DATA_BUCKET, request.run_id)
            if updates:
                request = request.model_copy(update=updates)
        if not request.results.startswith("s3://"):
            raise ValueError(f"results {request.results!r}: the state machine's ItemReader needs s3://bucket/prefix")
        if label == "aws":
            local = [f"{n}={u!r}" for n, u in (("data", request.data), ("model", request.model))
                     if not u.startswith("s3://")]
            if local:
                raise ValueError(f"backend aws: {', '.join(local)} must be s3:// locations Lambda can read")
        if allowed_read is None:
            allowed_read = [request.data, request.model]
        if allowed_results is None:
            allowed_results = [request.results]
        cfg = DeployConfig(
            results_uri=request.results, prefix=prefix,
            read_uris=[u for u in (request.data, request.model) if u.startswith("s3://")],
            allowed_read=list(allowed_read), allowed_results=list(allowed_results),
            memory_mb=request.memory_mb, timeout_s=request.timeout_s,
            with_deps=_default_with_deps(label) if with_deps is None else with_deps, backend_label=label,
            build_dir=run_dir.parent / ".build" / label if label == "local" else None,
        )
        deployment = be.deploy(cfg)
        results = open_storage(request.results, s3_client=be.client("s3"))
        layout = RunLayout(request.run_id)
        redriven = {partition_id_for(k) for k in (request.partitions or [])}
        if previous is None:
            # A fresh run owns its run id: outputs left by an earlier run with the same id are
            # replaced only on request (overwrite); otherwise the run is refused before it starts.
            left = results.list_keys(f"{layout.root}/")
            if left and not request.overwrite:
                raise RunExistsError(
                    f"run id {request.run_id!r} already has {len(left)} objects under {results.uri(layout.root)}: "
                    "choose another run id, redrive it (cosmic run --redrive) or overwrite (--overwrite)")
            for key in left:
                results.delete(key)
        else:
            # A redrive: the partition list and the good records of the first run must be there
            # for Summarize (a fresh local moto starts empty; on AWS they are still in S3).
            if not results.exists(layout.partitions) and (run_dir / "partitions.json").exists():
                results.write_text(layout.partitions, (run_dir / "partitions.json").read_text())
            _restore_chain(results, layout, run_dir, previous)
            for pid, rec in previous.items():
                if _kept(pid, rec, redriven) and not results.exists(layout.record(pid)):
                    results.write_text(layout.record(pid), json.dumps(rec))
        (run_dir / "request.json").write_text(request.model_dump_json(indent=2))
        name = _execution_name(request.run_id, attempt)
        before = be.count_keys(results.uri(layout.records_prefix.rstrip("/")))
        t_start = datetime.now(timezone.utc)
        arn = be.start_execution(deployment.state_machine_arn, request.to_json(), name)
        total = len(request.partitions) if request.partitions else request.partition_limit
        bar = _progress(total, progress)

        def poll() -> None:
            if bar.total is None and results.exists(layout.partitions):
                bar.total = len(request.partitions) if request.partitions else \
                    len(json.loads(results.read_text(layout.partitions)))
                bar.refresh()
            done = be.count_keys(results.uri(layout.records_prefix.rstrip("/"))) - (before if previous else 0)
            bar.update(max(0, done - bar.n))

        try:
            desc = be.wait_execution(arn, poll_s=1.0 if label == "local" else 3.0, timeout_s=timeout_s, on_poll=poll)
        except KeyboardInterrupt as exc:
            interrupted = exc if isinstance(exc, exits.Interrupted) else exits.Interrupted()
            hold.enter_context(exits.signals_deferred())
            log.warning("run %s: %s; stopping the execution and keeping the finished partitions",
                        request.run_id, interrupted.signal_name)
            _stop_after_interrupt(be, arn, label, interrupted.signal_name)
            if local_stack is not None:  # a shared server keeps serving other runs
                stack.callback(_resume_local)
            desc = be.describe_execution(arn)
            for _ in range(20):  # StopExecution is asynchronous: give it a moment to show ABORTED
                if desc["status"] != "RUNNING":
                    break
                time.sleep(0.25)
                desc = be.describe_execution(arn)
        finally:
            bar.close()
        status = str(desc["status"])
        start, stop = desc.get("startDate"), desc.get("stopDate")
        wall_s = (stop - start).total_seconds() if start and stop else None
        if not results.exists(layout.partitions):  # Init failed: nothing ran
            summary = {"run_id": request.run_id, "backend": label, "execution_status": status,
                       "execution_arn": arn, "execution_error": desc.get("error"),
                       "execution_cause": desc.get("cause"), "partitions": 0, "partitions_ok": 0,
                       "partitions_failed": 0, "failed": [], "wall_s": wall_s}
            if interrupted is not None:
                summary["interrupted"] = _interrupted_note(interrupted, run_dir, 0)
            (run_dir / "summary.json").write_text(json.dumps(stamped(summary), indent=2))
            if interrupted is not None:
                raise RunInterrupted(interrupted.signum, run_dir, RunResult(run_dir, summary, status))
            return RunResult(run_dir, summary, status)
        expected = json.loads(results.read_text(layout.partitions))
        (run_dir / "partitions.json").write_text(json.dumps(expected, indent=1))
        chain = execution_chain(results, request.run_id)
        if chain is not None:
            (run_dir / "executions.json").write_text(json.dumps({"run_id": request.run_id, "executions": chain}))
        fresh = [json.loads(results.read_text(k)) for k in results.list_keys(layout.records_prefix)]
        # Only records of this run's execution chain (an earlier run under the same id is not ours).
        fresh = [r for r in fresh if chain is None or str(r.get("execution_id")) in chain]
        reports = list(be.report_lines(cfg.names.function("inference"), t_start))
        attach_reports(fresh, reports)
        wanted = {str(e["partition_id"]) for e in expected}
        merged: dict[str, dict[str, Any]] = {}
        for rec in fresh:
            rec["billed_source"] = rec.get("billed_source") or "estimated"
            if rec.get("attempt") is None:
                rec["attempt"] = attempt
            merged[str(rec["partition_id"])] = rec
        for pid, rec in (previous or {}).items():
            if _kept(pid, rec, redriven):  # kept as it was: a redrive re-ran only the others
                merged[pid] = dict(rec)
        merged = {pid: rec for pid, rec in merged.items() if pid in wanted}
        # Predictions first, durably (temp + fsync + rename), each checked against its record's
        # size and checksum; a partition whose file is not complete on disk is failed here, before
        # any record says "ok" (a redrive re-runs it).
        _save_predictions(results, layout, merged, run_dir / "predictions",
                          fresh_ids={str(r["partition_id"]) for r in fresh
                                     if not redriven or str(r["partition_id"]) in redriven})
        rec_dir = run_dir / "records"
        rec_dir.mkdir(exist_ok=True)
        for pid, rec in merged.items():
            durable_write(rec_dir / f"{pid}.json", json.dumps(rec).encode())
        write_records_csv(merged.values(), run_dir / "records.csv")
        in_exec = json.loads(results.read_text(layout.summary)) if results.exists(layout.summary) else None
        prev_summary = _load_json(run_dir / "summary.json") if previous is not None else None
        extra: dict[str, Any] = {
            "execution_status": status,
            "execution_arn": arn,
            "execution_error": desc.get("error"),
            "summary_in_execution": in_exec,
            "wall_s_note": "Step Functions execution wall clock (startDate to stopDate)",
            "report_lines": len(reports),
        }
        for key in ("unlisted", "unlisted_keys"):  # files the manifest does not list: ignored, reported
            if in_exec and in_exec.get(key):
                extra[key] = in_exec[key]
        if prev_summary is not None:
            history = list(prev_summary.get("executions", [])) or [
                {"execution_arn": prev_summary.get("execution_arn"), "wall_s": prev_summary.get("wall_s"),
                 "status": prev_summary.get("execution_status")}]
            extra["executions"] = history + [{"execution_arn": arn, "wall_s": wall_s, "status": status}]
            extra["redrives"] = int(prev_summary.get("redrives", 0)) + 1
            wall_total = sum(float(e.get("wall_s") or 0.0) for e in extra["executions"])
        else:
            extra["executions"] = [{"execution_arn": arn, "wall_s": wall_s, "status": status}]
            extra["redrives"] = 0
            wall_total = wall_s
        original = parse_request(json.loads((run_dir / "request.original.json").read_text())) \
            if (run_dir / "request.original.json").exists() else request
        summary = summarize_records(merged.values(), expected, original, wall_total, extra, executions=chain)
        summary["backend"] = label
        if interrupted is not None:
            kept = sum(1 for r in merged.values() if r.get("status") == "ok")
            summary["interrupted"] = _interrupted_note(interrupted, run_dir, kept)
            for fail in summary.get("failed", []):
                if str(fail.get("partition_id")) not in merged:
                    fail["error"] = f"not finished: the run was interrupted ({interrupted.signal_name})"
        if label == "aws" and summary.get("failed"):
            _attach_cloudwatch_errors(be, cfg.names.function("inference"), summary["failed"], t_start, stop)
        summary.update(admission_fields(original))
        (run_dir / "summary.json").write_text(json.dumps(stamped(summary), indent=2))
    if interrupted is not None:
        raise RunInterrupted(interrupted.signum, run_dir, RunResult(run_dir, summary, status))
    return RunResult(run_dir, summary, status)


def _attach_cloudwatch_errors(be: Any, function_name: str, failed: list[dict[str, Any]],
                              start: datetime, stop: datetime | None) -> None:
    """Put each failed partition's CloudWatch error (``cloudwatch_error``, request id, log stream) into the
    summary's failed list: on AWS the error of a crash or timeout is nowhere else. Best effort: a
    logs outage never fails a run that already ran (``cosmic logs RUN`` asks again later)."""
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


def _kept(pid: str, rec: Mapping[str, Any], redriven: set[str]) -> bool:
    """Whether a redrive keeps an earlier record as it is: every record of a partition the redrive
    did not re-run (an ok one, or the failure of a refused manifest key, which no retry can fix).
    A re-run partition's new record wins, also over an "ok" whose predictions were not on disk."""
    return pid not in redriven


def _restore_chain(results: Any, layout: RunLayout, run_dir: Path,
                   previous: Mapping[str, Mapping[str, Any]]) -> None:
    """Put the run's execution chain back into an empty results store before a redrive (a fresh
    local moto starts empty), so Init appends to it and Summarize still counts the kept records.
    A run folder from before run identity has no chain: its kept records' ids (or ``None``) seed it."""
    if results.exists(layout.executions):
        return
    saved = _load_json(run_dir / "executions.json")
    chain = [str(x) for x in (saved or {}).get("executions", [])]
    for rec in previous.values():
        if rec.get("status") == "ok" and str(rec.get("execution_id")) not in chain:
            chain.append(str(rec.get("execution_id")))
    results.write_text(layout.executions, json.dumps({"run_id": layout.run_id, "executions": chain}))


def _resume_local() -> None:
    from cosmic_utils.cloud import moto_hook

    moto_hook.resume_invocations()


def admission_fields(request: Any) -> dict[str, Any]:
    """What ``cosmic records ship`` needs to admit a run's summary: the model and the data it ran on.

    ``model_info``: :func:`cosmic_utils.provenance.model_fields` of the request's model (sha256 of
    artifact.json, trained or not, validation sigma_NMAD beside the kNN anchor's). ``data_info``:
    samples and distinct catalogue galaxies of a local rendered dataset
    (:func:`cosmic_utils.data.dataset.distinct_galaxies`). Empty fields for ``s3://`` inputs
    (what the run saw is then not re-read here).
    """
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
        return _run_locked(req, run_dir, **kwargs)


def _run_locked(req: RunRequest, run_dir: Path, **kwargs: Any) -> RunResult:
    taken = [n for n in ("summary.json", "records") if (run_dir / n).exists()]
    if taken and not req.overwrite:
        raise RunExistsError(
            f"run folder {run_dir} already holds {', '.join(taken)} of an earlier run: choose another run id or "
            f"--out, redrive it (cosmic run --redrive {run_dir.name}) or overwrite (--overwrite)")
    if taken:
        for name in ("records", "predictions", "lambda-logs"):
            if (run_dir / name).exists():
                shutil.rmtree(run_dir / name)
        for name in ("summary.json", "records.csv", "partitions.json", "request.json"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
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
    """Keys of the partitions of a run that failed or left no record."""
    expected = json.loads((run_dir / "partitions.json").read_text())
    records = _read_run_records(run_dir)
    # A refused manifest key (invalid_key) fails the same way every time and could not even be named
    # in a redrive request: it stays failed, and never blocks the redrive of the others.
    def done(pid: str) -> bool:  # ok, and its predictions are on disk as the record says
        rec = records.get(pid, {})
        return rec.get("status") == "ok" and predictions_problem(run_dir, rec) is None

    return [e["key"] for e in expected if not done(e["partition_id"]) and not e.get("invalid_key")]


def redrive(run: str | Path, **kwargs: Any) -> RunResult:
    """Re-run only the failed partitions of a run and merge into the same run folder.

    ``run`` is a run id (under ``config.RUNS_DIR``, from any directory) or a run folder path. A
    run without failures is left as is. A run interrupted before Init listed its partitions (no
    ``partitions.json``) is run again whole, under the same run id.
    """
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
    attempt = 1 + max((int(r.get("attempt") or 1) for r in _read_run_records(run_dir).values()), default=1)
    return execute(req, run_dir=run_dir, previous=_read_run_records(run_dir), attempt=attempt, **kwargs)
