"""Parameter sweeps with papermill: one executed notebook per combination of a YAML grid, into
``SWEEP_RUNS_DIR/<name>/<slug>/``; ``_done.json`` makes a resumed sweep skip a point, ``_failed.json`` holds
why one failed (``cosmic sweep`` exits 3). Grid format and repeats: docs/cost_and_simulation.md, "Sweeps".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from cosmic_utils import config
from cosmic_utils.progress import progress
from cosmic_utils.provenance import stamped

log = logging.getLogger(__name__)

DONE_MARKER = "_done.json"
#: Runs of every point unless the grid file (``repeats:``) or ``cosmic sweep --repeats`` says otherwise.
DEFAULT_REPEATS = 3
FAILED_MARKER = "_failed.json"


@dataclass(frozen=True)
class Grid:
    """A parsed grid file."""

    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    kernel: str = "python3"
    source: Path | None = None
    repeats: int = DEFAULT_REPEATS

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid (in file order), as dicts of the grid parameters only."""
        return [dict(zip(self.grid, values, strict=True)) for values in itertools.product(*self.grid.values())]


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; errors name the file and the field."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a grid file must be a YAML mapping")
    for key in ("name", "notebook", "grid"):
        if key not in data:
            raise ValueError(f"{path}: missing field {key!r}")
    name = str(data["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{path}: field 'name' must be letters, digits, '_', '-', '.', got {name!r}")
    grid = data["grid"]
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"{path}: field 'grid' must be a non-empty mapping of parameter -> list")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"{path}: grid parameter {k!r} must be a non-empty list, got {v!r}")
    params = data.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{path}: field 'parameters' must be a mapping")
    if overlap := set(params) & set(grid):
        raise ValueError(f"{path}: parameters {sorted(overlap)} are both fixed and in the grid")
    repeats = data.get("repeats", DEFAULT_REPEATS)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{path}: field 'repeats' must be a whole number >= 1, got {repeats!r}")
    nb = config.PROJECT_ROOT / data["notebook"]  # an absolute notebook path stays as it is
    out = Grid(name=name, notebook=nb, parameters=dict(params), grid={k: list(v) for k, v in grid.items()},
               kernel=str(data.get("kernel", "python3")), source=path, repeats=repeats)
    for combo in out.combinations():  # aws: results named by the user, never a default bucket
        point = {**out.parameters, **combo}
        if point.get("backend") == "aws" and not str(point.get("results") or "").startswith("s3://"):
            raise ValueError(f"{path}: backend aws needs 'results: s3://bucket/prefix' (in parameters or grid); "
                             f"got {point.get('results')!r} for {combo}")
    return out


def _fmt(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9.-]+", "-", str(value)).strip("-")
    return text or "x"


def slug(combination: Mapping[str, Any]) -> str:
    """Folder name of a combination: sorted ``key-value`` pairs joined with ``__``, plus a short hash of the exact
    values when sanitising them was lossy or the name is long."""
    items = sorted(combination.items())
    text = "__".join(f"{re.sub(r'[^A-Za-z0-9_]+', '_', str(k))}-{_fmt(v)}" for k, v in items)
    exact = json.dumps([[k, repr(v)] for k, v in items])
    # lossless: the text gives the value back (a string that reads as a number would not)
    lossless = all(_fmt(v) == str(v) and (not isinstance(v, str) or isinstance(yaml.safe_load(v), str))
                   for _, v in items)
    if not lossless or len(text) > 80:
        text = f"{text[:80]}_{hashlib.sha1(exact.encode()).hexdigest()[:8]}"
    return text


