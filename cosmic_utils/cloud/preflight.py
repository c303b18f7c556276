"""``cosmic doctor``: what the account and region allow, read before a deploy or a sweep.

The masked account and region, the region's price row (and whether it was checked), the Lambda
concurrency quota (``GetAccountSettings``, else Service Quotas ``L-B99A9384``), the Distributed
Map's fixed limits, and a warning for each grid point whose parallelism exceeds the unreserved
concurrency. Reasoning: docs/aws.md#0-credentials-and-region, docs/aws.md#3-quotas-that-matter
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Service Quotas code of Lambda's "Concurrent executions" quota.
LAMBDA_CONCURRENCY_QUOTA = "L-B99A9384"
#: The default quota (data/reference/README.md), used only in messages.
DEFAULT_LAMBDA_CONCURRENCY = 1000
#: Distributed Map: parallel child executions (a fixed service limit).
DISTRIBUTED_MAP_MAX_CONCURRENCY = 10_000


def mask_account(account: str) -> str:
    """``********1234``: enough to tell accounts apart, not to name one."""
    return "*" * max(0, len(account) - 4) + account[-4:]


@dataclass
class Concurrency:
    """The Lambda concurrency quota as read (``None``: not readable, see ``source``)."""

    limit: int | None
    unreserved: int | None
    source: str


def read_concurrency(lambda_client: Any, quotas_client: Any) -> Concurrency:
    """The account's Lambda concurrency: GetAccountSettings, else Service Quotas, else unknown."""
    errors: list[str] = []
    try:
        limits = lambda_client.get_account_settings()["AccountLimit"]
        return Concurrency(int(limits["ConcurrentExecutions"]), int(limits["UnreservedConcurrentExecutions"]),
                           "lambda:GetAccountSettings")
    except Exception as exc:  # noqa: BLE001 - reported, then the next source
        errors.append(f"GetAccountSettings: {_why(exc)}")
    try:
        value = quotas_client.get_service_quota(ServiceCode="lambda", QuotaCode=LAMBDA_CONCURRENCY_QUOTA)
        return Concurrency(int(value["Quota"]["Value"]), None, "servicequotas:GetServiceQuota")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"GetServiceQuota: {_why(exc)}")
    return Concurrency(None, None, "not readable (" + "; ".join(errors) + ")")


def _why(exc: Exception) -> str:
    """One short line: the AWS error code and message, never a whole HTML error page."""
    err = getattr(exc, "response", {}).get("Error", {})
    if err.get("Code"):
        message = " ".join(str(err.get("Message") or "").split())
        return f"{err['Code']}" + (f" {message[:120]}" if message and "<" not in message else "")
    return " ".join(str(exc).split())[:120]


@dataclass
class PointCheck:
    slug: str
    partitions: int
    parallel: int
    warning: str = ""


def check_points(points: Iterable[tuple[str, Mapping[str, Any], int]], conc: Concurrency) -> list[PointCheck]:
    """Each (slug, parameters, partitions) point's parallelism against the unreserved quota, else the limit."""
    room = conc.unreserved if conc.unreserved is not None else conc.limit
    out = []
    for slug, p, n in points:
        invocations = min(n, int(p.get("world_size") or 0) or n)
        mc = int(p.get("max_concurrency") or 0)
        parallel = min(invocations, mc) if mc else invocations
        check = PointCheck(slug, n, parallel)
        if room is not None and parallel > room:
            check.warning = (f"{parallel} parallel invocations > {room} concurrent executions available "
                             f"({conc.source}): throttled (retried, slower); lower max_concurrency or ask for "
                             f"a higher quota (Service Quotas, {LAMBDA_CONCURRENCY_QUOTA})")
        elif room is None:
            check.warning = (f"{parallel} parallel invocations; the account's quota could not be read, the default "
                             f"is {DEFAULT_LAMBDA_CONCURRENCY} and new accounts often have less")
        if parallel > DISTRIBUTED_MAP_MAX_CONCURRENCY:
            check.warning += f"; above the Distributed Map's {DISTRIBUTED_MAP_MAX_CONCURRENCY:,} child executions"
        out.append(check)
    return out
