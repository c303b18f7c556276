"""Deploy, run and tear down the pipeline with boto3 (the ``aws`` backend; ``local`` points it at moto).

Create-or-update, safe to run twice, every resource named ``<prefix>-...``; a bucket deploy did not
create is never modified; teardown removes the rest.
Reasoning: docs/pipeline.md#deployment-cosmic_utilscloudaws, docs/aws.md
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cosmic_utils.cloud import asl, iam, lambda_zip, operator
from cosmic_utils.cloud.cloudwatch import fetch_log_events
from cosmic_utils.runtime import prices
from cosmic_utils.runtime.request import ALLOWED_READ_ENV, ALLOWED_RESULTS_ENV

log = logging.getLogger(__name__)

OWNER_TAG = "cosmic:deployment"


class DeployError(RuntimeError):
    """A deployment step failed; the message names the resource."""


@dataclass(frozen=True)
class Names:
    """Deterministic resource names under ``prefix``."""

    prefix: str

    def __post_init__(self) -> None:
        if not re.fullmatch(iam.PREFIX_PATTERN, self.prefix):
            raise DeployError(f"deployment prefix {self.prefix!r} must match {iam.PREFIX_PATTERN}")

    def function(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def lambda_role(self) -> str:
        return f"{self.prefix}-lambda"

    @property
    def states_role(self) -> str:
        return f"{self.prefix}-states"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-pipeline"

    def log_group(self, name: str) -> str:
        return f"/aws/lambda/{self.function(name)}"


@dataclass
class DeployConfig:
    """What to deploy. ``results_uri`` is ``s3://bucket/prefix``; ``read_uris`` are data and model."""

    results_uri: str
    prefix: str = "cosmic"
    read_uris: list[str] = field(default_factory=list)
    memory_mb: int = 3008
    timeout_s: int = 900
    #: Lambda architecture the zips are built for: x86_64 (measured) or arm64 (20 % cheaper, not measured).
    arch: str = "x86_64"
    step_memory_mb: int = 1024  # Init and Summarize
    step_timeout_s: int = 900
    with_deps: bool = True
    backend_label: str = "aws"
    build_dir: Path | None = None
    log_retention_days: int = 14
    s3_upload_threshold: int = lambda_zip.DIRECT_UPLOAD_LIMIT_BYTES
    #: Region whose prices the dry run's ceiling uses (None: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1).
    region: str | None = None
    packages: dict[str, lambda_zip.Package] | None = None
    #: The allow-list Init enforces on every request (locations; ``s3://bucket/prefix`` or local
    #: folders). ``None``: ``read_uris`` and ``[results_uri]``, the same scope as the IAM policy.
    allowed_read: list[str] | None = None
    allowed_results: list[str] | None = None

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def results_bucket(self) -> str:
        return iam._split(self.results_uri)[0]

    @property
    def package_prefix(self) -> str:
        return f"_deploy/{self.prefix}/lambda"

    def sizing(self, function: str) -> tuple[int, int]:
        """(memory MB, timeout s) of ``function``: Inference's own, else the steps'."""
        if function == "inference":
            return self.memory_mb, self.timeout_s
        return self.step_memory_mb, self.step_timeout_s


