"""`cosmic logs RUN`: the CloudWatch error of each failed partition, matched by request id (moto logs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cloud.cloudwatch import errors_by_partition, parse_error_line, request_id_of
from cosmic_utils.cloud.run_logs import annotate_failed, failure_logs, parse_execution_arn

RID = "6b1f3c2e-1111-4a2b-9c3d-0123456789ab"
RID2 = "7c2a4d3f-2222-4b3c-8d4e-123456789abc"


def _lines(rid: str, part: str, error: str) -> list[str]:
    return [f"START RequestId: {rid} Version: $LATEST",
            f"[INFO]\t2026-01-01T00:00:00.000Z\t{rid}\tcosmic partitions: {part} run r1",
            error,
            f"END RequestId: {rid}",
            f"REPORT RequestId: {rid}\tDuration: 10.00 ms\tBilled Duration: 10 ms\tMemory Size: 3008 MB\t"
            "Max Memory Used: 100 MB"]


def test_error_line_shapes() -> None:
    js = json.dumps({"errorType": "InfrastructureError", "errorMessage": "reading partition p: S3 down",
                     "requestId": RID, "stackTrace": []})
    assert parse_error_line(js) == ("InfrastructureError", "reading partition p: S3 down")
    assert request_id_of(js) == RID
    assert parse_error_line("[ERROR] MemoryError: cannot allocate\nTraceback (most recent call last):\n  x") == \
        ("MemoryError", "cannot allocate")
    assert parse_error_line(f"[ERROR]\t2026-01-01T00:00:00.000Z\t{RID}\tsomething broke") == ("ERROR", "something broke")
    timeout = f"2026-01-01T00:15:00.000Z {RID} Task timed out after 900.00 seconds"
    assert parse_error_line(timeout) == ("Sandbox.Timedout", "Task timed out after 900.00 seconds")
    assert request_id_of(timeout) == RID
    assert parse_error_line(f"REPORT RequestId: {RID}\tDuration: 1 ms\tStatus: error\tError Type: Runtime.OutOfMemory")[0] \
        == "Runtime.OutOfMemory"
    assert parse_error_line(f"[INFO]\t2026-01-01T00:00:00.000Z\t{RID}\tcosmic partitions: p run r") is None
    assert parse_error_line(f"START RequestId: {RID} Version: $LATEST") is None


def test_errors_matched_to_partitions_by_request() -> None:
    ev = [{"logStreamName": "s1", "timestamp": i, "message": m} for i, m in enumerate(
        _lines(RID, "part-00001,part-00002", "[ERROR] InfrastructureError: boom"))]
    # A timeout line names its request id; the second stream runs part-00003, which did not fail.
    ev += [{"logStreamName": "s2", "timestamp": i, "message": m} for i, m in enumerate(
        _lines(RID2, "part-00003", f"2026-01-01T00:15:00.000Z {RID2} Task timed out after 9.00 seconds"))]
    by_part, unmatched = errors_by_partition(ev, ["part-00001", "part-00002", "part-00009"])
    assert [e.error_type for e in by_part["part-00001"]] == ["InfrastructureError"]
    assert by_part["part-00002"][0].request_id == RID and by_part["part-00002"][0].log_stream == "s1"
    assert by_part["part-00009"] == [] and unmatched == []
    failed = [{"partition_id": "part-00001", "error": "no record"}]
    annotate_failed(failed, by_part)
    assert failed[0]["cloudwatch_error"] == "InfrastructureError: boom" and failed[0]["request_id"] == RID


def test_execution_arn_names_the_deployment() -> None:
    assert parse_execution_arn("arn:aws:states:eu-west-1:123456789012:execution:study-pipeline:r1-1-x") == \
        ("eu-west-1", "study")
    assert parse_execution_arn("arn:aws:states:eu-west-1:123456789012:stateMachine:x") is None


def _run_folder(root: Path, failed: list[dict[str, Any]]) -> Path:
    run = root / "r1"
    run.mkdir(parents=True)
    arn = "arn:aws:states:us-east-1:123456789012:execution:cosmic-pipeline:r1-1-20260101T000000"
    (run / "summary.json").write_text(json.dumps({"run_id": "r1", "backend": "aws", "failed": failed,
                                                  "executions": [{"execution_arn": arn}]}))
    return run


def test_cosmic_logs_shows_injected_error(moto_aws_backend: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    logs = moto_aws_backend.client("logs")
    group = "/aws/lambda/cosmic-inference"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/01/01/[$LATEST]abc")
    now = int(time.time() * 1000)
    injected = json.dumps({"errorType": "Runtime.ExitError", "errorMessage": "injected: handler crashed",
                           "requestId": RID})
    logs.put_log_events(logGroupName=group, logStreamName="2026/01/01/[$LATEST]abc",
                        logEvents=[{"timestamp": now + i, "message": m}
                                   for i, m in enumerate(_lines(RID, "part-00001", injected))])
    run = _run_folder(tmp_path, [{"partition_id": "part-00001", "key": "k1",
                                  "error": "no record (handler crashed or timed out)"}])
    result = failure_logs(run, backend=moto_aws_backend)
    assert result.function_name == "cosmic-inference" and result.region == "us-east-1"
    [err] = result.by_partition["part-00001"]
    assert (err.error_type, err.error_message, err.request_id) == \
        ("Runtime.ExitError", "injected: handler crashed", RID)
    assert err.log_stream == "2026/01/01/[$LATEST]abc"
    assert main(["logs", str(run)]) == 0
    out = capsys.readouterr().out
    assert "part-00001" in out and "Runtime.ExitError: injected: handler crashed" in out and RID in out


def test_cosmic_logs_refuses_a_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    assert main(["logs", str(tmp_path / "nope")]) == 1
    assert "summary.json" in capsys.readouterr().err


def test_run_summary_gets_cloudwatch_error_column(moto_aws_backend: Any) -> None:
    """What an aws run does when it ends with failures: the summary's failed list carries the error."""
    from datetime import datetime, timezone

    from cosmic_utils.cloud.runner import _attach_cloudwatch_errors

    logs = moto_aws_backend.client("logs")
    logs.create_log_group(logGroupName="/aws/lambda/cosmic-inference")
    logs.create_log_stream(logGroupName="/aws/lambda/cosmic-inference", logStreamName="s")
    now = int(time.time() * 1000)
    timeout = f"2026-01-01T00:15:00.000Z {RID} Task timed out after 900.00 seconds"
    logs.put_log_events(logGroupName="/aws/lambda/cosmic-inference", logStreamName="s",
                        logEvents=[{"timestamp": now + i, "message": m}
                                   for i, m in enumerate(_lines(RID, "part-00004", timeout))])
    failed = [{"partition_id": "part-00004", "error": "no record (handler crashed or timed out)"},
              {"partition_id": "part-00005", "error": "bad data"}]
    t = datetime.now(timezone.utc)
    _attach_cloudwatch_errors(moto_aws_backend, "cosmic-inference", failed, t, t)
    assert failed[0]["cloudwatch_error"] == "Sandbox.Timedout: Task timed out after 900.00 seconds"
    assert failed[0]["log_stream"] == "s" and "cloudwatch_error" not in failed[1]


