"""The real-account pieces on moto (in process): teardown --check, the spend alarm, doctor's quota
reading, prices per region, the operator policy's structure and ``sweep --estimate``.

moto implements AWS Budgets, so the alarm is created and deleted there. moto implements neither
``lambda:GetAccountSettings`` nor Lambda's Service Quotas entry: the quota reader is tested with
botocore's Stubber on AWS's documented response shape, and on moto for the "not readable" path.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cosmic_utils import cli, config
from cosmic_utils.cloud import aws, lambda_zip, operator, preflight
from cosmic_utils.runtime import prices

RESULTS = "s3://unit-results-bucket/runs"
READS = ["s3://unit-data-bucket/datasets", "s3://unit-data-bucket/models"]
WHERE = ["--results", RESULTS, "--data", READS[0], "--model", READS[1], "--prefix", "unit"]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, lambda_zip.Package]:
    return lambda_zip.build_all(tmp_path_factory.mktemp("build"), with_deps=False)


def _cfg(packages: dict[str, lambda_zip.Package], prefix: str = "unit") -> aws.DeployConfig:
    results = RESULTS if prefix == "unit" else f"s3://{prefix}-results-bucket/runs"
    return aws.DeployConfig(results_uri=results, prefix=prefix, read_uris=READS, memory_mb=2048, timeout_s=120,
                            packages=packages)


def test_teardown_check_before_and_after(moto_aws_backend: aws.AwsBackend, packages: Any,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    be = moto_aws_backend
    be.client("s3").create_bucket(Bucket="unit-data-bucket")
    # another deployment in the same account, and an unrelated role: never listed
    be.deploy(_cfg(packages, prefix="other"))
    be.client("iam").create_role(RoleName="someone-elses", AssumeRolePolicyDocument="{}")
    assert be.inventory(_cfg(packages)) == []
    assert cli.main(["teardown", *WHERE, "--check"]) == 0
    assert "teardown --check: 0 resources" in capsys.readouterr().out
    be.deploy(_cfg(packages))
    be.ensure_budget("unit", 5.0, "me@example.org")
    left = be.inventory(_cfg(packages))
    assert left == sorted([("budget", "unit-spend"), ("iam role", "unit-lambda"), ("iam role", "unit-states"),
                           ("lambda", "unit-inference"), ("lambda", "unit-init"), ("lambda", "unit-summarize"),
                           ("log group", "/aws/lambda/unit-inference"), ("log group", "/aws/lambda/unit-init"),
                           ("log group", "/aws/lambda/unit-summarize"), ("s3 bucket", "unit-results-bucket"),
                           ("state machine", "unit-pipeline")])
    assert cli.main(["teardown", *WHERE, "--check"]) == 1  # resources remain
    out = capsys.readouterr().out
    assert "teardown --check: 11 resources" in out and "other-" not in out and "someone" not in out
    done = be.teardown(_cfg(packages))
    assert done["budget unit-spend"] == "deleted"
    assert cli.main(["teardown", *WHERE, "--check"]) == 0
    assert be.inventory(_cfg(packages, prefix="other"))  # the other deployment is untouched


def test_check_lists_packages_left_in_a_bucket_deploy_did_not_create(moto_aws_backend: aws.AwsBackend) -> None:
    be = moto_aws_backend
    be.client("s3").create_bucket(Bucket="unit-results-bucket")  # the user's own bucket: not ours
    be.client("s3").put_object(Bucket="unit-results-bucket", Key="_deploy/unit/lambda/x.zip", Body=b"z")
    be.client("s3").put_object(Bucket="unit-results-bucket", Key="runs/keep.json", Body=b"{}")
    cfg = aws.DeployConfig(results_uri=RESULTS, prefix="unit")
    assert be.inventory(cfg) == [("s3 objects", "s3://unit-results-bucket/_deploy/unit/lambda/ (1)")]


def test_budget_alarm_on_moto(moto_aws_backend: aws.AwsBackend) -> None:
    be = moto_aws_backend
    assert be.ensure_budget("unit", 12.5, "me@example.org") == "created"
    assert be.ensure_budget("unit", 12.5, "me@example.org") == "unchanged"
    got = be._budgets().describe_budget(AccountId=be.account(), BudgetName="unit-spend")["Budget"]
    assert got["BudgetLimit"] == {"Amount": "12.5", "Unit": "USD"} or float(got["BudgetLimit"]["Amount"]) == 12.5
    assert got["BudgetType"] == "COST" and got["TimeUnit"] == "MONTHLY"
    notes = be._budgets().describe_notifications_for_budget(AccountId=be.account(), BudgetName="unit-spend")
    assert sorted(n["Threshold"] for n in notes["Notifications"]) == [80.0, 100.0]
    assert {n["NotificationType"] for n in notes["Notifications"]} == {"ACTUAL"}  # real spend, not forecast
    assert be.delete_budget("unit") and not be.find_budget("unit-spend")


@pytest.mark.parametrize("usd,email,match", [(0.0, "a@b.org", "> 0"), (float("nan"), "a@b.org", "> 0"),
                                             (5.0, "not-an-address", "e-mail")])
def test_budget_request_refuses_bad_input(usd: float, email: str, match: str) -> None:
    with pytest.raises(aws.DeployError, match=match):
        aws.budget_request("123456789012", "x-spend", usd, email)


def test_deploy_budget_flags_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deploy", *WHERE, "--dry-run", "--budget-usd", "5"]) == 2
    assert "go together" in capsys.readouterr().err


# ------------------------------------------------------------------ doctor
def _stubbed_lambda(limit: int, unreserved: int) -> Any:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_response("get_account_settings", {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
                         "ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved},
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}})
    stub.activate()
    return client


def test_quota_from_get_account_settings_warns_on_the_10mb_runs() -> None:
    conc = preflight.read_concurrency(_stubbed_lambda(10, 10), None)
    assert (conc.limit, conc.unreserved, conc.source) == (10, 10, "lambda:GetAccountSettings")
    from cosmic_utils.analysis import simulate, sweep

    grid = sweep.load_grid(config.SWEEP_GRIDS_DIR / "aws_data_size.yaml")
    points = [(sweep.slug(c), p, simulate.partitions_for(p["data_gb"], p["partition_mb"]))
              for c in grid.combinations() for p in [{**grid.parameters, **c}]]
    checks = preflight.check_points(points, conc)
    assert all("throttled" in c.warning for c in checks)  # a new account's 10 is below every point
    big = preflight.check_points(points, preflight.Concurrency(1000, 900, "test"))
    warned = {c.slug for c in big if c.warning}
    assert "data_gb-12__partition_mb-10" in warned and "data_gb-1__partition_mb-25" not in warned
    assert all(c.parallel == min(c.partitions, 1000) for c in big)


def test_doctor_on_moto(moto_aws_backend: aws.AwsBackend, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--grid", str(config.SWEEP_GRIDS_DIR / "aws_data_size.yaml"),
                     "--region", "us-east-1"]) == 0
    out = capsys.readouterr().out
    account = moto_aws_backend.account()
    assert account not in out and f"account: ********{account[-4:]}" in out
    # moto has no GetAccountSettings: not readable, said so, every point warned about the default
    assert "not readable" in out and "up to 1000 parallel invocations" in out
    assert out.count("WARNING") == 14


def test_doctor_refuses_unknown_region(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--region", "ap-south-2"]) == 1
    err = capsys.readouterr().err
    assert "ap-south-2" in err and "add its prices under 'regions:'" in err


def test_mask_account() -> None:
    assert preflight.mask_account("123456789012") == "********9012"


# ------------------------------------------------------------------ prices by region
def test_region_prices_rows_and_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    assert prices.regions() == ["eu-west-1", "us-east-1", "us-east-2", "us-west-2"]
    east = prices.region_prices("us-east-1")
    assert east["checked"] and east["as_of"] == "2026-11-27" and east["lambda"]["gb_second_usd"]["x86_64"] > 0
    assert not prices.region_prices("eu-west-1")["checked"]  # added without internet: printed as unchecked
    with pytest.raises(prices.UnknownRegion, match="no row"):
        prices.region_prices("mars-north-1")
    assert cli.main(["deploy", *WHERE, "--dry-run", "--region", "mars-north-1"]) == 1
    assert "mars-north-1" in capsys.readouterr().err
    assert cli.main(["deploy", *WHERE, "--dry-run", "--region", "eu-west-1", "--partitions", "40"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["cost_ceiling"]["prices"]["region"] == "eu-west-1"


def test_a_regional_row_changes_the_ceiling(monkeypatch: pytest.MonkeyPatch) -> None:
    table = prices.load_prices()
    table["regions"]["us-west-2"] = {"lambda": {"gb_second_usd": {"x86_64": 1e-4}}, "as_of": "x", "source": "t"}
    monkeypatch.setattr(prices, "_PRICE_CACHE", table)
    cfg = aws.DeployConfig(results_uri=RESULTS, read_uris=READS, region="us-west-2")
    west = aws.plan(cfg, partitions=4)["cost_ceiling"]["total_usd"]
    east = aws.plan(aws.DeployConfig(results_uri=RESULTS, read_uris=READS, region="us-east-1"),
                    partitions=4)["cost_ceiling"]["total_usd"]
    assert west > 5 * east


# ------------------------------------------------------------------ operator policy (structure)
def test_operator_policy_is_scoped() -> None:
    pol = operator.operator_policy(prefix="cosmic", results_uri="s3://example-cosmic-results/runs",
                                   data_uris=["s3://example-cosmic-data/datasets", "s3://example-cosmic-data/models"])
    assert operator.check_operator_policy(pol, "cosmic", {"example-cosmic-results", "example-cosmic-data"}) == []
    stars = [s for s in pol["Statement"] if s["Resource"] == "*"]
    assert len(stars) == 1 and set(stars[0]["Action"]) == set(operator.UNSCOPED)
    pass_role = next(s for s in pol["Statement"] if s["Action"] == "iam:PassRole")
    assert pass_role["Resource"] == ["arn:aws:iam::*:role/cosmic-lambda", "arn:aws:iam::*:role/cosmic-states"]
    # the checker catches what a widened policy would hold
    wide = json.loads(json.dumps(pol))
    wide["Statement"].append({"Sid": "W", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*"})
    wide["Statement"].append({"Sid": "X", "Effect": "Allow", "Action": "lambda:DeleteFunction", "Resource": "*"})
    wide["Statement"].append({"Sid": "Y", "Effect": "Allow", "Action": "lambda:GetFunction",
                              "Resource": "arn:aws:lambda:*:*:function:*"})
    problems = " ".join(operator.check_operator_policy(wide, "cosmic", {"example-cosmic-results"}))
    assert "W: wildcard action" in problems and "X: Resource '*'" in problems and "Y: resource" in problems


@pytest.mark.parametrize("kw,match", [
    ({"prefix": "*"}, "prefix"), ({"prefix": "cosmic*"}, "prefix"),
    ({"results_uri": "s3://*/runs"}, "wildcard"), ({"data_uris": ["s3://data-bucket?/x"]}, "wildcard"),
    ({"data_uris": ["s3://example-Upper/x"]}, "naming rules"), ({"region": "*-east-1"}, "region"),
    ({"account": "1234*"}, "12 digits")])
def test_no_input_widens_the_operator_policy(kw: dict[str, Any], match: str) -> None:
    args = {"prefix": "cosmic", "results_uri": "s3://example-cosmic-results/runs", **kw}
    with pytest.raises(ValueError, match=match):
        operator.operator_policy(**args)


def test_shipped_operator_policy_is_the_commands_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["operator-policy", "--results", "s3://example-cosmic-results/runs",
                     "--data", "s3://example-cosmic-data/datasets", "--model", "s3://example-cosmic-data/models"]) == 0
    printed = json.loads(capsys.readouterr().out)
    shipped = json.loads((config.PROJECT_ROOT / "docs" / "operator-policy.example.json").read_text())
    assert printed == shipped
    assert cli.main(["operator-policy", "--results", "s3://*/x"]) == 2


# ------------------------------------------------------------------ estimate
def test_estimate_of_the_data_size_grid(capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.analysis.projection import project_point

    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "aws_data_size.yaml"), "--estimate", "--repeats", "1",
                     "--upload-mbit-s", "80", "--prepare-mb-s", "40"]) == 0
    out = capsys.readouterr().out
    expected = sum(project_point(gb, mb, 3008, 1000, None, "onnx").cost_usd
                   for gb in (1, 2, 4, 6, 8, 10, 12) for mb in (10, 25))
    assert f"~{expected:.4g} USD projected" in out  # the projection functions' (at the grid's engine), no model of its own
    gb = 2 * (1 + 2 + 4 + 6 + 8 + 10 + 12)  # each (size, partition size) prepared and uploaded once
    assert f"prepare 14 datasets, {gb:.4g} GB" in out and f"upload 14 datasets, {gb:.4g} GB" in out
    upload_s = gb * 1e9 * 8 / 80e6
    assert f"~{int(upload_s // 3600)}h{int(upload_s % 3600 // 60):02d}m at 80 Mbit/s" in out
    assert "1145" in out  # 12 GB of 10 MB partitions: past 1,000


def test_estimate_of_the_whole_study_counts_shared_datasets_once(capsys: pytest.CaptureFixture[str]) -> None:
    grids = [str(config.SWEEP_GRIDS_DIR / f"aws_{n}.yaml") for n in ("batch_size", "lambda_memory")]
    assert cli.main(["sweep", *grids, "--estimate"]) == 0
    out = capsys.readouterr().out
    # batch: one 0.1 GB / 100 MB dataset for five points; memory: one 1 GB / 25 MB dataset for four
    assert "TOTAL 9 points, 27 runs" in out and "upload 2 datasets, 1.1 GB" in out


def test_estimate_of_a_local_grid_has_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "study_batch_size.yaml"), "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "local: cost 0; wall clock projected from median of" in out and "not projected" not in out.split("TOTAL")[0]


def test_several_grids_only_with_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    g = str(config.SWEEP_GRIDS_DIR / "aws_batch_size.yaml")
    assert cli.main(["sweep", g, g, "--dry-run"]) == 2


def test_local_dry_run_prints_a_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "batch_size.yaml"), "--dry-run",
                     "--only", "batch_size=64", "--only", "batch_size=128"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL 2 points, 6 runs: ~0 USD projected, runs ~" in out and "local: cost 0; wall clock projected" in out
    assert "aws: PROJECTED" not in out


def test_aws_run_refuses_an_unpriced_region(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert cli.main(["run", "--backend", "aws", "--data", "s3://example-cosmic-data/datasets/x",
                     "--results", RESULTS]) == 1
    err = capsys.readouterr().err
    assert "cosmic run: region 'ap-south-2' has no row in the price table" in err and "regions:" in err
