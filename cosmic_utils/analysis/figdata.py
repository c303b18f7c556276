"""The tables the figures draw: sweep points with their repeats (median, min-max, n), this repository's
measured engine speed (``local_cpu.csv``) and the scale simulator run with it at the study's settings
(``projected_*``), apart from the drawing so a test checks every number without pixels. docs/figures.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import cost, simulate
from cosmic_utils.analysis import sweep_points as sweep_metrics
from cosmic_utils.analysis.fmt import machine_of

log = logging.getLogger(__name__)

#: The engine the Lambda image runs (ONNX Runtime, fp32): the projections use its measured speed.
LAMBDA_ENGINE = "onnx"


def sweep_points(recs: dict[str, pd.DataFrame], sweep: str, param: str, metrics: list[str],
                 backend: str | None = None, origin: str = "shipped", cpu: str | None = None) -> pd.DataFrame:
    """Median, min, max and n of each metric per value of ``param`` (``<metric>_med`` ...) of one series:
    ``origin``, ``backend`` and ``cpu`` filter it, so other machines' or scratch points never merge in."""
    pts = recs.get("sweep_points", pd.DataFrame())
    col = f"param_{param}"
    if pts.empty or col not in pts.columns:
        return pd.DataFrame()
    pts = pts[(pts["sweep"] == sweep) & (pts["origin"] == origin) & pts[col].notna()]
    for key, wanted in (("backend", backend), ("cpu", cpu)):
        if wanted is not None:
            pts = pts[pts[key].astype(str) == wanted]
    return sweep_metrics.aggregate(pts.assign(**{param: pts[col].astype(float)}), param, metrics)


def sweep_series(recs: dict[str, pd.DataFrame], sweep: str) -> list[tuple[str, str]]:
    """The ``(origin, cpu)`` series of a sweep's points: shipped first, then scratch runs, one per machine."""
    pts = recs.get("sweep_points", pd.DataFrame())
    if pts.empty:
        return []
    sub = pts[pts["sweep"] == sweep]
    return sorted({(str(o), str(c)) for o, c in zip(sub["origin"], sub["cpu"], strict=True)},
                  key=lambda oc: (oc[0] != "shipped", oc[1]))


def spread_text(points: pd.DataFrame) -> str:
    """What a drawn point is: "one run per point (n=1)" or "median, bar min-max (n=3)" (``n=1-3`` when mixed)."""
    lo, hi = (int(points["n"].min()), int(points["n"].max())) if not points.empty else (0, 0)
    if hi == 1:
        return "one run per point (n=1)"
    return f"median, bar min-max (n={lo})" if lo == hi else f"median, bar min-max (n={lo}-{hi})"


@dataclass(frozen=True)
class MeasuredRate:
    """Samples per second of one engine at one batch size, measured on one machine."""

    engine: str
    precision: str
    batch_size: int
    samples_per_s: float
    threads: int
    machine: str


def measured_rate(recs: dict[str, pd.DataFrame], batch_size: int, engine: str = LAMBDA_ENGINE) -> MeasuredRate | None:
    """The best measured samples/s of ``engine`` at ``batch_size`` (local CPU records), or None."""
    local = recs.get("local", pd.DataFrame())
    if local.empty or not {"engine", "batch_size", "samples_per_s"} <= set(local.columns):
        return None
    df = local[(local["engine"].astype(str) == engine) & (local["batch_size"].astype(int) == int(batch_size))]
    if "kind" in df.columns:
        df = df[df["kind"].astype(str) == "local_cpu"]
    if df.empty:
        return None
    best = df.loc[df["samples_per_s"].astype(float).idxmax()]
    return MeasuredRate(engine=engine, precision=str(best.get("precision", "fp32")), batch_size=int(batch_size),
                        samples_per_s=float(best["samples_per_s"]), threads=int(best.get("threads", 1) or 1),
                        machine=machine_of(df))


