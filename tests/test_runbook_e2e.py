"""The runbook (docs/aws.md) against a separate moto server process standing in for an account.

From an empty stand-in account to an empty one through the CLI: data and model uploaded, deploy,
`cosmic logs` of an injected failure, teardown; every resource listed before and after. Lambda
functions are not invoked here (a separate moto server would need Docker to run them): the sweep
itself runs on the local backend elsewhere (test_local_backend, test_sweep).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cli import main

REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def standin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """`python -m cosmic_utils.cloud.standin` in its own process; an injected crash of every
    invocation that reads partition ``FAILING`` (a partition only the failing run's dataset has)."""
    port = _free_port()
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "crash", "function": "cosmic-inference", "partition": FAILING}]))
    proc = subprocess.Popen([sys.executable, "-m", "cosmic_utils.cloud.standin", "--port", str(port),
                             "--faults", str(faults), "--concurrency", "2", "--workdir", str(tmp_path / "standin")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(standin_mod.READY), line
        for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                           ("AWS_DEFAULT_REGION", REGION), ("AWS_ENDPOINT_URL", url),
                           ("COSMIC_LAMBDA_DEPS", "0"), ("PYTHONPATH", str(ROOT))):
            monkeypatch.setenv(var, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _inventory() -> dict[str, list[str]]:
    import boto3

    s = boto3.session.Session(region_name=REGION)
    return {
        "buckets": sorted(b["Name"] for b in s.client("s3").list_buckets()["Buckets"]),
        "functions": sorted(f["FunctionName"] for f in s.client("lambda").list_functions()["Functions"]),
        "roles": sorted(r["RoleName"] for r in s.client("iam").list_roles()["Roles"]),
        "state_machines": sorted(m["name"] for m in s.client("stepfunctions").list_state_machines()["stateMachines"]),
        "log_groups": sorted(g["logGroupName"] for g in s.client("logs").describe_log_groups()["logGroups"]),
    }


def test_runbook_from_empty_to_empty(moto_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    from cosmic_utils.model.artifacts import create_untrained_artifact

    empty = _inventory()
    assert all(not v for v in empty.values()), empty
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="example-cosmic-data")  # `aws s3 mb`

    data_uri = "s3://example-cosmic-data/datasets/small"
    assert main(["data", "prepare", "--gb", "0.004", "--partition-mb", "2", "--out", str(tmp_path / "ds"),
                 "--no-progress"]) == 0
    assert main(["data", "upload", str(tmp_path / "ds"), data_uri]) == 0
    assert main(["data", "verify", data_uri]) == 0
    create_untrained_artifact(tmp_path / "model", seed=0, with_onnx=False)
    capsys.readouterr()
    assert main(["model", "upload", str(tmp_path / "model"), "s3://example-cosmic-data/models"]) == 0
    model_uri = capsys.readouterr().out.strip()
    assert model_uri.startswith("s3://example-cosmic-data/models/")

    where = ["--results", "s3://example-cosmic-results/runs", "--data", "s3://example-cosmic-data/datasets",
             "--model", "s3://example-cosmic-data/models"]
    assert main(["deploy", *where, "--no-deps"]) == 0
    deployed = _inventory()
    assert deployed["functions"] == ["cosmic-inference", "cosmic-init", "cosmic-summarize"]
    assert deployed["state_machines"] == ["cosmic-pipeline"]
    assert "example-cosmic-results" in deployed["buckets"]

    # An injected failure in the Inference log group, and a run folder that lists it as failed.
    logs = boto3.client("logs", region_name=REGION)
    rid = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
    logs.create_log_stream(logGroupName="/aws/lambda/cosmic-inference", logStreamName="s1")
    now = int(time.time() * 1000)
    lines = [f"START RequestId: {rid} Version: $LATEST",
             f"[INFO]\t2026-01-01T00:00:00.000Z\t{rid}\tcosmic partitions: part-00001 run e2e",
             f"2026-01-01T00:15:00.000Z {rid} Task timed out after 900.00 seconds",
             f"END RequestId: {rid}"]
    logs.put_log_events(logGroupName="/aws/lambda/cosmic-inference", logStreamName="s1",
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])
    run = tmp_path / "runs" / "e2e"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "run_id": "e2e", "backend": "aws",
        "failed": [{"partition_id": "part-00001", "key": "part-00001.cpart",
                    "error": "no record (handler crashed or timed out)"}],
        "executions": [{"execution_arn": f"arn:aws:states:{REGION}:123456789012:execution:cosmic-pipeline:e2e-1"}]}))
    capsys.readouterr()
    assert main(["logs", str(run)]) == 0
    out = capsys.readouterr().out
    assert "part-00001" in out and "Sandbox.Timedout: Task timed out after 900.00 seconds" in out and rid in out

    assert main(["teardown", *where]) == 0
    for key in s3.list_objects_v2(Bucket="example-cosmic-data").get("Contents", []):
        s3.delete_object(Bucket="example-cosmic-data", Key=key["Key"])
    s3.delete_bucket(Bucket="example-cosmic-data")  # `aws s3 rb --force`
    assert _inventory() == empty

