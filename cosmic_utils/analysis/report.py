"""docs/report.md, written by code from the stored records: the seed study, claim by claim.

The seed study (DS5110 Team 6, ``data/reference/team6``) made claims about batch size, partition
size, data size, a local computer, a GPU and Lambda. This module writes one report section per
part of that study: the figure(s) that show it, a table that puts the study's published number
beside this repository's number (saying whether that number was measured, on which machine and
backend, or simulated / projected by which model) and whether the two agree, and closes with a
table that gives every claim a verdict (supported / not supported / not testable here) with the
evidence.

Why code and not prose: numbers typed into a report drift from the records (the README once did).
Every number below is read from ``data/records/`` or ``data/reference/`` (both committed, so a
fresh clone regenerates the same report); a record the report needs that is missing or malformed
is a :class:`ReportError` naming the file (``cosmic report`` exits 1), never a silent gap. The
only sections allowed to be empty are the ones whose record is optional (:data:`OPTIONAL`); they
say "not measured yet" and how to produce the record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis.records import aggregate_repeats

#: Every figure the report embeds (stems of figures/<stem>.png, drawn by ``cosmic figures``).
FIGURE_STEMS: tuple[str, ...] = (
    "lambda_batch_size", "lambda_partition_size", "lambda_data_size", "local_backend_sweeps",
    "local_batch_size", "local_data_size", "local_gpu_lambda", "memory_cost_duration", "scale_simulation",
    "simulator_validation", "redshift_pred_vs_spec", "model_evaluation_default", "lambda_engine_projection",
)

#: Records whose absence makes a section say "not measured yet" instead of failing.
OPTIONAL: tuple[str, ...] = ("local_data_size.csv", "lambda_projection.json", "local_gpu.csv")

#: The report's section titles, in order (a test checks every one is present).
SECTIONS: tuple[str, ...] = (
    "Batch size", "Partition size", "Larger data sizes", "Local computer", "Local vs GPU vs Lambda",
    "This repository's Lambda engine, projected to Lambda", "Accuracy", "Observations", "Claims of the study",
)

VERDICTS = ("supported", "not supported", "not testable here")

#: Relative spread (max-min over median) under which a throughput counts as flat.
FLAT_SPREAD = 0.25


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
            try:
                return f"{label}/{path.relative_to(base).as_posix()}"
            except ValueError:
                continue
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


def read_json(src: Sources, path: Path, keys: Iterable[str]) -> dict[str, Any]:
    """A JSON object holding every dotted key of ``keys``, else :class:`ReportError` naming it."""
    if not path.is_file():
        raise ReportError(f"record {src.rel(path)} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"record {src.rel(path)} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportError(f"record {src.rel(path)} is malformed: not a JSON object")
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


def _num(src: Sources, path: Path, data: Mapping[str, Any], key: str) -> float:
    value = dig(data, key)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"record {src.rel(path)} is malformed: {key!r} = {value!r} is not a number") from None
    if not math.isfinite(out):
        raise ReportError(f"record {src.rel(path)} is malformed: {key!r} = {value!r} is not finite")
    return out


# ------------------------------------------------------------------ formatting
def g(x: float, sig: int = 3) -> str:
    """``x`` to ``sig`` significant digits in plain notation (NaN -> '-')."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    digits = max(0, sig - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def figure(stem: str, caption: str) -> str:
    """An embedded figure (relative link from docs/) with its caption."""
    if stem not in FIGURE_STEMS:
        raise ValueError(f"figure {stem!r} is not in FIGURE_STEMS")
    return f"![{caption}](../figures/{stem}.png)\n\n*Figure `{stem}`: {caption}*"


def machine(info: Mapping[str, Any] | None) -> str:
    """``CPU model, N cores`` of a record's provenance, or 'machine not recorded'."""
    if not info or not info.get("cpu_model"):
        return "machine not recorded in the record"
    cores = info.get("cpus") or info.get("cpu_count")
    return f"{info['cpu_model']}, {int(cores)} cores" if cores else str(info["cpu_model"])


@dataclass(frozen=True)
class Claim:
    """One claim of the study with this repository's verdict and evidence."""

    claim: str
    verdict: str
    evidence: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