@dataclass
class Deployment:
    """What a deploy produced (ARNs) and what it did (``actions``: resource -> created/updated/unchanged)."""

    state_machine_arn: str
    function_arns: dict[str, str]
    role_arns: dict[str, str]
    actions: dict[str, str]
    #: Resources deploy uses but never modifies (data and model buckets), with why.
    left_alone: dict[str, str] = field(default_factory=dict)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class AwsBackend:
    """boto3 clients of one session (optionally at a moto endpoint) and the pipeline's lifecycle."""

    def __init__(self, session: Any = None, endpoint_url: str | None = None, region: str | None = None) -> None:
        import boto3

        self.session = session or boto3.session.Session(region_name=region)
        self.endpoint_url = endpoint_url
        self.region = region or self.session.region_name or "us-east-1"
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:  # Budgets is a global service, served from us-east-1
            region = "us-east-1" if service == "budgets" else self.region
            self._clients[service] = self.session.client(service, region_name=region, endpoint_url=self.endpoint_url)
        return self._clients[service]

    def account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])

    def _ensure_role(self, name: str, service: str, policy_name: str, policy: dict[str, Any],
                     actions: dict[str, str], results_uri: str | None = None) -> str:
        problems = iam.check_least_privilege(policy, results_uri)
        if problems:  # checked before anything is created
            raise DeployError(f"policy {policy_name} is not least-privilege: {problems}")
        client = self.client("iam")
        trust = json.dumps(iam.trust_policy(service))
        try:
            arn = client.get_role(RoleName=name)["Role"]["Arn"]
            client.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
            actions[f"iam role {name}"] = "unchanged"
        except client.exceptions.NoSuchEntityException:
            arn = client.create_role(RoleName=name, AssumeRolePolicyDocument=trust,
                                     Tags=[{"Key": OWNER_TAG, "Value": name}])["Role"]["Arn"]
            actions[f"iam role {name}"] = "created"
        client.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=iam.to_json(policy))
        return str(arn)

    def _ensure_bucket(self, bucket: str, owner: str, actions: dict[str, str]) -> None:
        """Create the results bucket when missing; configure only a bucket this deployment created
        (owner tag), and re-apply its settings only when they drifted, so "unchanged" is the truth."""
        s3 = self.client("s3")
        key = f"s3 bucket {bucket}"
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise DeployError(f"bucket {bucket}: {exc}") from exc
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(**kwargs)
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": OWNER_TAG, "Value": owner}]})
            self._configure_bucket(bucket)
            actions[key] = "created"
            return
        if not self._bucket_is_ours(bucket, owner):
            note = "existing, not modified (not created by this deployment)"
            try:  # reading is not modifying: say so when results would land in a bucket that is not private
                block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
                private = all(block.values())
            except Exception:
                private = False
            actions[key] = note if private else note + "; WARNING: its public access is not fully blocked"
            return
        actions[key] = "updated" if self._configure_bucket(bucket, only_if_drifted=True) else "unchanged"

    def _configure_bucket(self, bucket: str, only_if_drifted: bool = False) -> bool:
        """Public access blocked and SSE-S3 on; returns whether anything was written."""
        s3 = self.client("s3")
        block = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                 "RestrictPublicBuckets": True}
        rules = [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        changed = False
        try:
            current_block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        except Exception:
            current_block = None
        if not only_if_drifted or current_block != block:
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
            changed = True
        try:
            current_rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            algo = current_rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        except Exception:
            algo = None
        if not only_if_drifted or algo != "AES256":
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
            changed = True
        return changed

    def _bucket_is_ours(self, bucket: str, owner: str) -> bool:
        try:
            tags = self.client("s3").get_bucket_tagging(Bucket=bucket)["TagSet"]
        except Exception:
            return False
        return any(t["Key"] == OWNER_TAG and t["Value"] == owner for t in tags)

    def _empty_bucket(self, bucket: str, prefix: str = "") -> int:
        s3 = self.client("s3")
        deleted = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(objs), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objs[i:i + 1000], "Quiet": True})
                deleted += len(objs[i:i + 1000])
        return deleted

    def _function_config(self, cfg: DeployConfig, name: str, role_arn: str) -> dict[str, Any]:
        memory, timeout = cfg.sizing(name)
        return {
            "FunctionName": cfg.names.function(name),
            "Runtime": lambda_zip.LAMBDA_RUNTIME,
            "Role": role_arn,
            "Handler": "handler.handler",
            "MemorySize": int(memory),
            "Timeout": int(timeout),
            "Environment": {"Variables": {
                "COSMIC_BACKEND": cfg.backend_label,
                ALLOWED_READ_ENV: json.dumps(sorted(cfg.read_uris if cfg.allowed_read is None else cfg.allowed_read)),
                ALLOWED_RESULTS_ENV: json.dumps(
                    sorted([cfg.results_uri] if cfg.allowed_results is None else cfg.allowed_results)),
            }},
            "Description": f"cosmic pipeline {name} ({cfg.prefix})",
        }

    def _code_arg(self, cfg: DeployConfig, pkg: lambda_zip.Package) -> dict[str, Any]:
        if pkg.size_bytes > cfg.s3_upload_threshold:
            key = f"{cfg.package_prefix}/{pkg.function}-{pkg.sha256_b64.replace('/', '_').replace('+', '-')[:16]}.zip"
            self.client("s3").upload_file(str(pkg.path), cfg.results_bucket, key)
            return {"S3Bucket": cfg.results_bucket, "S3Key": key}
        return {"ZipFile": pkg.path.read_bytes()}

    def _ensure_function(self, cfg: DeployConfig, name: str, pkg: lambda_zip.Package, role_arn: str,
                         actions: dict[str, str]) -> str:
        client = self.client("lambda")
        conf = self._function_config(cfg, name, role_arn)
        fname = conf["FunctionName"]
        try:
            current = client.get_function(FunctionName=fname)["Configuration"]
        except client.exceptions.ResourceNotFoundException:
            current = None
        if current is None:
            arn = self._create_function(conf, self._code_arg(cfg, pkg), cfg.arch)
            client.get_waiter("function_active_v2").wait(FunctionName=fname)
            actions[f"lambda {fname}"] = "created"
            return arn
        action = "unchanged"
        # the architecture can only change together with the code (update_function_code)
        if current.get("CodeSha256") != pkg.sha256_b64 or (current.get("Architectures") or ["x86_64"]) != [cfg.arch]:
            code = self._code_arg(cfg, pkg)
            client.update_function_code(FunctionName=fname, **code, Architectures=[cfg.arch])
            client.get_waiter("function_updated_v2").wait(FunctionName=fname)
            action = "updated"
        wanted = {k: v for k, v in conf.items() if k != "FunctionName"}
        have = {k: current.get(k) for k in wanted}
        if have != wanted:
            client.update_function_configuration(**conf)
            client.get_waiter("function_updated_v2").wait(FunctionName=fname)
            action = "updated"
        actions[f"lambda {fname}"] = action
        return str(current["FunctionArn"])

    def _create_function(self, conf: dict[str, Any], code: dict[str, Any], arch: str = "x86_64") -> str:
        client = self.client("lambda")
        delay = 2.0
        for attempt in range(8):
            try:
                return str(client.create_function(**conf, Code=code, Publish=False, PackageType="Zip",
                                                   Architectures=[arch])["FunctionArn"])
            except client.exceptions.InvalidParameterValueException as exc:
                # A new role takes a few seconds to propagate before Lambda may assume it.
                if "role" not in str(exc).lower() or attempt == 7:
                    raise
                time.sleep(delay)
                delay = min(delay * 1.5, 10.0)
        raise DeployError(f"could not create {conf['FunctionName']}")

    def _ensure_log_group(self, name: str, days: int, actions: dict[str, str]) -> None:
        logs = self.client("logs")
        try:
            logs.create_log_group(logGroupName=name)
            actions[f"log group {name}"] = "created"
        except logs.exceptions.ResourceAlreadyExistsException:
            actions[f"log group {name}"] = "unchanged"
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)

    def find_state_machine(self, name: str) -> str | None:
        pages = self.client("stepfunctions").get_paginator("list_state_machines").paginate()
        return next((str(sm["stateMachineArn"]) for page in pages for sm in page["stateMachines"] if sm["name"] == name),
                    None)

    def _ensure_state_machine(self, cfg: DeployConfig, definition: str, role_arn: str,
                              actions: dict[str, str]) -> str:
        sfn = self.client("stepfunctions")
        name = cfg.names.state_machine
        arn = self.find_state_machine(name)
        if arn is None:
            arn = sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD",
                                           tags=[{"key": OWNER_TAG, "value": cfg.prefix}])["stateMachineArn"]
            actions[f"state machine {name}"] = "created"
        else:
            current = sfn.describe_state_machine(stateMachineArn=arn)
            changed = current["definition"] != definition or current["roleArn"] != role_arn
            if changed:
                sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
            actions[f"state machine {name}"] = "updated" if changed else "unchanged"
        return str(arn)

    def deploy(self, cfg: DeployConfig) -> Deployment:
        """Create or update everything; returns ARNs and what changed."""
        names = cfg.names
        check_locations(cfg)
        account = self.account()
        actions: dict[str, str] = {}
        self._ensure_bucket(cfg.results_bucket, cfg.prefix, actions)
        left_alone = {f"s3 bucket {iam._split(u)[0]}": "not modified (data/model bucket: read only)"
                      for u in cfg.read_uris if u.startswith("s3://") and iam._split(u)[0] != cfg.results_bucket}
        function_arns = {n: f"arn:aws:lambda:{self.region}:{account}:function:{names.function(n)}"
                         for n in lambda_zip.FUNCTIONS}
        lambda_role = self._ensure_role(names.lambda_role, "lambda.amazonaws.com", f"{names.lambda_role}-policy",
                                        iam.lambda_policy(region=self.region, account=account, prefix=cfg.prefix,
                                                          read_uris=cfg.read_uris, results_uri=cfg.results_uri),
                                        actions, cfg.results_uri)
        states_role = self._ensure_role(names.states_role, "states.amazonaws.com", f"{names.states_role}-policy",
                                        iam.states_policy(region=self.region, account=account,
                                                          function_arns=function_arns.values(),
                                                          state_machine_name=names.state_machine,
                                                          results_uri=cfg.results_uri), actions)
        packages = cfg.packages or lambda_zip.build_all(cfg.build_dir, with_deps=cfg.with_deps, arch=cfg.arch)
        wrong = sorted(n for n, pkg in packages.items() if pkg.arch != cfg.arch)
        if wrong:
            raise DeployError(f"packages {', '.join(wrong)} were built for another architecture than {cfg.arch}")
        for n in lambda_zip.FUNCTIONS:
            self._ensure_log_group(names.log_group(n), cfg.log_retention_days, actions)
            function_arns[n] = self._ensure_function(cfg, n, packages[n], lambda_role, actions)
        definition = asl.render({
            "InitFunctionArn": function_arns["init"],
            "InferenceFunctionArn": function_arns["inference"],
            "SummarizeFunctionArn": function_arns["summarize"],
        })
        sm_arn = self._ensure_state_machine(cfg, definition, states_role, actions)
        return Deployment(sm_arn, function_arns, {"lambda": lambda_role, "states": states_role}, actions,
                          left_alone)

    def teardown(self, cfg: DeployConfig, delete_results: bool = True) -> dict[str, str]:
        """Remove what deploy created: state machine, functions, log groups, roles, our bucket."""
        names = cfg.names
        done: dict[str, str] = {}
        sfn = self.client("stepfunctions")
        arn = self.find_state_machine(names.state_machine)
        if arn:
            sfn.delete_state_machine(stateMachineArn=arn)
            done[f"state machine {names.state_machine}"] = "deleted"
        lam = self.client("lambda")
        logs = self.client("logs")
        for n in lambda_zip.FUNCTIONS:
            with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
                lam.delete_function(FunctionName=names.function(n))
                done[f"lambda {names.function(n)}"] = "deleted"
            with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
                logs.delete_log_group(logGroupName=names.log_group(n))
                done[f"log group {names.log_group(n)}"] = "deleted"
        client = self.client("iam")
        for role in (names.lambda_role, names.states_role):
            with contextlib.suppress(client.exceptions.NoSuchEntityException):
                for pname in client.list_role_policies(RoleName=role)["PolicyNames"]:
                    client.delete_role_policy(RoleName=role, PolicyName=pname)
                client.delete_role(RoleName=role)
                done[f"iam role {role}"] = "deleted"
        if self.delete_budget(cfg.prefix):
            done[f"budget {operator.budget_name(cfg.prefix)}"] = "deleted"
        bucket = cfg.results_bucket
        if self._bucket_is_ours(bucket, cfg.prefix):
            if delete_results:
                self._empty_bucket(bucket)
                self.client("s3").delete_bucket(Bucket=bucket)
                done[f"s3 bucket {bucket}"] = "deleted"
        else:
            n = self._empty_bucket(bucket, cfg.package_prefix) if self._bucket_exists(bucket) else 0
            if n:
                done[f"s3 objects s3://{bucket}/{cfg.package_prefix}"] = f"deleted {n}"
        return done

    def inventory(self, cfg: DeployConfig) -> list[tuple[str, str]]:
        """Every resource of deployment ``cfg.prefix`` that exists now, as ``(kind, name)``: scoped by
        name prefix and owner tag, never the whole account (roles by ``GetRole``: the operator policy
        never lists the account's roles). Reasoning: docs/aws.md#5-back-to-empty"""
        names = cfg.names
        pre = f"{cfg.prefix}-"
        found: list[tuple[str, str]] = []
        for page in self.client("stepfunctions").get_paginator("list_state_machines").paginate():
            found += [("state machine", m["name"]) for m in page.get("stateMachines", [])
                      if m["name"].startswith(pre)]
        for page in self.client("lambda").get_paginator("list_functions").paginate():
            found += [("lambda", f["FunctionName"]) for f in page.get("Functions", [])
                      if f["FunctionName"].startswith(pre)]
        for page in self.client("logs").get_paginator("describe_log_groups").paginate(
                logGroupNamePrefix=f"/aws/lambda/{pre}"):
            found += [("log group", g["logGroupName"]) for g in page.get("logGroups", [])]
        client = self.client("iam")
        for role in (names.lambda_role, names.states_role):
            with contextlib.suppress(client.exceptions.NoSuchEntityException):
                client.get_role(RoleName=role)
                found.append(("iam role", role))
        if self.find_budget(operator.budget_name(cfg.prefix)):
            found.append(("budget", operator.budget_name(cfg.prefix)))
        bucket = cfg.results_bucket
        if self._bucket_exists(bucket):
            if self._bucket_is_ours(bucket, cfg.prefix):
                found.append(("s3 bucket", bucket))
            else:
                n = sum(len(page.get("Contents", [])) for page in self.client("s3").get_paginator(
                    "list_objects_v2").paginate(Bucket=bucket, Prefix=cfg.package_prefix + "/"))
                if n:
                    found.append(("s3 objects", f"s3://{bucket}/{cfg.package_prefix}/ ({n})"))
        return sorted(found)

    def _budgets(self) -> Any:
        return self.client("budgets")

    def find_budget(self, name: str) -> bool:
        client = self._budgets()
        try:
            client.describe_budget(AccountId=self.account(), BudgetName=name)
            return True
        except client.exceptions.NotFoundException:
            return False

    def ensure_budget(self, prefix: str, monthly_usd: float, email: str) -> str:
        """Create the spend alarm (:func:`budget_request`) when missing; "created" or "unchanged"."""
        name = operator.budget_name(prefix)
        if self.find_budget(name):
            return "unchanged"
        self._budgets().create_budget(**budget_request(self.account(), name, monthly_usd, email))
        return "created"

    def delete_budget(self, prefix: str) -> bool:
        name = operator.budget_name(prefix)
        if not self.find_budget(name):
            return False
        self._budgets().delete_budget(AccountId=self.account(), BudgetName=name)
        return True

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            self.client("s3").head_bucket(Bucket=bucket)
            return True
        except Exception:
            return False

    def start_execution(self, state_machine_arn: str, request_json: str, name: str) -> str:
        return str(self.client("stepfunctions").start_execution(
            stateMachineArn=state_machine_arn, name=name, input=request_json)["executionArn"])

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        return dict(self.client("stepfunctions").describe_execution(executionArn=execution_arn))

    def count_keys(self, uri: str) -> int:
        """Objects under ``s3://bucket/prefix/`` (paginated)."""
        bucket, prefix = iam._split(uri)
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        return sum(int(page.get("KeyCount", 0)) for page in pages)

    def wait_execution(self, execution_arn: str, poll_s: float = 1.0, timeout_s: float | None = None,
                       on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        """Poll until the execution leaves RUNNING; ``on_poll`` updates progress."""
        t0 = time.monotonic()
        while True:
            desc = self.describe_execution(execution_arn)
            if on_poll:
                on_poll()
            if desc["status"] != "RUNNING":
                return desc
            if timeout_s is not None and time.monotonic() - t0 > timeout_s:
                raise DeployError(f"execution {execution_arn} still running after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def report_lines(self, function_name: str, start: datetime | None = None) -> Iterator[str]:
        """Every REPORT line of ``function_name`` since ``start`` (paginated filter_log_events)."""
        start_ms = None if start is None else int(start.timestamp() * 1000) - 60_000
        for ev in fetch_log_events(self.client("logs"), f"/aws/lambda/{function_name}", start_ms):
            if ev.get("message", "").startswith("REPORT"):
                yield ev["message"]


def budget_request(account: str, name: str, monthly_usd: float, email: str) -> dict[str, Any]:
    """The ``CreateBudget`` request of the spend alarm: ACTUAL monthly cost above 80 % and 100 % of
    ``monthly_usd`` e-mails ``email``; account-wide (docs/aws.md#2-what-gets-created-and-what-it-costs)."""
    if not (isinstance(monthly_usd, (int, float)) and math.isfinite(monthly_usd) and monthly_usd > 0):
        raise DeployError(f"budget {monthly_usd!r} USD: expected a number > 0")
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email or ""):
        raise DeployError(f"budget e-mail {email!r} is not an e-mail address")
    notify = [{"Notification": {"NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN",
                                "Threshold": pct, "ThresholdType": "PERCENTAGE"},
               "Subscribers": [{"SubscriptionType": "EMAIL", "Address": email}]} for pct in (80.0, 100.0)]
    return {"AccountId": account,
            "Budget": {"BudgetName": name, "BudgetType": "COST", "TimeUnit": "MONTHLY",
                       "BudgetLimit": {"Amount": f"{monthly_usd:.2f}", "Unit": "USD"}},
            "NotificationsWithSubscribers": notify}


def check_locations(cfg: DeployConfig) -> None:
    """Refuse a deployment whose locations are invalid, use wildcards or overlap (DeployError names each)."""
    problems = iam.location_problems(cfg.read_uris, cfg.results_uri)
    if cfg.arch not in lambda_zip.ARCHS:
        problems.append(f"unknown Lambda architecture {cfg.arch!r} (expected one of {', '.join(lambda_zip.ARCHS)})")
    if problems:
        raise DeployError("deployment refused: " + "; ".join(problems))


def price_region(region: str | None) -> str:
    """The region whose prices apply: ``region``, else AWS_REGION / AWS_DEFAULT_REGION, else us-east-1."""
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def plan(cfg: DeployConfig, request: Any | None = None, partitions: int | None = None) -> dict[str, Any]:
    """The dry run (no AWS call): what deploy would create and a run's cost ceiling (its ``assumption``)."""
    names = cfg.names
    check_locations(cfg)
    table = prices.region_prices(price_region(cfg.region))  # UnknownRegion: refused, saying how to add it
    account, region = "<account>", "<region>"
    function_arns = [f"arn:aws:lambda:{region}:{account}:function:{names.function(n)}" for n in lambda_zip.FUNCTIONS]
    resources = [
        {"kind": "s3 bucket", "name": cfg.results_bucket, "note": "created if missing; public access blocked, SSE-S3"},
        {"kind": "iam role", "name": names.lambda_role,
         "policy": iam.lambda_policy(region=region, account=account, prefix=cfg.prefix, read_uris=cfg.read_uris,
                                     results_uri=cfg.results_uri)},
        {"kind": "iam role", "name": names.states_role,
         "policy": iam.states_policy(region=region, account=account, function_arns=function_arns,
                                     state_machine_name=names.state_machine, results_uri=cfg.results_uri)},
    ]
    for n in lambda_zip.FUNCTIONS:
        memory, timeout = cfg.sizing(n)
        resources.append({"kind": "lambda", "name": names.function(n), "memory_mb": memory, "timeout_s": timeout,
                          "architecture": cfg.arch})
        resources.append({"kind": "log group", "name": names.log_group(n), "retention_days": cfg.log_retention_days})
    resources.append({"kind": "state machine", "name": names.state_machine, "definition": str(asl.definition_path())})
    out: dict[str, Any] = {"resources": resources, "packages": {
        "architecture": cfg.arch, "runtime": lambda_zip.LAMBDA_RUNTIME,
        "wheel_platforms": list(lambda_zip.PLATFORM_TAGS[cfg.arch]),
        "gb_second_usd": float(table["lambda"]["gb_second_usd"][cfg.arch]),
        "speed": "measured (bench, x86_64 CPUs)" if cfg.arch == "x86_64" else "not measured",  # no arm64 bench
    }}
    if partitions:
        workers = partitions
        if request is not None and getattr(request, "world_size", None):
            workers = min(partitions, request.world_size)
        attempts = 4  # the first try + 3 InfrastructureError retries, each up to the timeout
        lam = prices.lambda_cost([cfg.timeout_s * 1000.0] * workers * attempts, cfg.memory_mb, cfg.arch, prices=table)
        steps = prices.lambda_cost([cfg.step_timeout_s * 1000.0] * 2 * attempts, cfg.step_memory_mb, cfg.arch,
                                   prices=table)
        sfn = prices.stepfunctions_cost(workers, retries=workers * (attempts - 1), prices=table)
        s3 = prices.s3_cost(**prices.pipeline_s3_requests(workers), prices=table)
        out["cost_ceiling"] = {
            "partitions": partitions, "invocations": workers, "architecture": cfg.arch,
            "assumption": "every invocation runs to its timeout at its configured memory, and fails 3 times first",
            "lambda_usd": lam.total_usd + steps.total_usd, "stepfunctions_usd": sfn, "s3_usd": s3,
            "total_usd": lam.total_usd + steps.total_usd + sfn + s3,
            "prices": {"region": table["region"], "as_of": table["as_of"], "source": table["source"],
                       "checked": table["checked"]},
        }
    return out
