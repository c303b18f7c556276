"""Parse Lambda's CloudWatch log lines: ``REPORT`` lines (what AWS bills; the local backend writes
the same shape) and the error lines of failed invocations (``cosmic logs``). A REPORT line (tab-separated)::

    REPORT RequestId: 3f1c...  Duration: 40243.33 ms  Billed Duration: 40908 ms  Memory Size: 10240 MB
    Max Memory Used: 5948 MB  Init Duration: 663.81 ms      (Init Duration: cold starts only)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

_PATTERNS = {k: re.compile(v) for k, v in {
    "request_id": r"RequestId:\s*(?P<request_id>[0-9A-Za-z-]+)",
    "duration_ms": r"(?<!Billed )(?<!Init )Duration:\s*(?P<duration_ms>[\d.]+)\s*ms",
    "billed_duration_ms": r"Billed Duration:\s*(?P<billed_duration_ms>[\d.]+)\s*ms",
    "memory_size_mb": r"Memory Size:\s*(?P<memory_size_mb>\d+)\s*MB",
    "max_memory_used_mb": r"Max Memory Used:\s*(?P<max_memory_used_mb>\d+)\s*MB",
    "init_duration_ms": r"Init Duration:\s*(?P<init_duration_ms>[\d.]+)\s*ms",
}.items()}
_REQUIRED = ("request_id", "duration_ms", "billed_duration_ms", "memory_size_mb", "max_memory_used_mb")


class ReportParseError(ValueError):
    """A line that starts with REPORT but lacks a required field."""


@dataclass(frozen=True)
class Report:
    """One invocation's REPORT line."""

    request_id: str
    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None = None

    @property
    def cold_start(self) -> bool:
        return self.init_duration_ms is not None

    @property
    def gb_seconds(self) -> float:
        """What AWS bills: configured memory (GB) x billed duration (s)."""
        return self.memory_size_mb / 1024.0 * self.billed_duration_ms / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cold_start": self.cold_start, "gb_seconds": self.gb_seconds}


def parse_report_line(line: str) -> Report | None:
    """The Report of a REPORT line; None for any other log line; ReportParseError if malformed."""
    text = line.strip()
    if not text.startswith("REPORT"):
        return None
    found = {name: m.group(name) for name, pattern in _PATTERNS.items() if (m := pattern.search(text))}
    missing = [k for k in _REQUIRED if k not in found]
    if missing:
        raise ReportParseError(f"REPORT line lacks {missing}: {text[:200]!r}")
    return Report(
        request_id=found["request_id"],
        duration_ms=float(found["duration_ms"]),
        billed_duration_ms=int(float(found["billed_duration_ms"])),
        memory_size_mb=int(found["memory_size_mb"]),
        max_memory_used_mb=int(found["max_memory_used_mb"]),
        init_duration_ms=float(found["init_duration_ms"]) if "init_duration_ms" in found else None,
    )


def parse_report_lines(lines: Iterable[str]) -> list[Report]:
    """Every REPORT line among ``lines`` (other lines are skipped)."""
    return [r for r in map(parse_report_line, lines) if r is not None]


def reports_by_request(lines: Iterable[str]) -> dict[str, Report]:
    """REPORT lines keyed by request id (the last one wins)."""
    return {r.request_id: r for r in parse_report_lines(lines)}


#: The line the Inference handler logs before its partitions (``steps.inference_step``): the only
#: link from a partition that left no record to the invocation (request id) that ran it.
PARTITIONS_MARK = "cosmic partitions:"

_REQUEST_IN_LINE = [
    re.compile(r"^(?:START|END|REPORT) RequestId:\s*(?P<rid>[0-9A-Za-z-]+)"),
    re.compile(r"^\[[A-Z]+\]\t[^\t]+\t(?P<rid>[0-9a-f]{8}-[0-9a-f-]{27,})\t"),  # [LEVEL]\tts\trid\tmsg
    re.compile(r"^\S+Z\s+(?P<rid>[0-9a-f]{8}-[0-9a-f-]{27,})\s"),  # ts rid Task timed out ...
]
_TIMEOUT = re.compile(r"Task timed out after [\d.]+ seconds")
_TYPED = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Timedout|Timeout)[\w.]*):\s*(?P<msg>.*)$", re.S)
_REPORT_STATUS = re.compile(r"Status:\s*(?P<status>\w+)(?:\s+Error Type:\s*(?P<type>[\w.]+))?")


@dataclass(frozen=True)
class LambdaError:
    """The error one invocation logged: what ``cosmic logs`` puts next to a failed partition."""

    request_id: str
    error_type: str
    error_message: str
    log_stream: str | None = None
    timestamp_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def one_line(self) -> str:
        return (f"{self.error_type}: {self.error_message[:300]} (request {self.request_id}, "
                f"log stream {self.log_stream})")


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object of a log line in Lambda's JSON format, or None (not JSON, or not an object)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def request_id_of(message: str) -> str | None:
    """The request id a Lambda log line names (START/END/REPORT, ``[LEVEL]`` lines, timeouts), or None."""
    text = message.strip()
    if text.startswith("{"):
        obj = _json_object(text)
        rid = obj.get("requestId") if obj is not None else None
        return str(rid) if rid else None
    return next((m.group("rid") for pattern in _REQUEST_IN_LINE if (m := pattern.search(text))), None)