@dataclass
class Section:
    """A rendered section and the claims it decides."""

    title: str
    body: str
    claims: list[Claim] = field(default_factory=list)


# ------------------------------------------------------------------ sweeps
SWEEP_KEYS = ("data_gb", "wall_s", "partitions", "throughput.end_to_end_gb_s", "throughput.per_worker_gb_s",
              "timing.sum_duration_s", "cost.lambda_usd", "cost.total_usd", "billing.memory_mb_configured")


def sweep_points(src: Sources, sweep: str, param: str) -> pd.DataFrame:
    """One row per (point, repeat) of a shipped sweep, from each point's ``_done.json`` and ``summary.json``.

    Columns: ``param``, ``repeat``, ``data_gb``, ``wall_s``, ``e2e_gb_s`` (data / execution wall
    clock), ``worker_gb_s`` (the study's throughput: data / mean per-partition handler time),
    ``lambda_usd``, ``total_usd``, ``efficiency`` (``worker_gb_s / lambda_usd``, the study's
    formula), ``memory_mb``, ``cpu`` (machine of the record). Failed points are left out.
    """
    base = src.records / "sweeps" / sweep
    points = sorted(p for p in base.glob("*") if p.is_dir() and (p / "_done.json").is_file())
    if not points:
        raise ReportError(f"record {src.rel(base)} is missing (no finished sweep point; run `cosmic sweep "
                          f"sweeps/{sweep}.yaml` then `make records`)")
    rows = []
    for p in points:
        done = read_json(src, p / "_done.json", [f"parameters.{param}"])
        path = p / "summary.json"
        s = read_json(src, path, SWEEP_KEYS)
        n = _num(src, path, s, "partitions")
        per_partition_s = _num(src, path, s, "timing.sum_duration_s") / n
        worker = _num(src, path, s, "data_gb") / per_partition_s
        lam = _num(src, path, s, "cost.lambda_usd")
        rows.append({
            param: float(done["parameters"][param]), "repeat": int(done.get("repeat") or
                                                                 done["parameters"].get("repeat") or 1),
            "data_gb": _num(src, path, s, "data_gb"), "wall_s": _num(src, path, s, "wall_s"),
            "e2e_gb_s": _num(src, path, s, "throughput.end_to_end_gb_s"), "worker_gb_s": worker,
            "lambda_usd": lam, "total_usd": _num(src, path, s, "cost.total_usd"),
            "efficiency": worker / lam if lam > 0 else float("nan"),
            "memory_mb": _num(src, path, s, "billing.memory_mb_configured"),
            "cpu": machine(s.get("provenance") or done.get("provenance") or done),
            "record": src.rel(p),
        })
    return pd.DataFrame(rows)


def median_by(df: pd.DataFrame, by: str, value: str) -> pd.DataFrame:
    """Median, min, max and n of ``value`` per ``by`` (repeats aggregated)."""
    return aggregate_repeats(df, by=[by], value=value).set_index(by)


def spread(agg: pd.DataFrame) -> str:
    """'median (min-max, n)' per row of an :func:`median_by` frame, or the median alone when n = 1."""
    return agg.apply(lambda r: g(r["median"]) if r["n"] <= 1 else f"{g(r['median'])} ({g(r['lo'])}-{g(r['hi'])}, "
                     f"n={int(r['n'])})", axis=1)


def _machines(df: pd.DataFrame) -> str:
    return "; ".join(sorted(set(df["cpu"])))


def agree(ours: Any, theirs: Any) -> str:
    """'yes' / 'no' for two findings (e.g. the best batch size of each)."""
    return "yes" if ours == theirs else "no"


def _published(src: Sources, section: str) -> pd.DataFrame:
    path = src.reference / "team6" / "lambda_table.csv"
    df = read_csv(src, path, ["section", "partition_mb", "batch_size", "data_gb", "throughput_gb_s",
                              "cost_usd", "perf_efficiency_gb_s_per_usd", "lambdas"])
    out = df[df["section"] == section]
    if out.empty:
        raise ReportError(f"record {src.rel(path)} is malformed: no rows of section {section!r}")
    return out


