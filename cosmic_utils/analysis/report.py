"""docs/report.md, written from the stored records: the seed study (DS5110 Team 6), claim by claim.

Section functions return numbers, tables and verdicts; the prose is ``templates/report.md.j2`` (claims:
``report_parts.j2``). A missing or malformed record is a :class:`ReportError` naming the file (``cosmic report``
exits 1). Reasoning: docs/records.md#the-report-as-a-template, docs/cost_and_simulation.md#the-report-make-report.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import figdata, lambda_model, schemas, simulate
from cosmic_utils.analysis import sweep_points as sp
from cosmic_utils.analysis.fmt import g, galaxies_text, machine, pub_g, rewrite, table, x_text
from cosmic_utils.analysis.records import aggregate_repeats, load_local

#: Every figure the report embeds (stems of figures/<stem>.png, drawn by ``cosmic figures``).
FIGURE_STEMS: tuple[str, ...] = (
    "lambda_batch_size", "lambda_partition_size", "lambda_data_size", "local_backend_sweeps",
    "local_batch_size", "local_data_size", "local_gpu_lambda", "memory_cost_duration", "scale_simulation",
    "simulator_validation", "redshift_pred_vs_spec", "model_evaluation_default", "lambda_engine_projection",
)

#: The report's section titles, in order (the template writes them; a test checks every one is present).
SECTIONS: tuple[str, ...] = (
    "Batch size", "Partition size", "Larger data sizes", "Local computer", "Local vs GPU vs Lambda",
    "This repository's Lambda engine, projected to Lambda", "Accuracy", "Observations", "Claims of the study",
)

VERDICTS = ("supported", "not supported", "not testable here")

#: Relative spread (max-min over median) under which a throughput counts as flat.
FLAT_SPREAD = 0.25

#: Run-to-run spread of one bench ratio on these shared machines (up to 12 % over three quiet
#: `make bench` runs, docs/inference.md); a projected difference smaller than this decides no claim.
RUN_TO_RUN_NOISE: float = 0.10

#: Extra Lambda cost (relative) a fallback may add and still count as "good".
FALLBACK_COST = 0.05


class ReportError(ValueError):
    """A record the report needs is missing or malformed (the message names it)."""


# ------------------------------------------------------------------ strict readers
@dataclass
class Sources:
    """Where the report reads from (tests point these at copies)."""

    records: Path = field(default_factory=lambda: config.RECORDS_DIR)
    reference: Path = field(default_factory=lambda: config.REFERENCE_DIR)

    def rel(self, path: Path) -> str:
        """A record's name as the report prints it (``data/records/...``)."""
        for base, label in ((self.records, "data/records"), (self.reference, "data/reference")):
            if path.is_relative_to(base):
                return f"{label}/{path.relative_to(base).as_posix()}"
        return str(path)


def read_csv(src: Sources, path: Path, columns: Iterable[str]) -> pd.DataFrame:
    """A CSV with at least ``columns`` and one row, else :class:`ReportError` naming it."""
    if not path.is_file():
        raise ReportError(f"record {src.rel(path)} is missing")
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ReportError(f"record {src.rel(path)} is unreadable: {exc}") from exc
    lacking = [c for c in columns if c not in df.columns]
    if df.empty or lacking:
        raise ReportError(f"record {src.rel(path)} is malformed: " + (f"lacks columns {lacking}" if lacking
                                                                       else "no rows"))
    return df


def read_json(src: Sources, path: Path, keys: Iterable[str], kind: type[schemas.Record] | None = None) -> dict[str, Any]:
    """A JSON object (validated as ``kind``) holding every dotted key of ``keys``, else :class:`ReportError`."""
    try:
        data = schemas.read_json(path, src.rel(path))
        if kind is not None or not isinstance(data, dict):
            schemas.validate(kind or schemas.Record, data, src.rel(path))
    except schemas.RecordError as exc:
        raise ReportError(f"record {exc}") from None
    for key in keys:
        try:
            dig(data, key)
        except KeyError:
            raise ReportError(f"record {src.rel(path)} is malformed: lacks {key!r}") from None
    return data


def dig(data: Mapping[str, Any], dotted: str) -> Any:
    """``data['a']['b']`` for ``'a.b'`` (KeyError when absent or None)."""
    cur: Any = data
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or cur.get(part) is None:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


# ------------------------------------------------------------------ template
def figure(stem: str, caption: str) -> str:
    """An embedded figure (relative link from docs/) with its caption."""
    if stem not in FIGURE_STEMS:
        raise ValueError(f"figure {stem!r} is not in FIGURE_STEMS")
    return f"![{caption}](../figures/{stem}.png)\n\n*Figure `{stem}`: {caption}*"


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True, autoescape=False)
    env.filters.update(g=g, pub_g=pub_g, x_text=x_text, n=lambda x: f"{int(x):,}", fmt=format,
                       cell=lambda s: str(s).replace("|", "/"))
    env.globals.update(figure=figure)
    return env


def say(name: str, **values: Any) -> str:
    """The text of macro ``name`` of ``templates/report_parts.j2`` (claims, evidence, labels)."""
    return str(getattr(_env().get_template("report_parts.j2").module, name)(**values))


