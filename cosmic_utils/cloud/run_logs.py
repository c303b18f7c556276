"""The CloudWatch error of every failed partition of a run (``cosmic logs`` and the run summary).

The deployment and time window come from the run's execution ARNs; errors are matched to partitions
by request id. Reasoning: docs/aws.md#implementation-notes-cosmic_utilscloud
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cosmic_utils import config
from cosmic_utils.cloud.cloudwatch import LambdaError, errors_by_partition, failed_partition_errors

#: Margin around an execution's start/stop: log events carry the container's clock.
WINDOW_MARGIN_MS = 60_000


class RunLogsError(ValueError):
    """The run folder cannot be read (missing, no summary); the message names the file."""


@dataclass
class FailureLogs:
    """The failed partitions of a run, each with the CloudWatch errors of its invocations."""

    run_id: str
    function_name: str
    region: str | None
    window_ms: tuple[int | None, int | None]
    failed: list[dict[str, Any]]
    by_partition: dict[str, list[LambdaError]]
    unmatched: list[LambdaError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "function_name": self.function_name, "region": self.region,
                "window_ms": list(self.window_ms),
                "failed": [{**f, "cloudwatch_errors": [e.to_dict() for e in
                                                       self.by_partition.get(str(f["partition_id"]), [])]}
                           for f in self.failed],
                "unmatched": [e.to_dict() for e in self.unmatched]}


def resolve_run_dir(run: str | Path) -> Path:
    """A run folder from a run id (under runs/) or a path; RunLogsError when it has no summary.json."""
    run_dir = Path(run) if Path(run).is_dir() else config.RUNS_DIR / str(run)
    if not (run_dir / "summary.json").exists():
        raise RunLogsError(f"{run_dir / 'summary.json'}: not found; is {run!s} a run id or run folder?")
    return run_dir


def parse_execution_arn(arn: str) -> tuple[str, str] | None:
    """``(region, deployment prefix)`` of a Step Functions execution ARN of our state machine, else None."""
    parts = str(arn).split(":")
    if len(parts) < 8 or parts[2] != "states" or parts[5] != "execution" or not parts[6].endswith("-pipeline"):
        return None
    return parts[3], parts[6][: -len("-pipeline")]


def execution_window(sfn_client: Any, arns: Iterable[str]) -> tuple[int | None, int | None]:
    """Earliest start and latest stop (ms, with a margin) of the executions; None where unknown."""
    starts: list[datetime] = []
    stops: list[datetime] = []
    for arn in arns:
        try:
            desc = sfn_client.describe_execution(executionArn=arn)
        except Exception:  # deleted or expired (90 days): search without that bound
            return None, None
        if desc.get("startDate"):
            starts.append(desc["startDate"])
        if desc.get("stopDate"):
            stops.append(desc["stopDate"])
    start = int(min(starts).timestamp() * 1000) - WINDOW_MARGIN_MS if starts else None
    stop = int(max(stops).timestamp() * 1000) + WINDOW_MARGIN_MS if stops and len(stops) == len(starts) else None
    return start, stop


def failure_logs(run: str | Path, backend: Any = None, prefix: str | None = None,
                 region: str | None = None) -> FailureLogs:
    """The CloudWatch errors of the failed partitions of a run (``backend``: an AwsBackend)."""
    run_dir = resolve_run_dir(run)
    summary = json.loads((run_dir / "summary.json").read_text())
    run_id = str(summary.get("run_id", run_dir.name))
    failed = [dict(f) for f in summary.get("failed") or []]
    ids = [str(f["partition_id"]) for f in failed]
    arns = [str(e["execution_arn"]) for e in summary.get("executions") or [] if e.get("execution_arn")]
    arns = arns or ([str(summary["execution_arn"])] if summary.get("execution_arn") else [])
    parsed = next((p for p in (parse_execution_arn(a) for a in arns) if p), None)
    region = region or (parsed[0] if parsed else None)
    prefix = prefix or (parsed[1] if parsed else "cosmic")
    from cosmic_utils.cloud.aws import AwsBackend, Names

    function = Names(prefix).function("inference")
    if not failed:
        return FailureLogs(run_id, function, region, (None, None), [], {})
    local = sorted((run_dir / "lambda-logs").glob("*-inference.log"))
    if summary.get("backend") == "local" and local:  # the container logs the local backend copied
        by_part, unmatched = errors_by_partition(local_log_events(local), ids)
        return FailureLogs(run_id, local[0].stem, None, (None, None), failed, by_part, unmatched)
    backend = backend or AwsBackend(region=region)
    window = execution_window(backend.client("stepfunctions"), arns)
    by_part, unmatched = failed_partition_errors(backend.client("logs"), function, ids, *window)
    return FailureLogs(run_id, function, region, window, failed, by_part, unmatched)


def local_log_events(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The lines of local container logs as log events (one stream per file, line order as time);
    containers share a file, so the request id a line carries ties it to its invocation."""
    return [{"logStreamName": path.name, "timestamp": i, "message": line}
            for path in paths for i, line in enumerate(path.read_text(errors="replace").splitlines())]


def annotate_failed(failed: list[dict[str, Any]], by_partition: Mapping[str, list[LambdaError]]) -> None:
    """Add ``cloudwatch_error`` (the last attempt's error, one line) to each failed entry that has one."""
    for f in failed:
        errs = by_partition.get(str(f.get("partition_id"))) or []
        if errs:
            last = max(errs, key=lambda e: e.timestamp_ms or 0)
            f["cloudwatch_error"] = f"{last.error_type}: {last.error_message[:300]}"
            f["request_id"] = last.request_id
            f["log_stream"] = last.log_stream