def repeat_slug(point_slug: str, repeat: int) -> str:
    """Folder of one repeat of a point: the slug for repeat 1, ``<slug>__repeat-<r>`` for the others."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    return point_slug if repeat == 1 else f"{point_slug}__repeat-{repeat}"


def run_failures(out_dir: Path) -> tuple[str, list[dict[str, Any]]] | None:
    """``(why, failed partitions)`` when the run's ``summary.json`` is not a clean success, else None."""
    path = out_dir / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable summary.json: {exc}", []
    failed = list(summary.get("failed") or [])
    n_failed = int(summary.get("partitions_failed") or len(failed))
    status = str(summary.get("execution_status") or "")
    if summary.get("interrupted"):
        return f"run interrupted ({summary['interrupted'].get('signal')})", failed
    if n_failed:
        first = failed[0] if failed else {}
        return (f"{n_failed} of {summary.get('partitions')} partitions failed (first: {first.get('partition_id')}: "
                f"{' '.join(str(first.get('error') or '').split())[:300]})"), failed
    if status and status != "SUCCEEDED" or not summary.get("partitions"):
        cause = " ".join(str(summary.get("execution_cause") or summary.get("execution_error") or "").split())
        return f"execution {status or 'without partitions'}: {cause[:300]}", failed
    return None


def run_combination(grid: Grid, combination: Mapping[str, Any], out_dir: Path, kernel: str | None = None,
                    repeat: int = 1) -> dict[str, Any]:
    """Execute the notebook for one combination into ``out_dir`` and write its done/failed marker (with
    ``repeat``, which the notebook does not get: a repeat is the same point again)."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**grid.parameters, **combination, "output_dir": str(out_dir)}
    marked = {**params, "repeat": repeat}
    started = time.time()
    (out_dir / FAILED_MARKER).unlink(missing_ok=True)
    try:
        pm.execute_notebook(str(grid.notebook), str(out_dir / grid.notebook.name), parameters=params,
                            kernel_name=kernel or grid.kernel, progress_bar=False, cwd=str(grid.notebook.parent))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, the sweep continues
        failures = run_failures(out_dir)  # the run's own reason beats the notebook's traceback
        error = failures[0] if failures else f"{type(exc).__name__}: {exc}"
        return _failed(grid, out_dir, marked, started, error, failures[1] if failures else [])
    failures = run_failures(out_dir)
    if failures is not None:
        return _failed(grid, out_dir, marked, started, failures[0], failures[1])
    return _mark(out_dir, DONE_MARKER, {"status": "done", "parameters": marked}, started)


def _mark(out_dir: Path, marker: str, info: dict[str, Any], started: float) -> dict[str, Any]:
    """Write ``marker`` (``info`` with its seconds and finish time, stamped) and return that ``info``."""
    info.update(seconds=time.time() - started, finished=datetime.now(timezone.utc).isoformat())
    (out_dir / marker).write_text(json.dumps(stamped(info), indent=2, default=str), encoding="utf-8")
    return info


def _failed(grid: Grid, out_dir: Path, params: Mapping[str, Any], started: float, error: str,
            partitions: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``_failed.json`` (the point's reason and every failed partition) and return it."""
    (out_dir / DONE_MARKER).unlink(missing_ok=True)
    log.warning("sweep %s: %s failed: %s", grid.name, out_dir.name, (error.splitlines() or [""])[0][:200])
    return _mark(out_dir, FAILED_MARKER, {
        "status": "failed", "error": error[:4000], "parameters": dict(params),
        "failed_partitions": [{"partition_id": f.get("partition_id"), "error": f.get("error")} for f in partitions]},
        started)