@dataclass(frozen=True)
class Claim:
    """One claim of the study with this repository's verdict and evidence."""

    claim: str
    verdict: str
    evidence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


# ------------------------------------------------------------------ sweeps and projections
def sweep_points(src: Sources, sweep: str, param: str) -> pd.DataFrame:
    """One row per (point, repeat) of the primary machine's shipped sweep, by the figures' reader
    (:func:`.sweep_points.read_points`): failed points left out, a malformed record is a :class:`ReportError`."""
    base = src.records / "sweeps" / sweep
    if not any((p / "_done.json").is_file() for p in base.glob("*")):
        raise ReportError(f"record {src.rel(base)} is missing (no finished sweep point; run `cosmic sweep "
                          f"sweeps/{sweep}.yaml` then `make records`)")
    try:
        return sp.read_points(src.records / "sweeps", sweep, param, label=src.rel)
    except sp.RecordError as exc:
        raise ReportError(f"record {exc}") from exc


def median_by(df: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Median, min, max and n of ``value`` per ``by`` (repeats aggregated)."""
    return aggregate_repeats(df, by=[by], value=value).set_index(by)


def spread(agg: pd.DataFrame) -> dict[float, str]:
    """'median (min-max, n)' by value of an :func:`median_by` frame, or the median alone when n = 1."""
    def text(r: pd.Series) -> str:
        return g(r["median"]) if r["n"] <= 1 else f"{g(r['median'])} ({g(r['lo'])}-{g(r['hi'])}, n={int(r['n'])})"
    return {float(k): text(r) for k, r in agg.iterrows()}


def _published(src: Sources, section: str) -> pd.DataFrame:
    path = src.reference / "team6" / "lambda_table.csv"
    df = read_csv(src, path, ["section", "partition_mb", "batch_size", "data_gb", "throughput_gb_s",
                              "cost_usd", "perf_efficiency_gb_s_per_usd", "lambdas"])
    out = df[df["section"] == section]
    if out.empty:
        raise ReportError(f"record {src.rel(path)} is malformed: no rows of section {section!r}")
    return out


def local_label(df: pd.DataFrame) -> str:
    """The label of a local-backend sweep row: it describes the machine, not Lambda."""
    names = sorted(set(df["cpu"]) - {machine(None)})
    if not names:
        return "local backend on a machine its sweep records do not name: describes that machine, not Lambda"
    return f"local backend on {'; '.join(names)}: describes this machine, not Lambda"


def _possessive(name: str) -> str:
    """``CPU, 2 cores`` -> ``CPU (2 cores)'s``."""
    head, sep, tail = name.rpartition(", ")
    return f"{head} ({tail})'s" if sep and tail.endswith("cores") else f"{name}'s"


@dataclass(frozen=True)
class Projection:
    """The simulator's projection of a study experiment, as the figures draw it (:mod:`figdata`)."""

    frame: pd.DataFrame
    rate: figdata.MeasuredRate

    @property
    def short(self) -> str:
        """A table row's label: whose measured engine speed drives the projection."""
        return f"projected by the simulator from {_possessive(self.rate.machine)} measured engine speed"


def _project(src: Sources, kind: str, **kw: Any) -> Projection:
    """``figdata.projected_batch`` / ``projected_grid`` from ``src``'s records only, or :class:`ReportError`."""
    recs = {"local": load_local(runs_dir=src.records / "_no_runs_", records_dir=src.records)}
    fitted = simulate.load_fitted(src.records / "simulator_validation.json")
    if kind == "batch":
        frame, rate = figdata.projected_batch(recs, kw["batch_sizes"], kw["data_gb"], kw["partition_mb"], fitted)
    else:
        frame, rate = figdata.projected_grid(recs, kw["data_gbs"], kw["partition_mbs"], fitted)
    if frame.empty or rate is None:
        raise ReportError(f"record data/records/local_cpu.csv is missing or malformed: no measured "
                          f"{figdata.LAMBDA_ENGINE} rate to drive the projection (run `make bench`)")
    return Projection(frame, rate)


def series_table(what: str, xs: list[float], rows: list[tuple[str, Mapping[float, str]]]) -> str:
    """One row per source (published / projected / local backend), one column per swept value."""
    return table([what, *[x_text(x) for x in xs]], [[label, *[values.get(x, "-") for x in xs]]
                                                    for label, values in rows])


def _fmt(s: pd.Series, how: Callable[[float], str] = g) -> dict[float, str]:
    return {float(k): how(float(v)) for k, v in s.items()}


def _rel_spread(values: pd.Series) -> float:
    """(max - min) / median."""
    return float((values.max() - values.min()) / values.median())


# ------------------------------------------------------------------ sections (values for the template)
def section_batch(src: Sources) -> dict[str, Any]:
    pub = _published(src, "batch_size").set_index("batch_size")
    pub.index = pub.index.astype(float)
    ours = sweep_points(src, "batch_size", "batch_size")
    thr, eff = median_by(ours, "batch_size", "worker_gb_s"), median_by(ours, "batch_size", "efficiency")
    gb, mb = float(pub["data_gb"].iloc[0]), float(pub["partition_mb"].iloc[0])
    proj = _project(src, "batch", batch_sizes=[int(b) for b in pub.index], data_gb=gb, partition_mb=mb)
    pf = proj.frame.set_index(proj.frame["batch_size"].astype(float))
    xs = sorted(set(pub.index) | set(pf.index) | set(thr.index))
    pub_lab, loc_lab = "published (team6 `lambda_table.csv`, section batch_size)", local_label(ours)
    at256 = float(pf["throughput_gb_s"].get(256.0, float("nan")))
    v = dict(proj=proj, mb=mb, gb=gb, ours_gb=ours["data_gb"].iloc[0], flat=_rel_spread(pf["throughput_gb_s"]),
             pub_thr=int(pub["throughput_gb_s"].idxmax()), pub_eff=int(pub["perf_efficiency_gb_s_per_usd"].idxmax()),
             pr_thr=int(pf["throughput_gb_s"].idxmax()), pr_eff=int(pf["efficiency"].idxmax()),
             used_lo=pub["avg_memory_mb"].min(), used_hi=pub["avg_memory_mb"].max(), at256=at256,
             top=float(pf["throughput_gb_s"].max()), gap=1 - at256 / float(pf["throughput_gb_s"].max()),
             lo=int(min(pf.index)), hi=int(max(pf.index)), noise=RUN_TO_RUN_NOISE,
             thr_table=series_table("throughput GB/s, by batch size", xs, [
                 (pub_lab, _fmt(pub["throughput_gb_s"], pub_g)), (proj.short, _fmt(pf["throughput_gb_s"])),
                 (loc_lab, spread(thr))]),
             eff_table=series_table("GB/s per USD, by batch size", xs, [
                 (pub_lab, _fmt(pub["perf_efficiency_gb_s_per_usd"], pub_g)), (proj.short, _fmt(pf["efficiency"])),
                 (loc_lab, spread(eff))]))
    v["verdict"] = ("supported" if v["pr_thr"] == v["pub_thr"] else
                    "not testable here" if v["gap"] < RUN_TO_RUN_NOISE else "not supported")
    v["claims"] = [Claim("Batch 256 gives the most throughput", v["verdict"], say("batch256", v=v)),
                   Claim("Batch 64 gives the best throughput per dollar", "not testable here", say("batch64", v=v))]
    return v


def section_partition(src: Sources) -> dict[str, Any]:
    pub = _published(src, "partition").set_index("partition_mb")
    pub.index = pub.index.astype(float)
    ours = sweep_points(src, "partition_size", "partition_mb")
    eff, usd = median_by(ours, "partition_mb", "efficiency"), median_by(ours, "partition_mb", "lambda_usd")
    proj = _project(src, "grid", data_gbs=[1.0], partition_mbs=[float(p) for p in pub.index])
    pf = proj.frame.set_index(proj.frame["partition_mb"].astype(float))
    xs = sorted(set(pub.index) | set(pf.index) | set(eff.index))
    pub_lab, loc_lab = "published (team6 `lambda_table.csv`, section partition)", local_label(ours)
    v = dict(proj=proj, pub_lo=pub["data_gb"].min(), pub_hi=pub["data_gb"].max(), ours_gb=ours["data_gb"].iloc[0],
             pub_down=pub["perf_efficiency_gb_s_per_usd"].sort_index().is_monotonic_decreasing,
             pr_down=pf["efficiency"].sort_index().is_monotonic_decreasing,
             usd_spread=_rel_spread(pf["lambda_usd"]), eff=pf["efficiency"], pub_eff=pub["perf_efficiency_gb_s_per_usd"],
             usd_table=series_table("Lambda USD of the run, by partition MB", xs, [
                 (pub_lab, _fmt(pub["cost_usd"], pub_g)), (proj.short, _fmt(pf["lambda_usd"])),
                 (loc_lab, _fmt(usd["median"]))]),
             eff_table=series_table("GB/s per USD, by partition MB", xs, [
                 (pub_lab, _fmt(pub["perf_efficiency_gb_s_per_usd"], pub_g)), (proj.short, _fmt(pf["efficiency"])),
                 (loc_lab, spread(eff))]))
    v["claims"] = [Claim("Smaller partitions are more cost-efficient", "supported" if v["pr_down"] else "not supported",
                         say("partition", v=v))]
    return v


def _study_claims(src: Sources) -> pd.DataFrame:
    path = src.reference / "team6" / "study_claims.csv"
    return read_csv(src, path, ["claim", "value", "unit", "note"]).set_index("claim")


def section_data_size(src: Sources) -> dict[str, Any]:
    p10, p25 = _published(src, "data_size_10mb"), _published(src, "data_size_25mb")
    ours = sweep_points(src, "data_size", "data_gb")
    e2e = median_by(ours, "data_gb", "e2e_gb_s")
    val_path = src.records / "simulator_validation.json"
    val = read_json(src, val_path, ["median_abs_error", "median_abs_error_held_out", "held_out_rows"])
    limit = float(_study_claims(src).loc["map_item_limit", "value"])
    gbs = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]  # the x axis of the lambda_data_size figure
    pr = {mb: _project(src, "grid", data_gbs=gbs, partition_mbs=[float(mb)]) for mb in (10, 25)}
    pairs = [(gb, pr[10].frame.iloc[i], pr[25].frame.iloc[i]) for i, gb in enumerate(gbs)]
    v = dict(proj=pr[10], limit=limit, p10_max=p10["data_gb"].max(), val=val, val_rel=src.rel(val_path),
             local=local_label(ours), last_gb=gbs[-1], fallback_cost=FALLBACK_COST,
             over=[(gb, a, b) for gb, a, b in pairs if a["lambdas"] > limit],
             pub_table=table(["data GB", "partition MB", "Lambdas", "published GB/s", "published GB/s per USD"],
                             [[pub_g(r.data_gb), f"{int(r.partition_mb)}", f"{int(r.lambdas)}", pub_g(r.throughput_gb_s),
                               pub_g(r.perf_efficiency_gb_s_per_usd)] for r in pd.concat([p10, p25]).itertuples()]),
             proj_table=table(["data GB", "10 MB: Lambdas", "10 MB: wall s", "10 MB: Lambda USD", "10 MB: GB/s per USD",
                               "25 MB: Lambdas", "25 MB: wall s", "25 MB: Lambda USD", "25 MB: GB/s per USD"],
                              [[g(gb), *[x for r in (a, b) for x in (f"{int(r['lambdas']):,}", g(r["wall_s"]),
                                                                     g(r["lambda_usd"]), g(r["efficiency"]))]]
                               for gb, a, b in pairs]),
             local_table=table(["data GB", "end-to-end GB/s (local backend)", "wall s (local backend)"],
                               [[g(d), spread(e2e).get(d), g(ours.loc[ours["data_gb"] == d, "wall_s"].median())]
                                for d in e2e.index]))
    good = all(b["wall_s"] <= a["wall_s"] and float(b["lambda_usd"] / a["lambda_usd"] - 1) <= FALLBACK_COST
               for _, a, b in v["over"])
    v["claims"] = [_peak_claim(p10, pr[10], limit),
                   Claim("25 MB partitions are a good fallback above 1,000 partitions",
                         "not testable here" if not v["over"] else "supported" if good else "not supported",
                         say("fallback", v=v))]
    return v


