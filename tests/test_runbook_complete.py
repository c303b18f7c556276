"""docs/aws.md executed start to finish against the stand-in account (moto's server in its own
process, the handlers really run), recording every AWS API call the commands make.

From "empty account" to "teardown --check: 0 resources": teardown --check (empty), doctor, the
data bucket (the user's `aws s3 mb`, not a cosmic command), data prepare / upload / verify, model
upload, deploy with the spend alarm, teardown --check (resources listed, exit 1), one point of
each aws grid (sweeps/aws_*.yaml: its batch size, memory, world size and Map concurrency) at a
tiny data size through ``cosmic run --backend aws``, ``cosmic logs`` of a run with an injected
crash, teardown, teardown --check (0, exit 0).

Every operation the commands sent is mapped to its IAM actions (``operator.ACTIONS_OF``) and
compared with ``cosmic operator-policy``: every action used is in the policy and the policy holds
no action that was not used. The Ctrl-C path of ``cosmic run`` (StopExecution) is the one call
the scripted runbook cannot reach by itself; it is called here as ``cosmic run`` calls it.

Set COSMIC_RUNBOOK_TRANSCRIPT=FILE to keep the printout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_runbook_e2e import FAILING, REGION, WHERE, _inventory, standin  # noqa: F401  (fixture)

from cosmic_utils import config
from cosmic_utils.analysis import sweep
from cosmic_utils.cli import main
from cosmic_utils.cloud import operator

GRIDS = ("aws_batch_size", "aws_partition_size", "aws_data_size", "aws_lambda_memory")


class Recorder:
    """Every botocore operation made while ``on`` (service name as boto3 spells it, operation)."""

    def __init__(self) -> None:
        self.calls: set[tuple[str, str]] = set()
        self.on = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import botocore.client

        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def recording(client: Any, operation_name: str, api_params: Any) -> Any:
            if recorder.on:
                recorder.calls.add((client.meta.service_model.service_name, operation_name))
            return original(client, operation_name, api_params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)


def test_runbook_start_to_finish_and_the_operator_policy(standin: str, tmp_path: Path,  # noqa: F811
                                                         untrained_artifact_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    rec = Recorder()
    rec.install(monkeypatch)
    transcript: list[str] = []

    def cosmic(*args: str, expect: int = 0) -> str:
        rec.on = True
        try:
            rc = main(list(args))
        finally:
            rec.on = False
        cap = capsys.readouterr()
        transcript.append(f"$ cosmic {' '.join(args)}\n{cap.out}{cap.err}[exit {rc}]")
        assert rc == expect, transcript[-1]
        return cap.out

    assert all(not v for v in _inventory().values())  # an empty account
    assert "teardown --check: 0 resources" in cosmic("teardown", *WHERE, "--check")
    out = cosmic("doctor", "--grid", str(config.SWEEP_GRIDS_DIR / "aws_data_size.yaml"))
    assert "account: ********" in out and "lambda concurrency" in out
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="example-cosmic-data")  # `aws s3 mb`
    data = {}
    for name, gb in (("tiny", 0.001), ("crash", 0.002)):  # 2 partitions; 4 with FAILING among them
        data[name] = f"s3://example-cosmic-data/datasets/{name}"
        cosmic("data", "prepare", "--gb", str(gb), "--partition-mb", "0.5", "--out", str(tmp_path / name),
               "--no-progress")
        cosmic("data", "upload", str(tmp_path / name), data[name])
        cosmic("data", "verify", data[name])
    model = cosmic("model", "upload", str(untrained_artifact_dir), "s3://example-cosmic-data/models").strip()
    out = cosmic("deploy", *WHERE, "--no-deps", "--budget-usd", "5", "--budget-email", "me@example.org")
    assert "created  budget cosmic-spend" in out
    out = cosmic("teardown", *WHERE, "--check", expect=1)
    assert "teardown --check: 11 resources" in out
    # an older deployment (another version of the code and state machine, as after `git pull`): deploy
    # again updates both in place
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "cosmic-pipeline")
    old = json.loads(sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["definition"])
    old["Comment"] = "an older version"
    sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=json.dumps(old))
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    boto3.client("lambda", region_name=REGION).update_function_code(FunctionName="cosmic-summarize",
                                                                    ZipFile=buf.getvalue())
    out = cosmic("deploy", *WHERE, "--no-deps", "--budget-usd", "5", "--budget-email", "me@example.org")
    assert "updated  state machine cosmic-pipeline" in out and "updated  lambda cosmic-summarize" in out, out
    assert "unchanged  budget cosmic-spend" in out

    arns = []
    for name in GRIDS:  # one point of each aws grid, its data size made tiny
        grid = sweep.load_grid(config.SWEEP_GRIDS_DIR / f"{name}.yaml")
        point = {**grid.parameters, **grid.combinations()[-1]}
        run = tmp_path / "runs" / name
        args = ["run", "--backend", "aws", "--data", data["tiny"], "--model", model,
                "--results", "s3://example-cosmic-results/runs", "--out", str(run), "--no-progress",
                "--batch-size", str(point["batch_size"]), "--memory-mb", str(point["memory_mb"]),
                "--max-concurrency", str(min(int(point["max_concurrency"]), 2)), "--max-usd", "1"]
        if point.get("world_size"):
            args += ["--world-size", str(point["world_size"])]
        out = cosmic(*args)
        assert "BILLED " in out and "beside the PROJECTION" in out and " report" in out  # REPORT-line durations
        summary = json.loads((run / "summary.json").read_text())
        assert summary["partitions_ok"] == 2 and summary["partitions_failed"] == 0
        arns.append(summary.get("execution_arn"))
    run = tmp_path / "runs" / "crash"
    cosmic("run", "--backend", "aws", "--data", data["crash"], "--model", model,
           "--results", "s3://example-cosmic-results/runs", "--out", str(run), "--no-progress", expect=3)
    assert FAILING in cosmic("logs", str(run))

    # the Ctrl-C path of `cosmic run`: StopExecution (on an execution that has ended: refused, logged)
    from cosmic_utils.cloud import aws, runner

    execution = json.loads((run / "summary.json").read_text()).get("execution_arn") or arns[0]
    rec.on = True
    runner._stop_after_interrupt(aws.AwsBackend(region=REGION), execution, "aws", "SIGINT")
    rec.on = False

    out = cosmic("teardown", *WHERE)
    assert "deleted  budget cosmic-spend" in out
    assert "teardown --check: 0 resources" in cosmic("teardown", *WHERE, "--check")
    s3 = boto3.client("s3", region_name=REGION)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="example-cosmic-data"):
        for key in page.get("Contents", []):
            s3.delete_object(Bucket="example-cosmic-data", Key=key["Key"])
    s3.delete_bucket(Bucket="example-cosmic-data")  # `aws s3 rb --force`
    assert all(not v for v in _inventory().values()), _inventory()

    # ---- the operator policy against every call made
    used = {a for service, op in rec.calls for a in operator.iam_actions(service, op)}
    policy = json.loads(cosmic("operator-policy", *WHERE))
    allowed = operator.policy_actions(policy)
    transcript.append("API operations recorded: " + ", ".join(sorted(f"{s}:{o}" for s, o in rec.calls)))
    if os.environ.get("COSMIC_RUNBOOK_TRANSCRIPT"):
        Path(os.environ["COSMIC_RUNBOOK_TRANSCRIPT"]).write_text("\n\n".join(transcript) + "\n")
    assert used - allowed == set(), f"used but not in the policy: {sorted(used - allowed)}"
    assert allowed - used == set(), f"in the policy but never used: {sorted(allowed - used)}"
