"""REPORT-line parser, on the real lines of the published runs."""

from __future__ import annotations

import pytest

from cosmic_utils import config
from cosmic_utils.cloud.cloudwatch import (
    ReportParseError,
    parse_report_line,
    parse_report_lines,
    reports_by_request,
)
from cosmic_utils.cloud.runner import attach_reports

REAL = config.REFERENCE_DIR / "cai" / "lambda_report_lines.txt"


def test_real_lines_parse() -> None:
    lines = REAL.read_text().splitlines()
    reports = parse_report_lines(lines)
    assert len(reports) == sum(1 for ln in lines if ln.strip().startswith("REPORT"))
    first = reports[0]
    assert first.request_id == "adbca9aa-fe3a-4fd6-b4e7-5e7b46ae71f1"
    assert first.duration_ms == pytest.approx(40243.33)
    assert first.billed_duration_ms == 40908
    assert first.memory_size_mb == 10240 and first.max_memory_used_mb == 5948
    assert first.init_duration_ms == pytest.approx(663.81) and first.cold_start
    assert not reports[1].cold_start and reports[1].init_duration_ms is None
    assert first.gb_seconds == pytest.approx(10.0 * 40.908)
    assert all(r.billed_duration_ms >= int(r.duration_ms) for r in reports)


def test_other_lines_skipped_and_malformed_reported() -> None:
    assert parse_report_line("START RequestId: x Version: $LATEST") is None
    with pytest.raises(ReportParseError, match="billed_duration_ms"):
        parse_report_line("REPORT RequestId: abc Duration: 1.0 ms Memory Size: 128 MB Max Memory Used: 50 MB")


def test_attach_reports_splits_shared_invocations() -> None:
    lines = ["REPORT RequestId: r1\tDuration: 99.5 ms\tBilled Duration: 100 ms\tMemory Size: 2048 MB\t"
             "Max Memory Used: 300 MB\tInit Duration: 500.00 ms",
             "REPORT RequestId: r2\tDuration: 10.0 ms\tBilled Duration: 10 ms\tMemory Size: 2048 MB\tMax Memory Used: 310 MB"]
    assert set(reports_by_request(lines)) == {"r1", "r2"}
    recs = [{"request_id": "r1", "duration_s": 0.03}, {"request_id": "r1", "duration_s": 0.01},
            {"request_id": "r2", "duration_s": 0.01}, {"request_id": "zz", "duration_s": 1.0}]
    attach_reports(recs, lines)
    assert [r.get("billed_duration_ms") for r in recs] == [75, 25, 10, None]
    assert recs[0]["init_duration_ms"] == 500.0 and recs[2]["memory_mb"] == 2048