def test_cosmic_logs_on_a_local_run_with_an_injected_failure(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A local run whose partition fails on every attempt: its error is found in the container logs."""
    from test_handlers import make_dataset  # tests/ is on sys.path under pytest

    from cosmic_utils.cli import main
    from cosmic_utils.cloud import runner
    from cosmic_utils.cloud.local import LocalStack
    from cosmic_utils.jobs.reliability import write_tiny_artifact
    from cosmic_utils.runtime.storage import open_storage

    model = write_tiny_artifact(tmp_path / "model")
    make_dataset(open_storage(tmp_path / "data"), 3, samples=10)
    run_dir = tmp_path / "runs" / "inj"
    with LocalStack(concurrency=2) as stack:
        stack.set_faults([{"kind": "upload_error", "partition": "part-00001", "times": 99}])
        result = runner.run_pipeline(
            {"run_id": "inj", "data": str(tmp_path / "data"), "model": str(model),
             "results": "s3://cosmic-local-results/runs", "batch_size": 4, "max_concurrency": 2,
             "memory_mb": 1024, "timeout_s": 60, "threads": 1},
            backend="local", run_dir=run_dir, progress=False, timeout_s=300, local_stack=stack)
        stack.copy_logs(run_dir / "lambda-logs")
    assert [f["partition_id"] for f in result.summary["failed"]] == ["part-00001"]
    assert main(["logs", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "part-00001" in out and "InfrastructureError" in out and "injected fault" in out
    assert "part-00000" not in out and "part-00002" not in out