def _peak_claim(p10: pd.DataFrame, proj: Projection, limit: float) -> Claim:
    """The study's headline as a claim: efficiency (10 MB partitions) peaks at one data size, then falls."""
    pub = p10.sort_values("data_gb")
    top, last = pub.loc[pub["perf_efficiency_gb_s_per_usd"].idxmax()], pub.iloc[-1]
    within = proj.frame[proj.frame["lambdas"] <= limit]
    eff = within["efficiency"].astype(float)
    p_top = within.loc[eff.idxmax()]
    same = abs(float(p_top["data_gb"]) - float(top["data_gb"])) / float(top["data_gb"]) < 0.05
    pub_fall = 1.0 - float(last["perf_efficiency_gb_s_per_usd"]) / float(top["perf_efficiency_gb_s_per_usd"])
    proj_fall = 1.0 - float(eff[within["data_gb"] >= float(p_top["data_gb"])].iloc[-1]) / float(eff.max())
    v = dict(top=top, last=last, proj=proj, eff=eff, within=within, p_top=p_top, pub_fall=pub_fall,
             proj_fall=proj_fall, ok=same and proj_fall >= pub_fall / 2.0)
    return Claim(say("peak", v=v), "supported" if v["ok"] else "not supported", say("peak_evidence", v=v))