def project_partition(rate: MeasuredRate, data_gb: float, partition_mb: float, fitted: tuple | None = None,
                      n_partitions: int | None = None) -> dict[str, Any]:
    """One projected run: measured compute per partition through the fitted simulator, on a Lambda with the
    vCPU share the rate was measured with (no CPU scaling); throughput, efficiency, data size as the study's."""
    timing, orch = fitted or simulate.DEFAULTS
    lam = cost.load_prices()["lambda"]  # memory whose vCPU share (price table's MB per vCPU) is the rate's threads
    mem = float(min(float(lam["max_memory_mb"]), max(1.0, rate.threads) * float(lam["mb_per_vcpu"])))
    timing = replace(timing, reference_memory_mb=mem, inference_samples_s_per_mb=())
    inf = config.samples_per_partition(partition_mb) / rate.samples_per_s
    sim = simulate.simulate_run(data_gb, partition_mb, memory_mb=mem, timing=timing, orch=orch,
                                n_partitions=n_partitions, published_units=True, inference_s_mean=inf)
    gb = sim.partitions * partition_mb / 1024.0  # the study's GB: partition MB x Lambdas / 1024
    thr = gb / sim.mean_duration_s
    return {"data_gb": gb, "partition_mb": partition_mb, "memory_mb": mem, "lambdas": sim.partitions,
            "peak_concurrency": sim.max_concurrency_reached, "runtime_s": sim.mean_duration_s, "wall_s": sim.wall_s,
            "lambda_usd": sim.lambda_usd, "cost_usd": sim.cost_usd, "throughput_gb_s": thr,
            "efficiency": thr / sim.lambda_usd if sim.lambda_usd > 0 else float("nan"),
            "throughput_e2e_gb_s": gb / sim.wall_s}


def projected_batch(recs: dict[str, pd.DataFrame], batch_sizes: list[int], data_gb: float,
                    partition_mb: float, fitted: tuple | None = None) -> tuple[pd.DataFrame, MeasuredRate | None]:
    """Projection of the study's batch experiment (one Lambda, one partition) at each batch size."""
    rows, first = [], None
    for b in batch_sizes:
        rate = measured_rate(recs, b)
        if rate is None:
            continue
        first = first or rate
        rows.append({"batch_size": b, **project_partition(rate, data_gb, partition_mb, fitted, n_partitions=1)})
    return pd.DataFrame(rows), first


def projected_grid(recs: dict[str, pd.DataFrame], data_gbs: list[float], partition_mbs: list[float],
                   fitted: tuple | None = None, batch_size: int = 256) -> tuple[pd.DataFrame, MeasuredRate | None]:
    """Projection of every (data size, partition size) at the study's batch size."""
    rate = measured_rate(recs, batch_size)
    if rate is None:
        return pd.DataFrame(), None
    rows = [project_partition(rate, gb, mb, fitted) for gb in data_gbs for mb in partition_mbs]
    return pd.DataFrame(rows), rate


def published_claims(recs: dict[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """The study's claims table (``team6/study_claims.csv``) by claim name (empty when absent)."""
    df = recs.get("published_team6_claims", pd.DataFrame())
    if df.empty or "claim" not in df.columns:
        return {}
    return {str(r["claim"]): dict(r) for _, r in df.iterrows()}


def gbit_to_gb(v: float) -> float:
    """Gbit/s to GB/s (the study's laptop and GPU rows are bits/s / 1e9)."""
    return float(v) / 8.0


def local_data_size(recs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Median/min/max throughput and peak RSS per data size of the streamed local study (empty if absent)."""
    df = recs.get("local_data_size", pd.DataFrame())
    if df.empty or "data_gb" not in df.columns:
        return pd.DataFrame()
    sizes = df.assign(data_gb=df["data_gb"].astype(float))
    return sweep_metrics.aggregate(sizes, "data_gb", ["gb_per_s", "peak_rss_mb", "samples_per_s"])
