"""Every run record the analysis reads as pandas DataFrames (:func:`load_all_records`); a missing or unreadable
source is an EMPTY frame and a log line. Sources: docs/architecture.md, "Run records"; docs/records.md.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import cost, lambda_model, schemas, simulate, sweep, sweep_points

log = logging.getLogger(__name__)

#: The streamed local data-size study (one row per size and repeat), read apart from the engine runs.
LOCAL_DATA_SIZE = "local_data_size.csv"
#: Folders under runs/ that are not pipeline runs.
_NOT_PIPELINE = {"local", "sweeps", "bench"}


def _read_csvs(paths: Iterable[Path], **extra: Any) -> pd.DataFrame:
    frames = []
    for p in sorted(set(paths)):
        try:
            df = pd.read_csv(p)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("skipping unreadable record file %s: %s", p, exc)
            continue
        if not df.empty:
            frames.append(df.assign(source_file=str(p), **extra))
    return pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def _read_json(path: Path) -> Any:
    try:
        return schemas.read_json(path)
    except schemas.RecordError as exc:
        log.warning("skipping %s", exc)
        return None


def _objects(paths: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """``(path, flattened object)`` of each of ``paths`` that holds a JSON object."""
    return [(p, _flatten(data)) for p in paths if isinstance(data := _read_json(p), dict)]


# ------------------------------------------------------------------ measured
def load_local(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """Local engine runs (``kind`` local_cpu | local_gpu), one row per run."""
    runs = Path(runs_dir or config.RUNS_DIR)
    recs = Path(records_dir or config.RECORDS_DIR)
    shipped = [p for p in recs.glob("local_*.csv") if p.name != LOCAL_DATA_SIZE]
    df = _read_csvs([*runs.glob("local/*/records.csv"), *shipped])
    if not df.empty and "kind" not in df.columns:
        df["kind"] = "local_cpu"
    # a run shipped to data/records/ and still in runs/ is one run, not two
    key = [c for c in ("run_id", "engine", "precision", "batch_size", "threads", "timestamp") if c in df.columns]
    if "run_id" in key:
        df = df.drop_duplicates(subset=key, keep="first").reset_index(drop=True)
    return df


def aggregate_repeats(df: pd.DataFrame, by: Iterable[str], value: str) -> pd.DataFrame:
    """Columns ``*by``, ``median``, ``lo``, ``hi``, ``n`` of ``value`` over the repeats of each point (NaN left out)."""
    by = list(by)
    missing = [c for c in [*by, value] if c not in df.columns]
    if missing:
        raise KeyError(f"aggregate_repeats: columns {missing} not in the records")
    grouped = df[[*by, value]].dropna(subset=[value]).groupby(by, dropna=False)[value]
    return grouped.agg(median="median", lo="min", hi="max", n="count").reset_index()


def _json_records(folder: Path, **extra: Any) -> pd.DataFrame:
    """Per-partition JSON records (``<run>/records/<partition>.json``) of runs without a records.csv."""
    paths = [p for p in sorted(folder.rglob("records/*.json")) if not (p.parent.parent / "records.csv").exists()]
    return pd.DataFrame([{**flat, "source_file": str(p), **extra} for p, flat in _objects(paths)])


def load_pipeline(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """Pipeline runs (records.csv, else per-partition JSON) and shipped ``pipeline_*.csv`` / ``aws_*.csv``."""
    runs = Path(runs_dir or config.RUNS_DIR)
    recs = Path(records_dir or config.RECORDS_DIR)
    paths = [p for p in runs.glob("*/records.csv") if p.parent.name not in _NOT_PIPELINE]
    frames = [_read_csvs([*paths, *recs.glob("pipeline_*.csv"), *recs.glob("aws_*.csv")])]
    pipes = sorted(p for p in runs.glob("*") if p.is_dir() and p.name not in _NOT_PIPELINE)
    frames += [_json_records(run) for run in pipes if not (run / "records.csv").exists()]
    frames = [f for f in frames if not f.empty]
    df = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame()
    if not df.empty:
        guess = df["source_file"].map(lambda s: Path(s).parent.name if s.endswith(".csv")
                                      else Path(s).parent.parent.name)
        df["run_id"] = df["run_id"].fillna(guess) if "run_id" in df.columns else guess
    return df


def load_pipeline_summaries(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """``summary.json`` of every pipeline run (flattened to columns), one row per run."""
    runs = Path(runs_dir or config.RUNS_DIR)
    recs = Path(records_dir or config.RECORDS_DIR)
    paths = [p for p in runs.glob("*/summary.json") if p.parent.name not in _NOT_PIPELINE]
    found = _objects(sorted([*paths, *recs.glob("pipeline_*summary*.json")]))
    return pd.DataFrame([{**flat, "run_id": flat.get("run_id", p.parent.name), "source_file": str(p)}
                         for p, flat in found])


def _sweep_combos(sweeps_dir: Path | None, records_dir: Path | None) -> list[tuple[Path, str, str]]:
    """Every sweep point folder with its origin (scratch | shipped) and ``point`` id (origins never merge)."""
    bases: list[tuple[Path, str]] = [(Path(sweeps_dir or config.SWEEP_RUNS_DIR), "scratch")]
    if records_dir is not None or sweeps_dir is None:
        recs = Path(records_dir or config.RECORDS_DIR)
        bases.append((recs / "sweeps", "shipped"))
        bases += [(m / "sweeps", "shipped") for m in sorted((recs / "machines").glob("*")) if m.is_dir()]
    combos = [(combo, origin) for base, origin in bases for combo in sorted(p for p in base.glob("*/*") if p.is_dir())]
    return [(combo, origin, f"{origin}:{combo.parent.parent.parent.name}:{combo.name}") for combo, origin in combos]


def load_sweep_points(sweeps_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """Every finished sweep point (:func:`.sweep_points.read_point`); a malformed one is logged and left out."""
    rows = []
    for combo, origin, point_id in _sweep_combos(sweeps_dir, records_dir):
        if not (combo / "_done.json").is_file():
            continue
        try:
            point = sweep_points.read_point(combo, origin)
        except sweep_points.RecordError as exc:
            log.warning("sweep point left out: %s", exc)
            continue
        if point is not None:
            rows.append({**point, "point": point_id})
    return pd.DataFrame(rows)


def load_sweeps(sweeps_dir: Path | None = None, records_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep records and summaries with sweep, slug, parameters and ``point`` columns."""
    rec_frames, summaries = [], []
    for combo, origin, point_id in _sweep_combos(sweeps_dir, records_dir):
        point_status, marker = sweep.point_status(combo)
        info = (_read_json(marker) or {}) if marker else {}
        params = {k: v for k, v in (info.get("parameters") or {}).items() if k != "output_dir"}
        tags = {"sweep": combo.parent.name, "slug": combo.name, "point_status": point_status, "origin": origin,
                "point": point_id, "repeat": int(params.pop("repeat", 1) or 1),
                **{f"param_{k}": v for k, v in params.items()}}
        df = _read_csvs(combo.rglob("records.csv"), **tags)
        if df.empty:
            df = _json_records(combo, **tags)
        if not df.empty:
            rec_frames.append(df)
        summaries += [{**flat, **tags, "source_file": str(p)} for p, flat in _objects(combo.rglob("summary.json"))]

    recs = pd.concat(rec_frames, ignore_index=True, sort=False) if rec_frames else pd.DataFrame()
    return recs, pd.DataFrame(summaries)


