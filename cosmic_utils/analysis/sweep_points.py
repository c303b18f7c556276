"""The one reader of sweep points (:func:`read_points`, :func:`read_point`), used by the figures and the
report's tables alike so both show the same number, and the one definition of each sweep metric. A point is
one finished folder (``_done.json`` + ``summary.json``). Reasoning: docs/records.md, "One reader for sweep points".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils.analysis import fmt, schemas
from cosmic_utils.runtime.strict import RecordError, check_number

log = logging.getLogger(__name__)

#: Every metric of a sweep point: its one definition, stated as a figure or table labels it.
METRICS: dict[str, str] = {
    "worker_gb_s": "throughput per worker (GB/s): data / mean partition duration, the study's formula",
    "e2e_gb_s": "throughput end to end (GB/s): data / execution wall clock",
    "efficiency": "GB/s per USD, the study's formula: per-worker throughput / Lambda USD",
    "lambda_usd": "Lambda USD of the run (configured memory x billed duration)",
    "total_usd": "USD of the run (Lambda + Step Functions + S3)",
    "mean_duration_s": "mean duration per partition (s, handler duration)",
    "data_gb": "data (GB, 1e9 bytes) of the succeeded partitions",
    "wall_s": "execution wall clock (s)",
    "memory_mb": "configured memory (MB)",
}
#: Older column names some figure code still asks for, and the metric each one is.
ALIASES: dict[str, str] = {"throughput_per_worker_gb_s": "worker_gb_s", "throughput_e2e_gb_s": "e2e_gb_s",
                           "efficiency_published_gb_s_per_usd": "efficiency"}
def point_metrics(summ: schemas.RunSummary) -> dict[str, float]:
    """The :data:`METRICS` of one point from its validated ``summary.json``."""
    mean_s = summ.timing.sum_duration_s / max(summ.partitions, 1)
    worker = summ.data_gb / mean_s if mean_s > 0 else float("nan")
    lam = summ.cost.lambda_usd
    return {"data_gb": summ.data_gb, "wall_s": summ.wall_s, "e2e_gb_s": summ.throughput.end_to_end_gb_s,
            "worker_gb_s": worker, "mean_duration_s": mean_s, "lambda_usd": lam, "total_usd": summ.cost.total_usd,
            "efficiency": worker / lam if lam > 0 else float("nan"),
            "memory_mb": summ.billing.memory_mb_configured}


def read_point(folder: Path, origin: str = "shipped", label: Any = None) -> dict[str, Any] | None:
    """One finished point folder: ``param_<name>``, ``repeat``, the :data:`METRICS`, ``cpu``, ``backend``, ``trained``,
    ``origin``, ``record``; None with a failed partition; :class:`RecordError` naming ``label(path)`` if malformed."""
    name = label or str
    p = Path(folder)
    done = schemas.load(schemas.SweepDone, p / "_done.json", name)
    params = {k: v for k, v in done.parameters.items() if k != "output_dir"}
    summ = schemas.load(schemas.RunSummary, p / "summary.json", name)
    if not summ.complete:
        log.warning("sweep point %s with failed partitions left out (%s/%s ok)", p, summ.partitions_ok,
                    summ.partitions)
        return None
    prov = summ.provenance or done.provenance or schemas.Provenance(cpu_model=done.cpu_model, cpus=done.cpus)
    return {**{f"param_{k}": v for k, v in params.items()}, "sweep": p.parent.name, "slug": p.name,
            "repeat": int(done.repeat or params.get("repeat") or 1), **point_metrics(summ),
            "cpu": fmt.machine(prov.model_dump()), "backend": str(summ.backend or params.get("backend") or ""),
            "trained": (summ.model_info or {}).get("model_trained"), "origin": origin, "record": name(p)}


def read_points(base: Path, sweep: str, param: str, origin: str = "shipped",
                label: Any = None) -> pd.DataFrame:
    """Every finished point of ``<base>/<sweep>/`` (:func:`read_point`), with the swept value as column ``param``."""
    name = label or str
    rows = []
    for p in sorted(q for q in (Path(base) / sweep).glob("*") if (q / "_done.json").is_file()):
        row = read_point(p, origin, name)
        if row is None:
            continue
        if f"param_{param}" not in row:
            raise RecordError(f"{name(p / '_done.json')}: field 'parameters.{param}' is missing")
        value = check_number(row[f"param_{param}"], source=name(p / "_done.json"), field=f"parameters.{param}")
        row.setdefault(param, value)  # data_gb is also a metric: the measured size, as the table shows it
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate(points: pd.DataFrame, param: str, metrics: Iterable[str]) -> pd.DataFrame:
    """Median, min, max (``<metric>_med`` ...) and ``n`` per value of ``param`` (one series: filter first)."""
    rows = []
    for value, df in points.groupby(param):
        row: dict[str, Any] = {param: float(value), "n": len(df)}
        for m in metrics:
            col = ALIASES.get(m, m)
            v = df[col].astype(float) if col in df.columns else pd.Series(dtype=float)
            row.update({f"{m}_med": v.median(), f"{m}_min": v.min(), f"{m}_max": v.max()})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(param).reset_index(drop=True) if rows else pd.DataFrame()
