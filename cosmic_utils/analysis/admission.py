"""Which records may enter ``data/records/``, and the one command that ships them (``cosmic records ship``):
:func:`ship` applies :data:`RULES` and refuses a failing run with one line naming the rule. Other machines'
records go to ``machines/<machine>/``. Rules and reasoning: docs/records.md, "Admission rules".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import schemas
from cosmic_utils.provenance import portable, portable_path, portable_text

#: Every rule by name, with the one-line statement printed with a refusal.
RULES: dict[str, str] = {
    "trained-model": "the record's model is trained and scores at or under the kNN anchor's validation sigma_NMAD",
    "data-size": "at least the data size the figure's study section uses",
    "machine-named": "the record names the CPU it ran on",
    "repeats": "at least 3 repeats of a point where its figure draws a spread",
    "complete": "every partition of the run succeeded",
    "immutable": "a shipped record is never replaced (a same-machine single-file record excepted)",
}
#: Fewest samples of a local engine run (``local_cpu.csv``): the bench's 512 samples, two full batches of 256.
MIN_SAMPLES: int = 512
#: Smallest data size (GB) of a sweep point per sweep: the size the shipped sweep and its report section use.
MIN_SWEEP_GB: dict[str, float] = {"batch_size": 0.1, "partition_size": 0.2, "data_size": 0.05,
                                  "lambda_memory": 0.1, "engine": 0.1}
#: Smallest data size (GB) of a pipeline run: the 0.2 GB demo run of the report's pipeline rows.
MIN_PIPELINE_GB: float = 0.2
#: Sweeps whose figure draws the min-max spread over repeats.
SPREAD_SWEEPS: frozenset[str] = frozenset({"batch_size", "partition_size", "lambda_memory"})
MIN_REPEATS: int = 3
#: The file naming the records shipped before the admission rules (one project-relative path a line).
GRANDFATHERED_FILE = "admitted_before_rules.txt"


def machine_slug(cpu_model: str, isa: str = "") -> str:
    """Folder name of a machine: ``AMD EPYC`` + ``avx2`` -> ``amd-epyc-avx2``."""
    words = re.sub(r"\((R|TM|tm|r)\)|\bCPU\b|@.*$", " ", str(cpu_model))
    slug = re.sub(r"[^a-z0-9]+", "-", f"{words} {isa}".lower()).strip("-")
    return slug or "unknown-machine"


def machine_dir(slug: str, records_dir: Path | None = None) -> Path:
    """data/records/ for the primary machine (the one its bench.json names, or any if none), else ``machines/<slug>/``."""
    recs = Path(records_dir or config.RECORDS_DIR)
    prov = schemas.read_object(recs / "bench.json").get("provenance") or {}
    primary = machine_slug(prov["cpu_model"], prov.get("isa", "")) if prov.get("cpu_model") else ""
    return recs if slug == primary or not primary else recs / "machines" / slug


def grandfathered(records_dir: Path | None = None) -> set[str]:
    """Paths (relative to data/records/) admitted before the rules, listed in :data:`GRANDFATHERED_FILE`."""
    path = Path(records_dir or config.RECORDS_DIR) / GRANDFATHERED_FILE
    if not path.is_file():
        return set()
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return {ln for ln in lines if ln}


def is_grandfathered(rel: str, old: set[str]) -> bool:
    """``rel`` (relative to data/records/) is listed in ``old``, by name or under a listed ``folder/``."""
    return rel in old or any(rel.startswith(g.rstrip("/") + "/") for g in old if g.endswith("/"))


# ------------------------------------------------------------------ one candidate
@dataclass
class Candidate:
    """A run in runs/ that could be shipped: its kind, what the rules read, where it would go."""

    kind: str  # local | sweep_point | pipeline | bench | reliability
    name: str  # run id or sweep/slug
    source: Path
    fields: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    def refusal(self) -> str:
        """One line: what was refused, the first rule broken and why."""
        rule, why = self.failures[0]
        more = f" (+{len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        return f"refused {self.kind} {self.name}: rule {rule}: {why}{more}"


def _model_rule(c: Candidate, info: Mapping[str, Any]) -> None:
    sha, trained = info.get("model_sha256"), info.get("model_trained")
    sig, knn = info.get("model_sigma_nmad"), info.get("model_knn_sigma_nmad")
    if not sha:
        c.failures.append(("trained-model", "the record names no model (no model_sha256)"))
    elif trained is False or str(trained).lower() == "false":
        c.failures.append(("trained-model", f"model {str(sha)[:12]} is UNTRAINED"))
    elif sig is None or knn is None or pd.isna(sig) or pd.isna(knn):
        c.failures.append(("trained-model", f"model {str(sha)[:12]} has no validation sigma_NMAD beside the kNN anchor"))
    elif float(sig) > float(knn):
        c.failures.append(("trained-model", f"model {str(sha)[:12]} sigma_NMAD {float(sig):.4f} is above the kNN "
                                            f"anchor's {float(knn):.4f}"))


def _machine_rule(c: Candidate, prov: Mapping[str, Any]) -> None:
    """Keep the machine ``prov`` names in ``c.fields``; ``machine-named`` fails when it names none."""
    cpu = prov.get("cpu_model")
    c.fields.update(cpu_model=cpu, isa=prov.get("isa", ""))
    if not cpu or (isinstance(cpu, float) and pd.isna(cpu)):
        c.failures.append(("machine-named", "no cpu_model in the record's provenance"))


def _local(run: Path) -> Candidate:
    c = Candidate("local", run.name, run)
    try:
        df = pd.read_csv(run / "records.csv")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        c.failures.append(("complete", f"records.csv unreadable: {exc}"))
        return c
    c.fields["rows"] = df
    if df.empty:
        c.failures.append(("complete", "records.csv has no rows"))
        return c
    first = df.iloc[0].to_dict()
    _model_rule(c, first)
    small = df[df["samples"].astype(float) < MIN_SAMPLES] if "samples" in df.columns else df
    if not small.empty:
        c.failures.append(("data-size", f"{len(small)} row(s) with fewer than {MIN_SAMPLES} samples (smallest "
                                        f"{int(small['samples'].min()) if 'samples' in small else 0})"))
    _machine_rule(c, first)
    return c


def _summary_checks(c: Candidate, summ: Mapping[str, Any], min_gb: float) -> None:
    _model_rule(c, summ.get("model_info") or {})
    gb = float(summ.get("data_gb") or 0.0)
    if gb < min_gb * 0.99:
        c.failures.append(("data-size", f"{gb:.3g} GB is under the {min_gb:g} GB its section uses"))
    if int(summ.get("partitions_ok") or 0) < int(summ.get("partitions") or 1) or summ.get("partitions", 0) == 0:
        c.failures.append(("complete", f"{summ.get('partitions_ok')}/{summ.get('partitions')} partitions ok"))
    _machine_rule(c, summ.get("provenance") or {})


def _pipeline(run: Path) -> Candidate:
    c = Candidate("pipeline", run.name, run)
    _summary_checks(c, schemas.read_object(run / "summary.json"), MIN_PIPELINE_GB)
    return c


def _sweep_point(combo: Path) -> Candidate:
    c = Candidate("sweep_point", f"{combo.parent.name}/{combo.name}", combo)
    done = schemas.read_object(combo / "_done.json")
    c.fields["parameters"] = {k: v for k, v in (done.get("parameters") or {}).items() if k != "output_dir"}
    _summary_checks(c, schemas.read_object(combo / "summary.json"), MIN_SWEEP_GB.get(combo.parent.name, 0.0))
    return c


def _single(kind: str, src: Path, prov_of: Path) -> Candidate:
    c = Candidate(kind, src.name, src)
    _machine_rule(c, schemas.read_object(prov_of).get("provenance") or schemas.read_object(prov_of))
    return c


def candidates(runs_dir: Path | None = None, records_dir: Path | None = None) -> list[Candidate]:
    """Every finished run in ``runs_dir`` that could be shipped, rules applied (repeats count the shipped too)."""
    runs = Path(runs_dir or config.RUNS_DIR)
    out = [_local(run) for run in sorted(p.parent for p in runs.glob("local/*/records.csv"))]
    out += [_sweep_point(combo) for combo in sorted(p.parent for p in runs.glob("sweeps/*/*/_done.json"))]
    pipelines = [p.parent for p in runs.glob("*/summary.json") if p.parent.name not in {"local", "sweeps", "bench"}]
    pipelines += [p.parent for p in runs.glob("lambda_sweep/*/summary.json")]
    out += [_pipeline(run) for run in sorted(pipelines)]
    if (runs / "bench" / "bench.json").is_file():
        out.append(_single("bench", runs / "bench" / "bench.json", runs / "bench" / "bench.json"))
    rel = runs / "reliability"
    if (rel / "reliability.csv").is_file():
        out.append(_single("reliability", rel / "reliability.csv", rel / "reliability_provenance.json"))
    _repeats_rule([c for c in out if c.kind == "sweep_point"], records_dir)
    return out


def _repeats_rule(points: list[Candidate], records_dir: Path | None = None) -> None:
    """Fail the points of a spread sweep with fewer than MIN_REPEATS repeats (runs + shipped, same machine)."""
    counts: dict[tuple[str, str, str], int] = {}
    for c in points:
        if c.failures:
            continue
        swept = {k: v for k, v in c.fields.get("parameters", {}).items() if k != "repeat"}
        k = (c.source.parent.name, _slug(c), json.dumps(swept, sort_keys=True, default=str))
        counts[k] = counts.get(k, 0) + 1
        c.fields["_repeat_key"] = k
    for c in points:
        k = c.fields.get("_repeat_key")
        if k is None or k[0] not in SPREAD_SWEEPS:
            continue
        n = counts[k] + _shipped_repeats(k[0], k[1], c.fields.get("parameters", {}), records_dir)
        if n < MIN_REPEATS:
            c.failures.append(("repeats", f"{n} repeat(s) of this point (runs + shipped), its figure draws a spread "
                                          f"(needs {MIN_REPEATS})"))


def _shipped_repeats(sweep: str, slug: str, params: Mapping[str, Any], records_dir: Path | None) -> int:
    base = machine_dir(slug, records_dir) / "sweeps" / sweep
    want = {k: v for k, v in params.items() if k != "repeat"}
    return sum({k: v for k, v in (schemas.read_object(done).get("parameters") or {}).items()
                if k not in ("repeat", "output_dir")} == want for done in base.glob("*/_done.json"))


# ------------------------------------------------------------------ shipping
def _write(src: Path, dst: Path) -> str:
    """Copy a text record with this machine's paths made portable; 'shipped' / 'already shipped'."""
    text = portable_text(src.read_bytes().decode("utf-8"))
    if dst.is_file():
        if dst.read_text(encoding="utf-8") == text:
            return "already shipped"
        raise FileExistsError(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(text.encode("utf-8"))
    return "shipped"


def _slug(c: Candidate) -> str:
    return machine_slug(c.fields.get("cpu_model") or "", c.fields.get("isa") or "")


def _ship_one(c: Candidate, recs: Path) -> list[str]:
    base = machine_dir(_slug(c), recs)
    lines: list[str] = []
    if c.kind == "local":
        rows: pd.DataFrame = c.fields["rows"]
        kind = str(rows["kind"].iloc[0]) if "kind" in rows.columns else "local_cpu"
        dst = base / f"{kind}.csv"
        key = [k for k in ("run_id", "engine", "precision", "batch_size", "threads", "timestamp") if k in rows.columns]
        old = pd.read_csv(dst) if dst.is_file() else pd.DataFrame()
        if not old.empty and key and set(key) <= set(old.columns):
            have = set(map(tuple, old[key].astype(str).to_numpy()))
            rows = rows[[tuple(r) not in have for r in rows[key].astype(str).to_numpy()]]
        if rows.empty:
            return [f"already shipped local {c.name}"]
        rows = pd.DataFrame([portable(r) for r in rows.drop(columns=["source_file"], errors="ignore").to_dict("records")])
        dst.parent.mkdir(parents=True, exist_ok=True)
        merged = pd.concat([old, rows], ignore_index=True, sort=False) if not old.empty else rows
        merged.to_csv(dst, index=False)  # append-only: old rows are kept as they were
        return [f"shipped local {c.name}: {len(rows)} row(s) -> {portable_path(dst)}"]
    if c.kind == "sweep_point":
        sweep, slug = c.name.split("/", 1)
        dst = base / "sweeps" / sweep / slug
        for name in ("_done.json", "records.csv", "summary.json", "request.json"):
            if (c.source / name).is_file():
                lines.append(f"{_write(c.source / name, dst / name)} {dst / name}")
        return [f"{'already shipped' if all(x.startswith('already') for x in lines) else 'shipped'} sweep point "
                f"{c.name} -> {portable_path(dst)}"]
    if c.kind == "pipeline":
        for src, name in ((c.source / "records.csv", f"pipeline_{c.name}.csv"),
                          (c.source / "summary.json", f"pipeline_{c.name}_summary.json")):
            if src.is_file():
                lines.append(f"{_write(src, base / name)} {name}")
        return [f"pipeline {c.name}: " + "; ".join(lines)]
    # single-file records of one machine: a newer one of the same machine replaces it
    names = {"bench": ("bench.json", "engine_checks.json"),
             "reliability": ("reliability.csv", "reliability.md", "reliability_provenance.json")}[c.kind]
    for name in names:
        src = c.source.parent / name
        if src.is_file():
            (base / name).unlink(missing_ok=True)
            lines.append(f"{_write(src, base / name)} {name}")
    return [f"{c.kind} ({_slug(c)}): " + "; ".join(lines)]


@dataclass
class ShipResult:
    """What :func:`ship` did: one line per shipped run and per refused run."""

    shipped: list[str]
    refused: list[str]


def ship(runs_dir: Path | None = None, records_dir: Path | None = None, dry_run: bool = False) -> ShipResult:
    """Copy every run in runs/ that the rules admit into data/records/ (overwriting nothing: ``immutable``)."""
    recs = Path(records_dir or config.RECORDS_DIR)
    shipped, refused = [], []
    for c in candidates(runs_dir, recs):
        if c.failures:
            refused.append(c.refusal())
            continue
        if dry_run:
            shipped.append(f"would ship {c.kind} {c.name}")
            continue
        try:
            shipped.extend(_ship_one(c, recs))
        except FileExistsError as exc:
            refused.append(f"refused {c.kind} {c.name}: rule immutable: {exc} is shipped and differs "
                           f"(remove it with git rm to replace it on purpose)")
    return ShipResult(shipped, refused)


# ------------------------------------------------------------------ checking what is shipped
def check_shipped(records_dir: Path | None = None) -> list[str]:
    """Shipped files neither grandfathered nor passing ``trained-model`` (summaries and local CSVs only)."""

    recs = Path(records_dir or config.RECORDS_DIR)
    old = grandfathered(recs)
    problems = []
    for p in sorted(recs.rglob("*")):  # every shipped record file (READMEs and the grandfather list excluded)
        rel = p.relative_to(recs).as_posix()
        if not p.is_file() or p.name in ("README.md", GRANDFATHERED_FILE) or is_grandfathered(rel, old):
            continue
        c = Candidate("shipped", rel, p)
        if p.name == "summary.json" or (p.name.startswith("pipeline_") and p.suffix == ".json"):
            _model_rule(c, schemas.read_object(p).get("model_info") or {})
        elif p.suffix == ".csv" and p.name.startswith("local_cpu"):
            for _, row in pd.read_csv(p).iterrows():
                _model_rule(c, row.to_dict())
        if c.failures:
            problems.append(c.refusal().replace("refused shipped", "shipped record fails:"))
    return problems