BACKEND_NOTE = ("measured on the local backend (the Step Functions state machine on moto, each Lambda "
                "invocation a local process on this machine's cores)")


def section_batch(src: Sources) -> Section:
    pub = _published(src, "batch_size").set_index("batch_size")
    ours = sweep_points(src, "batch_size", "batch_size")
    thr, eff = median_by(ours, "batch_size", "worker_gb_s"), median_by(ours, "batch_size", "efficiency")
    rows = []
    for b in sorted(set(pub.index) | set(thr.index)):
        rows.append([f"{int(b)}", g(pub["throughput_gb_s"].get(b, float("nan"))),
                     spread(thr).get(b, "-") if b in thr.index else "-",
                     g(pub["perf_efficiency_gb_s_per_usd"].get(b, float("nan"))),
                     spread(eff).get(b, "-") if b in eff.index else "-"])
    pub_best_thr, pub_best_eff = int(pub["throughput_gb_s"].idxmax()), int(pub["perf_efficiency_gb_s_per_usd"].idxmax())
    our_best_thr, our_best_eff = int(thr["median"].idxmax()), int(eff["median"].idxmax())
    rows.append(["**best throughput**", f"{pub_best_thr}", f"{our_best_thr}", "", f"agree: {agree(our_best_thr, pub_best_thr)}"])
    rows.append(["**best GB/s per USD**", "", "", f"{pub_best_eff}", f"{our_best_eff} (agree: {agree(our_best_eff, pub_best_eff)})"])
    verdict = "supported" if (our_best_thr, our_best_eff) == (pub_best_thr, pub_best_eff) else "not supported"
    body = "\n\n".join([
        figure("lambda_batch_size", "throughput and cost efficiency vs batch size: the study's Lambda table beside "
                                    "this repository's sweep"),
        figure("local_batch_size", "local engines vs batch size (cosmic bench)"),
        f"Published: `data/reference/team6/lambda_table.csv` (section batch_size: 100 MB partition, one Lambda). "
        f"This repository: sweep `batch_size` ({ours['data_gb'].iloc[0]:.2f} GB, memory "
        f"{int(ours['memory_mb'].iloc[0])} MB), {BACKEND_NOTE}; machine: {_machines(ours)}. Throughput is the "
        f"study's formula (data / mean per-partition handler time), efficiency = that / Lambda cost.",
        table(["batch", "published GB/s", "ours GB/s (measured)", "published GB/s per USD",
               "ours GB/s per USD (measured)"], rows),
    ])
    claim = Claim("Batch 256 gives the most throughput, 64 the best throughput per dollar", verdict,
                  f"published best throughput at {pub_best_thr}, best per USD at {pub_best_eff}; ours "
                  f"(measured, local backend, {len(ours)} runs) {our_best_thr} and {our_best_eff}")
    return Section(SECTIONS[0], body, [claim])


def _monotone_down(series: pd.Series) -> bool:
    """Each value at or below the previous one (by index order)."""
    vals = series.sort_index().to_numpy()
    return bool(all(b <= a for a, b in zip(vals, vals[1:], strict=False)))


