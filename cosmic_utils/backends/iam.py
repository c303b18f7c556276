"""Least-privilege IAM policies of a deployment.

Two roles, each with one inline policy:

* the Lambda role (trusted by ``lambda.amazonaws.com``): read the data and model prefixes, read
  and write the results prefix, list only those prefixes, write its own log groups;
* the state machine role (trusted by ``states.amazonaws.com``): invoke its own three functions,
  read the item list (the Distributed Map's ItemReader), start / describe / stop its own child
  executions (how a Distributed Map runs its items).

No ``Action: "*"`` and no ``Resource: "*"`` anywhere: every statement names the buckets,
prefixes, functions, log groups or state machine of this deployment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


def trust_policy(service: str) -> dict[str, Any]:
    """Who may assume the role (``lambda.amazonaws.com`` or ``states.amazonaws.com``)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def _split(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://"):] if uri.startswith("s3://") else uri
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def _objects(uri: str) -> str:
    bucket, prefix = _split(uri)
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def _list_statement(sid: str, uris: Iterable[str]) -> list[dict[str, Any]]:
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, prefix = _split(uri)
        by_bucket.setdefault(bucket, []).append(prefix)
    out = []
    for i, (bucket, prefixes) in enumerate(sorted(by_bucket.items())):
        stmt: dict[str, Any] = {"Sid": f"{sid}{i}", "Effect": "Allow", "Action": "s3:ListBucket",
                                "Resource": f"arn:aws:s3:::{bucket}"}
        if all(prefixes):
            stmt["Condition"] = {"StringLike": {"s3:prefix": sorted({f"{p}/*" for p in prefixes} | set(prefixes))}}
        out.append(stmt)
    return out


def lambda_policy(*, region: str, account: str, prefix: str, read_uris: Iterable[str],
                  results_uri: str) -> dict[str, Any]:
    """The Lambda functions' policy: data/model read, results read-write, own logs."""
    reads = [u for u in read_uris if u.startswith("s3://")]
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{prefix}-*"
    statements: list[dict[str, Any]] = []
    if reads:
        statements.append({"Sid": "ReadInputs", "Effect": "Allow", "Action": "s3:GetObject",
                           "Resource": sorted({_objects(u) for u in reads})})
    statements.append({"Sid": "ReadWriteResults", "Effect": "Allow",
                       "Action": ["s3:GetObject", "s3:PutObject"], "Resource": _objects(results_uri)})
    statements += _list_statement("ListOwnPrefixes", [*reads, results_uri])
    statements.append({"Sid": "OwnLogGroups", "Effect": "Allow", "Action": "logs:CreateLogGroup",
                       "Resource": log_group})
    statements.append({"Sid": "OwnLogStreams", "Effect": "Allow",
                       "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": f"{log_group}:*"})
    return {"Version": "2012-10-17", "Statement": statements}


def states_policy(*, region: str, account: str, function_arns: Iterable[str], state_machine_name: str,
                  results_uri: str) -> dict[str, Any]:
    """The state machine's policy: its own functions, its item list, its child executions."""
    arns = sorted(function_arns)
    sm_arn = f"arn:aws:states:{region}:{account}:stateMachine:{state_machine_name}"
    exec_arn = f"arn:aws:states:{region}:{account}:execution:{state_machine_name}/*"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "InvokeOwnFunctions", "Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": arns + [f"{a}:*" for a in arns]},
        {"Sid": "ReadItemList", "Effect": "Allow", "Action": "s3:GetObject", "Resource": _objects(results_uri)},
        {"Sid": "RunDistributedMap", "Effect": "Allow", "Action": "states:StartExecution", "Resource": sm_arn},
        {"Sid": "ManageChildExecutions", "Effect": "Allow",
         "Action": ["states:DescribeExecution", "states:StopExecution"], "Resource": exec_arn},
    ]}


def check_least_privilege(policy: dict[str, Any]) -> list[str]:
    """Problems of a policy: wildcard actions or resources."""
    problems = []
    for stmt in policy.get("Statement", []):
        actions = stmt.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = stmt.get("Resource", [])
        resources = [resources] if isinstance(resources, str) else resources
        if any(a == "*" or a.endswith(":*") for a in actions):
            problems.append(f"{stmt.get('Sid')}: wildcard action {actions}")
        if "*" in resources:
            problems.append(f"{stmt.get('Sid')}: Resource '*'")
    return problems


def to_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True)
