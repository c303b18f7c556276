"""The runs browser (``cosmic runs``, notebook 04): one DataFrame row per run in runs/ and per shipped record
(local engine run, pipeline run, sweep point, bench) with origin, model, data, machine, engine, status and
the ``cosmic records ship`` verdict, built from the files on every call. docs/records.md, "The runs browser".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import admission, schemas
from cosmic_utils.provenance import portable_path

#: Columns of the table, in order.
COLUMNS: tuple[str, ...] = ("origin", "kind", "name", "model", "trained", "model_sigma_nmad", "data_gb", "samples",
                            "distinct_galaxies", "machine", "engine", "status", "shipped", "admission", "path")


def _model_cols(info: dict[str, Any]) -> dict[str, Any]:
    sha, trained, sig = info.get("model_sha256"), info.get("model_trained"), info.get("model_sigma_nmad")
    trained_s = ("not recorded" if trained is None or (isinstance(trained, float) and pd.isna(trained)) else
                 "trained" if str(trained).lower() in ("true", "1", "1.0") else "UNTRAINED")
    return {"model": str(sha)[:12] if isinstance(sha, str) and sha else "not recorded", "trained": trained_s,
            "model_sigma_nmad": float(sig) if sig is not None and not pd.isna(sig) else float("nan")}


def _summary_row(path: Path, kind: str, name: str) -> dict[str, Any]:
    s = schemas.read_object(path)
    prov = s.get("provenance") or {}
    data = s.get("data_info") or {}
    engine = ",".join(sorted((s.get("engine") or {}).get("used") or {})) or (s.get("request") or {}).get("engine", "")
    ok, n = s.get("partitions_ok"), s.get("partitions")
    info = {"model_sha256": s.get("model_sha256"), **{k: v for k, v in (s.get("model_info") or {}).items() if v is not None}}
    return {"kind": kind, "name": name, **_model_cols(info),
            "data_gb": s.get("data_gb"), "samples": s.get("samples"),
            "distinct_galaxies": data.get("distinct_galaxies"), "machine": prov.get("cpu_model") or "not recorded",
            "engine": engine, "status": f"{s.get('execution_status', '?')} {ok}/{n} ok", "path": path}


def _local_rows(path: Path) -> list[dict[str, Any]]:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return []
    if df.empty:
        return []
    rows = []
    for run_id, g in (df.groupby("run_id", sort=False) if "run_id" in df.columns else [(path.parent.name, df)]):
        first = g.iloc[0].to_dict()
        if first.get("model_trained") is None or pd.isna(first.get("model_trained")):
            first["model_trained"] = first.get("trained_model")
        rows.append({"kind": str(first.get("kind", "local_cpu")), "name": str(run_id), **_model_cols(first),
                     "data_gb": float(g["data_gb"].max()) if "data_gb" in g else float("nan"),
                     "samples": int(g["samples"].max()) if "samples" in g else None, "distinct_galaxies": None,
                     "machine": first.get("cpu_model") or "not recorded",
                     "engine": ",".join(sorted(set(g["engine"].astype(str)))) if "engine" in g else "",
                     "status": f"{len(g)} row(s)", "path": path})
    return rows


def _bench_row(path: Path) -> dict[str, Any]:
    d = schemas.read_object(path)
    meta, prov = d.get("meta") or {}, d.get("provenance") or {}
    return {"kind": "bench", "name": str(meta.get("run_id", path.parent.name)),
            **_model_cols({"model_trained": meta.get("trained_model")}), "data_gb": None, "samples": None,
            "distinct_galaxies": None, "machine": prov.get("cpu_model") or "not recorded",
            "engine": ",".join(sorted({str(r.get("engine")) for r in d.get("rows", [])})),
            "status": f"{len(d.get('rows', []))} row(s)", "path": path}


def _shipped(recs: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    bases = [recs, *sorted(p for p in (recs / "machines").glob("*") if p.is_dir())]
    for base in bases:
        for p in sorted(base.glob("pipeline_*_summary.json")):
            rows.append(_summary_row(p, "pipeline", p.name.removeprefix("pipeline_").removesuffix("_summary.json")))
        for p in sorted(base.glob("sweeps/*/*/summary.json")):
            rows.append(_summary_row(p, "sweep_point", f"{p.parent.parent.name}/{p.parent.name}"))
        for p in sorted(base.glob("local_*.csv")):
            if p.name != "local_data_size.csv":
                rows.extend(_local_rows(p))
        if (base / "bench.json").is_file():
            rows.append(_bench_row(base / "bench.json"))
    old = admission.grandfathered(recs)
    for r in rows:
        listed = admission.is_grandfathered(Path(r["path"]).relative_to(recs).as_posix(), old)
        r.update(origin="shipped", shipped=True, admission="admitted before rules" if listed else "shipped")
    return rows


def _scratch(runs: Path) -> list[dict[str, Any]]:
    verdicts = {(c.kind, c.name): ("admissible" if not c.failures else f"refused: {c.failures[0][0]}")
                for c in admission.candidates(runs)}
    rows: list[dict[str, Any]] = []
    for p in sorted(runs.glob("local/*/records.csv")):
        rows += [{**r, "admission": verdicts.get(("local", p.parent.name), "")} for r in _local_rows(p)]
    for p in sorted(runs.glob("sweeps/*/*/summary.json")):
        name = f"{p.parent.parent.name}/{p.parent.name}"
        rows.append({**_summary_row(p, "sweep_point", name), "admission": verdicts.get(("sweep_point", name), "")})
    pipes = [p for p in runs.glob("*/summary.json") if p.parent.name not in ("local", "sweeps", "bench")]
    for p in sorted([*pipes, *runs.glob("lambda_sweep/*/summary.json")]):
        rows.append({**_summary_row(p, "pipeline", p.parent.name),
                     "admission": verdicts.get(("pipeline", p.parent.name), "")})
    if (runs / "bench" / "bench.json").is_file():
        rows.append({**_bench_row(runs / "bench" / "bench.json"), "admission": verdicts.get(("bench", "bench.json"), "")})
    for r in rows:
        r.update(origin="scratch", shipped=False)
    return rows


def runs_table(runs_dir: Path | None = None, records_dir: Path | None = None) -> pd.DataFrame:
    """Every scratch run (runs/) and shipped record (data/records/), one row each (:data:`COLUMNS`)."""
    runs = Path(runs_dir or config.RUNS_DIR)
    recs = Path(records_dir or config.RECORDS_DIR)
    df = pd.DataFrame([*_scratch(runs), *_shipped(recs)], columns=list(COLUMNS))
    if not df.empty:
        df["path"] = df["path"].map(portable_path)
    return df
