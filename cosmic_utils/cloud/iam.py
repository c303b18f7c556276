"""Least-privilege IAM policies of a deployment: the Lambda role and the state machine role.

No ``Action: "*"`` or ``Resource: "*"``: every statement names this deployment's buckets,
prefixes, functions, log groups or state machine. :func:`location_problems` validates locations
first (bucket-name rules, no wildcard, results never overlapping data or model) and
:func:`check_least_privilege` re-checks any finished policy. Reasoning:
docs/pipeline.md#deployment-cosmic_utilscloudaws
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

#: A deployment's name prefix: every resource name starts with it (``<prefix>-pipeline`` ...).
PREFIX_PATTERN = r"^[a-z][a-z0-9-]{1,30}$"


def trust_policy(service: str) -> dict[str, Any]:
    """Who may assume the role (``lambda.amazonaws.com`` or ``states.amazonaws.com``)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def _as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


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


#: S3 bucket naming rules (general purpose buckets): 3-63 characters of lowercase letters, digits,
#: dots and hyphens, starting and ending with a letter or digit.
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
#: Actions that write or delete objects.
WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl", "s3:*", "*")


def bucket_name_problem(bucket: str) -> str | None:
    """Why ``bucket`` is not a valid S3 bucket name (None if it is)."""
    if not bucket:
        return "empty bucket name"
    if not re.fullmatch(BUCKET_PATTERN, bucket):
        return (f"bucket name {bucket!r} breaks the S3 naming rules (3-63 characters: lowercase letters, digits, "
                "dots and hyphens, starting and ending with a letter or digit)")
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return f"bucket name {bucket!r} has adjacent dots or a dot next to a hyphen"
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(bucket)
        return f"bucket name {bucket!r} is formatted as an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return f"bucket name {bucket!r} uses a prefix or suffix S3 reserves"
    return None


def location_problem(uri: str, what: str) -> str | None:
    """Why ``uri`` (``s3://bucket[/prefix]``) cannot be part of a deployment (None if it can)."""
    if any(c in uri for c in "*?"):
        return f"{what} {uri!r} contains a wildcard ('*' or '?'); name the bucket and prefix exactly"
    if not uri.startswith("s3://"):
        return f"{what} {uri!r} is not an s3://bucket/prefix location"
    bucket, prefix = _split(uri)
    problem = bucket_name_problem(bucket)
    if problem:
        return f"{what} {uri!r}: {problem}"
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        return f"{what} {uri!r}: the prefix has an empty, '.' or '..' segment"
    return None


def _overlap(a: str, b: str) -> bool:
    """Whether two s3:// locations overlap: equal, or one is inside the other (whole segments)."""
    ba, pa = _split(a)
    bb, pb = _split(b)
    return ba == bb and (not pa or not pb or pa == pb or pa.startswith(pb + "/") or pb.startswith(pa + "/"))


def location_problems(read_uris: Iterable[str], results_uri: str) -> list[str]:
    """Every problem of a deployment's locations (empty list: fine)."""
    reads = [u for u in read_uris if u.startswith("s3://") or any(c in u for c in "*?")]
    problems = [p for p in (location_problem(u, "data/model location") for u in reads) if p]
    res = location_problem(results_uri, "results location")
    if res:
        problems.append(res)
    else:
        for u in reads:
            if location_problem(u, "") is None and _overlap(results_uri, u):
                problems.append(f"results location {results_uri!r} overlaps the data/model location {u!r} (equal, "
                                "inside or containing it): results are writable, so the data would be too; "
                                "use a separate prefix or bucket for results")
    return problems


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


def check_least_privilege(policy: dict[str, Any], results_uri: str | None = None) -> list[str]:
    """Problems of a policy: wildcard actions or resources, a wildcard in an S3 bucket or prefix
    (``arn:aws:s3:::*/*``), an object write that overlaps an object read of another statement (results
    equal to / inside / containing the data), and, given ``results_uri``, a write outside it."""
    problems = []
    reads: list[tuple[str, str, str]] = []
    writes: list[tuple[str, str, str]] = []
    for stmt in policy.get("Statement", []):
        sid = str(stmt.get("Sid"))
        actions = _as_list(stmt.get("Action"))
        resources = _as_list(stmt.get("Resource"))
        if any(a == "*" or a.endswith(":*") for a in actions):
            problems.append(f"{sid}: wildcard action {actions}")
        if "*" in resources:
            problems.append(f"{sid}: Resource '*'")
        writes_here = any(a in WRITE_ACTIONS for a in actions)
        for r in resources:
            if not r.startswith("arn:aws:s3:::"):
                continue
            rest = r[len("arn:aws:s3:::"):]
            if not rest.partition("/")[0] or any(c in (rest[:-2] if rest.endswith("/*") else rest) for c in "*?"):
                problems.append(f"{sid}: wildcard or empty bucket in S3 resource {r!r}")
            elif "/" in rest:  # an object ARN ``bucket/prefix/*`` (a bucket ARN is ListBucket)
                bucket, _, key = rest.partition("/")
                prefix = key[:-2] if key.endswith("/*") else ("" if key == "*" else key)
                (writes if writes_here else reads).append((sid, bucket, prefix))
    for sid, bucket, prefix in writes:
        if results_uri is not None:
            rb, rp = _split(results_uri)
            if bucket != rb or not (prefix == rp or prefix.startswith(rp + "/") or not rp):
                problems.append(f"{sid}: write on s3://{bucket}/{prefix} outside the results location {results_uri}")
        for rsid, rbucket, rprefix in reads:
            if _overlap(f"s3://{bucket}/{prefix}", f"s3://{rbucket}/{rprefix}"):
                problems.append(f"{sid}: write on s3://{bucket}/{prefix} overlaps {rsid}'s read-only "
                                f"s3://{rbucket}/{rprefix} (results must not equal, contain or sit in the data)")
    return problems


def to_json(policy: dict[str, Any]) -> str:
    return json.dumps(policy, sort_keys=True)
