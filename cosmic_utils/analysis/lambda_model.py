"""THE Lambda duration and cost model: :func:`partition_duration_s` projects a partition's duration
and billed $/GB for a (memory size, engine, CPU type, partition size), as low / point / high
bounds, and :func:`decompose` says what the published CloudWatch REPORT durations are made of.

Every place that names a cheapest memory or a $/GB gets it from here through :func:`cheapest`
(``tests/test_cost_model_agrees.py`` fails when two disagree). Phases, sources, bounds and why
one model: docs/cost_and_simulation.md, "One Lambda duration and cost model".
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.analysis import cost, schemas
from cosmic_utils.cloud import cloudwatch
from cosmic_utils.provenance import portable_path
from cosmic_utils.runtime.prices import ASSUMED_PUBLISHED_MEMORY_MB
from cosmic_utils.runtime.request import LAMBDA_ENGINES
from cosmic_utils.runtime.strict import RecordError, check_number

#: The memory sizes (MB) every projection compares, the one set: 1 vCPU, just above it, the old
#: 3,008 MB cap, 2 vCPU (where the conservative scaling stops gaining), 3 vCPU, 8 GB, the maximum
#: (the published configuration).
MEMORY_SIZES_MB: tuple[int, ...] = (1769, 2048, 3008, 3538, 5307, 8192, 10240)
#: Memory of the published Cosmic AI Lambdas (the price table's one constant of it).
PUBLISHED_MEMORY_MB: int = ASSUMED_PUBLISHED_MEMORY_MB
#: Partition size of the published REPORT lines (MB).
PUBLISHED_PARTITION_MB: float = 75.0
#: Partition size of the per-memory table of ``lambda_engine_projection`` (MB, 2**20 bytes).
TABLE_PARTITION_MB: float = 25.0
#: Partition sizes the record projects per CPU type: the table's and the published REPORT lines'.
PROJECTED_PARTITIONS_MB: tuple[float, ...] = (TABLE_PARTITION_MB, PUBLISHED_PARTITION_MB)
#: The published loop's engine name in the bench records, and the batch size it is read at.
PUBLISHED_LOOP: str = "published-loop"
LOOP_BATCH: int = 256
#: The three bounds of a projection (see the module docstring).
BOUNDS: tuple[str, ...] = ("low", "point", "high")
#: What the record says about arm64 (Graviton) speed and cost.
ARM64_NOT_MEASURED: str = "not measured"
#: Upper bound of a plausible measured speed of this network (samples/s): far above any CPU or GPU
#: (the published A100 did 23,174).
MAX_SAMPLES_PER_S: float = 1e6
#: Lower bound: one sample per 1,000 s (slower is a broken measurement, and overflows the durations).
MIN_SAMPLES_PER_S: float = 1e-3


class ProjectionRefused(ValueError):
    """A record cannot support the projection (e.g. no ``threads=1`` row); the message says why."""


# ------------------------------------------------------------------ CPU types
@dataclass(frozen=True)
class CpuType:
    """One CPU family Lambda may run on, and the shipped bench record measured on it (None: not measured)."""

    key: str
    family: str
    bench: str | None  #: path relative to data/records/

    def bench_path(self, records_dir: Path | None = None) -> Path | None:
        return Path(records_dir or config.RECORDS_DIR) / self.bench if self.bench else None


CPU_TYPES: tuple[CpuType, ...] = (
    CpuType("intel-amx", "Intel Xeon, AVX-512 + AMX", "bench.json"),
    CpuType("amd-epyc-avx2", "AMD EPYC, AVX2 only", "machines/amd-epyc-avx2/bench.json"),
    CpuType("arm64", "arm64 (Graviton)", None),
)


# ------------------------------------------------------------------ published REPORT lines
def published_lambda_durations(reference_dir: Path | None = None) -> list[dict[str, float]]:
    """The published CloudWatch REPORT lines (ms and MB; ``init_duration`` NaN on warm lines), by the one parser."""
    path = Path(reference_dir or config.REFERENCE_DIR) / "cai" / "lambda_report_lines.txt"
    nan = float("nan")
    return [{"duration": r.duration_ms, "billed_duration": float(r.billed_duration_ms),
             "memory_size": float(r.memory_size_mb), "max_memory_used": float(r.max_memory_used_mb),
             "init_duration": nan if r.init_duration_ms is None else r.init_duration_ms}
            for r in cloudwatch.parse_report_lines(path.read_text(encoding="utf-8").splitlines())]


# ------------------------------------------------------------------ the engine's measured speed
@dataclass(frozen=True)
class EngineSpeed:
    """An engine's measured speed on one machine (one bench row per thread count)."""

    engine: str
    batch_size: int
    samples_per_s_1t: float  #: the rate the projection uses for one vCPU
    samples_per_s_2t: float | None  #: same engine and batch at 2 threads (None: not measured)
    threads_used: int  #: 1, or 2 when the 2-thread fallback was allowed and used
    cpu_model: str
    cpu_type: str
    bench_run_id: str
    bench_path: str
    model_load_s: float | None  #: the engine's model load time in the bench (measured), if recorded
    engine_choice: str  #: why this engine (the bench's lambda_engine verdict)
    note: str = ""
    isa: str = ""

    @property
    def two_thread_ratio(self) -> float | None:
        """samples/s at 2 threads over 1 thread (None when either is missing or the fallback is in use)."""
        if self.samples_per_s_2t is None or self.threads_used != 1:
            return None
        return self.samples_per_s_2t / self.samples_per_s_1t

    @property
    def machine(self) -> str:
        """The machine as its record names it: CPU model and ISA (e.g. ``AMD EPYC (avx2)``)."""
        return f"{self.cpu_model} ({self.isa})" if self.isa else self.cpu_model


