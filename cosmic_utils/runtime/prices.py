"""What a run cost (Lambda, Step Functions, S3) from the dated table ``prices.yaml`` beside this module;
used by Summarize inside Lambda and re-exported by :mod:`cosmic_utils.analysis.cost`."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

#: The dated price table shipped with the package.
PRICES_PATH: Path = Path(__file__).with_name("prices.yaml")
#: Lambda architectures the price table knows.
ARCHS: tuple[str, ...] = ("x86_64", "arm64")
#: Configured memory assumed when a published table does not state it: the published Cosmic AI
#: Lambdas ran with 10,240 MB (data/reference/cai/lambda_report_lines.txt, "Memory Size").
ASSUMED_PUBLISHED_MEMORY_MB: int = 10240

_PRICE_CACHE: dict[str, Any] | None = None


class UnknownRegion(ValueError):
    """A region without a row in the price table (the message says how to add one)."""


#: Fields of a region's row that describe it rather than price it.
REGION_META: tuple[str, ...] = ("as_of", "source", "checked")


def regions() -> list[str]:
    """The regions the price table has a row for."""
    return sorted(load_prices().get("regions") or {})


def region_prices(region: str) -> dict[str, Any]:
    """The base price table with ``region``'s row merged over it (+ the row's ``region``, ``as_of``,
    ``source``, ``checked``); UnknownRegion when it has none."""
    table = load_prices()
    rows = table.pop("regions", None) or {}
    if region not in rows:
        raise UnknownRegion(f"region {region!r} has no row in the price table {PRICES_PATH.name} (rows: "
                            f"{', '.join(sorted(rows))}); add its prices under 'regions:' with as_of and source "
                            f"(see the comment there), or deploy to one of those")
    row = dict(rows[region] or {})
    out = _merge(table, {k: v for k, v in row.items() if k not in REGION_META})
    out.update({"region": region, "as_of": row.get("as_of", table.get("as_of")),
                "source": row.get("source", ""), "checked": bool(row.get("checked", False))})
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def load_prices(override: str | Path | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The price table, with ``override`` (a YAML path or a dict, possibly partial) merged over it
    (``ValueError`` naming the file when the override is not a mapping)."""
    global _PRICE_CACHE
    if _PRICE_CACHE is None:
        with open(PRICES_PATH, encoding="utf-8") as fh:
            _PRICE_CACHE = yaml.safe_load(fh)
    prices = copy.deepcopy(_PRICE_CACHE)
    if override is None:
        return prices
    if isinstance(override, (str, Path)):
        with open(override, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        if not isinstance(data, Mapping):
            raise ValueError(f"{override}: price override must be a YAML mapping, got {type(data).__name__}")
        override = data
    elif not isinstance(override, Mapping):
        raise ValueError(f"price override must be a path or a mapping, got {type(override).__name__}")
    return _merge(prices, override)


def _prices(prices: Mapping[str, Any] | str | Path | None) -> Mapping[str, Any]:
    if prices is None or isinstance(prices, (str, Path)):
        return load_prices(prices)
    return prices


def billed_ms(duration_ms: float, granularity_ms: int = 1) -> int:
    """Billed duration of one invocation: ``duration_ms`` rounded up to the billing granularity."""
    if duration_ms < 0:
        raise ValueError(f"duration must be >= 0 ms, got {duration_ms}")
    return int(math.ceil(round(duration_ms / granularity_ms, 6)) * granularity_ms)  # round: float noise


def vcpus_for_memory(memory_mb: float, prices: Mapping[str, Any] | None = None) -> float:
    """Lambda's CPU share for a memory size: 1 vCPU per 1,769 MB, at most 6."""
    lam = _prices(prices)["lambda"]
    return min(float(lam["max_vcpus"]), memory_mb / float(lam["mb_per_vcpu"]))


@dataclass(frozen=True)
class LambdaCost:
    """Billed cost of a set of Lambda invocations (USD) and what it was computed from."""

    invocations: int
    billed_ms_total: int
    memory_mb: float
    arch: str
    gb_seconds: float
    compute_usd: float
    request_usd: float
    ephemeral_usd: float

    @property
    def total_usd(self) -> float:
        return self.compute_usd + self.request_usd + self.ephemeral_usd

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_usd": self.total_usd}


def lambda_cost(durations_ms: Iterable[float], memory_mb: float, arch: str = "x86_64", ephemeral_mb: float = 512,
                prices: Mapping[str, Any] | str | Path | None = None, already_billed: bool = False) -> LambdaCost:
    """Cost of Lambda invocations (``durations_ms``: one each, billed ones when ``already_billed``) by
    CONFIGURED memory x billed duration, plus requests and ephemeral storage above the free 512 MB."""
    lam = _prices(prices)["lambda"]
    if arch not in lam["gb_second_usd"]:
        raise ValueError(f"unknown Lambda architecture {arch!r}; expected one of {sorted(lam['gb_second_usd'])}")
    if not lam["min_memory_mb"] <= memory_mb <= lam["max_memory_mb"]:
        raise ValueError(f"memory_mb={memory_mb} outside Lambda's range {lam['min_memory_mb']}.."
                         f"{lam['max_memory_mb']} MB")
    gran = int(lam["billing_granularity_ms"])
    billed = [int(math.ceil(d)) if already_billed else billed_ms(float(d), gran) for d in durations_ms]
    n, total_ms = len(billed), sum(billed)
    seconds = total_ms / 1000.0
    gb_s = memory_mb / 1024.0 * seconds
    extra_gb = max(0.0, (ephemeral_mb - float(lam["ephemeral_free_mb"])) / 1024.0)
    return LambdaCost(invocations=n, billed_ms_total=total_ms, memory_mb=float(memory_mb), arch=arch,
                      gb_seconds=gb_s, compute_usd=gb_s * float(lam["gb_second_usd"][arch]),
                      request_usd=n * float(lam["request_usd_per_million"]) / 1e6,
                      ephemeral_usd=extra_gb * seconds * float(lam["ephemeral_gb_second_usd"]))


def stepfunctions_cost(items: int, parent_transitions: int = 4, child_transitions: int = 2, retries: int = 0,
                       prices: Mapping[str, Any] | str | Path | None = None) -> float:
    """Step Functions Standard cost of one run with a Distributed Map over ``items``: parent start -> Init
    -> Map -> Summarize, each item a child of start + Inference Task, each retry one more transition."""
    if items < 0:
        raise ValueError(f"items must be >= 0, got {items}")
    transitions = parent_transitions + items * child_transitions + retries
    return transitions * float(_prices(prices)["stepfunctions"]["standard_transition_usd_per_1000"]) / 1000.0


def s3_cost(gets: int = 0, puts: int = 0, lists: int = 0,
            prices: Mapping[str, Any] | str | Path | None = None) -> float:
    """S3 request cost of GET, PUT and LIST requests (storage and in-region transfer not billed here)."""
    s3 = _prices(prices)["s3"]
    return (gets * float(s3["get_usd_per_1000"]) + puts * float(s3["put_usd_per_1000"])
            + lists * float(s3["list_usd_per_1000"])) / 1000.0


def pipeline_s3_requests(items: int, cold_starts: int | None = None) -> dict[str, int]:
    """S3 requests of one pipeline run of ``items`` partitions: Init LISTs (1 per 1,000 keys) and PUTs
    the items; each Inference GETs its partition (+ the model when cold) and PUTs predictions and
    record; Summarize LISTs, GETs each record and PUTs the summary."""
    cold = items if cold_starts is None else cold_starts
    pages = max(1, math.ceil(items / 1000))
    return {"gets": items + cold + items, "puts": 1 + 2 * items + 1, "lists": 2 * pages}