def _device_rows(src: Sources) -> pd.DataFrame:
    path = src.reference / "team6" / "device_comparison.csv"
    return read_csv(src, path, ["device", "data_gb", "throughput", "note"]).set_index("device")


def _bench(src: Sources, path: Path | None = None) -> dict[str, Any]:
    return read_json(src, path or src.records / "bench.json", ["rows", "meta.cpu_model", "summary.batch_size"],
                     schemas.BenchRecord)


def _bench_at(bench: Mapping[str, Any], batch: int) -> pd.DataFrame:
    df = pd.DataFrame(bench["rows"])
    return df[df["batch_size"] == batch]


def _device_gb_s(row: pd.Series) -> float:
    """A device_comparison.csv throughput in GB/s: rows whose note says Gbit/s are divided by 8."""
    value = float(row["throughput"])
    return figdata.gbit_to_gb(value) if "Gbit/s" in str(row["note"]) else value


def section_local(src: Sources) -> dict[str, Any]:
    laptop = _device_rows(src).loc["laptop"]
    row = _study_claims(src).loc["laptop_throughput"]
    if str(row["unit"]) != "Gbit/s":
        raise ReportError(f"record data/reference/team6/study_claims.csv is malformed: laptop_throughput unit "
                          f"{row['unit']!r}, expected 'Gbit/s'")
    v: dict[str, Any] = dict(lap_gbit=float(laptop["throughput"]),
                             lap_gbs=figdata.gbit_to_gb(float(laptop["throughput"])),
                             lap_gb=float(laptop["data_gb"]), claim_gbit=float(row["value"]),
                             claim_gbs=figdata.gbit_to_gb(float(row["value"])), flat_limit=FLAT_SPREAD)
    claim = say("laptop_claim", v=v)
    path = src.records / "local_data_size.csv"
    pub_cpu = src.reference / "cai" / "local_cpu_total.json"
    if not pub_cpu.is_file():
        raise ReportError(f"record {src.rel(pub_cpu)} is missing")
    if not path.is_file():
        v["measured"] = False
        v["claims"] = [Claim(claim, "not testable here", "local_data_size.csv not measured yet"),
                       Claim("The laptop runs out of memory at 8 GB", "not testable here",
                             "local_data_size.csv not measured yet")]
        return v
    df = read_csv(src, path, ["data_gb", "samples", "wall_s", "gb_per_s", "peak_rss_mb", "engine", "precision",
                              "threads", "batch_size", "cpu_model", "repeat"])
    size = "requested_gb" if "requested_gb" in df.columns else "data_gb"
    thr, rss = median_by(df, size, "gb_per_s"), median_by(df, size, "peak_rss_mb")
    base = df.groupby(size)["base_gb"].max() if "base_gb" in df.columns else pd.Series(dtype=float)

    def _data(d: float) -> str:
        b = base.get(d)
        if b is None or pd.isna(b):
            return "rendered for this size"
        if float(b) < float(d):
            return f"page-cache reads: a {g(float(b))} GB base tiled with symlinks"
        return "the base dataset itself, read from files"

    biggest = float(df[size].max())
    tiled = "base_gb" in df and df["base_gb"].notna().any() and float(df["base_gb"].max()) < biggest
    v.update(measured=True, rel=src.rel(path), first=df.iloc[0], thr=thr["median"], rss_max=rss["hi"].max(),
             flat=_rel_spread(thr["median"]), biggest=biggest,
             base_max=float(df["base_gb"].max()) if tiled else None,
             table=table(["data GB", "ours GB/s (measured)", "ours Gbit/s (measured x 8)", "ours peak RSS MB (measured)",
                          "samples", "data read"],
                         [[g(d), spread(thr).get(d), g(8 * float(thr["median"].get(d))), g(rss["hi"].get(d)),
                           f"{int(df.loc[df[size] == d, 'samples'].iloc[0]):,}", _data(d)] for d in thr.index]))
    v["claims"] = [Claim(claim, "supported" if v["flat"] < FLAT_SPREAD else "not supported", say("flat", v=v)),
                   Claim("The laptop runs out of memory at 8 GB", "not testable here", say("oom", v=v))]
    return v


