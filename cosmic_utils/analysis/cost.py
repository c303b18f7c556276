"""What a run costs on AWS (*billed*, from ``runtime/prices.yaml``) and the seed project's *published* cost
formulas, always labelled apart. Plain Python. Definitions: docs/cost_and_simulation.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmic_utils.runtime.prices import (  # noqa: F401  re-exported: the cost model API
    ASSUMED_PUBLISHED_MEMORY_MB,
    _prices,
    billed_ms,
    lambda_cost,
    load_prices,
    pipeline_s3_requests,
    s3_cost,
    stepfunctions_cost,
    vcpus_for_memory,
)


# ------------------------------------------------------------------ efficiency (labelled)
def published_efficiency(throughput_gb_s: float, cost_usd: float) -> float:
    """Published "performance efficiency": throughput (GB/s, per-Lambda runtime) per dollar."""
    return throughput_gb_s / cost_usd if cost_usd > 0 else float("nan")


# ------------------------------------------------------------------ published (seed) formulas
@dataclass(frozen=True)
class PublishedRow:
    """One row of the seed project's table recomputed with its own formulas (labelled "published")."""

    partition_mb: float
    lambdas: int
    avg_runtime_s: float
    avg_memory_mb: float
    data_gb: float
    cost_usd: float
    throughput_gb_s: float
    perf_efficiency_gb_s_per_usd: float


def published_formulas(partition_mb: float, lambdas: int, avg_runtime_s: float, avg_memory_mb: float,
                       prices: Mapping[str, Any] | str | Path | None = None) -> PublishedRow:
    """The seed formulas that reproduce data/reference/team6/lambda_table.csv (used memory, per-Lambda runtime)."""
    price = float(_prices(prices)["published"]["gb_second_usd"])
    data_gb = partition_mb * lambdas / 1024.0
    cost = lambdas * avg_runtime_s * avg_memory_mb / 1024.0 * price
    thr = data_gb / avg_runtime_s
    return PublishedRow(partition_mb, lambdas, avg_runtime_s, avg_memory_mb, data_gb, cost, thr,
                        published_efficiency(thr, cost))


def billed_for_published_row(partition_mb: float, lambdas: int, avg_runtime_s: float,
                             configured_memory_mb: float = ASSUMED_PUBLISHED_MEMORY_MB,
                             arch: str = "x86_64",
                             prices: Mapping[str, Any] | str | Path | None = None) -> dict[str, float]:
    """What AWS would have billed for one published row, ASSUMING ``configured_memory_mb`` (the table states
    none) and every invocation lasting ``avg_runtime_s``."""
    lam = lambda_cost([avg_runtime_s * 1000.0] * int(lambdas), configured_memory_mb, arch, prices=prices)
    sfn = stepfunctions_cost(int(lambdas), prices=prices)
    s3 = s3_cost(**pipeline_s3_requests(int(lambdas)), prices=prices)
    total = lam.total_usd + sfn + s3
    thr = partition_mb * lambdas / 1024.0 / avg_runtime_s
    return {"billed_assumed_memory_mb": float(configured_memory_mb), "billed_lambda_usd": lam.total_usd,
            "billed_stepfunctions_usd": sfn, "billed_s3_usd": s3, "billed_total_usd": total,
            "billed_perf_efficiency_gb_s_per_usd": published_efficiency(thr, total)}


def reproduce_published_table(rows: Iterable[Mapping[str, Any]],
                              configured_memory_mb: float = ASSUMED_PUBLISHED_MEMORY_MB,
                              prices: Mapping[str, Any] | str | Path | None = None) -> list[dict[str, Any]]:
    """Every row of the seed table with its ``published_*`` values recomputed and the ``billed_*`` cost beside."""
    out = []
    for row in rows:
        mb, n, run_s = float(row["partition_mb"]), int(row["lambdas"]), float(row["avg_runtime_s"])
        pub = published_formulas(mb, n, run_s, float(row["avg_memory_mb"]), prices)
        out.append({**row, "published_data_gb": pub.data_gb, "published_cost_usd": pub.cost_usd,
                    "published_throughput_gb_s": pub.throughput_gb_s,
                    "published_perf_efficiency_gb_s_per_usd": pub.perf_efficiency_gb_s_per_usd,
                    **billed_for_published_row(mb, n, run_s, configured_memory_mb, prices=prices)})
    return out