def section_partition(src: Sources) -> Section:
    pub = _published(src, "partition").set_index("partition_mb")
    ours = sweep_points(src, "partition_size", "partition_mb")
    eff, usd = median_by(ours, "partition_mb", "efficiency"), median_by(ours, "partition_mb", "lambda_usd")
    rows = []
    for p in sorted(set(pub.index) | set(eff.index)):
        rows.append([g(p), g(pub["cost_usd"].get(p, float("nan"))), g(usd["median"].get(p, float("nan"))),
                     g(pub["perf_efficiency_gb_s_per_usd"].get(p, float("nan"))),
                     spread(eff).get(p, "-") if p in eff.index else "-"])
    pub_down, our_down = _monotone_down(pub["perf_efficiency_gb_s_per_usd"]), _monotone_down(eff["median"])
    pub_best, our_best = pub["perf_efficiency_gb_s_per_usd"].idxmax(), eff["median"].idxmax()
    verdict = "supported" if our_best == min(eff.index) else "not supported"
    body = "\n\n".join([
        figure("lambda_partition_size", "throughput, cost and efficiency vs partition size"),
        f"Published: team6 table, section partition (~1 GB, batch 256). This repository: sweep `partition_size` "
        f"({ours['data_gb'].iloc[0]:.2f} GB), {BACKEND_NOTE}; machine: {_machines(ours)}.",
        table(["partition MB", "published Lambda USD", "ours Lambda USD (measured)", "published GB/s per USD",
               "ours GB/s per USD (measured)"], rows),
        f"Efficiency falls with every larger partition: published {'yes' if pub_down else 'no'}, ours "
        f"{'yes' if our_down else 'no'}; most efficient: published {g(pub_best)} MB, ours {g(our_best)} MB "
        f"(agree: {agree(float(our_best), float(pub_best))}).",
    ])
    claim = Claim("Smaller partitions are more cost-efficient", verdict,
                  f"GB/s per USD, published {g(pub['perf_efficiency_gb_s_per_usd'].max())} at {g(pub_best)} MB vs "
                  f"{g(pub['perf_efficiency_gb_s_per_usd'].min())} at {g(pub['perf_efficiency_gb_s_per_usd'].idxmin())} MB; "
                  f"ours (measured) {g(eff['median'].max())} at {g(our_best)} MB vs {g(eff['median'].min())} at "
                  f"{g(eff['median'].idxmin())} MB")
    return Section(SECTIONS[1], body, [claim])


def section_data_size(src: Sources) -> Section:
    p10, p25 = _published(src, "data_size_10mb"), _published(src, "data_size_25mb")
    ours = sweep_points(src, "data_size", "data_gb")
    e2e = median_by(ours, "data_gb", "e2e_gb_s")
    val_path = src.records / "simulator_validation.json"
    val = read_json(src, val_path, ["median_abs_error", "median_abs_error_held_out", "held_out_rows"])
    rows = [[g(r.data_gb), f"{int(r.partition_mb)}", f"{int(r.lambdas)}", g(r.throughput_gb_s),
             g(r.perf_efficiency_gb_s_per_usd)] for r in pd.concat([p10, p25]).itertuples()]
    mine = [[g(d), spread(e2e).get(d), g(ours.loc[ours["data_gb"] == d, "wall_s"].median())] for d in e2e.index]
    over = p10[p10["lambdas"] > 1000]
    last10 = p10.iloc[-1]
    last25 = p25.iloc[(p25["data_gb"] - last10["data_gb"]).abs().argmin()]
    body = "\n\n".join([
        figure("lambda_data_size", "throughput and cost vs data size, 10 MB and 25 MB partitions"),
        figure("scale_simulation", "the scale simulator (fitted on the published Cosmic AI runs) projected to "
                                   "large data sizes"),
        figure("simulator_validation", "simulator validation: predicted vs published wall clock"),
        "Published (team6 table, sections data_size_10mb / data_size_25mb; throughput = data / per-Lambda runtime):",
        table(["data GB", "partition MB", "Lambdas", "published GB/s", "published GB/s per USD"], rows),
        f"This repository's data-size sweep ({BACKEND_NOTE}; machine: {_machines(ours)}; end-to-end GB/s = data / "
        f"execution wall clock):",
        table(["data GB", "ours end-to-end GB/s (measured)", "ours wall s (measured)"], mine),
        f"Sizes beyond this machine are simulated: the scale simulator (`cosmic simulate`, fitted on the published "
        f"Cosmic AI Step Functions runs) predicts the published wall clocks with a median absolute error of "
        f"{g(100 * float(val['median_abs_error']))} % ({g(100 * float(val['median_abs_error_held_out']))} % on "
        f"{int(val['held_out_rows'])} held-out runs; `{src.rel(val_path)}`).",
    ])
    claim = Claim("25 MB partitions are a good fallback above 1,000 partitions", "not testable here",
                  f"published: at {g(last10['data_gb'])} GB 10 MB partitions need {int(last10['lambdas'])} Lambdas and "
                  f"their efficiency drops to {g(last10['perf_efficiency_gb_s_per_usd'])} GB/s per USD while 25 MB holds "
                  f"{g(last25['perf_efficiency_gb_s_per_usd'])}; the published table has "
                  f"{len(over)} row(s) above 1,000 partitions; testing it needs more than 1,000 concurrent Lambdas "
                  f"on AWS (not available here)")
    return Section(SECTIONS[2], body, [claim])