def _one_thread(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    """The bench summary's ``by_threads[1]`` entry (``{}`` without one)."""
    by_threads = summary.get("by_threads") or {}
    return (by_threads.get("1") or by_threads.get(1) or {}) if isinstance(by_threads, Mapping) else {}


def _lambda_engine_choice(doc: Mapping[str, Any]) -> tuple[str, str]:
    """The engine the bench says Lambda runs (1-thread verdict first), and why."""
    summary = doc.get("summary") or {}
    for where, lam in (("summary.by_threads[1].lambda_engine", _one_thread(summary).get("lambda_engine")),
                       ("summary.lambda_engine", summary.get("lambda_engine"))):
        if lam and lam.get("engine"):
            return str(lam["engine"]), f"bench {where}: {lam.get('why', '')}".strip()
    return "onnx", "the bench names no Lambda engine: onnx (fp32) assumed"


def _batch_size(doc: Mapping[str, Any]) -> int:
    summary = doc.get("summary") or {}
    for value in (_one_thread(summary).get("batch_size"), summary.get("batch_size")):
        if value:
            return int(value)
    from cosmic_utils.runtime.request import RunRequest

    return int(RunRequest.model_fields["batch_size"].default)



def read_engine_speed(bench_path: Path | str | None = None, allow_two_thread: bool = False,
                      engine: str | None = None, batch_size: int | None = None) -> EngineSpeed:
    """The Lambda engine's (or ``engine``'s) samples/s at one thread and the bench's batch size (else the nearest,
    noted) from a bench record; :class:`ProjectionRefused` without a ``threads=1`` row (unless ``allow_two_thread``)."""
    path = Path(bench_path or config.RECORDS_DIR / "bench.json")
    if not path.exists():
        raise ProjectionRefused(f"{path}: no bench record (run `cosmic bench --threads 1` or `make bench`)")
    try:
        doc = schemas.load(schemas.BenchRecord, path).model_dump()
        rows = doc["rows"]
        choice, why = _lambda_engine_choice(doc)
        name = engine or choice
        if engine:
            why = f"engine {engine} requested"
        if name not in LAMBDA_ENGINES and name != PUBLISHED_LOOP:
            raise ProjectionRefused(f"engine {name!r} does not run in Lambda (ONNX only: {', '.join(LAMBDA_ENGINES)})")
        # Every speed of this engine is read strictly (an Infinity or 1e300 would price Lambda at ~0).
        for i, r in enumerate(rows):
            if r.get("engine") == name:
                check_number(r.get("samples_per_s"), source=path, lo=MIN_SAMPLES_PER_S, hi=MAX_SAMPLES_PER_S,
                             field=f"rows[{i}].samples_per_s ({name}, threads={r.get('threads')}, "
                                   f"batch {r.get('batch_size')})")
    except RecordError as exc:  # a bad bench record refuses the projection, naming the file, row and value
        raise ProjectionRefused(str(exc)) from None
    usable = [r for r in rows if r.get("engine") == name and r.get("check_passed") is not False]
    by_threads: dict[int, list[dict[str, Any]]] = {}
    for r in usable:
        by_threads.setdefault(int(r.get("threads") or 0), []).append(r)
    threads_used = 1
    note = ""
    if not by_threads.get(1):
        have = sorted(t for t in by_threads if t)
        if not allow_two_thread or not by_threads.get(2):
            raise ProjectionRefused(
                f"{path}: no threads=1 row of the Lambda engine {name} (rows at threads {have or 'none'}); "
                "a Lambda at 1,769 MB has one vCPU, so the projection needs a 1-thread measurement: "
                "run `cosmic bench --threads 1` (or pass --allow-two-thread to project from the "
                "threads=2 rows, labelled as such)")
        threads_used = 2
        note = ("FALLBACK: no threads=1 row; the threads=2 rate of this machine is used as the 1-vCPU rate "
                "(an overestimate of one Lambda vCPU)")
    want = int(batch_size or _batch_size(doc))
    cands = by_threads[threads_used]
    batches = sorted({int(r["batch_size"]) for r in cands})
    batch = want if want in batches else min(batches, key=lambda b: (abs(math.log(b / want)), -b))
    if batch != want:
        note = (note + "; " if note else "") + f"batch {want} not measured at {threads_used} thread(s): batch {batch} used"
    row = max((r for r in cands if int(r["batch_size"]) == batch), key=lambda r: float(r["samples_per_s"]))
    two = [r for r in by_threads.get(2, []) if int(r["batch_size"]) == batch]
    sps2 = max((float(r["samples_per_s"]) for r in two), default=None) if threads_used == 1 else None
    meta = doc.get("meta") or {}
    load = (meta.get("model_load_s") or {}).get("torch-eager" if name == PUBLISHED_LOOP else name)
    return EngineSpeed(
        engine=name, batch_size=batch, samples_per_s_1t=float(row["samples_per_s"]), samples_per_s_2t=sps2,
        threads_used=threads_used, cpu_model=str(row.get("cpu_model") or meta.get("cpu_model") or "unknown CPU"),
        cpu_type=str(row.get("cpu_type") or meta.get("cpu_type") or ""),
        bench_run_id=str(row.get("run_id") or meta.get("run_id") or ""), bench_path=portable_path(path),
        model_load_s=float(load) if load is not None else None, engine_choice=why, note=note,
        isa=str(meta.get("isa") or ""),
    )


# ------------------------------------------------------------------ CPU share -> engine speed
@dataclass(frozen=True)
class Scaling:
    """How the engine's speed grows with Lambda's vCPU share (relative to one vCPU = 1.0)."""

    two_thread_ratio: float  #: measured samples/s(2 threads) / samples/s(1 thread), clipped to >= 1
    measured_ratio: float | None  #: the ratio as measured (None: not measured, 1.0 assumed)
    beyond_two: str = "flat"  #: "flat" (conservative: no gain above 2 vCPU) or "amdahl"

    @property
    def parallel_fraction(self) -> float:
        """Amdahl's parallel fraction that gives the 2-thread ratio: ``r2 = 1 / (1 - p + p/2)``."""
        return min(1.0, max(0.0, 2.0 * (1.0 - 1.0 / self.two_thread_ratio)))

    def amdahl(self, vcpu: float) -> float:
        p = self.parallel_fraction
        return 1.0 / ((1.0 - p) + p / vcpu)

    def speed(self, vcpu: float, beyond_two: str | None = None) -> float:
        """Engine speed at ``vcpu`` (1.0 = one vCPU): time-sliced below 1, linear to the 2-thread point, then flat or Amdahl."""
        mode = beyond_two or self.beyond_two
        if vcpu <= 1.0:
            return vcpu
        if vcpu <= 2.0:
            return 1.0 + (vcpu - 1.0) * (self.two_thread_ratio - 1.0)
        if mode == "amdahl":
            return self.two_thread_ratio * self.amdahl(vcpu) / self.amdahl(2.0)
        if mode != "flat":
            raise ValueError(f"beyond_two must be 'flat' or 'amdahl', got {mode!r}")
        return self.two_thread_ratio

    def describe(self) -> str:
        src = (f"measured 2-thread/1-thread ratio {self.measured_ratio:.3f}" if self.measured_ratio is not None
               else "no 2-thread measurement: ratio 1.0 assumed (no gain from a 2nd vCPU)")
        return (f"{src}; 1-2 vCPU: linear between the measured points; above 2 vCPU: "
                f"{'no further gain (conservative, nothing above 2 threads was measured)' if self.beyond_two == 'flat' else 'Amdahl'}"
                f"; optimistic bound reported as *_amdahl / low (parallel fraction {self.parallel_fraction:.3f})")


def scaling_from(speed: EngineSpeed, beyond_two: str = "flat") -> Scaling:
    r = speed.two_thread_ratio
    return Scaling(two_thread_ratio=max(1.0, r) if r is not None else 1.0, measured_ratio=r, beyond_two=beyond_two)


# ------------------------------------------------------------------ per-phase inputs
@dataclass(frozen=True)
class Phases:
    """Per-phase inputs of a partition's duration (published, else measured here); ``*_lo`` / ``*_hi``: range ends."""

    s3_s_per_mb: float  #: download, per MB (published mean)
    s3_s_per_mb_lo: float
    s3_s_per_mb_hi: float
    s3_source: str
    init_s: float  #: Lambda Init Duration of a cold container (published)
    init_source: str
    decode_s_per_mb: float = 0.0  #: partition decode per MB (measured, local backend)
    decode_s_per_mb_lo: float = 0.0
    decode_s_per_mb_hi: float = 0.0
    upload_s: float = 0.0  #: predictions upload per invocation (measured, local backend)
    upload_s_lo: float = 0.0
    upload_s_hi: float = 0.0
    local_source: str = "not recorded: 0 assumed"
    residual_s_per_mb: float = 0.0  #: unexplained part of the published duration per MB (point)
    residual_s_per_mb_lo: float = 0.0
    residual_s_per_mb_hi: float = 0.0
    residual_source: str = "not decomposed: 0 assumed"


def _published_s3(reference_dir: Path | None) -> tuple[float, float, float]:
    ref = Path(reference_dir or config.REFERENCE_DIR) / "cai"
    mean, lo, hi = [], [], []
    with open(ref / "result_stats.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("run") != "mean" or not (r.get("s3_avg_time") or "").strip():
                continue
            mb = float(r["partition (MB)"])
            mean.append(float(r["s3_avg_time"]) / mb)
            lo.append(float(r["s3_min_time"]) / mb)
            hi.append(float(r["s3_max_time"]) / mb)
    if not mean:
        raise ProjectionRefused(f"{ref / 'result_stats.csv'}: no published s3_avg_time")
    return float(np.mean(mean)), float(min(lo)), float(max(hi))


def local_phases(records_dir: Path | None = None) -> dict[str, Any] | None:
    """Decode (``load_s``) per MB and upload seconds of the newest shipped pipeline record (local backend)."""
    recs = Path(records_dir or config.RECORDS_DIR)
    paths = sorted(p for p in recs.glob("pipeline_*.csv") if not p.name.endswith("_summary.csv"))
    if not paths:
        return None
    path = paths[-1]
    with open(path, encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("status") == "ok" and float(r.get("data_bytes") or 0) > 0]
    if not rows:
        return None
    dec = [float(r["load_s"]) / (float(r["data_bytes"]) / config.PARTITION_MB) for r in rows]
    up = [float(r["upload_s"]) for r in rows]
    summary = path.with_name(path.stem + "_summary.json")
    machine = "machine not recorded"
    if summary.exists():
        prov = schemas.load(schemas.RunSummary, summary).provenance
        machine = str(prov and prov.cpu_model or machine)
    return {"decode_s_per_mb": (min(dec), float(np.median(dec)), max(dec)),
            "upload_s": (min(up), float(np.median(up)), max(up)), "partitions": len(rows),
            "backend": str(rows[0].get("backend") or "local"), "machine": machine, "path": portable_path(path)}


def published_phases(reference_dir: Path | None = None, records_dir: Path | None = None,
                     residual: bool = True) -> Phases:
    """Every per-phase input: published S3 and Init, local decode/upload, the decomposition's residual."""
    s3, s3_lo, s3_hi = _published_s3(reference_dir)
    inits = [r["init_duration"] for r in published_lambda_durations(reference_dir)
             if not math.isnan(r["init_duration"])]
    if not inits:
        raise ProjectionRefused(f"{Path(reference_dir or config.REFERENCE_DIR) / 'cai' / 'lambda_report_lines.txt'}: "
                                "no published Init Duration")
    loc = local_phases(records_dir)
    kw: dict[str, Any] = {}
    if loc:
        (d_lo, d, d_hi), (u_lo, u, u_hi) = loc["decode_s_per_mb"], loc["upload_s"]
        kw.update(decode_s_per_mb=d, decode_s_per_mb_lo=d_lo, decode_s_per_mb_hi=d_hi, upload_s=u, upload_s_lo=u_lo,
                  upload_s_hi=u_hi, local_source=(f"measured: {loc['path']} ({loc['backend']} backend, "
                                                  f"{loc['machine']}, {loc['partitions']} partitions; median, "
                                                  "min..max)"))
    base = Phases(
        s3_s_per_mb=s3, s3_s_per_mb_lo=s3_lo, s3_s_per_mb_hi=s3_hi,
        s3_source="published: cai/result_stats.csv s3_avg_time (min..max: s3_min_time..s3_max_time; per-worker "
                  "S3 time, 'mean' rows, 100 MB partitions) / partition MB",
        init_s=float(np.median(inits)) / 1000.0,
        init_source=f"published: cai/lambda_report_lines.txt Init Duration (median of {len(inits)} cold REPORT line(s))",
        **kw)
    if not residual:
        return base
    dec = decompose(reference_dir, records_dir, phases=base)
    u = dec["unexplained_s"]
    mb = dec["partition_mb"]
    return Phases(**{**base.__dict__, "residual_s_per_mb": u["point"] / mb, "residual_s_per_mb_lo": u["low"] / mb,
                     "residual_s_per_mb_hi": u["high"] / mb,
                     "residual_source": "published REPORT duration minus its explained phases "
                                        "(decomposition; cai/lambda_report_lines.txt), per MB of its 75 MB partition"})


# ------------------------------------------------------------------ decomposition of the published duration
def _rng(low: float, point: float, high: float) -> dict[str, float]:
    return {"low": float(low), "point": float(point), "high": float(high)}


def measured_cpus(records_dir: Path | None = None) -> list[CpuType]:
    """The CPU types whose bench record is shipped."""
    return [c for c in CPU_TYPES if c.bench and (c.bench_path(records_dir) or Path()).exists()]


def decompose(reference_dir: Path | None = None, records_dir: Path | None = None,
              phases: Phases | None = None) -> dict[str, Any]:
    """The published warm REPORT Duration (median, 75 MB at 10,240 MB) split into its phases, each a low/point/high."""
    ph = phases or published_phases(reference_dir, records_dir, residual=False)
    reports = published_lambda_durations(reference_dir)
    warm = [r["duration"] for r in reports if math.isnan(r["init_duration"])]
    cold = [r["duration"] for r in reports if not math.isnan(r["init_duration"])]
    dur = float(np.median(warm or [r["duration"] for r in reports])) / 1000.0
    mem = float(np.median([r["memory_size"] for r in reports]))
    mb = PUBLISHED_PARTITION_MB
    samples = config.samples_per_partition(mb)
    vcpu = cost.vcpus_for_memory(mem)
    cpus = measured_cpus(records_dir)
    if not cpus:
        raise ProjectionRefused("no shipped bench record: the published loop's compute cannot be measured")
    compute, loads, machines = [], [], []
    for c in cpus:
        loop = read_engine_speed(c.bench_path(records_dir), engine=PUBLISHED_LOOP, batch_size=LOOP_BATCH)
        sc = scaling_from(loop)
        slow = samples / (loop.samples_per_s_1t * sc.speed(vcpu, "flat"))
        fast = samples / (loop.samples_per_s_1t * sc.speed(vcpu, "amdahl"))
        compute.append((fast, slow))
        machines.append(f"{loop.machine}: {loop.samples_per_s_1t:.0f}/s at 1 thread, "
                        f"{(loop.samples_per_s_2t or float('nan')):.0f}/s at 2 -> {fast:.1f}..{slow:.1f} s")
        if loop.model_load_s is not None:
            loads.append(loop.model_load_s)
    c_lo, c_hi = min(f for f, _ in compute), max(s for _, s in compute)
    c_pt = compute[0][1]  # the projection's own rule (no gain above 2 vCPU) on the first measured CPU
    rows = [
        {"phase": "init", **_rng(ph.init_s, ph.init_s, ph.init_s), "in_warm": False, "kind": "published",
         "source": ph.init_source + "; cold only, billed on top of Duration"},
        {"phase": "model load", **_rng(min(loads or [0.0]), float(np.median(loads or [0.0])), max(loads or [0.0])),
         "in_warm": False, "kind": "measured here (not published)",
         "source": "bench meta.model_load_s of the published torch model (torch-eager), shipped bench records ("
                   + "; ".join(c.family for c in cpus) + "); once per container (cold)"},
        {"phase": "download", **_rng(ph.s3_s_per_mb_lo * mb, ph.s3_s_per_mb * mb, ph.s3_s_per_mb_hi * mb),
         "in_warm": True, "kind": "published", "source": ph.s3_source + ", scaled to 75 MB"},
        {"phase": "decode", **_rng(ph.decode_s_per_mb_lo * mb, ph.decode_s_per_mb * mb, ph.decode_s_per_mb_hi * mb),
         "in_warm": True, "kind": "measured here (not published; this repository's partition format)",
         "source": ph.local_source + ", load_s per MB scaled to 75 MB"},
        {"phase": "compute", **_rng(c_lo, c_pt, c_hi), "in_warm": True,
         "kind": "measured here (published loop, batch 256), scaled to the vCPU share",
         "source": f"bench rows engine=published-loop; {vcpu:.2f} vCPU at {mem:,.0f} MB: no gain above 2 threads "
                   f"(slow end, point on {cpus[0].family}) .. Amdahl (fast end); " + "; ".join(machines)},
        {"phase": "upload", **_rng(ph.upload_s_lo, ph.upload_s, ph.upload_s_hi), "in_warm": True,
         "kind": "measured here (not published; this repository's predictions file)",
         "source": ph.local_source + ", upload_s"},
    ]
    warm_rows = [r for r in rows if r["in_warm"]]
    explained = _rng(*(sum(r[k] for r in warm_rows) for k in ("low", "point", "high")))
    unexplained = _rng(dur - explained["high"], dur - explained["point"], dur - explained["low"])
    cold_s = float(np.median(cold)) / 1000.0 if cold else float("nan")
    return {
        "kind": "published duration, decomposed (published + measured here)",
        "source": "data/reference/cai/lambda_report_lines.txt",
        "duration_s": dur, "warm_lines": len(warm), "cold_duration_s": cold_s, "cold_lines": len(cold),
        "cold_excess_s": cold_s - dur, "memory_mb": mem, "vcpu": vcpu, "partition_mb": mb, "samples": samples,
        "rows": rows, "explained_s": explained, "unexplained_s": unexplained,
        "unexplained_share": _rng(unexplained["low"] / dur, unexplained["point"] / dur, unexplained["high"] / dur),
        "published_profiler_cpu_s": _published_cpu_time(reference_dir),
    }


def _published_cpu_time(reference_dir: Path | None) -> float:
    """Mean published per-worker ``total_cpu_time`` of the 75 MB runs (profiler CPU time, a cross-check)."""
    ref = Path(reference_dir or config.REFERENCE_DIR) / "cai" / "result_stats.csv"
    with open(ref, encoding="utf-8") as fh:
        vals = [float(r["total_cpu_time (seconds)"]) for r in csv.DictReader(fh)
                if r["partition (MB)"] == "75" and r["run"] == "mean"]
    return float(np.mean(vals)) if vals else float("nan")


# ------------------------------------------------------------------ the one duration and cost function
def partition_gb(partition_mb: float) -> float:
    """GB (1e9 bytes) of samples in a partition of ``partition_mb`` MB."""
    return config.samples_per_partition(partition_mb) * config.SAMPLE_BYTES / config.GB


def partition_duration_s(speed: EngineSpeed, scaling: Scaling, phases: Phases, memory_mb: float,
                         partition_mb: float, beyond_two: str | None = None, bound: str = "point") -> dict[str, float]:
    """THE per-partition duration: warm (download + decode + compute + upload [+ residual]) and the cold extra.
    ``s3_s`` is the I/O the Inference step's prefetch overlaps with compute; ``low`` scales by Amdahl."""
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    vcpu = cost.vcpus_for_memory(memory_mb)
    rel = scaling.speed(vcpu, beyond_two or ("amdahl" if bound == "low" else None))
    samples = config.samples_per_partition(partition_mb)
    inference = samples / (speed.samples_per_s_1t * rel)
    sliced = 1.0 / min(1.0, vcpu)  # below one vCPU every CPU-bound phase is time-sliced
    suffix = {"low": "_lo", "point": "", "high": "_hi"}[bound]
    download = getattr(phases, f"s3_s_per_mb{suffix}") * partition_mb
    decode = getattr(phases, f"decode_s_per_mb{suffix}") * partition_mb * sliced
    upload = getattr(phases, f"upload_s{suffix}")

    residual = phases.residual_s_per_mb_hi * partition_mb * sliced if bound == "high" else 0.0
    load = (speed.model_load_s or 0.0) / min(1.0, vcpu)
    io = download + decode + upload
    return {"vcpu": vcpu, "engine_speed_rel": rel, "samples": float(samples), "inference_s": inference,
            "download_s": download, "decode_s": decode, "upload_s": upload, "residual_s": residual,
            "s3_s": io, "warm_s": io + inference + residual, "cold_extra_s": phases.init_s + load}


def usd_per_gb(duration_s: float, memory_mb: float, partition_mb: float, arch: str = "x86_64",
               prices: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Billed cost of one invocation of ``duration_s`` (rounded up to 1 ms) per GB (1e9 bytes) of its partition."""
    lam = cost.lambda_cost([duration_s * 1000.0], memory_mb, arch, prices=prices)
    gb = partition_gb(partition_mb)
    return {"billed_ms": float(lam.billed_ms_total), "usd_per_partition": lam.total_usd,
            "usd_per_gb": lam.total_usd / gb, "compute_usd_per_gb": lam.compute_usd / gb}


def memory_table(speed: EngineSpeed, scaling: Scaling, phases: Phases,
                 memory_mbs: Sequence[float] = MEMORY_SIZES_MB, partition_mb: float = TABLE_PARTITION_MB,
                 prices: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One projected row per memory size: vCPU, phases, duration and billed $/GB (x86_64) with low/high bounds."""
    p = prices or cost.load_prices()
    out = []
    for mem in memory_mbs:
        d = partition_duration_s(speed, scaling, phases, mem, partition_mb)
        lo, hi = (partition_duration_s(speed, scaling, phases, mem, partition_mb, bound=b) for b in ("low", "high"))
        d_amdahl = partition_duration_s(speed, scaling, phases, mem, partition_mb, beyond_two="amdahl")
        warm, cold, amd, usd_lo, usd_hi = (usd_per_gb(s, mem, partition_mb, prices=p) for s in (
            d["warm_s"], d["warm_s"] + d["cold_extra_s"], d_amdahl["warm_s"], lo["warm_s"], hi["warm_s"]))
        out.append({
            "kind": "projected", "memory_mb": float(mem), "vcpu": d["vcpu"], "partition_mb": partition_mb,
            "samples_per_partition": int(d["samples"]), "engine_speed_rel": d["engine_speed_rel"],
            "inference_s": d["inference_s"], "s3_s": d["download_s"], "decode_s": d["decode_s"],
            "upload_s": d["upload_s"], "duration_s": d["warm_s"],
            "billed_ms": warm["billed_ms"], "usd_per_partition": warm["usd_per_partition"],
            "usd_per_gb": warm["usd_per_gb"], "compute_usd_per_gb": warm["compute_usd_per_gb"],
            "cost_scope": "Lambda only (billed duration + request charge, one partition per invocation)",
            "duration_s_cold": d["warm_s"] + d["cold_extra_s"], "usd_per_gb_cold": cold["usd_per_gb"],
            "duration_s_amdahl": d_amdahl["warm_s"], "usd_per_gb_amdahl": amd["usd_per_gb"],
            "duration_s_low": lo["warm_s"], "usd_per_gb_low": usd_lo["usd_per_gb"], "duration_s_high": hi["warm_s"],
            "residual_s_high": hi["residual_s"], "usd_per_gb_high": usd_hi["usd_per_gb"],

            "arch": "x86_64",
            "arm64": {"usd_per_gb": ARM64_NOT_MEASURED, "speed": ARM64_NOT_MEASURED,
                      "gb_second_usd": float(p["lambda"]["gb_second_usd"]["arm64"])},
            "engine": speed.engine, "batch_size": speed.batch_size, "threads_measured": speed.threads_used,
            "cpu_model": speed.cpu_model, "cpu_type": speed.cpu_type, "machine": speed.machine,
            "bench_run_id": speed.bench_run_id,
        })
    for bound in BOUNDS:
        best = cheapest(out, bound)
        for r in out:
            r["best_memory" if bound == "point" else f"best_memory_{bound}"] = r is best
    return out


def cheapest(rows: Sequence[Mapping[str, Any]], bound: str = "point") -> Mapping[str, Any]:
    """THE cheapest row of a memory table for a bound (lowest $/GB; ties: less memory). Every place uses this."""
    key = "usd_per_gb" if bound == "point" else f"usd_per_gb_{bound}"
    return min(rows, key=lambda r: (float(r[key]), float(r["memory_mb"])))


def best_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Cheapest memory and its $/GB per bound, and the $/GB range at the point's cheapest memory."""
    pt = cheapest(rows, "point")
    numbers = ("memory_mb", "vcpu", "duration_s", "usd_per_gb", "usd_per_gb_low", "usd_per_gb_high")
    out: dict[str, Any] = {k: float(pt[k]) for k in numbers}
    out.update(engine=pt["engine"], cpu_model=pt["cpu_model"], machine=pt.get("machine", ""))
    for bound in ("low", "high"):
        b = cheapest(rows, bound)
        out[f"cheapest_{bound}"] = {"memory_mb": float(b["memory_mb"]), "usd_per_gb": float(b[f"usd_per_gb_{bound}"])}
    return out


def by_cpu(memory_mbs: Sequence[float] = MEMORY_SIZES_MB, partition_mbs: Sequence[float] = PROJECTED_PARTITIONS_MB,
           phases: Phases | None = None, records_dir: Path | None = None,
           prices: Mapping[str, Any] | None = None, engine: str | None = None) -> list[dict[str, Any]]:
    """The projection per CPU type: each measured CPU's memory tables and cheapest memory; arm64 'not measured'."""
    ph = phases or published_phases(records_dir=records_dir)
    out: list[dict[str, Any]] = []
    for c in CPU_TYPES:
        path = c.bench_path(records_dir)
        if path is None or not path.exists():
            out.append({"key": c.key, "family": c.family, "machine": c.family, "kind": ARM64_NOT_MEASURED
                        if c.key == "arm64" else "not measured (no shipped bench record)",
                        "speed": ARM64_NOT_MEASURED, "usd_per_gb": ARM64_NOT_MEASURED,
                        "why": "no bench record of this CPU is shipped; only its price per GB-s is known"})
            continue
        speed = read_engine_speed(path, engine=engine)
        scaling = scaling_from(speed)
        tables = {f"{mb:g}": memory_table(speed, scaling, ph, memory_mbs, mb, prices) for mb in partition_mbs}
        out.append({"key": c.key, "family": c.family, "machine": speed.machine, "kind": "measured (shipped bench record)",
                    "bench_path": speed.bench_path, "bench_run_id": speed.bench_run_id, "engine": speed.engine,
                    "batch_size": speed.batch_size, "samples_per_s_1t": speed.samples_per_s_1t,
                    "samples_per_s_2t": speed.samples_per_s_2t, "two_thread_ratio": speed.two_thread_ratio,
                    "model_load_s": speed.model_load_s, "tables": tables,
                    "best": {k: best_summary(v) for k, v in tables.items()}})
    return out


# ------------------------------------------------------------------ the one way a cheapest memory is named
#: Every place that names a cheapest memory writes it with :func:`claim`, and
#: ``tests/test_cost_model_agrees.py`` reads every place back with :data:`CLAIM_RE`.
CLAIM_RE = re.compile(r"\[([^\[\]]+?), (\d+(?:\.\d+)?) MB partitions(, high bound)?\] cheapest ([\d,]+) MB at "
                      r"([\d.]+(?:e-?\d+)?) USD/GB")


def claim(machine: str, partition_mb: float, memory_mb: float, usd: float, bound: str = "point") -> str:
    """``[machine, N MB partitions] cheapest M MB at X USD/GB`` (``, high bound`` inside the brackets for it)."""
    tag = ", high bound" if bound == "high" else ""
    return f"[{machine}, {partition_mb:g} MB partitions{tag}] cheapest {memory_mb:,.0f} MB at {usd:.3g} USD/GB"


def claims_of(per_cpu: Sequence[Mapping[str, Any]], partition_mb: float | None = None,
              bounds: Sequence[str] = ("point",)) -> list[str]:
    """The claims of every measured CPU of a record's ``by_cpu`` (one partition size, or all)."""
    out = []
    for c in per_cpu:
        for mb, b in (c.get("best") or {}).items():
            if partition_mb is not None and float(mb) != float(partition_mb):
                continue
            for bound in bounds:
                best = b if bound == "point" else b[f"cheapest_{bound}"]
                out.append(claim(c["machine"], float(mb), best["memory_mb"], best["usd_per_gb"], bound))
    return out


def find_claims(text: str) -> list[tuple[tuple[str, float, str], tuple[int, str]]]:
    """Every claim in ``text``: ((machine, partition MB, bound), (memory MB, USD/GB as written))."""
    out = []
    for m in CLAIM_RE.finditer(text):
        key = (m.group(1).strip(), float(m.group(2)), "high" if m.group(3) else "point")
        out.append((key, (int(m.group(4).replace(",", "")), m.group(5))))
    return out


def disagreements(places: Mapping[str, str]) -> list[str]:
    """One line per configuration that two places (name -> text) name with different cheapest memory or USD/GB."""
    seen: dict[tuple[str, float, str], dict[tuple[int, str], list[str]]] = {}
    for where, text in places.items():
        for key, value in find_claims(text):
            seen.setdefault(key, {}).setdefault(value, []).append(where)
    return [f"{key[0]}, {key[1]:g} MB partitions, {key[2]}: " + "; ".join(
        f"{mem:,} MB at {usd} USD/GB in {', '.join(sorted(set(w)))}" for (mem, usd), w in values.items())
        for key, values in sorted(seen.items()) if len(values) > 1]