def _parse_only(only: Sequence[str] | None) -> dict[str, set[str]]:
    """``--only`` filters as key -> accepted texts: values of one key are a union, different keys all apply."""
    out: dict[str, set[str]] = {}
    for item in only or ():
        if "=" not in item:
            raise ValueError(f"--only expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out.setdefault(k.strip(), set()).add(v.strip())
    return out


def select(grid: Grid, only: Sequence[str] | None) -> list[dict[str, Any]]:
    """The grid's combinations kept by ``only`` (:func:`_parse_only`); ValueError for a key not in the grid."""
    filters = _parse_only(only)
    for k in filters:
        if k not in grid.grid and k not in grid.parameters:
            raise ValueError(f"--only {k}=...: {k!r} is not a parameter of {grid.source}")
    return [c for c in grid.combinations()
            if all(str({**grid.parameters, **c}[k]) in vs for k, vs in filters.items())]


def validate_grid(path: str | Path) -> Grid:
    """:func:`load_grid` plus: the notebook exists and takes every parameter (papermill ignores a misspelt one)."""
    grid = load_grid(path)
    if not grid.notebook.exists():
        raise ValueError(f"{path}: notebook {grid.notebook} does not exist")
    import papermill as pm

    known = set(pm.inspect_notebook(str(grid.notebook)))  # the parameters cell, read without a kernel
    if unknown := sorted((set(grid.parameters) | set(grid.grid)) - known):
        raise ValueError(f"{path}: {unknown} are not parameters of {grid.notebook.name}")
    return grid


def run_sweep(grid_path: str | Path, dry_run: bool = False, only: Sequence[str] | None = None,
              sweeps_dir: Path | None = None, kernel: str | None = None,
              extra_parameters: Mapping[str, Any] | None = None,
              repeats: int | None = None) -> list[dict[str, Any]]:
    """Run every combination (:func:`select`) ``repeats`` times, resumable; one row per (combination, repeat)
    with ``status`` done | skipped | failed | planned."""
    grid = load_grid(grid_path)
    if repeats is not None:
        if repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {repeats}")
        grid = replace(grid, repeats=repeats)
    if extra_parameters:  # e.g. max_usd from `cosmic sweep --max-usd`: the same for every point
        grid = replace(grid, parameters={**grid.parameters, **extra_parameters})
    if not dry_run and not grid.notebook.exists():
        raise FileNotFoundError(f"{grid.source}: notebook {grid.notebook} does not exist")
    base = Path(sweeps_dir or config.SWEEP_RUNS_DIR) / grid.name
    combos = select(grid, only)
    slugs = [slug(c) for c in combos]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"{grid.source}: two combinations map to the same folder; check the grid values")
    rows: list[dict[str, Any]] = []
    # repeat-major: every point once, then every point again (a drift in the machine spreads over all points)
    plan = [(combo, name, r) for r in range(1, grid.repeats + 1) for combo, name in zip(combos, slugs, strict=True)]
    bar = progress(plan, desc=f"sweep {grid.name}", unit="run", disable=dry_run)
    for combo, point, repeat in bar:
        name = repeat_slug(point, repeat)
        out_dir = base / name
        row = {**combo, "repeat": repeat, "slug": name, "output_dir": str(out_dir), "seconds": 0.0, "error": ""}
        if (out_dir / DONE_MARKER).exists():
            row["status"] = "skipped"
        elif dry_run:
            row["status"] = "planned"
        else:
            bar.set_postfix_str(name[:40])
            info = run_combination(grid, combo, out_dir, kernel, repeat=repeat)
            row.update(status=info["status"], seconds=round(float(info["seconds"]), 2),
                       error=info.get("error", ""))
        rows.append(row)
    return rows


def point_status(folder: Path) -> tuple[str, Path | None]:
    """A point folder's status (done | failed | incomplete) and the marker file that says so (None: incomplete)."""

    for marker, status in ((DONE_MARKER, "done"), (FAILED_MARKER, "failed")):
        if (folder / marker).exists():
            return status, folder / marker
    return "incomplete", None


def sweep_status(name: str, sweeps_dir: Path | None = None) -> list[dict[str, Any]]:
    """Status of every combination folder of a sweep already on disk (:func:`point_status`)."""
    base = Path(sweeps_dir or config.SWEEP_RUNS_DIR) / name
    rows = []
    for d in sorted(p for p in base.glob("*") if p.is_dir()):
        status, marker = point_status(d)
        info = json.loads(marker.read_text()) if marker else {}
        rows.append({"slug": d.name, "status": status, "error": info.get("error", ""),
                     **{k: v for k, v in info.get("parameters", {}).items() if k != "output_dir"}})
    return rows