def _device_rows(src: Sources) -> pd.DataFrame:
    path = src.reference / "team6" / "device_comparison.csv"
    return read_csv(src, path, ["device", "data_gb", "throughput", "note"]).set_index("device")


def _bench(src: Sources) -> dict[str, Any]:
    return read_json(src, src.records / "bench.json", ["rows", "meta.cpu_model", "summary.batch_size"])


def _bench_at(bench: Mapping[str, Any], batch: int) -> pd.DataFrame:
    df = pd.DataFrame(bench["rows"])
    return df[df["batch_size"] == batch]


def section_local(src: Sources) -> Section:
    dev = _device_rows(src)
    laptop = dev.loc["laptop"]
    path = src.records / "local_data_size.csv"
    parts = [figure("local_data_size", "local streaming: throughput and peak memory vs data size")]
    claims: list[Claim] = []
    pub_cpu = src.reference / "cai" / "local_cpu_total.json"
    if not pub_cpu.is_file():
        raise ReportError(f"record {src.rel(pub_cpu)} is missing")
    if not path.is_file():
        parts.append(f"**Not measured yet**: no `data/records/local_data_size.csv`. Run `make local-data-size` "
                     f"(see docs/inference.md) to stream 1-8 GB locally with peak RSS per size. The published "
                     f"laptop: {g(float(laptop['throughput']))} ({laptop['note']}) at {g(float(laptop['data_gb']))} GB.")
        claims += [Claim("The local computer runs at about 0.018 GB/s, flat with data size", "not testable here",
                         "local_data_size.csv not measured yet"),
                   Claim("The laptop runs out of memory at 8 GB", "not testable here",
                         "local_data_size.csv not measured yet")]
        return Section(SECTIONS[3], "\n\n".join(parts), claims)
    df = read_csv(src, path, ["data_gb", "samples", "wall_s", "gb_per_s", "peak_rss_mb", "engine", "precision",
                              "threads", "batch_size", "cpu_model", "repeat"])
    size = "requested_gb" if "requested_gb" in df.columns else "data_gb"
    thr, rss = median_by(df, size, "gb_per_s"), median_by(df, size, "peak_rss_mb")
    rows = [[g(d), spread(thr).get(d), g(rss["hi"].get(d)), f"{int(df.loc[df[size] == d, 'samples'].iloc[0]):,}"]
            for d in thr.index]
    first = df.iloc[0]
    flat = (thr["median"].max() - thr["median"].min()) / thr["median"].median()
    biggest = float(df[size].max())
    parts += [
        f"Published: `data/reference/team6/device_comparison.csv` laptop row: {g(float(laptop['throughput']))} "
        f"({laptop['note']}) at {g(float(laptop['data_gb']))} GB; the study reports that the laptop ran out of "
        f"memory at 8 GB. This repository (`{src.rel(path)}`): measured, local streaming engine "
        f"{first['engine']} ({first['precision']}, batch {int(first['batch_size'])}, {int(first['threads'])} threads), "
        f"{first['cpu_model']}; one fresh process per size, so each peak RSS is that size's own.",
        table(["data GB", "ours GB/s (measured)", "ours peak RSS MB (measured)", "samples"], rows),
        f"Spread of GB/s over sizes: {g(100 * flat)} % of the median (flat when under {g(100 * FLAT_SPREAD)} %).",
    ]
    claims.append(Claim("The local computer runs at about 0.018 GB/s, flat with data size",
                        "supported" if flat < FLAT_SPREAD else "not supported",
                        f"flat: ours (measured) {g(thr['median'].min())}-{g(thr['median'].max())} GB/s over "
                        f"{g(thr.index.min())}-{g(biggest)} GB (spread {g(100 * flat)} %); the level is this machine's "
                        f"and engine's, not the study's laptop's ({g(float(laptop['throughput']))}, {laptop['note']})"))
    claims.append(Claim("The laptop runs out of memory at 8 GB", "not testable here",
                        f"their laptop is not available; a streaming engine does not need the data in memory: ours "
                        f"streamed {g(biggest)} GB with peak RSS {g(rss['hi'].max())} MB (measured)"
                        + ("" if biggest >= 8 else "; note: the largest size measured is below 8 GB")))
    return Section(SECTIONS[3], "\n\n".join(parts), claims)