def _best_rows(bench: Mapping[str, Any], at: pd.DataFrame, where: str = "") -> list[list[str]]:
    """The fastest fp32 and the fastest engine of one bench record at its batch, as rows of the GB/s table."""
    cpu = machine(bench.get("provenance") or bench["meta"])
    fp32 = at[at["precision"] == "fp32"]
    return [[f"local CPU, {r['engine']} ({label or r['precision']})",
             g(float(r["samples_per_s"]) * (config.SAMPLE_BYTES / config.GB)),
             f"measured, cosmic bench, batch {int(r['batch_size'])}, {cpu}{where}"]
            for label, r in (("fp32", fp32.loc[fp32["samples_per_s"].idxmax()]), (None, at.loc[at["samples_per_s"].idxmax()]))]


def section_devices(src: Sources) -> dict[str, Any]:
    dev = _device_rows(src)
    bench = _bench(src)
    batch = int(bench["summary"]["batch_size"])
    at = _bench_at(bench, batch)
    if at.empty:
        raise ReportError(f"record data/records/bench.json is malformed: no row at batch {batch}")
    ours = _best_rows(bench, at)
    for other in sorted(src.records.glob("machines/*/bench.json")):  # other machines' records, side by side
        doc = _bench(src, other)
        o_at = _bench_at(doc, int(doc["summary"]["batch_size"]))
        if "check_passed" in o_at:
            o_at = o_at[o_at["check_passed"].isna() | o_at["check_passed"].astype("boolean").fillna(True)]
        ours += _best_rows(doc, o_at, f" (`{src.rel(other)}`)")
    gpu_path = src.records / "local_gpu.csv"
    gpu_best = float("nan")
    if gpu_path.is_file():
        gdf = read_csv(src, gpu_path, ["engine", "gb_per_s", "device"])
        r = gdf.loc[gdf["gb_per_s"].idxmax()]
        gpu_best = float(r["gb_per_s"])
        ours.append([f"GPU {r['device']}, {r['engine']}", g(gpu_best), f"measured, `{src.rel(gpu_path)}`"])
    best_gbs = float(at.loc[at["samples_per_s"].idxmax(), "samples_per_s"]) * (config.SAMPLE_BYTES / config.GB)
    lam = float(dev.loc["aws_lambda", "throughput"])
    v = dict(lam=lam, lam_gb=int(float(dev.loc["aws_lambda", "data_gb"])),
             rivanna_gbit=float(dev.loc["rivanna_gpu", "throughput"]), best_gbs=best_gbs, cpu=machine(bench.get("provenance") or bench["meta"]),
             gpu=math.isfinite(gpu_best), gpu_best=gpu_best, sample_bytes=config.SAMPLE_BYTES,
             laptop_gbs=_device_gb_s(dev.loc["laptop"]), rivanna_gbs=_device_gb_s(dev.loc["rivanna_gpu"]),
             pub_cpu=_published_local(src, "local_cpu_total.json"), pub_gpu=_published_local(src, "local_gpu_total.json"),
             pub_table=table(["device", "published throughput (as printed)", "in GB/s", "unit note"],
                             [[d, g(float(r["throughput"])), g(_device_gb_s(r)), r["note"]] for d, r in dev.iterrows()]),
             ours_table=table(["what", "GB/s", "source"], ours))
    gpu_verdict = ("not testable here" if not v["gpu"] else
                   "supported" if gpu_best > best_gbs and lam > gpu_best else "not supported")
    v["claims"] = [Claim("Lambda beats the local computer on throughput",
                         "supported" if lam > best_gbs else "not supported", say("lambda_beats_local", v=v)),
                   Claim("A GPU is the fastest single device, but Lambda's many workers beat it in aggregate",
                         gpu_verdict, say("gpu", v=v))]
    return v


