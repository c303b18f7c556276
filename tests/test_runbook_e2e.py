"""The runbook (docs/aws.md) against a stand-in account in a separate process.

`python -m cosmic_utils.cloud.standin` (moto's server with the Lambda hook, so the deployed
handler zips really run) is the account; from empty to empty through the CLI: data and model
uploaded, deploy, then either `cosmic run --backend aws` with an injected crash and `cosmic logs`
(fast, default run) or a two-point `backend: aws` sweep through notebook 03 whose records and
batch-size figure come from the same code as local ones (papermill kernels: marked slow), then
teardown; every resource listed before and after, the account empty at both ends.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cosmic_utils import config
from cosmic_utils.cli import main
from cosmic_utils.cloud import standin as standin_mod

REGION = "us-east-1"
ROOT = config.PROJECT_ROOT
#: The partition whose reading crashes the Inference handler: only the failing run's dataset has it.
FAILING = "part-00003"


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
                            stdout=subprocess.PIPE, stderr=(tmp_path / "standin.log").open("w"), text=True,
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


WHERE = ["--results", "s3://example-cosmic-results/runs", "--data", "s3://example-cosmic-data/datasets",
         "--model", "s3://example-cosmic-data/models"]


def _up(tmp_path: Path, model: Path, gb: float, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Runbook section 4 up to deploy: data bucket, a dataset and the model uploaded, deploy.
    Returns ``(data_uri, model_uri)``."""
    import boto3

    assert all(not v for v in _inventory().values())  # an empty account
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="example-cosmic-data")  # `aws s3 mb`
    data_uri = "s3://example-cosmic-data/datasets/small"
    assert main(["data", "prepare", "--gb", str(gb), "--partition-mb", "0.5", "--out", str(tmp_path / "ds"),
                 "--no-progress"]) == 0
    assert main(["data", "upload", str(tmp_path / "ds"), data_uri]) == 0
    assert main(["data", "verify", data_uri]) == 0
    capsys.readouterr()
    assert main(["model", "upload", str(model), "s3://example-cosmic-data/models"]) == 0
    model_uri = capsys.readouterr().out.strip()
    assert model_uri.startswith("s3://example-cosmic-data/models/")
    assert main(["deploy", *WHERE, "--no-deps"]) == 0
    deployed = _inventory()
    assert deployed["functions"] == ["cosmic-inference", "cosmic-init", "cosmic-summarize"]
    assert deployed["state_machines"] == ["cosmic-pipeline"]
    assert deployed["roles"] == ["cosmic-lambda", "cosmic-states"]
    assert deployed["buckets"] == ["example-cosmic-data", "example-cosmic-results"]
    return data_uri, model_uri


def _down() -> None:
    """Runbook section 5: teardown, the data bucket removed, nothing left."""
    import boto3

    assert main(["teardown", *WHERE]) == 0
    s3 = boto3.client("s3", region_name=REGION)
    for key in s3.list_objects_v2(Bucket="example-cosmic-data").get("Contents", []):
        s3.delete_object(Bucket="example-cosmic-data", Key=key["Key"])
    s3.delete_bucket(Bucket="example-cosmic-data")  # `aws s3 rb --force`
    assert all(not v for v in _inventory().values()), _inventory()


def test_runbook_run_and_logs_of_an_injected_crash(standin: str, tmp_path: Path, untrained_artifact_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Empty to empty: `cosmic run --backend aws` really runs the handlers; the crash of partition
    FAILING is in the stand-in's CloudWatch, and `cosmic logs` brings it next to the partition."""
    data_uri, model_uri = _up(tmp_path, untrained_artifact_dir, 0.002, capsys)  # 4 partitions
    run = tmp_path / "runs" / "failing"
    rc = main(["run", "--backend", "aws", "--data", data_uri, "--model", model_uri,
               "--results", "s3://example-cosmic-results/runs", "--out", str(run), "--no-progress"])
    assert rc != 0  # a failed partition fails the run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backend"] == "aws" and summary["partitions_ok"] == 3
    assert [f["partition_id"] for f in summary["failed"]] == [FAILING]
    assert len(list((run / "predictions").iterdir())) == 3  # the others ran for real
    capsys.readouterr()
    assert main(["logs", str(run)]) == 0
    out = capsys.readouterr().out
    assert FAILING in out and "Runtime.ExitError" in out, out
    _down()


@pytest.mark.slow
def test_runbook_aws_sweep_records_and_figure(standin: str, tmp_path: Path, untrained_artifact_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Empty to empty with a two-point `backend: aws` sweep (notebook 03 per point, papermill), its
    records read and its figure drawn by the code that reads and draws local sweeps."""
    from cosmic_utils.analysis import plots
    from cosmic_utils.analysis.records import load_sweeps

    data_uri, model_uri = _up(tmp_path, untrained_artifact_dir, 0.001, capsys)  # 2 partitions: FAILING not among them
    grid = tmp_path / "aws_batch_size.yaml"
    grid.write_text(yaml.safe_dump({
        "name": "batch_size", "notebook": str(ROOT / "notebooks" / "03_lambda_sweep.ipynb"),
        "parameters": {"backend": "aws", "results": "s3://example-cosmic-results/runs", "data_location": data_uri,
                       "model_dir": model_uri, "data_gb": 0.001, "partition_mb": 0.5, "max_concurrency": 2},
        "grid": {"batch_size": [16, 64]}}))
    sweeps = tmp_path / "sweeps"
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", sweeps)
    assert main(["sweep", str(grid), "--max-usd", "1"]) == 0
    points = sorted(p for p in (sweeps / "batch_size").iterdir() if p.is_dir())
    assert len(points) == 2
    for point in points:
        summary = json.loads((point / "summary.json").read_text())
        assert summary["backend"] == "aws" and summary["partitions_failed"] == 0 and summary["partitions_ok"] == 2

    table, summaries = load_sweeps(sweeps)
    assert set(table["batch_size"]) == {16, 64}
    fig = plots.FIGURES["lambda_batch_size"]({"sweeps": table, "sweep_summary": summaries})
    lines = [ln for ln in fig.axes[1].get_lines() if "aws backend" in str(ln.get_label())]
    assert len(lines) == 1 and sorted(lines[0].get_xdata()) == [16, 64]
    assert "[measured: aws backend]" in str(lines[0].get_label())
    _down()


def test_standin_refuses_a_bad_fault_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fault plan that is not a JSON list is refused (exit 2, the file named) before any server starts."""
    bad = tmp_path / "faults.json"
    bad.write_text(json.dumps({"kind": "crash"}))
    assert standin_mod.main(["--port", str(_free_port()), "--faults", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
    assert standin_mod.main(["--port", str(_free_port()), "--faults", str(tmp_path / "missing.json")]) == 2