def section_devices(src: Sources) -> Section:
    dev = _device_rows(src)
    bench = _bench(src)
    batch = int(bench["summary"]["batch_size"])
    at = _bench_at(bench, batch)
    if at.empty:
        raise ReportError(f"record data/records/bench.json is malformed: no row at batch {batch}")
    best = at.loc[at["samples_per_s"].idxmax()]
    fp32 = at[at["precision"] == "fp32"]
    best32 = fp32.loc[fp32["samples_per_s"].idxmax()]
    sample_gb = config.SAMPLE_BYTES / config.GB
    cpu = machine(bench.get("provenance") or bench["meta"])
    gpu_path = src.records / "local_gpu.csv"
    rows = [[d, g(float(r["throughput"])), r["note"]] for d, r in dev.iterrows()]
    ours = [[f"local CPU, {best32['engine']} (fp32)", g(float(best32["samples_per_s"]) * sample_gb),
             f"measured, cosmic bench, batch {batch}, {cpu}"],
            [f"local CPU, {best['engine']} ({best['precision']})", g(float(best["samples_per_s"]) * sample_gb),
             f"measured, cosmic bench, batch {batch}, {cpu}"]]
    gpu_note = "GPU: not measured yet (no data/records/local_gpu.csv; `make gpu-baseline` on a CUDA machine)"
    gpu_best = float("nan")
    if gpu_path.is_file():
        gdf = read_csv(src, gpu_path, ["engine", "gb_per_s", "device"])
        r = gdf.loc[gdf["gb_per_s"].idxmax()]
        gpu_best = float(r["gb_per_s"])
        ours.append([f"GPU {r['device']}, {r['engine']}", g(gpu_best), f"measured, `{src.rel(gpu_path)}`"])
        gpu_note = ""
    pub_cpu = _published_local(src, "local_cpu_total.json")
    pub_gpu = _published_local(src, "local_gpu_total.json")
    body = "\n\n".join(p for p in [
        figure("local_gpu_lambda", "local CPU vs GPU vs Lambda throughput"),
        figure("local_backend_sweeps", "this repository's pipeline runs on the local backend"),
        "Published (team6 `device_comparison.csv`; units differ between rows as noted):",
        table(["device", "published throughput", "unit note"], rows),
        f"Published Cosmic AI (`data/reference/cai`): local CPU {g(pub_cpu)} samples/s, A100 GPU {g(pub_gpu)} "
        f"samples/s (batch 512, median over their sizes).",
        "This repository (GB/s = samples/s x 20,520 B):",
        table(["what", "GB/s", "source"], ours),
        gpu_note,
    ] if p)
    lam = float(dev.loc["aws_lambda", "throughput"])
    claims = [
        Claim("Lambda beats the local computer on throughput", "supported" if lam > float(best["samples_per_s"]) * sample_gb
              else "not supported",
              f"published Lambda {g(lam)} GB/s (data / per-Lambda runtime, {int(float(dev.loc['aws_lambda', 'data_gb']))} GB) "
              f"vs this repository's best local engine {g(float(best['samples_per_s']) * sample_gb)} GB/s (measured, {cpu}); "
              f"this repository's own Lambda runs use the local backend, which shares the same cores"),
        Claim("A GPU is the fastest single device, but Lambda's many workers beat it in aggregate",
              "not testable here" if not math.isfinite(gpu_best) else
              ("supported" if gpu_best > float(best["samples_per_s"]) * sample_gb and lam > gpu_best else "not supported"),
              f"published: A100 {g(pub_gpu)} vs CPU {g(pub_cpu)} samples/s; team6 GPU {g(float(dev.loc['rivanna_gpu', 'throughput']))} "
              f"({dev.loc['rivanna_gpu', 'note']}) vs Lambda {g(lam)} GB/s; "
              + ("no GPU record here" if not math.isfinite(gpu_best) else f"ours GPU {g(gpu_best)} GB/s (measured)")),
    ]
    return Section(SECTIONS[4], body, claims)


