"""Security of what a user deploys and of the repository itself.

* IAM: the generated policy documents (dry run and deploy) have no ``Action: "*"``, no
  service-wide ``s3:*`` style action and no ``Resource: "*"``; every resource is one of the
  deployment's buckets / prefixes / functions / log groups / state machine.
* Buckets: public access blocked and SSE on (moto), also for a results bucket that existed before.
* The allow-list reaches the functions' configuration; fault injection never reaches the zips.
* The repository holds no credentials, no real account ids and no personal bucket names.
* Loading the published pickle is an explicit trust decision (``--trust-pickle``).
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils import config
from cosmic_utils.cloud import aws, iam, lambda_zip

RESULTS = "s3://sec-results-bucket/runs"
DATA = "s3://sec-data-bucket/parts/25MB"
MODEL = "s3://sec-results-bucket/models/default"
REGION, ACCOUNT = "us-east-1", "123456789012"


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return list(policy["Statement"])


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _policies() -> dict[str, dict[str, Any]]:
    functions = [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sec-{n}" for n in lambda_zip.FUNCTIONS]
    return {
        "lambda": iam.lambda_policy(region=REGION, account=ACCOUNT, prefix="sec", read_uris=[DATA, MODEL],
                                    results_uri=RESULTS),
        "states": iam.states_policy(region=REGION, account=ACCOUNT, function_arns=functions,
                                    state_machine_name="sec-pipeline", results_uri=RESULTS),
    }


@pytest.mark.parametrize("which", ["lambda", "states"])
def test_no_wildcard_actions_or_resources(which: str) -> None:
    policy = _policies()[which]
    assert iam.check_least_privilege(policy) == []
    for stmt in _statements(policy):
        assert stmt["Effect"] == "Allow"
        for action in _as_list(stmt["Action"]):
            assert action != "*" and not action.endswith(":*") and "*" not in action.split(":")[0], action
        for resource in _as_list(stmt["Resource"]):
            assert resource != "*" and not re.fullmatch(r"arn:aws:[a-z0-9-]+:::?\*", resource), resource


def test_resources_are_scoped_to_the_deployment() -> None:
    allowed = [
        r"arn:aws:s3:::sec-results-bucket(/runs/\*|/models/default/\*)?",
        r"arn:aws:s3:::sec-data-bucket(/parts/25MB/\*)?",
        rf"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/sec-\*(:\*)?",
        rf"arn:aws:lambda:{REGION}:{ACCOUNT}:function:sec-(init|inference|summarize)(:\*)?",
        rf"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:sec-pipeline",
        rf"arn:aws:states:{REGION}:{ACCOUNT}:execution:sec-pipeline/\*",
    ]
    for name, policy in _policies().items():
        for stmt in _statements(policy):
            for resource in _as_list(stmt["Resource"]):
                assert any(re.fullmatch(p, resource) for p in allowed), f"{name}: {resource} is not scoped"
            # listing a bucket is limited to the run's prefixes by a condition
            if stmt["Action"] == "s3:ListBucket":
                prefixes = stmt["Condition"]["StringLike"]["s3:prefix"]
                assert all(p.startswith(("runs", "parts/25MB", "models/default")) for p in prefixes)
    lam = {s["Sid"]: s for s in _statements(_policies()["lambda"])}
    # inputs are read-only; only the results prefix is writable
    assert _as_list(lam["ReadInputs"]["Action"]) == ["s3:GetObject"]
    assert lam["ReadWriteResults"]["Resource"] == "arn:aws:s3:::sec-results-bucket/runs/*"
    writes = [s for s in _statements(_policies()["lambda"]) if "s3:PutObject" in _as_list(s["Action"])]
    assert [s["Resource"] for s in writes] == ["arn:aws:s3:::sec-results-bucket/runs/*"]
    assert not any("Delete" in a for s in _statements(_policies()["lambda"]) for a in _as_list(s["Action"]))


def test_least_privilege_check_refuses_wildcards() -> None:
    for bad in ({"Sid": "a", "Action": "*", "Resource": "arn:aws:s3:::x/*"},
                {"Sid": "b", "Action": "s3:*", "Resource": "arn:aws:s3:::x/*"},
                {"Sid": "c", "Action": "s3:GetObject", "Resource": "*"}):
        assert iam.check_least_privilege({"Statement": [bad]})


def test_dry_run_documents_are_least_privilege() -> None:
    cfg = aws.DeployConfig(results_uri=RESULTS, prefix="sec", read_uris=[DATA, MODEL])
    plan = aws.plan(cfg, partitions=10)
    policies = [r["policy"] for r in plan["resources"] if r["kind"] == "iam role"]
    assert len(policies) == 2
    for pol in policies:
        assert iam.check_least_privilege(pol) == []
        text = json.dumps(pol)
        assert '"Resource": "*"' not in text and '"Action": "*"' not in text


@pytest.fixture()
def moto_backend(moto_aws_backend: Any) -> Any:
    return moto_aws_backend


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, lambda_zip.Package]:
    return lambda_zip.build_all(tmp_path_factory.mktemp("build"), with_deps=False)


@pytest.mark.parametrize("pre_existing", [False, True])
def test_results_bucket_private_and_encrypted(moto_backend: aws.AwsBackend, packages: dict[str, Any],
                                              pre_existing: bool) -> None:
    s3 = moto_backend.client("s3")
    if pre_existing:
        s3.create_bucket(Bucket="sec-results-bucket")
    cfg = aws.DeployConfig(results_uri=RESULTS, prefix="sec", read_uris=[DATA, MODEL], packages=packages)
    dep = moto_backend.deploy(cfg)
    if pre_existing:  # issue 13: a bucket deploy did not create is never modified, and deploy says so
        assert dep.actions["s3 bucket sec-results-bucket"].startswith("existing, not modified")
        assert "public access is not fully blocked" in dep.actions["s3 bucket sec-results-bucket"]
        with pytest.raises(Exception, match="NoSuchPublicAccessBlockConfiguration"):
            s3.get_public_access_block(Bucket="sec-results-bucket")
        return
    block = s3.get_public_access_block(Bucket="sec-results-bucket")["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                     "RestrictPublicBuckets": True}
    rule = s3.get_bucket_encryption(Bucket="sec-results-bucket")["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    grants = s3.get_bucket_acl(Bucket="sec-results-bucket")["Grants"]
    assert not [g for g in grants if "AllUsers" in json.dumps(g) or "AuthenticatedUsers" in json.dumps(g)]
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):  # no bucket policy (so none that opens it)
        s3.get_bucket_policy(Bucket="sec-results-bucket")
    # the functions carry the deployment's allow-list, which Init enforces
    env = moto_backend.client("lambda").get_function(FunctionName="sec-init")["Configuration"]["Environment"]
    assert json.loads(env["Variables"]["COSMIC_ALLOWED_READ"]) == sorted([DATA, MODEL])
    assert json.loads(env["Variables"]["COSMIC_ALLOWED_RESULTS"]) == [RESULTS]


def test_zips_hold_no_fault_injection_code(packages: dict[str, lambda_zip.Package]) -> None:
    for pkg in packages.values():
        with zipfile.ZipFile(pkg.path) as zf:
            for name in zf.namelist():
                text = zf.read(name).decode("utf-8", "ignore")
                assert "COSMIC_FAULT_PLAN" not in text and "lambda_runtime" not in name, name


def test_request_cannot_carry_faults_or_code() -> None:
    from cosmic_utils.runtime.request import RequestError, parse_request

    base = {"run_id": "r", "data": "s3://sec-data-bucket/x", "model": "m", "results": RESULTS}
    for extra in ({"faults": [{"kind": "crash"}]}, {"script": "x.py"}, {"fault_plan": "/tmp/plan.json"}):
        with pytest.raises(RequestError):
            parse_request({**base, **extra})


# ------------------------------------------------------------------ the repository
def _repo_text_files() -> list[Path]:
    root = config.PROJECT_ROOT
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for rel in out:
        path = root / rel
        if not rel or not path.is_file() or path.suffix in (".png", ".pdf", ".onnx", ".pt", ".cpart", ".zip", ".whl"):
            continue
        if path.stat().st_size > 5_000_000:
            continue
        files.append(path)
    return files


#: Placeholder account ids: AWS documentation's and moto's default, and all zeros.
PLACEHOLDER_ACCOUNTS = {"123456789012", "000000000000"}
#: Bucket names that are clearly examples or test fixtures (anything else looks personal).
EXAMPLE_BUCKET = re.compile(
    r"(\{.*|\$.*|YOUR-.*|your-.*|example-.*|test-.*|unit-.*|sec-.*|cosmic-local-.*|no-such-.*|"
    r"bucket|b|data|stream|res-bucket|data-bucket|d-bucket|b-bucket|x|my-bucket)")


def test_repository_has_no_secrets_accounts_or_personal_buckets() -> None:
    key_id = re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b")
    secret = re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?([A-Za-z0-9/+]{40})")
    arn_account = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):")
    bare_account = re.compile(r"(?i)(account[_ -]?id|aws_account)\W{0,5}(\d{12})\b")
    bucket = re.compile(r"s3://([A-Za-z0-9.{}<>$_-]+)")
    problems = []
    files = _repo_text_files()
    assert len(files) > 50
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in key_id.finditer(text):
            problems.append(f"{path}: access key id {m.group(0)[:8]}...")
        if secret.search(text):
            problems.append(f"{path}: secret access key")
        for m in list(arn_account.finditer(text)) + list(bare_account.finditer(text)):
            acct = m.group(m.lastindex or 1)
            if acct not in PLACEHOLDER_ACCOUNTS:
                problems.append(f"{path}: account id {acct}")
        for m in bucket.finditer(text):
            name = m.group(1).rstrip(".")
            if not EXAMPLE_BUCKET.fullmatch(name):
                problems.append(f"{path}: bucket name {name!r} (use example-... / YOUR-... placeholders)")
    assert not problems, "\n".join(sorted(set(problems)))


def test_scanner_catches_what_it_should(tmp_path: Path) -> None:
    """The patterns above do match real-looking secrets (so the repository test can fail)."""
    fake_key = "AKIA" + "ABCDEFGHIJKLMNOP"
    assert re.search(r"\b(AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b", f"key = {fake_key}")
    assert re.search(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):", "arn:aws:iam::" + "98765" + "4321098:role/x")
    assert not EXAMPLE_BUCKET.fullmatch("jdoe-astro-private")


# ------------------------------------------------------------------ pickles
def test_published_pickle_needs_explicit_trust() -> None:
    from cosmic_utils.cli import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(["model", "load-published", "ckpt.pt", "--out", "x"])
    except SystemExit:
        pytest.skip("cosmic model load-published not available in this build")
    assert args.trust_pickle is False
    assert parser.parse_args(["model", "load-published", "ckpt.pt", "--out", "x", "--trust-pickle"]).trust_pickle
    import inspect

    from cosmic_utils.model import checkpoint

    assert inspect.signature(checkpoint.load_published_checkpoint).parameters["trust"].default is False