def _published_local(src: Sources, name: str) -> float:
    path = src.reference / "cai" / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        values = [float(d["sample_persec"][0] if isinstance(d["sample_persec"], list) else d["sample_persec"])
                  for d in data]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ReportError(f"record {src.rel(path)} is missing or malformed: {exc}") from exc
    return float(pd.Series(values).median())


def _met(ok: Any) -> str:
    return "met" if bool(ok) else "not met"


def _projection_values(src: Sources, path: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """The per-memory, per-CPU, published, 12.6 GB wall clock and target tables of lambda_projection.json."""
    mem, walls = data["memory"], data["wall_clock_12_6gb"]  # lists, as ProjectionRecord checked
    inputs = data.get("inputs") if isinstance(data.get("inputs"), Mapping) else {}
    engine = inputs.get("engine") or {}
    nan = float("nan")
    try:
        mem_rows = [[f"{int(r['memory_mb']):,}" + (" (cheapest)" if r.get("best_memory") else ""), g(float(r["vcpu"])),
                     g(float(r["duration_s"])), g(float(r.get("duration_s_cold", nan))), g(float(r["usd_per_gb"])),
                     f"{g(float(r.get('usd_per_gb_low', nan)))} .. {g(float(r.get('usd_per_gb_high', nan)))}",
                     g(float(r.get("usd_per_gb_cold", nan))), f"{r['engine']} b{int(r.get('batch_size', 0))}",
                     str(r["kind"])] for r in mem]
        best = data["best"]
        pub = data.get("published") or {}
        pub_wall = {float(w["partition_mb"]): w for w in pub.get("wall_12_6gb", [])}
        wall_rows = []
        for w in walls:
            pw = pub_wall.get(float(w["partition_mb"]))
            wall_rows.append(_wall_row(w, f"{int(w['partitions']):,}", str(w["kind"]),
                                       f"{g(float(pw['median_s']))} (median of {len(pw.get('runs_s', []))} runs, "
                                       "10,240 MB)" if pw else "-"))
        pub_rows = [[str(r["label"]), f"{int(r['memory_mb']):,}", g(float(r["partition_mb"])), g(float(r["usd_per_gb"])),
                     str(r["source"])] for r in [pub["cosmic_ai"], *pub.get("team6", [])] if r] if pub else []
        t = data["targets"]
        wall_t, where = float(t["wall_target_s"]), str(best.get("machine") or engine.get("cpu_model", "?"))
        part = float(inputs.get("partition_mb", lambda_model.TABLE_PARTITION_MB))
        target_rows = [[f"USD per GB <= {g(float(t['usd_per_gb_target']))}", lambda_model.claim(
            where, part, float(best["memory_mb"]), float(t["usd_per_gb_at_best"])) + " (warm, projected)",
            _met(t["usd_per_gb_met"])]]
        fixed_met = t.get("wall_met_fixed") or {}
        for p, val in sorted((t.get("wall_s_at_best") or {}).items()):
            target_rows.append([f"12.6 GB wall clock <= {g(wall_t)} s ({p} partitions, one per invocation, "
                                f"{int(best['memory_mb']):,} MB)", f"{g(float(val))} s (projected)", _met(fixed_met.get(p))])
        fastest = {f"{float(f['partition_mb']):g}MB": f for f in data.get("wall_clock_12_6gb_fastest") or []
                   if f.get("fastest")}
        for p, val in sorted((t.get("wall_s_fastest") or {}).items()):
            cfg = fastest.get(p, {}).get("fastest", {})
            target_rows.append([f"12.6 GB wall clock <= {g(wall_t)} s ({p} partitions, fastest configuration: "
                                f"{cfg.get('config', 'see record')})", f"{g(float(val))} s (projected)",
                                _met((t.get("wall_met") or {}).get(p))])
        for f in fastest.values():
            w = f["fastest"]
            wall_rows.append(_wall_row(w, f"{int(w['partitions']):,} in {int(w['items']):,} items of "
                                       f"{int(w['per_invocation'])}", f"{w['kind']}, fastest configuration", "-"))
        best_claim = lambda_model.claim(where, part, float(best["memory_mb"]), float(best["usd_per_gb"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"record {src.rel(path)} is malformed: lacks or mangles {exc}") from exc
    return dict(data=data, rel=src.rel(path), engine=engine, scaling=inputs.get("scaling") or {}, best=best,
                best_claim=best_claim, targets=t, per_cpu_table=_per_cpu_table(src, path, data),
                arm=data["arm64"],
                decomposition=decomposition(data["decomposition"]) if data.get("decomposition") else None,
                mem_table=table(["memory MB", "vCPU", "duration s (warm)", "duration s (cold)",
                                 "USD per GB (warm, point)", "USD per GB range (low .. high)", "USD per GB (cold)",
                                 "engine", "kind"], mem_rows),
                pub_table=table(["published run", "memory MB", "partition MB", "USD per GB", "source"], pub_rows)
                if pub_rows else None,
                wall_table=table(["data GB (1e9 bytes)", "partition MB", "memory MB", "partitions", "Map", "wall s",
                                  "USD per GB (Lambda + Step Functions + S3 requests)", "kind",
                                  "published wall s (cai `total_execution_time.csv`)"], wall_rows),
                target_table=table(["target", "value", "verdict"], target_rows))


def _wall_row(w: Mapping[str, Any], partitions: str, kind: str, published: str) -> list[str]:
    """One row of the 12.6 GB wall clock table."""
    m = w.get("map") or {}
    return [g(float(w["data_gb"])), g(float(w["partition_mb"])), f"{int(w['memory_mb']):,}", partitions,
            f"{m.get('mode', '-')}, {m.get('waves', '-')} wave(s)", g(float(w["wall_s"])),
            g(float(w.get("usd_per_gb", float("nan")))), kind, published]


def _per_cpu_table(src: Sources, path: Path, data: Mapping[str, Any]) -> str | None:
    """The projection per CPU type (each measured CPU's cheapest memory and $/GB with ranges), None without one."""
    rows = []
    try:
        for c in data.get("by_cpu") or []:
            if not c.get("best"):
                rows.append([str(c["machine"]), "-", str(c["kind"]), "-", "-", "-", "-"])
                continue
            for mb, b in sorted(c["best"].items(), key=lambda kv: float(kv[0])):
                rows.append([f"{c['machine']} (`{c['bench_path']}`)",
                             f"{c['engine']}: {g(float(c['samples_per_s_1t']))}/s at 1 thread, x"
                             f"{g(float(c['two_thread_ratio'] or float('nan')))} at 2",
                             lambda_model.claim(c["machine"], float(mb), b["memory_mb"], b["usd_per_gb"]),
                             f"{g(float(b['usd_per_gb_low']))} .. {g(float(b['usd_per_gb_high']))}",
                             lambda_model.claim(c["machine"], float(mb), b["cheapest_high"]["memory_mb"],
                                                b["cheapest_high"]["usd_per_gb"], "high"),
                             f"{g(float(b['cheapest_low']['usd_per_gb']))} at {int(b['cheapest_low']['memory_mb']):,} MB",
                             "projected (engine measured on this CPU)"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"record {src.rel(path)} is malformed: 'by_cpu' lacks or mangles {exc}") from exc
    return table(["CPU (bench record)", "Lambda engine (measured)", "cheapest, point", "USD per GB range at that "
                  "memory (low .. high)", "cheapest, high bound", "cheapest, low bound", "kind"], rows) if rows else None


def decomposition(d: Mapping[str, Any]) -> str:
    """The decomposition of the published REPORT durations (lambda_model.decompose): notes and table."""
    rows = [[str(r["phase"]), g(float(r["low"])), g(float(r["point"])), g(float(r["high"])),
             "yes" if r["in_warm"] else "no (cold only)", str(r["kind"]), str(r["source"])] for r in d["rows"]]
    e, u, sh = d["explained_s"], d["unexplained_s"], d["unexplained_share"]
    rows.append(["**explained**", g(e["low"]), g(e["point"]), g(e["high"]), "yes", "sum of the warm phases", "-"])
    rows.append(["**unexplained**", g(u["low"]), g(u["point"]), g(u["high"]), "yes",
                 f"{sh['low']:.0%} .. {sh['high']:.0%} of the Duration", "Duration minus explained"])
    return say("decomposition", d=d, table=table(["phase", "low s", "point s", "high s", "in the warm Duration",
                                                   "kind", "source"], rows))


def section_projection(src: Sources) -> dict[str, Any]:
    path = src.records / "lambda_projection.json"
    v: dict[str, Any] = {"record": None}
    if path.is_file():
        v["record"] = _projection_values(src, path, read_json(src, path, [], schemas.ProjectionRecord))
    sweep = sweep_points(src, "lambda_memory", "memory_mb")
    usd, wall = median_by(sweep, "memory_mb", "lambda_usd"), median_by(sweep, "memory_mb", "wall_s")
    v.update(local=local_label(sweep), sweep_gb=sweep["data_gb"].iloc[0],
             sweep_table=series_table("by configured memory MB", sorted(usd.index), [
                 ("Lambda USD of the run (local backend)", spread(usd)), ("wall s (local backend)", spread(wall))]))
    return v


def section_accuracy(src: Sources) -> dict[str, Any]:
    summaries = sorted(src.records.glob("pipeline_*summary*.json"))
    if not summaries:
        raise ReportError("record data/records/pipeline_*_summary.json is missing (run `make demo`, then `make records`)")
    path = summaries[-1]
    s = read_json(src, path, ["accuracy.sigma_nmad", "accuracy.outlier_015", "accuracy.labelled_samples"],
                  schemas.RunSummary)
    preds = sorted(src.records.glob("predictions*.csv"))
    if not preds:
        raise ReportError("record data/records/predictions_*.csv is missing")
    p = read_csv(src, preds[-1], ["z_spec", "z_pred"])
    dz = (p["z_pred"] - p["z_spec"]) / (1 + p["z_spec"])
    checks = pd.DataFrame(_bench(src).get("checks") or [])
    acc = s["accuracy"]  # RunSummary validated these as finite numbers, read_json that they are present
    rows = [["pipeline run (sigma_NMAD)", g(float(acc["sigma_nmad"])),
             f"measured, `{src.rel(path)}`, {galaxies_text(int(acc['labelled_samples']), s)}, "
             f"{machine(s.get('provenance'))}"],
            ["pipeline run (outliers |dz| > 0.15)", g(float(acc["outlier_015"])), "same record"],
            ["predictions file (sigma_NMAD, recomputed)", g(1.4826 * float((dz - dz.median()).abs().median())),
             f"`{src.rel(preds[-1])}`, {galaxies_text(len(p), s)}"]]
    rows += [[f"engine {c.engine} ({c.precision})", g(float(c.sigma_nmad)),
              f"cosmic bench check on {int(c.rows):,} rows, passed: {c.passed}"] for c in checks.itertuples()]
    return {"table": table(["what", "value", "source"], rows)}


def storage_claims(src: Sources) -> list[Claim]:
    """The 'storage speed limits serverless' claim, from the shipped pipeline records' phase times."""
    files = sorted(src.records.glob("pipeline_*.csv"))
    if not files:
        raise ReportError("record data/records/pipeline_*.csv is missing")
    df = read_csv(src, files[-1], ["download_s", "inference_s", "upload_s", "duration_s"])
    v = dict(rel=src.rel(files[-1]), io=float(df["download_s"].sum() + df["upload_s"].sum()),
             inference=float(df["inference_s"].sum()), total=float(df["duration_s"].sum()))
    return [Claim("Serverless throughput is limited mainly by storage speed", "not testable here", say("storage", v=v))]


#: The sections' values, by the name the template reads them under.
SECTION_BUILDERS: dict[str, Callable[[Sources], dict[str, Any]]] = {
    "batch": section_batch, "partition": section_partition, "data_size": section_data_size,
    "local": section_local, "devices": section_devices, "projection": section_projection,
    "accuracy": section_accuracy,
}


def build_report(src: Sources | None = None) -> str:
    """The whole report as Markdown (raises :class:`ReportError` naming a missing/malformed record)."""
    src = src or Sources()
    values = {name: build(src) for name, build in SECTION_BUILDERS.items()}
    claims = [c for v in values.values() for c in v.get("claims", [])] + storage_claims(src)
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    return _env().get_template("report.md.j2").render(**values, claims=claims, counts=counts)


#: The generated block of docs/cost_and_simulation.md: the decomposition table, from the same record.
DOC_BLOCK_BEGIN = "<!-- BEGIN decomposition (generated by `make report` from data/records/lambda_projection.json) -->"
DOC_BLOCK_END = "<!-- END decomposition -->"


def write_doc_block(path: Path | None = None, src: Sources | None = None, check: bool = False) -> bool:
    """Rewrite the decomposition block of docs/cost_and_simulation.md (or compare when ``check``); True when changed."""
    src = src or Sources()
    path = Path(path or config.PROJECT_ROOT / "docs" / "cost_and_simulation.md")
    text = path.read_text(encoding="utf-8")
    start, stop = text.find(DOC_BLOCK_BEGIN), text.find(DOC_BLOCK_END)
    if start < 0 or stop < start:
        raise ReportError(f"{path.name}: the decomposition markers are missing (expected a line {DOC_BLOCK_BEGIN!r} "
                          f"and later a line {DOC_BLOCK_END!r})")
    rec_path = src.records / "lambda_projection.json"
    data = read_json(src, rec_path, ["decomposition", "by_cpu"], schemas.ProjectionRecord)
    body = say("doc_block", begin=DOC_BLOCK_BEGIN, end=DOC_BLOCK_END, rel=src.rel(rec_path),
               decomposition=decomposition(data["decomposition"]),
               claims=lambda_model.claims_of(data["by_cpu"], bounds=("point", "high")))
    return rewrite(path, text[:start] + body + text[stop + len(DOC_BLOCK_END):], check)


def write_report(path: Path | None = None, src: Sources | None = None, check: bool = False) -> bool:
    """Write docs/report.md (or compare with it when ``check``); True when the file was/would be changed."""
    return rewrite(Path(path or config.PROJECT_ROOT / "docs" / "report.md"), build_report(src), check)