def _published_local(src: Sources, name: str) -> float:
    path = src.reference / "cai" / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        values = [float(d["sample_persec"][0] if isinstance(d["sample_persec"], list) else d["sample_persec"])
                  for d in data]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ReportError(f"record {src.rel(path)} is missing or malformed: {exc}") from exc
    return float(pd.Series(values).median())


def section_projection(src: Sources) -> Section:
    path = src.records / "lambda_projection.json"
    parts = [figure("lambda_engine_projection", "this repository's Lambda engine projected to AWS Lambda: "
                                                "duration and USD per GB vs memory")]
    mem = median_by(sweep_points(src, "lambda_memory", "memory_mb"), "memory_mb", "lambda_usd")
    parts.append("Measured on the local backend (sweep `lambda_memory`, Lambda USD per run at each configured "
                 "memory): " + ", ".join(f"{int(m)} MB {g(v)} USD" for m, v in mem["median"].items()) + ".")
    parts.append(figure("memory_cost_duration", "duration and billed cost vs configured Lambda memory"))
    if not path.is_file():
        parts.append("**Not generated yet**: no `data/records/lambda_projection.json` (`cosmic simulate --project "
                     "--json`).")
        return Section(SECTIONS[5], "\n\n".join(parts))
    data = read_json(src, path, ["rows", "best_memory_mb"])
    rows = data["rows"]
    if not isinstance(rows, list) or not rows:
        raise ReportError(f"record {src.rel(path)} is malformed: 'rows' is empty")
    try:
        table_rows = [[f"{int(r['memory_mb'])}", g(float(r["vcpu"])), g(float(r["duration_s"])),
                       g(float(r["usd_per_gb"])), str(r["engine"]), str(r["kind"])] for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"record {src.rel(path)} is malformed: row lacks {exc}") from exc
    cpu = rows[0].get("cpu_model", "CPU not recorded")
    parts += [f"Projected (`{src.rel(path)}`, engine timed on {cpu}, scaled by Lambda's vCPU share):",
              table(["memory MB", "vCPU", "duration s", "USD per GB", "engine", "kind"], table_rows),
              f"Cheapest per GB: {int(data['best_memory_mb'])} MB."]
    walls = data.get("wall_clock") or []
    if walls:
        parts.append(table(["data GB", "partition MB", "concurrency", "wall s (projected)"],
                           [[g(float(w["data_gb"])), g(float(w["partition_mb"])), f"{int(w['concurrency'])}",
                             g(float(w["wall_s"]))] for w in walls]))
    return Section(SECTIONS[5], "\n\n".join(parts))


def section_accuracy(src: Sources) -> Section:
    summaries = sorted(src.records.glob("pipeline_*summary*.json"))
    if not summaries:
        raise ReportError("record data/records/pipeline_*_summary.json is missing (run `make demo`, then `make records`)")
    path = summaries[-1]
    s = read_json(src, path, ["accuracy.sigma_nmad", "accuracy.outlier_015", "accuracy.labelled_samples"])
    preds = sorted(src.records.glob("predictions*.csv"))
    if not preds:
        raise ReportError("record data/records/predictions_*.csv is missing")
    p = read_csv(src, preds[-1], ["z_spec", "z_pred"])
    dz = (p["z_pred"] - p["z_spec"]) / (1 + p["z_spec"])
    nmad = 1.4826 * float((dz - dz.median()).abs().median())
    bench = _bench(src)
    checks = pd.DataFrame(bench.get("checks") or [])
    rows = [["pipeline run (sigma_NMAD)", g(_num(src, path, s, "accuracy.sigma_nmad")),
             f"measured, `{src.rel(path)}`, {int(_num(src, path, s, 'accuracy.labelled_samples')):,} galaxies, "
             f"{machine(s.get('provenance'))}"],
            ["pipeline run (outliers |dz| > 0.15)", g(_num(src, path, s, "accuracy.outlier_015")), "same record"],
            ["predictions file (sigma_NMAD, recomputed)", g(nmad), f"`{src.rel(preds[-1])}`, {len(p):,} galaxies"]]
    for c in checks.itertuples() if not checks.empty else []:
        rows.append([f"engine {c.engine} ({c.precision})", g(float(c.sigma_nmad)),
                     f"cosmic bench check on {int(c.rows):,} rows, passed: {c.passed}"])
    body = "\n\n".join([
        figure("redshift_pred_vs_spec", "predicted vs spectroscopic redshift"),
        figure("model_evaluation_default", "evaluation of the default model"),
        "The study does not publish a redshift accuracy for its runs (none in `data/reference/team6`); these are "
        "this repository's numbers (dz = (z_pred - z_spec) / (1 + z_spec)).",
        table(["what", "value", "source"], rows),
    ])
    return Section(SECTIONS[6], body)


