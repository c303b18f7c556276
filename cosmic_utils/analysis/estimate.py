"""``cosmic sweep GRID... --estimate``: the whole study's cost and time before anything runs (aws points:
:func:`cosmic_utils.analysis.projection.project_point`; local points: 0 USD, wall clock from the measured
``local_data_size.csv`` rate). Reasoning: docs/cost_and_simulation.md, "Estimating a study".
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmic_utils import config


@dataclass
class PointEstimate:
    grid: str
    slug: str
    backend: str
    repeats: int
    partitions: int
    cost_usd: float | None
    wall_s: float | None
    basis: str
    dataset: tuple[float, float, int] | None
    upload: bool


def local_rate(path: Path | None = None) -> tuple[float, str] | None:
    """``(samples/s, description)`` of the measured ``cosmic local`` runs, or None without records."""
    path = path or config.RECORDS_DIR / "local_data_size.csv"
    if not path.exists():
        return None
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("kind", "measured") == "measured" and r.get("samples_per_s")]
    if not rows:
        return None
    rate = statistics.median(float(r["samples_per_s"]) for r in rows)
    cpus = sorted({r.get("cpu_model", "?") for r in rows})
    return rate, f"median of {len(rows)} measured `cosmic local` runs ({', '.join(cpus)}; {path.name})"


def estimate_points(grids: Iterable[Any], repeats: int | None = None) -> list[PointEstimate]:
    """One estimate per point of each grid (``sweep.Grid``); ``repeats`` overrides the grids'."""
    from cosmic_utils.analysis import simulate, sweep
    from cosmic_utils.analysis.projection import project_parameters

    rate = local_rate()
    out = []
    for grid in grids:
        reps = repeats or grid.repeats
        for combo in grid.combinations():
            p = {**grid.parameters, **combo}
            backend = str(p.get("backend", "local"))
            head = (grid.name, sweep.slug(combo), backend, reps)
            if p.get("data_gb") is None or p.get("partition_mb") is None:
                out.append(PointEstimate(*head, 0, None, None, "no data_gb / partition_mb: not projected",
                                         None, False))
                continue
            gb, mb = float(p["data_gb"]), float(p["partition_mb"])
            dataset = None if p.get("data_location") else (gb, mb, int(p.get("seed") or 0))
            n = simulate.partitions_for(gb, mb)
            if backend == "aws":
                proj = project_parameters(p)
                assert proj is not None  # data_gb and partition_mb are given
                out.append(PointEstimate(*head, proj.partitions, proj.cost_usd, proj.wall_s, "projection.project_point",
                                         dataset, bool(dataset and p.get("data_upload"))))
            else:
                wall = config.samples_for_gb(gb) / rate[0] if rate else None
                out.append(PointEstimate(*head, n, 0.0, wall, "local: samples / measured rate" if rate else
                                         "local: no measured rate", dataset, False))
    return out


def summarize(points: list[PointEstimate], upload_mbit_s: float, prepare_mb_s: float | None) -> dict[str, Any]:
    """Totals of :func:`estimate_points` (each dataset prepared and uploaded once)."""
    prepared = {p.dataset for p in points if p.dataset}
    uploaded = {p.dataset for p in points if p.dataset and p.upload}
    prep_bytes = sum(gb * config.GB for gb, _, _ in prepared)
    up_bytes = sum(gb * config.GB for gb, _, _ in uploaded)
    runs_cost = sum((p.cost_usd or 0.0) * p.repeats for p in points)
    runs_wall = sum((p.wall_s or 0.0) * p.repeats for p in points)
    upload_s = up_bytes * 8 / (upload_mbit_s * 1e6)
    prepare_s = prep_bytes / (prepare_mb_s * config.PARTITION_MB) if prepare_mb_s else None
    return {"points": len(points), "runs": sum(p.repeats for p in points),
            "unprojected": sum(p.wall_s is None for p in points),
            "cost_usd": runs_cost, "runs_wall_s": runs_wall,
            "datasets_prepared": len(prepared), "prepare_gb": prep_bytes / config.GB, "prepare_s": prepare_s,
            "datasets_uploaded": len(uploaded), "upload_gb": up_bytes / config.GB, "upload_s": upload_s,
            "total_s": runs_wall + upload_s + (prepare_s or 0.0)}


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "not projected"
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def render(points: list[PointEstimate], totals: dict[str, Any], upload_mbit_s: float,
           prepare_mb_s: float | None) -> list[str]:
    """The lines ``cosmic sweep --estimate`` prints."""
    lines = [f"{'point':<44} {'backend':>7} {'parts':>6} {'USD/run':>9} {'wall/run':>9} {'upload':>8}"]
    for p in points:
        cost = "n/a" if p.cost_usd is None else f"{p.cost_usd:.4g}"
        up = f"{p.dataset[0]:g} GB" if p.upload and p.dataset else "-"
        lines.append(f"{(p.grid + '/' + p.slug)[:44]:<44} {p.backend:>7} {p.partitions:>6} {cost:>9} "
                     f"{_hms(p.wall_s):>9} {up:>8}")
    rate = local_rate()
    lines += [
        f"TOTAL {totals['points']} points, {totals['runs']} runs: ~{totals['cost_usd']:.4g} USD projected, "
        f"runs ~{_hms(totals['runs_wall_s'])} wall clock (one after another)",
        f"  prepare {totals['datasets_prepared']} datasets, {totals['prepare_gb']:.4g} GB: "
        + (f"~{_hms(totals['prepare_s'])} at {prepare_mb_s:g} MB/s (--prepare-mb-s)" if prepare_mb_s else
           "not projected (no recorded preparation rate; give --prepare-mb-s)"),
        f"  upload {totals['datasets_uploaded']} datasets, {totals['upload_gb']:.4g} GB: ~{_hms(totals['upload_s'])} "
        f"at {upload_mbit_s:g} Mbit/s (assumed, --upload-mbit-s); S3 PUTs are in the per-run cost",
        f"  whole study: ~{_hms(totals['total_s'])}"
        + ("" if prepare_mb_s else " + preparation") + (f"; {totals['unprojected']} point(s) not projected"
                                                         if totals['unprojected'] else ""),
    ]
    if any(p.backend == "aws" for p in points):
        lines.append("  aws: PROJECTED by projection.project_point (simulator fitted on the published runs, this "
                     "repository's engine speed); prices us-east-1 (runtime/prices.yaml)")
    if any(p.backend != "aws" for p in points):
        lines.append("  local: cost 0; wall clock " + (f"projected from {rate[1]}, without per-invocation overhead"
                                                      if rate else "not projected (no local record)"))
    return lines
