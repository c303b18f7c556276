"""Parse Lambda's CloudWatch ``REPORT`` lines.

Every invocation ends with one line such as::

    REPORT RequestId: 3f1c...  Duration: 40243.33 ms  Billed Duration: 40908 ms  Memory Size: 10240 MB
    Max Memory Used: 5948 MB  Init Duration: 663.81 ms

(fields tab-separated; ``Init Duration`` only on a cold start). These are the figures AWS bills
(configured memory x billed duration), so the aws backend attaches them to the run records by
request id; the local backend writes lines of the same shape, so both use this parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

_FIELDS = {
    "request_id": r"RequestId:\s*(?P<request_id>[0-9A-Za-z-]+)",
    "duration_ms": r"(?<!Billed )(?<!Init )Duration:\s*(?P<duration_ms>[\d.]+)\s*ms",
    "billed_duration_ms": r"Billed Duration:\s*(?P<billed_duration_ms>[\d.]+)\s*ms",
    "memory_size_mb": r"Memory Size:\s*(?P<memory_size_mb>\d+)\s*MB",
    "max_memory_used_mb": r"Max Memory Used:\s*(?P<max_memory_used_mb>\d+)\s*MB",
    "init_duration_ms": r"Init Duration:\s*(?P<init_duration_ms>[\d.]+)\s*ms",
}
_PATTERNS = {k: re.compile(v) for k, v in _FIELDS.items()}
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
        out = asdict(self)
        out["cold_start"] = self.cold_start
        out["gb_seconds"] = self.gb_seconds
        return out


def parse_report_line(line: str) -> Report | None:
    """The Report of a REPORT line; None for any other log line; ReportParseError if malformed."""
    text = line.strip()
    if not text.startswith("REPORT"):
        return None
    found: dict[str, str] = {}
    for name, pattern in _PATTERNS.items():
        m = pattern.search(text)
        if m:
            found[name] = m.group(name)
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
    out = []
    for line in lines:
        rep = parse_report_line(line)
        if rep is not None:
            out.append(rep)
    return out


def reports_by_request(lines: Iterable[str]) -> dict[str, Report]:
    """REPORT lines keyed by request id (the last one wins)."""
    return {r.request_id: r for r in parse_report_lines(lines)}