def section_storage(src: Sources) -> list[Claim]:
    """The 'storage speed limits serverless' claim, from the shipped pipeline records' phase times."""
    files = sorted(src.records.glob("pipeline_*.csv"))
    if not files:
        raise ReportError("record data/records/pipeline_*.csv is missing")
    df = read_csv(src, files[-1], ["download_s", "inference_s", "upload_s", "duration_s"])
    io = float(df["download_s"].sum() + df["upload_s"].sum())
    inf = float(df["inference_s"].sum())
    total = float(df["duration_s"].sum())
    return [Claim("Serverless throughput is limited mainly by storage speed", "not testable here",
                  f"on the local backend (`{src.rel(files[-1])}`) download + upload take {g(100 * io / total)} % of "
                  f"handler time and inference {g(100 * inf / total)} %; real S3 was not measured here, and the "
                  f"published Cosmic AI stats record S3 time as 0")]


def section_observations(sections: list[Section], claims: list[Claim]) -> Section:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    lines = [f"- {len(claims)} claims checked: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."]
    lines += [f"- {c.claim}: **{c.verdict}** ({c.evidence.split(';')[0]})." for c in claims if c.verdict != "supported"]
    lines.append("- Timings of this repository come from a small shared machine (its model is named with each "
                 "number); Lambda numbers of this repository are local-backend runs or projections, never AWS bills.")
    return Section(SECTIONS[7], "\n".join(lines))


SECTION_BUILDERS: tuple[Callable[[Sources], Section], ...] = (
    section_batch, section_partition, section_data_size, section_local, section_devices, section_projection,
    section_accuracy,
)

HEADER = ("<!-- generated by `make report` (cosmic report) from data/records/ and data/reference/; do not edit "
          "by hand -->\n\n# The seed study, reproduced\n\nEach section puts a number of the seed study (DS5110 "
          "Team 6, `data/reference/team6`; the Cosmic AI work, `data/reference/cai`) beside this repository's "
          "number, says how this repository's number was obtained (measured: machine and backend; simulated; "
          "projected) and whether they agree. The last table gives every claim of the study a verdict.")


def build_report(src: Sources | None = None) -> str:
    """The whole report as Markdown (raises :class:`ReportError` naming a missing/malformed record)."""
    src = src or Sources()
    sections = [b(src) for b in SECTION_BUILDERS]
    claims = [c for s in sections for c in s.claims] + section_storage(src)
    sections.append(section_observations(sections, claims))
    claim_table = table(["claim of the study", "verdict", "evidence"], [[c.claim, f"**{c.verdict}**", c.evidence]
                                                                          for c in claims])
    sections.append(Section(SECTIONS[8], claim_table))
    body = "\n\n".join(f"## {s.title}\n\n{s.body}" for s in sections)
    return f"{HEADER}\n\n{body}\n"


def write_report(path: Path | None = None, src: Sources | None = None, check: bool = False) -> bool:
    """Write docs/report.md (or compare with it when ``check``); True when the file was/would be changed."""
    path = Path(path or config.PROJECT_ROOT / "docs" / "report.md")
    text = build_report(src)
    old = path.read_text(encoding="utf-8") if path.is_file() else None
    if old == text:
        return False
    if not check:
        path.write_text(text, encoding="utf-8")
    return True