def parse_error_line(message: str) -> tuple[str, str] | None:
    """``(error_type, error_message)`` of a log line that reports a failed invocation, else None:
    the runtime's JSON error (also inside the JSON log format), an ``[ERROR]`` line, ``Task timed
    out after N seconds``, or a REPORT line with ``Status: timeout|error``."""
    text = message.strip()
    if text.startswith("{"):
        obj = _json_object(text)
        if obj is None:
            return None
        if obj.get("errorType") or obj.get("errorMessage"):
            return str(obj.get("errorType") or "Error"), str(obj.get("errorMessage") or "")
        if str(obj.get("level", "")).upper() == "ERROR":
            return "ERROR", str(obj.get("message", ""))
        return None
    m = _TIMEOUT.search(text)
    if m:
        return "Sandbox.Timedout", m.group(0)
    if text.startswith("[ERROR]"):
        body = text[len("[ERROR]"):].lstrip()
        parts = body.split("\t")
        if len(parts) >= 3 and request_id_of(text):  # [ERROR]\tts\trequest-id\tmessage (a logged error)
            body = "\t".join(parts[2:])
        first, _, rest = body.partition("\nTraceback")
        t = _TYPED.match(first.strip())
        return (t.group("type"), t.group("msg").strip()) if t else ("ERROR", first.strip())
    if text.startswith("REPORT"):
        s = _REPORT_STATUS.search(text)
        if s and s.group("status").lower() != "success":
            return s.group("type") or f"Runtime.{s.group('status').capitalize()}", text
    return None


def errors_by_partition(events: Iterable[Mapping[str, Any]], partition_ids: Iterable[str],
                        ) -> tuple[dict[str, list[LambdaError]], list[LambdaError]]:
    """Match ``filter_log_events`` events to partitions by the request id of their invocation (a line
    without one belongs to the invocation last started in its stream). Returns the errors of each of
    ``partition_ids`` (one per attempt) and those no partition can be tied to."""
    wanted = set(partition_ids)
    current: dict[str, str] = {}
    parts_of: dict[str, set[str]] = {}
    errors: dict[str, LambdaError] = {}
    for ev in sorted(events, key=lambda e: (str(e.get("logStreamName")), int(e.get("timestamp") or 0))):
        msg = str(ev.get("message", ""))
        stream = str(ev.get("logStreamName") or "")
        rid = request_id_of(msg)
        if msg.startswith("START RequestId:") and rid:
            current[stream] = rid
        rid = rid or current.get(stream)
        if rid is None:
            continue
        if PARTITIONS_MARK in msg:
            words = msg.split(PARTITIONS_MARK, 1)[1].split()
            parts_of.setdefault(rid, set()).update(p for p in (words[0] if words else "").split(",") if p)
        found = parse_error_line(msg)
        if found and (rid not in errors or errors[rid].error_type == "ERROR"):
            errors[rid] = LambdaError(rid, found[0], found[1], stream or None,
                                      int(ev["timestamp"]) if ev.get("timestamp") is not None else None)
    by_part: dict[str, list[LambdaError]] = {p: [] for p in wanted}
    tied: set[str] = set()
    for rid, err in errors.items():
        for pid in parts_of.get(rid, ()):
            if pid in wanted:
                by_part[pid].append(err)
                tied.add(rid)
    unmatched = [e for rid, e in errors.items() if rid not in tied and not parts_of.get(rid)]
    return by_part, unmatched


def fetch_log_events(logs_client: Any, log_group: str, start_ms: int | None = None,
                     end_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Every event of ``log_group`` in ``[start_ms, end_ms]`` (paginated; none without the group)."""
    bounds = {"startTime": start_ms, "endTime": end_ms}
    kwargs = {"logGroupName": log_group, **{k: int(v) for k, v in bounds.items() if v is not None}}
    try:
        for page in logs_client.get_paginator("filter_log_events").paginate(**kwargs):
            yield from page.get("events", [])
    except logs_client.exceptions.ResourceNotFoundException:
        return


def failed_partition_errors(logs_client: Any, function_name: str, partition_ids: Iterable[str],
                            start_ms: int | None = None, end_ms: int | None = None,
                            ) -> tuple[dict[str, list[LambdaError]], list[LambdaError]]:
    """The CloudWatch errors of ``partition_ids`` from the log group of ``function_name``."""
    events = fetch_log_events(logs_client, f"/aws/lambda/{function_name}", start_ms, end_ms)
    return errors_by_partition(events, partition_ids)