def load_bench(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """Rows of the newest valid bench.json (runs/bench first, then the shipped copy)."""
    for p in (Path(runs_dir or config.RUNS_DIR) / "bench" / "bench.json",
              Path(records_dir or config.RECORDS_DIR) / "bench.json"):
        if p.exists():
            try:
                df = pd.DataFrame(schemas.load(schemas.BenchRecord, p).rows)
            except schemas.RecordError as exc:
                log.warning("skipping bench record: %s", exc)
                continue
            return df.assign(source_file=str(p))
    return pd.DataFrame()


#: Column names accepted for the spectroscopic and the predicted redshift.
Z_SPEC_NAMES = ("z_spec", "redshift", "z_true", "true_redshift", "z")
Z_PRED_NAMES = ("z_pred", "prediction", "predicted_redshift", "pred", "z_hat")


def load_predictions(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """The newest predictions file holding both redshifts, as columns ``z_spec``, ``z_pred``."""
    runs = Path(runs_dir or config.RUNS_DIR)
    recs = Path(records_dir or config.RECORDS_DIR)
    cands = [*recs.glob("predictions*.csv"), *runs.glob("*/predictions*.csv"), *runs.glob("*/*/predictions*.csv"),
             *runs.glob("*/predictions"), *runs.glob("*/*/predictions")]
    for p in sorted(cands, key=lambda q: q.stat().st_mtime, reverse=True):
        if not (out := _read_predictions(p)).empty:
            return out.assign(source_file=str(p))
    return pd.DataFrame()


def _read_predictions(p: Path) -> pd.DataFrame:
    """``z_spec``, ``z_pred`` of a predictions CSV or a folder of per-partition CSVs (empty if none)."""
    try:
        if p.is_dir():  # one CSV per partition (the pipeline's layout)
            parts = sorted(p.glob("*.csv"))
            if not parts:
                return pd.DataFrame()
            df = pd.concat([pd.read_csv(q) for q in parts], ignore_index=True)
        else:
            df = pd.read_csv(p)
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame()
    spec = next((c for c in Z_SPEC_NAMES if c in df.columns), None)
    pred = next((c for c in Z_PRED_NAMES if c in df.columns), None)
    if not (spec and pred and spec != pred):
        return pd.DataFrame()
    return pd.DataFrame({"z_spec": df[spec], "z_pred": df[pred]}).dropna().reset_index(drop=True)


# ------------------------------------------------------------------ published
def _published_local_totals(path: Path, kind: str) -> pd.DataFrame:
    data = _read_json(path) if path.exists() else None
    if not isinstance(data, list):
        return pd.DataFrame()
    rows = []
    for d in data:
        sps = d.get("sample_persec")
        if isinstance(sps, list):  # the published file stores it as a one-element list
            sps = sps[0] if sps else None
        rows.append({"kind": kind, "data_gb": d.get("GB_processed"), "batch_size": d.get("batch_size"),
                     "wall_s": d.get("total_execution_time (seconds)"), "samples_per_s": sps,
                     "throughput_bps": d.get("throughput_bps"), "device": d.get("device")})
    return pd.DataFrame(rows)


def _rename(df: pd.DataFrame) -> pd.DataFrame:
    """snake_case with units: 'partition (MB)' -> partition_mb, 'total_cpu_time (seconds)' -> total_cpu_time_s."""
    def conv(c: str) -> str:
        c = c.replace("(seconds)", "_s").replace("(s)", "_s").replace("(MB)", "_mb").replace("(GB)", "_gb")
        c = re.sub(r"[^0-9a-zA-Z]+", "_", c).strip("_").lower()
        return re.sub(r"_+", "_", c)
    return df.rename(columns={c: conv(c) for c in df.columns})


def load_published(reference_dir: Path | None = None) -> dict[str, pd.DataFrame]:
    """The published reference numbers as DataFrames (snake_case columns, ``label='published'``)."""
    ref = Path(reference_dir or config.REFERENCE_DIR)
    out: dict[str, pd.DataFrame] = {}
    csvs = {
        "published_team6": ref / "team6" / "lambda_table.csv",
        "published_team6_devices": ref / "team6" / "device_comparison.csv",
        "published_team6_claims": ref / "team6" / "study_claims.csv",
        "published_cai_stats": ref / "cai" / "result_stats.csv",
        "published_cai_adjusted": ref / "cai" / "result_stats_adjusted.csv",
        "published_cai_batch": ref / "cai" / "batch_varying_results.csv",
        "published_cai_sfn": ref / "cai" / "total_execution_time.csv",
        "published_cai_sfn_large": ref / "cai" / "state_machine_logs.csv",
    }
    for key, path in csvs.items():
        try:
            df = _rename(pd.read_csv(path)) if path.exists() else pd.DataFrame()
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            log.warning("skipping unreadable reference %s: %s", path, exc)
            df = pd.DataFrame()
        if not df.empty:
            df["label"] = "published"
        out[key] = df
    sfn = out["published_cai_sfn"]
    if not sfn.empty and "duration" in sfn.columns:
        sfn["wall_s"] = sfn["duration"].map(simulate.duration_s)
    local = pd.concat([_published_local_totals(ref / "cai" / "local_cpu_total.json", "published_local_cpu"),
                       _published_local_totals(ref / "cai" / "local_gpu_total.json", "published_local_gpu")],
                      ignore_index=True)
    if not local.empty:
        local["label"] = "published"
    out["published_cai_local"] = local
    has_reports = (ref / "cai" / "lambda_report_lines.txt").exists()
    out["published_lambda_reports"] = pd.DataFrame(lambda_model.published_lambda_durations(ref) if has_reports else None)
    return out


# ------------------------------------------------------------------ everything
#: A runs folder that never exists: what the loaders read as "runs/" when scratch runs are left out.
NO_RUNS = Path("/nonexistent-cosmic-runs")


def load_all_records(runs_dir: Path | None = None, records_dir: Path | None = None,
                     reference_dir: Path | None = None, sweeps_dir: Path | None = None,
                     include_runs: bool = False) -> dict[str, pd.DataFrame]:
    """Every source above (missing ones empty), plus scratch runs with ``include_runs``, ``runs_dir`` or ``sweeps_dir``."""
    include_runs = include_runs or runs_dir is not None or sweeps_dir is not None
    runs = Path(runs_dir or config.RUNS_DIR) if include_runs else NO_RUNS
    recs = Path(records_dir or config.RECORDS_DIR)
    out: dict[str, pd.DataFrame] = {}
    out["local"] = local = load_local(runs, recs)
    out["gpu"] = local[local["kind"] == "local_gpu"].reset_index(drop=True) if not local.empty else pd.DataFrame()
    out["pipeline"] = pipe = load_pipeline(runs, recs)
    out["pipeline_summary"] = load_pipeline_summaries(runs, recs)
    out["aws"] = (pipe[pipe["backend"].astype(str) == "aws"].reset_index(drop=True)
                  if not pipe.empty and "backend" in pipe.columns else pd.DataFrame())
    out["sweeps"], out["sweep_summary"] = load_sweeps(sweeps_dir or runs / "sweeps", recs)
    out["sweep_points"] = load_sweep_points(sweeps_dir or runs / "sweeps", recs)
    out["local_data_size"] = _read_csvs([recs / LOCAL_DATA_SIZE]) if (recs / LOCAL_DATA_SIZE).exists() \
        else pd.DataFrame()
    out["bench"] = load_bench(runs, recs)
    out["predictions"] = load_predictions(runs, recs)
    val = recs / "simulator_validation.csv"
    out["simulator_validation"] = _read_csvs([val]) if val.exists() else pd.DataFrame()
    for df in out.values():
        if not df.empty and "source_file" in df.columns and "origin" not in df.columns:
            df["origin"] = ["shipped" if str(f).startswith(str(recs)) else "scratch" for f in df["source_file"]]
    out.update(load_published(reference_dir))
    for key, df in out.items():
        log.debug("records %s: %d rows", key, len(df))
    return out


# ------------------------------------------------------------------ per-run table
#: Summary keys that may hold a run's Step Functions wall clock (first found wins).
WALL_KEYS = ("wall_s", "wall_clock_s", "execution_s", "sfn_wall_s", "total_s", "total_duration_s", "duration_s")


def _wall_from_summary(row: pd.Series) -> float:
    for key in WALL_KEYS:
        for col in row.index:
            if col == key or col.endswith("." + key):
                try:
                    return float(row[col])
                except (TypeError, ValueError):
                    continue
    return float("nan")


def runs_table(records: pd.DataFrame, summaries: pd.DataFrame | None = None,
               group: Iterable[str] = ("run_id",), memory_mb: float | None = None) -> pd.DataFrame:
    """One row per run (``group``) of per-partition records: data, durations, wall clock and cost."""

    group = [g for g in group if g in records.columns]
    if records.empty or not group:
        return pd.DataFrame()
    walls: dict[tuple, float] = {}
    if summaries is not None and not summaries.empty and all(g in summaries.columns for g in group):
        walls = {tuple(srow[g] for g in group): _wall_from_summary(srow) for _, srow in summaries.iterrows()}
    rows = []
    for key, df in records.groupby(group, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        has_mem = "memory_mb" in df.columns and df["memory_mb"].notna().any()
        mem = (float(df["memory_mb"].dropna().iloc[0]) if has_mem else memory_mb) or 3008.0
        wall = walls.get(key, float("nan"))
        summ = cost.summarize_pipeline_cost(df.to_dict("records"), mem, "x86_64",
                                            wall_s=None if pd.isna(wall) else wall)
        row: dict[str, Any] = dict(zip(group, key, strict=True))
        for col in df.columns:
            if col.startswith("param_") or col in ("batch_size", "engine", "backend"):
                row[col.removeprefix("param_")] = df[col].iloc[0]
        mb = df["data_bytes"].astype(float).mean() / config.PARTITION_MB if "data_bytes" in df.columns else float("nan")
        row.update({
            "partition_mb_measured": mb,
            "mean_duration_s": float(df["duration_s"].astype(float).mean()) if "duration_s" in df.columns else float("nan"),
            **{k: summ[k] for k in ("partitions", "partitions_ok", "memory_mb_configured", "data_gb", "wall_s",
                                    "total_usd", "usd_per_gb", "throughput_e2e_gb_s", "throughput_per_worker_gb_s",
                                    "efficiency_e2e_gb_s_per_usd", "efficiency_published_gb_s_per_usd")},
        })
        row["memory_mb"] = row.get("memory_mb", row["memory_mb_configured"])
        rows.append(row)
    return pd.DataFrame(rows)
