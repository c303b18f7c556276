"""The IAM policy of the *person* who runs ``cosmic deploy / run / logs / teardown / doctor``.

Generated from code (``cosmic operator-policy``; docs/operator-policy.example.json is kept equal by
a test): every statement names this deployment's resources, only :data:`UNSCOPED` read-only calls
take ``Resource: "*"``. :data:`ACTIONS_OF` maps each API operation to its IAM actions, so the
runbook test checks the policy holds exactly the actions used.
Reasoning: docs/aws.md#1-iam-the-person-running-the-commands-needs
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cosmic_utils.cloud import iam

#: API operations ("service:Operation" as boto3/botocore name them) whose one IAM action has the
#: operation's name (boto3's "stepfunctions" is IAM's "states"; StopExecution: cosmic run on Ctrl-C).
_SAME_NAME: tuple[str, ...] = (
    "sts:GetCallerIdentity",
    "iam:GetRole", "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:ListRolePolicies",
    "iam:DeleteRolePolicy", "iam:DeleteRole",
    "lambda:GetFunction", "lambda:UpdateFunctionCode", "lambda:DeleteFunction", "lambda:ListFunctions",
    "lambda:GetAccountSettings",
    "logs:CreateLogGroup", "logs:PutRetentionPolicy", "logs:DeleteLogGroup", "logs:FilterLogEvents",
    "logs:DescribeLogGroups",
    "stepfunctions:ListStateMachines", "stepfunctions:DescribeStateMachine", "stepfunctions:DeleteStateMachine",
    "stepfunctions:StartExecution", "stepfunctions:DescribeExecution", "stepfunctions:StopExecution",
    "s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging", "s3:GetBucketTagging", "s3:GetObject",
    "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject",
)
#: IAM actions per API operation: :data:`_SAME_NAME`, then those whose actions differ: most S3 ones
#: (ListObjectsV2 is s3:ListBucket ...), and Create/UpdateFunctionConfiguration and
#: Create/UpdateStateMachine, which pass a role: iam:PassRole.
ACTIONS_OF: dict[str, tuple[str, ...]] = {
    **{op: (op.replace("stepfunctions:", "states:"),) for op in _SAME_NAME},
    "iam:CreateRole": ("iam:CreateRole", "iam:TagRole"),  # created with its cosmic:deployment tag
    "lambda:CreateFunction": ("lambda:CreateFunction", "iam:PassRole"),
    "lambda:UpdateFunctionConfiguration": ("lambda:UpdateFunctionConfiguration", "iam:PassRole"),
    "stepfunctions:CreateStateMachine": ("states:CreateStateMachine", "states:TagResource", "iam:PassRole"),
    "stepfunctions:UpdateStateMachine": ("states:UpdateStateMachine", "iam:PassRole"),
    "s3:HeadBucket": ("s3:ListBucket",),
    "s3:GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "s3:PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock",),
    "s3:GetBucketEncryption": ("s3:GetEncryptionConfiguration",),
    "s3:PutBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "s3:ListObjectsV2": ("s3:ListBucket",),
    "s3:ListObjects": ("s3:ListBucket",),
    "s3:ListObjectVersions": ("s3:ListBucketVersions",),
    "s3:HeadObject": ("s3:GetObject",),
    "s3:CreateMultipartUpload": ("s3:PutObject",),
    "s3:UploadPart": ("s3:PutObject",),
    "s3:CompleteMultipartUpload": ("s3:PutObject",),
    "s3:DeleteObjects": ("s3:DeleteObject", "s3:DeleteObjectVersion"),  # teardown deletes versions
    # Budgets (the optional spend alarm) and Service Quotas (cosmic doctor)
    "budgets:CreateBudget": ("budgets:ModifyBudget",),
    "budgets:DescribeBudget": ("budgets:ViewBudget",),
    "budgets:DeleteBudget": ("budgets:ModifyBudget",),
    "service-quotas:GetServiceQuota": ("servicequotas:GetServiceQuota",),
}

#: Read-only actions AWS does not scope to a resource (or that list names only): "*" is allowed
#: for these and no other action.
UNSCOPED: tuple[str, ...] = ("sts:GetCallerIdentity", "lambda:GetAccountSettings", "lambda:ListFunctions",
                             "states:ListStateMachines", "logs:DescribeLogGroups",
                             "servicequotas:GetServiceQuota")

#: Name of the spend alarm (AWS Budgets) of a deployment.
def budget_name(prefix: str) -> str:
    return f"{prefix}-spend"


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """IAM actions of one API operation; KeyError naming it when the map does not know it."""
    key = f"{service}:{operation}"
    if key not in ACTIONS_OF:
        raise KeyError(f"{key}: no IAM action mapped (add it to cosmic_utils.cloud.operator.ACTIONS_OF)")
    return ACTIONS_OF[key]


def operator_policy(*, prefix: str, results_uri: str, data_uris: Iterable[str] = (), region: str = "*",
                    account: str = "*") -> dict[str, Any]:
    """The operator's policy for deployment ``prefix``. ``region`` / ``account`` default to ``*`` (any
    region, and the account it is attached in: an identity policy never reaches another account).
    Raises ValueError naming a bad prefix, bucket, region or account."""
    if not re.fullmatch(iam.PREFIX_PATTERN, prefix):
        raise ValueError(f"prefix {prefix!r} must match {iam.PREFIX_PATTERN}")
    if region != "*" and not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", region):
        raise ValueError(f"region {region!r} is not an AWS region name (e.g. us-east-1)")
    if account != "*" and not re.fullmatch(r"\d{12}", account):
        raise ValueError(f"account {account!r} must be 12 digits (or omitted)")
    problems = [p for p in (iam.location_problem(u, "location") for u in [results_uri, *data_uris]) if p]
    if problems:
        raise ValueError("; ".join(problems))
    results = iam._split(results_uri)[0]
    data = sorted({iam._split(u)[0] for u in data_uris} - {results})
    r, a = region, account
    roles = [f"arn:aws:iam::{a}:role/{prefix}-lambda", f"arn:aws:iam::{a}:role/{prefix}-states"]
    sm = f"arn:aws:states:{r}:{a}:stateMachine:{prefix}-pipeline"
    statements: list[dict[str, Any]] = [
        {"Sid": "ReadOnlyUnscoped", "Effect": "Allow", "Action": sorted(UNSCOPED), "Resource": "*"},
        {"Sid": "OwnRoles", "Effect": "Allow", "Resource": roles,
         "Action": ["iam:CreateRole", "iam:DeleteRole", "iam:DeleteRolePolicy", "iam:GetRole",
                    "iam:ListRolePolicies", "iam:PutRolePolicy", "iam:TagRole", "iam:UpdateAssumeRolePolicy"]},
        {"Sid": "PassOwnRolesToLambdaAndStates", "Effect": "Allow", "Action": "iam:PassRole", "Resource": roles,
         "Condition": {"StringEquals": {"iam:PassedToService": ["lambda.amazonaws.com", "states.amazonaws.com"]}}},
        {"Sid": "OwnFunctions", "Effect": "Allow", "Resource": f"arn:aws:lambda:{r}:{a}:function:{prefix}-*",
         "Action": ["lambda:CreateFunction", "lambda:DeleteFunction", "lambda:GetFunction",
                    "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration"]},
        {"Sid": "OwnLogGroups", "Effect": "Allow",
         "Resource": [f"arn:aws:logs:{r}:{a}:log-group:/aws/lambda/{prefix}-*",
                      f"arn:aws:logs:{r}:{a}:log-group:/aws/lambda/{prefix}-*:*"],
         "Action": ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:FilterLogEvents", "logs:PutRetentionPolicy"]},
        {"Sid": "OwnStateMachine", "Effect": "Allow", "Resource": sm,
         "Action": ["states:CreateStateMachine", "states:DeleteStateMachine", "states:DescribeStateMachine",
                    "states:StartExecution", "states:TagResource", "states:UpdateStateMachine"]},
        {"Sid": "OwnExecutions", "Effect": "Allow",
         "Resource": f"arn:aws:states:{r}:{a}:execution:{prefix}-pipeline:*",
         "Action": ["states:DescribeExecution", "states:StopExecution"]},
        {"Sid": "ResultsBucket", "Effect": "Allow", "Resource": f"arn:aws:s3:::{results}",
         "Action": ["s3:CreateBucket", "s3:DeleteBucket", "s3:GetBucketPublicAccessBlock", "s3:GetBucketTagging",
                    "s3:GetEncryptionConfiguration", "s3:ListBucket", "s3:ListBucketVersions",
                    "s3:PutBucketPublicAccessBlock", "s3:PutBucketTagging", "s3:PutEncryptionConfiguration"]},
        {"Sid": "ResultsObjects", "Effect": "Allow", "Resource": f"arn:aws:s3:::{results}/*",
         "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject", "s3:PutObject"]},
    ]
    if data:
        statements += [
            {"Sid": "DataBuckets", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": [f"arn:aws:s3:::{b}" for b in data]},
            {"Sid": "DataObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": sorted({iam._objects(u) for u in data_uris if iam._split(u)[0] != results})},
        ]
    statements.append({"Sid": "OwnBudget", "Effect": "Allow", "Action": ["budgets:ModifyBudget", "budgets:ViewBudget"],
                       "Resource": f"arn:aws:budgets::{a}:budget/{budget_name(prefix)}"})
    return {"Version": "2012-10-17", "Statement": statements}


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action the policy allows."""
    return {a for s in policy.get("Statement", []) for a in iam._as_list(s.get("Action"))}


