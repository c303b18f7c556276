"""Deployment with boto3 against moto: resources, least-privilege policies, the filled definition;
deploying twice changes nothing; teardown leaves nothing; packaging for Lambda's Linux."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cloud import asl, aws, iam, lambda_zip

RESULTS = "s3://unit-results-bucket/runs"
READS = ["s3://unit-data-bucket/parts/25MB", "s3://unit-results-bucket/models/default"]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, lambda_zip.Package]:
    return lambda_zip.build_all(tmp_path_factory.mktemp("build"), with_deps=False)


@pytest.fixture()
def backend(moto_aws_backend: Any) -> Any:
    return moto_aws_backend


def _cfg(packages: dict[str, lambda_zip.Package], **kw: Any) -> aws.DeployConfig:
    return aws.DeployConfig(results_uri=RESULTS, prefix="unit", read_uris=READS, memory_mb=2048, timeout_s=120,
                            packages=packages, **kw)


def _inventory(be: aws.AwsBackend) -> dict[str, list[str]]:
    return {
        "functions": sorted(f["FunctionName"] for f in be.client("lambda").list_functions()["Functions"]),
        "roles": sorted(r["RoleName"] for r in be.client("iam").list_roles()["Roles"]),
        "machines": sorted(m["name"] for m in be.client("stepfunctions").list_state_machines()["stateMachines"]),
        "buckets": sorted(b["Name"] for b in be.client("s3").list_buckets()["Buckets"]),
        "log_groups": sorted(g["logGroupName"] for g in be.client("logs").describe_log_groups()["logGroups"]),
    }


def test_deploy_creates_everything(backend: aws.AwsBackend, packages: dict[str, lambda_zip.Package]) -> None:
    dep = backend.deploy(_cfg(packages))
    inv = _inventory(backend)
    assert inv["functions"] == ["unit-inference", "unit-init", "unit-summarize"]
    assert inv["roles"] == ["unit-lambda", "unit-states"]
    assert inv["machines"] == ["unit-pipeline"]
    assert inv["buckets"] == ["unit-results-bucket"]
    assert inv["log_groups"] == [f"/aws/lambda/unit-{n}" for n in ("inference", "init", "summarize")]
    assert set(dep.actions.values()) == {"created"}
    lam = backend.client("lambda")
    conf = lam.get_function(FunctionName="unit-inference")["Configuration"]
    assert conf["MemorySize"] == 2048 and conf["Timeout"] == 120 and conf["Runtime"] == lambda_zip.LAMBDA_RUNTIME
    assert conf["Handler"] == "handler.handler" and conf["State"] == "Active"
    assert conf["Environment"]["Variables"]["COSMIC_BACKEND"] == "aws"
    assert conf["CodeSha256"] == packages["inference"].sha256_b64
    # the filled definition names the deployed functions
    sfn = backend.client("stepfunctions")
    definition = sfn.describe_state_machine(stateMachineArn=dep.state_machine_arn)["definition"]
    assert not asl.placeholders(definition) and asl.check_definition(definition) == []
    for name in ("init", "inference", "summarize"):
        assert dep.function_arns[name] in definition
    # the bucket is private and encrypted
    s3 = backend.client("s3")
    block = s3.get_public_access_block(Bucket="unit-results-bucket")["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_encryption(Bucket="unit-results-bucket")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_policies_are_least_privilege(backend: aws.AwsBackend, packages: dict[str, lambda_zip.Package]) -> None:
    dep = backend.deploy(_cfg(packages))
    client = backend.client("iam")
    lam_pol = client.get_role_policy(RoleName="unit-lambda", PolicyName="unit-lambda-policy")["PolicyDocument"]
    sfn_pol = client.get_role_policy(RoleName="unit-states", PolicyName="unit-states-policy")["PolicyDocument"]
    lam_pol = json.loads(lam_pol) if isinstance(lam_pol, str) else lam_pol
    sfn_pol = json.loads(sfn_pol) if isinstance(sfn_pol, str) else sfn_pol
    for pol in (lam_pol, sfn_pol):
        assert iam.check_least_privilege(pol) == []
        text = json.dumps(pol)
        assert '"Action": "*"' not in text and '"Resource": "*"' not in text
    stmts = {s["Sid"]: s for s in lam_pol["Statement"]}
    assert stmts["ReadWriteResults"]["Resource"] == "arn:aws:s3:::unit-results-bucket/runs/*"
    assert "arn:aws:s3:::unit-data-bucket/parts/25MB/*" in stmts["ReadInputs"]["Resource"]
    assert all("PutObject" not in json.dumps(s["Action"]) for s in lam_pol["Statement"] if s["Sid"] == "ReadInputs")
    invoke = next(s for s in sfn_pol["Statement"] if s["Sid"] == "InvokeOwnFunctions")
    assert set(dep.function_arns.values()) <= set(invoke["Resource"])
    trust = client.get_role(RoleName="unit-states")["Role"]["AssumeRolePolicyDocument"]
    assert "states.amazonaws.com" in json.dumps(trust)
    assert iam.check_least_privilege({"Statement": [{"Sid": "x", "Action": "s3:*", "Resource": "*"}]})


def test_deploy_twice_is_a_no_op(backend: aws.AwsBackend, packages: dict[str, lambda_zip.Package]) -> None:
    first = backend.deploy(_cfg(packages))
    before = _inventory(backend)
    second = backend.deploy(_cfg(packages))
    assert _inventory(backend) == before
    assert second.state_machine_arn == first.state_machine_arn
    assert set(second.actions.values()) == {"unchanged"}, second.actions
    # a configuration change updates in place (waiter function_updated_v2), still no duplicate
    third = backend.deploy(_cfg(packages).__class__(**{**_cfg(packages).__dict__, "memory_mb": 4096}))
    assert third.actions["lambda unit-inference"] == "updated"
    assert backend.client("lambda").get_function(FunctionName="unit-inference")["Configuration"]["MemorySize"] == 4096
    assert _inventory(backend) == before


def test_large_package_goes_through_s3(backend: aws.AwsBackend, packages: dict[str, lambda_zip.Package]) -> None:
    backend.deploy(_cfg(packages, s3_upload_threshold=1))
    keys = [o["Key"] for o in backend.client("s3").list_objects_v2(Bucket="unit-results-bucket")["Contents"]]
    assert len([k for k in keys if k.startswith("_deploy/unit/lambda/")]) == 3
    conf = backend.client("lambda").get_function(FunctionName="unit-init")["Configuration"]
    assert conf["CodeSha256"] == packages["init"].sha256_b64


def test_teardown_leaves_nothing(backend: aws.AwsBackend, packages: dict[str, lambda_zip.Package]) -> None:
    backend.deploy(_cfg(packages))
    backend.client("s3").put_object(Bucket="unit-results-bucket", Key="runs/r/summary.json", Body=b"{}")
    done = backend.teardown(_cfg(packages))
    assert "s3 bucket unit-results-bucket" in done
    assert _inventory(backend) == {"functions": [], "roles": [], "machines": [], "buckets": [], "log_groups": []}
    assert backend.teardown(_cfg(packages)) == {}  # twice is safe


def test_teardown_never_deletes_a_bucket_it_did_not_create(backend: aws.AwsBackend,
                                                           packages: dict[str, lambda_zip.Package]) -> None:
    backend.client("s3").create_bucket(Bucket="unit-results-bucket")
    backend.client("s3").put_object(Bucket="unit-results-bucket", Key="theirs.txt", Body=b"x")
    backend.deploy(_cfg(packages, s3_upload_threshold=1))
    backend.teardown(_cfg(packages))
    keys = [o["Key"] for o in backend.client("s3").list_objects_v2(Bucket="unit-results-bucket")["Contents"]]
    assert keys == ["theirs.txt"]


def test_dry_run_plan_and_cost_ceiling(packages: dict[str, lambda_zip.Package]) -> None:
    out = aws.plan(_cfg(packages), partitions=40)
    kinds = [r["kind"] for r in out["resources"]]
    assert kinds.count("lambda") == 3 and "state machine" in kinds and kinds.count("iam role") == 2
    ceiling = out["cost_ceiling"]
    assert ceiling["invocations"] == 40 and ceiling["total_usd"] > ceiling["lambda_usd"] > 0
    # 40 invocations x 4 attempts x 120 s x 2 GB is the bulk of the ceiling
    assert ceiling["lambda_usd"] > 40 * 4 * 120 * 2 * 0.0000166


def test_package_contents_deterministic_and_torch_free(tmp_path: Path, packages: dict[str, lambda_zip.Package]) -> None:
    again = lambda_zip.build_package("inference", tmp_path, with_deps=False)
    assert again.sha256_b64 == packages["inference"].sha256_b64
    names = zipfile.ZipFile(again.path).namelist()
    assert "handler.py" in names and "cosmic_utils/runtime/steps/inference.py" in names
    assert "cosmic_utils/runtime/partition.py" in names and "cosmic_utils/runtime/prices.yaml" in names
    assert again.unzipped_bytes < lambda_zip.UNZIPPED_LIMIT_BYTES


def test_dependencies_built_for_lambda_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen["cmd"] = cmd
        wheel_dir = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(wheel_dir / "tinydep-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("tinydep/__init__.py", "X = 1\n")
        with zipfile.ZipFile(wheel_dir / "botocore-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("botocore/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(lambda_zip.subprocess, "run", fake_run)
    pkg = lambda_zip.build_package("summarize", tmp_path / "out", with_deps=True, wheel_dir=tmp_path / "wheels")
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "pip", "download"]
    for flag in ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "--only-binary=:all:", lambda_zip.LAMBDA_PYTHON):
        assert flag in cmd
    names = zipfile.ZipFile(pkg.path).namelist()
    assert "tinydep/__init__.py" in names and "botocore/__init__.py" not in names


def test_bad_prefix_rejected() -> None:
    with pytest.raises(aws.DeployError, match="prefix"):
        aws.Names("Bad_Prefix")


def test_cli_dry_run_prints_plan(capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    assert main(["deploy", "--dry-run", "--results", RESULTS, "--data", READS[0], "--partitions", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cost_ceiling"]["partitions"] == 8
    assert {r["name"] for r in out["resources"]} >= {"cosmic-inference", "cosmic-pipeline", "cosmic-lambda"}


@pytest.mark.slow
def test_real_package_runs_in_isolation(tmp_path: Path) -> None:
    """Build the inference zip WITH its Lambda dependencies (for CPython 3.11 so this machine can
    run it; Lambda gets 3.12) and run its handler with an isolated interpreter that sees only the
    zip: proves the package is complete and torch-free. Needs the package registry."""
    import shutil
    import sys

    from test_handlers import make_dataset

    from cosmic_utils.jobs.reliability import write_tiny_artifact
    from cosmic_utils.runtime.storage import open_storage

    try:
        pkg = lambda_zip.build_package("inference", tmp_path / "out", with_deps=True,
                                      wheel_dir=tmp_path / "wheels", python_version="3.11")
    except lambda_zip.PackagingError as exc:
        pytest.skip(f"no package registry: {exc}")
    code = tmp_path / "code"
    zipfile.ZipFile(pkg.path).extractall(code)
    assert not (code / "torch").exists()
    make_dataset(open_storage(tmp_path / "data"), 1, samples=5)
    model = write_tiny_artifact(tmp_path / "model")
    event = {"item": {"worker_id": 0, "partitions": [{"partition_id": "part-00000", "key": "part-00000.cpart"}]},
             "request": {"run_id": "iso", "data": str(tmp_path / "data"), "model": str(model),
                         "results": str(tmp_path / "results"), "batch_size": 2, "threads": 1}}
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import handler\n"
              "class C: aws_request_id='iso'; memory_limit_in_mb=1024\n"
              "print(json.dumps(handler.handler(json.loads(sys.argv[2]), C())))\n"
              "assert 'torch' not in sys.modules and 'boto3' not in sys.modules\n")
    python = shutil.which("python3.11") or sys.executable
    proc = subprocess.run([python, "-I", "-S", "-c", script, str(code), json.dumps(event)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"ok": 1, "failed": 0}
    rec = json.loads((tmp_path / "results" / "iso" / "records" / "part-00000.json").read_text())
    assert rec["status"] == "ok" and rec["samples"] == 5


@pytest.mark.parametrize("function", lambda_zip.FUNCTIONS)
def test_zip_holds_only_the_runtime(tmp_path: Path, function: str) -> None:
    """Allow-list: the handler, cosmic_utils/__init__.py and cosmic_utils/runtime/ - nothing else of the project."""
    names = zipfile.ZipFile(lambda_zip.build_package(function, tmp_path, with_deps=False).path).namelist()
    outside = [n for n in names
               if n not in ("handler.py", "cosmic_utils/__init__.py") and not n.startswith("cosmic_utils/runtime/")]
    assert outside == []
    runtime_dir = Path(lambda_zip.__file__).resolve().parent.parent / "runtime"
    expected = {f"cosmic_utils/runtime/{p.name}" for p in runtime_dir.glob("*.py")}
    assert expected <= set(names)  # and the whole runtime is there
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
