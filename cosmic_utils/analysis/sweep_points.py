"""The one reader of sweep points, and the one definition of each sweep metric.

Figures (:func:`cosmic_utils.analysis.figdata.sweep_points`) and the report's tables
(:func:`cosmic_utils.analysis.report.sweep_points`) both call :func:`read_points`, so a figure and
the table beside it show the same number for the same point. Before, the figure re-derived its
numbers from the per-partition ``records.csv`` (per-worker throughput from ``inference_s``,
efficiency end to end over the total bill) while the table used ``summary.json`` (per-worker
throughput from the handler duration, the study's efficiency over the Lambda bill): the
partition-size figure rose where the table fell, and batch-size throughputs differed by 5 %.

A point is one finished folder (``_done.json``) of a sweep: ``<base>/<sweep>/<slug>/`` holding
``summary.json``. Failed points and points with a failed partition are left out: their numbers
would describe part of the data as if it were all of it. Each row says where it comes from
(``origin``: shipped or scratch; ``record``: its folder) and the machine it ran on (``cpu``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

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
#: What a point without a CPU in its provenance says (records written before provenance existed).
NO_MACHINE = "machine not recorded in the record"
#: Older column names some figure code still asks for, and the metric each one is.
ALIASES: dict[str, str] = {"throughput_per_worker_gb_s": "worker_gb_s", "throughput_e2e_gb_s": "e2e_gb_s",
                           "efficiency_published_gb_s_per_usd": "efficiency"}
#: Summary fields every point must hold (dotted).
KEYS: tuple[str, ...] = ("data_gb", "wall_s", "partitions", "throughput.end_to_end_gb_s", "timing.sum_duration_s",
                         "cost.lambda_usd", "cost.total_usd", "billing.memory_mb_configured")


def _dig(data: Mapping[str, Any], dotted: str) -> Any:
    """``data['a']['b']`` for ``'a.b'``, or a flattened ``data['a.b']``; None when absent."""
    if dotted in data:
        return data[dotted]
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or cur.get(part) is None:
            return None
        cur = cur[part]
    return cur


def machine_text(info: Mapping[str, Any] | None) -> str:
    """``cpu_model, N cores`` of a provenance block, or :data:`NO_MACHINE`."""
    if not info or not _dig(info, "cpu_model"):
        return NO_MACHINE
    cores = _dig(info, "cpus") or _dig(info, "cpu_count")
    return f"{_dig(info, 'cpu_model')}, {int(cores)} cores" if cores else str(_dig(info, "cpu_model"))


def point_metrics(summary: Mapping[str, Any], source: str) -> dict[str, float]:
    """The :data:`METRICS` of one point from its ``summary.json`` (nested or flattened).

    A missing, non-numeric or non-finite field raises :class:`RecordError` naming ``source`` and the field.
    """
    num: dict[str, float] = {}
    for key in KEYS:
        try:
            num[key] = check_number(_dig(summary, key), source=source, field=key, lo=0.0)
        except RecordError as exc:
            raise RecordError(str(exc).replace(f"{source}: ", f"{source} is malformed: ", 1)) from None
    n = max(num["partitions"], 1.0)
    mean_s = num["timing.sum_duration_s"] / n
    worker = num["data_gb"] / mean_s if mean_s > 0 else float("nan")
    lam = num["cost.lambda_usd"]
    return {"data_gb": num["data_gb"], "wall_s": num["wall_s"], "e2e_gb_s": num["throughput.end_to_end_gb_s"],
            "worker_gb_s": worker, "mean_duration_s": mean_s, "lambda_usd": lam, "total_usd": num["cost.total_usd"],
            "efficiency": worker / lam if lam > 0 else float("nan"),
            "memory_mb": num["billing.memory_mb_configured"]}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    return data


def read_point(folder: Path, origin: str = "shipped", label: Any = None) -> dict[str, Any] | None:
    """One finished point folder: its parameters (``param_<name>``), ``repeat``, the :data:`METRICS`,
    ``cpu``, ``backend``, ``trained``, ``origin``, ``record``; None for a point with a failed
    partition. A malformed record raises :class:`RecordError` naming it (``label(path)``, default the path)."""
    name = label or (lambda q: str(q))
    p = Path(folder)
    done = _read(p / "_done.json")
    params = {k: v for k, v in (done.get("parameters") or {}).items() if k != "output_dir"}
    if not (p / "summary.json").is_file():
        raise RecordError(f"{name(p / 'summary.json')} is missing")
    summ = _read(p / "summary.json")
    ok, parts = summ.get("partitions_ok"), summ.get("partitions")
    if ok is not None and parts is not None and int(ok) < int(parts):
        log.warning("sweep point %s with failed partitions left out (%s/%s ok)", p, ok, parts)
        return None
    return {**{f"param_{k}": v for k, v in params.items()},
            "sweep": p.parent.name, "slug": p.name,
            "repeat": int(done.get("repeat") or params.get("repeat") or 1),
            **point_metrics(summ, name(p / "summary.json")),
            "cpu": machine_text(summ.get("provenance") or done.get("provenance") or done),
            "backend": str(summ.get("backend") or params.get("backend") or ""),
            "trained": (summ.get("model_info") or {}).get("model_trained"),
            "origin": origin, "record": name(p)}


def read_points(base: Path, sweep: str, param: str, origin: str = "shipped",
                label: Any = None) -> pd.DataFrame:
    """Every finished point of ``<base>/<sweep>/`` (:func:`read_point`), with the swept value as column ``param``."""
    name = label or (lambda q: str(q))
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


def all_points(records_dir: Path, sweep: str, param: str, runs_dir: Path | None = None) -> pd.DataFrame:
    """Every shipped point (data/records/sweeps and machines/*/sweeps) and, with ``runs_dir``, the scratch ones."""
    bases: list[tuple[Path, str]] = [(Path(records_dir) / "sweeps", "shipped")]
    bases += [(m / "sweeps", "shipped") for m in sorted((Path(records_dir) / "machines").glob("*")) if m.is_dir()]
    if runs_dir is not None:
        bases.append((Path(runs_dir) / "sweeps", "scratch"))
    frames = [read_points(b, sweep, param, origin) for b, origin in bases if (b / sweep).is_dir()]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