# ------------------------------------------------------------------ pipeline summary
def _num(rec: Mapping[str, Any], key: str) -> float | None:
    try:
        out = float(rec.get(key))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def summarize_pipeline_cost(
    records: Iterable[Mapping[str, Any]],
    memory_mb: float,
    arch: str = "x86_64",
    wall_s: float | None = None,
    ephemeral_mb: float = 512,
    extra_lambda_ms: Iterable[float] = (),
    retries: int = 0,
    prices: Mapping[str, Any] | str | Path | None = None,
) -> dict[str, Any]:
    """Cost, throughput and efficiency of one run from its per-partition records (``memory_mb`` configured;
    ``extra_lambda_ms``: Init / Summarize); failed partitions are billed, carry no data."""

    p = _prices(prices)
    if hasattr(records, "to_dict"):  # a pandas DataFrame (analysis code); Lambda passes dicts
        records = records.to_dict("records")  # type: ignore[union-attr]
    recs = list(records)
    durations: list[float] = []
    data_bytes = per_worker = 0.0
    cold = ok = 0
    for rec in recs:
        billed = _num(rec, "billed_duration_ms")
        dur_s = _num(rec, "duration_s")
        if billed is not None:
            durations.append(billed)
        elif dur_s is not None:
            durations.append(billed_ms(dur_s * 1000.0, int(p["lambda"]["billing_granularity_ms"])))
        if str(rec.get("cold_start", "")).lower() in ("true", "1", "1.0"):
            cold += 1
        if str(rec.get("status", "ok")) != "ok":
            continue
        ok += 1
        nbytes = _num(rec, "data_bytes") or 0.0
        data_bytes += nbytes
        t_inf = _num(rec, "inference_s")
        if t_inf and t_inf > 0:
            per_worker += nbytes / t_inf
    lam = lambda_cost(durations, memory_mb, arch, ephemeral_mb, prices=p, already_billed=True)
    lam_extra = lambda_cost([float(x) for x in extra_lambda_ms], memory_mb, arch, ephemeral_mb, prices=p)
    items = len(recs)
    sfn = stepfunctions_cost(items, retries=retries, prices=p)
    s3 = s3_cost(**pipeline_s3_requests(items, cold), prices=p)
    lambda_usd = lam.total_usd + lam_extra.total_usd
    total = lambda_usd + sfn + s3
    data_gb, thr_pw = data_bytes / 1e9, per_worker / 1e9
    thr_e2e = data_gb / wall_s if wall_s and wall_s > 0 else float("nan")
    return {
        "prices_as_of": str(p.get("as_of")), "region": str(p.get("region")), "partitions": items,
        "partitions_ok": ok, "cold_starts": cold, "memory_mb_configured": float(memory_mb), "arch": arch,
        "billed_ms_total": lam.billed_ms_total + lam_extra.billed_ms_total,
        "gb_seconds": lam.gb_seconds + lam_extra.gb_seconds,
        "lambda_usd": lambda_usd, "stepfunctions_usd": sfn, "s3_usd": s3, "total_usd": total, "data_gb": data_gb,
        "wall_s": float(wall_s) if wall_s else float("nan"),
        "throughput_e2e_gb_s": thr_e2e,
        "throughput_per_worker_gb_s": thr_pw, "usd_per_gb": total / data_gb if data_gb > 0 else float("nan"),
        "efficiency_e2e_gb_s_per_usd": thr_e2e / total if total > 0 else float("nan"),  # end to end, per USD
        "efficiency_published_gb_s_per_usd": published_efficiency(thr_pw, total),
    }