def check_operator_policy(policy: dict[str, Any], prefix: str, buckets: Iterable[str]) -> list[str]:
    """Problems of an operator policy (empty: none): a wildcard action, ``"*"`` on an action not in
    :data:`UNSCOPED`, a resource naming neither the prefix nor one of ``buckets``, a wildcard
    inside a bucket name, or ``iam:PassRole`` without the ``iam:PassedToService`` condition."""
    problems = []
    buckets = set(buckets)
    for s in policy.get("Statement", []):
        sid = s.get("Sid")
        actions = iam._as_list(s.get("Action"))
        resources = iam._as_list(s.get("Resource"))
        if s.get("Effect") != "Allow" or "NotAction" in s or "NotResource" in s:
            problems.append(f"{sid}: only plain Allow statements are expected")
        problems += [f"{sid}: wildcard action {a!r}" for a in actions if "*" in a or "?" in a]
        for res in resources:
            if res == "*":
                extra = sorted(set(actions) - set(UNSCOPED))
                if extra:
                    problems.append(f"{sid}: Resource '*' for {extra} (only {list(UNSCOPED)} may be unscoped)")
                continue
            if res.startswith("arn:aws:s3:::"):
                bucket = res[len("arn:aws:s3:::"):].partition("/")[0]
                if bucket not in buckets:
                    problems.append(f"{sid}: S3 resource {res!r} is not one of the buckets {sorted(buckets)}")
                continue
            name = res.split(":", 5)[-1]
            if not re.search(rf"(^|[/:]){re.escape(prefix)}-", name):
                problems.append(f"{sid}: resource {res!r} does not name the prefix {prefix!r}")
        if "iam:PassRole" in actions and "iam:PassedToService" not in str(s.get("Condition")):
            problems.append(f"{sid}: iam:PassRole without an iam:PassedToService condition")
    return problems
