"""PROJECTION of this repository's Lambda engine in AWS Lambda: duration, billed $/GB per memory size,
the best memory size, and the end-to-end wall clock of the published largest run (12.6 GB).

Why a separate projection (and not :func:`cosmic_utils.analysis.simulate.project_from_published`):
that one scales the *published* Lambda durations by a speedup measured against the published
loop, so it inherits the published torch function's start-up and deserialising time. The engine
that runs in Lambda here is ONNX Runtime (``onnx`` or ``onnx-int8``), so its duration is built
from what was measured for *that* engine, plus the published per-phase times for what this
machine cannot measure (S3 inside AWS, Lambda's cold start):

* **engine speed** (measured): samples/s of the Lambda engine at ``threads=1`` from a bench
  record (``bench.json`` rows: engine, batch_size, threads, samples_per_s, cpu_model, cpu_type).
  Lambda gives one vCPU per 1,769 MB, so one thread is what the 1,769 MB function gets. Without
  a ``threads=1`` row the projection is refused; ``allow_two_thread=True`` falls back to the
  ``threads=2`` rows, labelled as such (two threads of this machine are not one Lambda vCPU).
* **CPU share** per memory size: ``vcpu = min(6, memory / 1,769)``. Below 1 vCPU the engine is
  time-sliced (speed = vcpu). Between 1 and 2 vCPU the speed is interpolated linearly between the
  measured 1-thread and 2-thread rates (ratio ``r2``). Beyond 2 vCPU the default is
  **conservative**: no gain beyond the measured 2-thread rate (nothing above two threads was
  measured on this machine). Amdahl's law with the parallel fraction implied by ``r2``
  (``p = 2 (1 - 1/r2)``) is reported next to it as the optimistic bound (``*_amdahl``).
* **S3 and start-up** (published): the per-worker S3 time of the published runs
  (``result_stats.csv`` ``s3_avg_time``, the only published S3 timings, 100 MB partitions),
  scaled to the partition size; Lambda's cold start = the Init Duration of the published REPORT
  lines, plus the engine's model load measured by the bench (``meta.model_load_s``), paid once
  per container. The published REPORT lines show the init is billed (Billed = Duration + Init,
  rounded up to 1 ms), so a cold invocation's billed time includes it.
* **prices**: ``runtime/prices.yaml`` (x86_64 and arm64 per GB-s, per request). arm64 (Graviton)
  speed is NOT measured, so its $/GB is reported as "not measured"; only its price is shown.

The 12.6 GB wall clock runs the existing scale simulator
(:func:`cosmic_utils.analysis.simulate.simulate_run`: Distributed Map dispatch ramp, account
concurrency, Lambda burst and scaling rate, cold starts, orchestration overhead fitted on the
published runs) with the per-partition durations above, at account concurrency 1,000, with the
published run's partition count (``ceil(12.6 * 1024 / MB)``: 517 at 25 MB, 1,291 at 10 MB).

Everything in the output is labelled ``kind: "projected"``; every input is printed with its
source and kind (measured / published / fitted / assumed). Regenerate the record with
``cosmic simulate --project --json data/records/lambda_projection.json``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.analysis import cost, simulate
from cosmic_utils.runtime.items import split_even

#: Memory sizes of the projection (MB): 1 vCPU, just above it, the old 3,008 cap, 3 vCPU, 8 GB, the maximum.
MEMORY_SIZES_MB: tuple[int, ...] = (1769, 2048, 3008, 5307, 8192, 10240)
#: Partition size of the per-memory table (MB, 2**20 bytes).
TABLE_PARTITION_MB: float = 25.0
#: The published largest run (GB, published units) and the partition sizes of its projection.
LARGEST_PUBLISHED_GB: float = 12.6
WALL_PARTITIONS_MB: tuple[float, ...] = (25.0, 10.0)
#: Partitions per Lambda invocation searched for the fastest 12.6 GB configuration (a search grid,
#: not a measurement): the request's ``world_size = ceil(partitions / k)``, grouped by Init.
PER_INVOCATION_GRID: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
#: Account concurrency of the wall-clock projection (Lambda's default quota).
ACCOUNT_CONCURRENCY: int = 1000
#: Engines that run inside Lambda (ONNX Runtime; torch does not fit the zip).
LAMBDA_ENGINES: tuple[str, ...] = simulate.LAMBDA_ENGINES
#: Targets of issue #14, reported (never asserted): $/GB at the best memory, 12.6 GB wall clock.
TARGET_USD_PER_GB: float = 0.005
TARGET_WALL_S: float = 30.0
#: What the record says about arm64 (Graviton) speed and cost.
ARM64_NOT_MEASURED: str = "not measured"
#: The command that (re)writes the shipped record.
COMMAND: str = "cosmic simulate --project --json data/records/lambda_projection.json"


class ProjectionRefused(ValueError):
    """The bench record cannot support a 1-vCPU projection (e.g. no ``threads=1`` row); the message says why."""


# ------------------------------------------------------------------ the engine's measured speed
@dataclass(frozen=True)
class EngineSpeed:
    """The Lambda engine's measured speed on this machine (one bench row per thread count)."""

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

    @property
    def two_thread_ratio(self) -> float | None:
        """samples/s at 2 threads over 1 thread (None when either is missing or the fallback is in use)."""
        if self.samples_per_s_2t is None or self.threads_used != 1:
            return None
        return self.samples_per_s_2t / self.samples_per_s_1t


def _lambda_engine_choice(doc: Mapping[str, Any]) -> tuple[str, str]:
    """The engine the bench says Lambda runs (1-thread verdict first), and why."""
    summary = doc.get("summary") or {}
    by_threads = summary.get("by_threads") or {}
    for key in ("1", 1):
        lam = (by_threads.get(key) or {}).get("lambda_engine") if isinstance(by_threads, Mapping) else None
        if lam and lam.get("engine"):
            return str(lam["engine"]), f"bench summary.by_threads[1].lambda_engine: {lam.get('why', '')}".strip()
    lam = summary.get("lambda_engine") or {}
    if lam.get("engine"):
        return str(lam["engine"]), f"bench summary.lambda_engine: {lam.get('why', '')}".strip()
    return "onnx", "the bench names no Lambda engine: onnx (fp32) assumed"


def _batch_size(doc: Mapping[str, Any]) -> int:
    summary = doc.get("summary") or {}
    by_threads = summary.get("by_threads") or {}
    one = (by_threads.get("1") or by_threads.get(1) or {}) if isinstance(by_threads, Mapping) else {}
    for value in (one.get("batch_size"), summary.get("batch_size")):
        if value:
            return int(value)
    from cosmic_utils.runtime.request import RunRequest

    return int(RunRequest.model_fields["batch_size"].default)


def _portable(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it (records must not name this machine's paths)."""
    try:
        return path.resolve().relative_to(config.PROJECT_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_engine_speed(bench_path: Path | str | None = None, allow_two_thread: bool = False,
                      engine: str | None = None) -> EngineSpeed:
    """The Lambda engine's samples/s at one thread from a bench record (default data/records/bench.json).

    Picks the engine the bench names for Lambda (``summary.by_threads["1"].lambda_engine``, else
    ``summary.lambda_engine``, else ``onnx``) unless ``engine`` is given, at the bench's summary
    batch size (the nearest measured batch size when that one has no row, noted). Raises
    :class:`ProjectionRefused` when there is no usable ``threads=1`` row (unless
    ``allow_two_thread``, which then uses the ``threads=2`` row, labelled).
    """
    path = Path(bench_path or config.RECORDS_DIR / "bench.json")
    if not path.exists():
        raise ProjectionRefused(f"{path}: no bench record (run `cosmic bench --threads 1` or `make bench`)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    rows = [r for r in doc.get("rows", []) if isinstance(r, dict)]
    choice, why = _lambda_engine_choice(doc)
    name = engine or choice
    if engine:
        why = f"engine {engine} requested"
    if name not in LAMBDA_ENGINES:
        raise ProjectionRefused(f"engine {name!r} does not run in Lambda (ONNX only: {', '.join(LAMBDA_ENGINES)})")
    usable = [r for r in rows if r.get("engine") == name and r.get("check_passed") is not False
              and float(r.get("samples_per_s") or 0) > 0]
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
    want = _batch_size(doc)
    cands = by_threads[threads_used]
    batches = sorted({int(r["batch_size"]) for r in cands})
    batch = want if want in batches else min(batches, key=lambda b: (abs(math.log(b / want)), -b))
    if batch != want:
        note = (note + "; " if note else "") + f"batch {want} not measured at {threads_used} thread(s): batch {batch} used"
    row = max((r for r in cands if int(r["batch_size"]) == batch), key=lambda r: float(r["samples_per_s"]))
    two = [r for r in by_threads.get(2, []) if int(r["batch_size"]) == batch]
    sps2 = max((float(r["samples_per_s"]) for r in two), default=None) if threads_used == 1 else None
    meta = doc.get("meta") or {}
    load = (meta.get("model_load_s") or {}).get(name)
    return EngineSpeed(
        engine=name, batch_size=batch, samples_per_s_1t=float(row["samples_per_s"]), samples_per_s_2t=sps2,
        threads_used=threads_used, cpu_model=str(row.get("cpu_model") or meta.get("cpu_model") or "unknown CPU"),
        cpu_type=str(row.get("cpu_type") or meta.get("cpu_type") or ""),
        bench_run_id=str(row.get("run_id") or meta.get("run_id") or ""), bench_path=_portable(path),
        model_load_s=float(load) if load is not None else None, engine_choice=why, note=note,
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
                f"; optimistic bound reported as *_amdahl (parallel fraction {self.parallel_fraction:.3f})")


def scaling_from(speed: EngineSpeed, beyond_two: str = "flat") -> Scaling:
    r = speed.two_thread_ratio
    return Scaling(two_thread_ratio=max(1.0, r) if r is not None else 1.0, measured_ratio=r, beyond_two=beyond_two)


# ------------------------------------------------------------------ published per-phase times
@dataclass(frozen=True)
class PublishedPhases:
    """Per-phase Lambda times of the published Cosmic AI runs (what this machine cannot measure)."""

    s3_s_per_mb: float  #: per-worker S3 time per MB of partition
    s3_source: str
    init_s: float  #: Lambda Init Duration of a cold container
    init_source: str


def published_phases(reference_dir: Path | None = None) -> PublishedPhases:
    """The published S3 time per MB (``result_stats.csv`` ``s3_avg_time``, mean rows) and Init Duration (REPORT lines)."""
    ref = Path(reference_dir or config.REFERENCE_DIR) / "cai"
    per_mb = []
    with open(ref / "result_stats.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("run") != "mean" or not (r.get("s3_avg_time") or "").strip():
                continue
            per_mb.append(float(r["s3_avg_time"]) / float(r["partition (MB)"]))
    if not per_mb:
        raise ProjectionRefused(f"{ref / 'result_stats.csv'}: no published s3_avg_time")
    inits = [r["init_duration"] for r in simulate.published_lambda_durations(reference_dir)
             if not math.isnan(r["init_duration"])]
    if not inits:
        raise ProjectionRefused(f"{ref / 'lambda_report_lines.txt'}: no published Init Duration")
    return PublishedPhases(
        s3_s_per_mb=float(np.mean(per_mb)),
        s3_source="published: cai/result_stats.csv s3_avg_time (per-worker S3 time, 'mean' rows, 100 MB partitions) / partition MB",
        init_s=float(np.median(inits)) / 1000.0,
        init_source=f"published: cai/lambda_report_lines.txt Init Duration (median of {len(inits)} cold REPORT line(s))",
    )


# ------------------------------------------------------------------ per-partition duration and cost
def _partition_gb(partition_mb: float) -> float:
    return config.samples_per_partition(partition_mb) * config.SAMPLE_BYTES / config.GB


def partition_duration_s(speed: EngineSpeed, scaling: Scaling, phases: PublishedPhases, memory_mb: float,
                         partition_mb: float, beyond_two: str | None = None) -> dict[str, float]:
    """Warm duration of one partition (S3 + inference) and the cold extra (init + model load), seconds."""
    vcpu = cost.vcpus_for_memory(memory_mb)
    rel = scaling.speed(vcpu, beyond_two)
    samples = config.samples_per_partition(partition_mb)
    inference = samples / (speed.samples_per_s_1t * rel)
    s3 = phases.s3_s_per_mb * partition_mb
    load = (speed.model_load_s or 0.0) / min(1.0, vcpu)
    return {"vcpu": vcpu, "engine_speed_rel": rel, "samples": float(samples), "inference_s": inference,
            "s3_s": s3, "warm_s": s3 + inference, "cold_extra_s": phases.init_s + load}


def usd_per_gb(duration_s: float, memory_mb: float, partition_mb: float, arch: str = "x86_64",
               prices: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Billed cost of one invocation of ``duration_s`` (rounded up to 1 ms) per GB (1e9 bytes) of its partition."""
    lam = cost.lambda_cost([duration_s * 1000.0], memory_mb, arch, prices=prices)
    gb = _partition_gb(partition_mb)
    return {"billed_ms": float(lam.billed_ms_total), "usd_per_partition": lam.total_usd,
            "usd_per_gb": lam.total_usd / gb, "compute_usd_per_gb": lam.compute_usd / gb}


def memory_table(speed: EngineSpeed, scaling: Scaling, phases: PublishedPhases,
                 memory_mbs: Sequence[float] = MEMORY_SIZES_MB, partition_mb: float = TABLE_PARTITION_MB,
                 prices: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One projected row per memory size: vCPU, duration, billed $/GB (x86_64), the assumed engine/CPU."""
    p = prices or cost.load_prices()
    out = []
    for mem in memory_mbs:
        d = partition_duration_s(speed, scaling, phases, mem, partition_mb)
        d_amdahl = partition_duration_s(speed, scaling, phases, mem, partition_mb, beyond_two="amdahl")
        warm = usd_per_gb(d["warm_s"], mem, partition_mb, prices=p)
        cold = usd_per_gb(d["warm_s"] + d["cold_extra_s"], mem, partition_mb, prices=p)
        amd = usd_per_gb(d_amdahl["warm_s"], mem, partition_mb, prices=p)
        out.append({
            "kind": "projected", "memory_mb": float(mem), "vcpu": d["vcpu"], "partition_mb": partition_mb,
            "samples_per_partition": int(d["samples"]), "engine_speed_rel": d["engine_speed_rel"],
            "inference_s": d["inference_s"], "s3_s": d["s3_s"], "duration_s": d["warm_s"],
            "billed_ms": warm["billed_ms"], "usd_per_partition": warm["usd_per_partition"],
            "usd_per_gb": warm["usd_per_gb"], "compute_usd_per_gb": warm["compute_usd_per_gb"],
            "cost_scope": "Lambda only (billed duration + request charge, one partition per invocation)",
            "duration_s_cold": d["warm_s"] + d["cold_extra_s"], "usd_per_gb_cold": cold["usd_per_gb"],
            "duration_s_amdahl": d_amdahl["warm_s"], "usd_per_gb_amdahl": amd["usd_per_gb"],
            "arch": "x86_64",
            "arm64": {"usd_per_gb": ARM64_NOT_MEASURED, "speed": ARM64_NOT_MEASURED,
                      "gb_second_usd": float(p["lambda"]["gb_second_usd"]["arm64"])},
            "engine": speed.engine, "batch_size": speed.batch_size, "threads_measured": speed.threads_used,
            "cpu_model": speed.cpu_model, "cpu_type": speed.cpu_type, "bench_run_id": speed.bench_run_id,
        })
    best = min(out, key=lambda r: r["usd_per_gb"])
    for r in out:
        r["best_memory"] = r is best
    return out


# ------------------------------------------------------------------ 12.6 GB end to end
def map_plan(items: int, orch: simulate.Orchestration) -> dict[str, Any]:
    """How the Distributed Map runs ``items`` children: its concurrency slots and whether items queue for them."""
    limit = min(orch.account_concurrency, simulate.MAP_MAX_CONCURRENCY)
    if orch.max_concurrency and orch.max_concurrency > 0:
        limit = min(limit, orch.max_concurrency)
    slots = max(1, min(limit, items))
    return {"mode": "DISTRIBUTED", "items": items, "slots": slots, "queued": items > slots,
            "queued_items": max(0, items - slots), "waves": math.ceil(items / slots),
            "why": ("items > account concurrency: queued, each slot runs several partitions in turn (warm after the first)"
                    if items > slots else "one container per item, every invocation cold")}


def invocation_durations(inference_s: np.ndarray, s3_s: float, world_size: int | None) -> np.ndarray:
    """Warm duration of each Map item when Init groups the partitions into ``world_size`` items.

    Grouping as the pipeline does it (:func:`cosmic_utils.runtime.items.split_even`, contiguous
    shares differing by at most one partition). Within an item the Inference step downloads the
    first partition, then prefetches partition ``i + 1`` while it runs partition ``i``
    (:class:`cosmic_utils.runtime.steps.inference.Prefetcher`), so an item of partitions with
    inference times ``c_1 .. c_k`` takes ``s3 + sum_{i<k} max(c_i, s3) + c_k``. The S3 time is the
    published per-worker one (download; the predictions upload is not published separately and is
    not modelled apart from it). ``world_size=None`` (or >= partitions): one partition per item,
    ``s3 + c``, exactly the duration of the one-partition projection.
    """
    shares = split_even(list(range(len(inference_s))), world_size)
    out = np.empty(len(shares))
    for j, share in enumerate(shares):
        c = inference_s[share]
        out[j] = s3_s + float(np.maximum(c[:-1], s3_s).sum()) + float(c[-1])
    return out


def wall_clock(speed: EngineSpeed, scaling: Scaling, phases: PublishedPhases, memory_mb: float,
               partition_mb: float, data_gb: float = LARGEST_PUBLISHED_GB,
               concurrency: int = ACCOUNT_CONCURRENCY, orch: simulate.Orchestration | None = None,
               timing_cv: float | None = None, seed: int = 0, per_invocation: int = 1) -> dict[str, Any]:
    """End-to-end wall clock and cost of ``data_gb`` (published units) on the scale simulator's schedule.

    The schedule is the simulator's (:func:`cosmic_utils.analysis.simulate.dispatch_times` and
    :func:`~cosmic_utils.analysis.simulate.schedule`: Distributed Map dispatch ramp, account
    concurrency, Lambda burst and scaling rate, cold start once per container, fitted fixed
    overhead), over Map *items*. ``per_invocation`` partitions per item is the request's
    ``world_size = ceil(partitions / per_invocation)`` (Init groups the partitions, the deployed
    ASL hands one item per child execution); 1 is one partition per invocation, which draws the
    same per-partition inference times as :func:`cosmic_utils.analysis.simulate.simulate_run`
    (log-normal, fitted spread, same seed) and gives its wall clock and cost. Cost, as in the
    simulator: Lambda billed on warm durations (each rounded up to 1 ms), one Step Functions
    child per item, the pipeline's S3 requests per partition.
    """
    if per_invocation < 1:
        raise ValueError(f"per_invocation must be >= 1, got {per_invocation}")
    fitted = simulate.load_fitted()
    base_timing, base_orch = fitted if fitted else (simulate.PartitionTiming(), simulate.Orchestration())
    orch = replace(orch or base_orch, account_concurrency=int(concurrency), max_concurrency=0)
    cv = base_timing.inference_cv if timing_cv is None else timing_cv
    d = partition_duration_s(speed, scaling, phases, memory_mb, partition_mb)
    n = simulate.partitions_for(data_gb, partition_mb, published_units=True)
    rng = np.random.default_rng(seed)
    if cv > 0:
        sigma = math.sqrt(math.log(1.0 + cv**2))
        inf = d["inference_s"] * rng.lognormal(-sigma**2 / 2.0, sigma, size=n)
    else:
        inf = np.full(n, d["inference_s"])
    world = math.ceil(n / per_invocation) if per_invocation > 1 else None
    warm = invocation_durations(inf, d["s3_s"], world)
    items = len(warm)
    disp = simulate.dispatch_times(items, orch.dispatch_rate0, orch.dispatch_ramp)
    last, peak = simulate.schedule(warm, d["cold_extra_s"], orch, disp)
    wall = orch.overhead_s + orch.per_item_summarize_s * n + last
    lam = cost.lambda_cost((warm * 1000.0).tolist(), memory_mb)
    sfn = cost.stepfunctions_cost(items)
    s3 = cost.s3_cost(**cost.pipeline_s3_requests(n, min(items, peak)))
    gb = n * partition_mb * config.PARTITION_MB / config.GB
    total = lam.total_usd + sfn + s3
    k_max = max(len(s) for s in split_even(list(range(n)), world))
    return {
        "kind": "projected (simulated schedule)", "data_gb": gb, "partition_mb": partition_mb,
        "memory_mb": float(memory_mb), "partitions": n, "per_invocation": int(k_max),
        "world_size": world, "items": items, "map": map_plan(items, orch),
        "wall_s": wall, "map_s": last, "mean_duration_s": float(warm.mean()),
        "max_invocation_s": float(warm.max()),
        "max_concurrency_reached": peak, "cost_usd": total, "usd_per_gb": total / gb,
        "lambda_usd_per_gb": lam.total_usd / gb, "stepfunctions_usd_per_gb": sfn / gb, "s3_usd_per_gb": s3 / gb,
        "cost_scope": "Lambda + Step Functions (one child per item) + S3 requests",
        "breakdown_s": {"orchestration_overhead": orch.overhead_s,
                        "last_dispatch": float(disp[-1]),
                        "partition_warm": d["warm_s"], "cold_extra": d["cold_extra_s"],
                        "invocation_warm_max": float(warm.max())},
        "seed": seed,
    }


def memory_grid(memory_mbs: Sequence[float], prices: Mapping[str, Any] | None = None) -> list[float]:
    """Memory sizes of the fastest-configuration search: the table's sizes plus the 2-vCPU point.

    ``2 x mb_per_vcpu`` (published: 1 vCPU per 1,769 MB) is where the conservative scaling stops
    gaining speed, so it is the cheapest memory with the highest projected speed.
    """
    lam = (prices or cost.load_prices())["lambda"]
    return sorted({float(m) for m in memory_mbs} | {2.0 * float(lam["mb_per_vcpu"])})


def fastest_configuration(speed: EngineSpeed, scaling: Scaling, phases: PublishedPhases, partition_mb: float,
                          memory_mbs: Sequence[float], per_invocation: Sequence[int] = PER_INVOCATION_GRID,
                          concurrency: int = ACCOUNT_CONCURRENCY, orch: simulate.Orchestration | None = None,
                          seed: int = 0, target_s: float = TARGET_WALL_S) -> dict[str, Any]:
    """The 12.6 GB wall clock over a grid of memory x partitions per invocation, for one partition size.

    Returns ``{"partition_mb", "grid": [compact rows], "fastest": full row, "cheapest_meeting_target":
    full row or None, "bound": what limits the fastest}``. Every configuration is one the deployed
    pipeline runs (memory: the function's setting; partitions per invocation: the request's
    ``world_size``, grouped by Init), so each row says which ``world_size`` to ask for.
    """
    rows = []
    for mem in memory_mbs:
        for k in dict.fromkeys(int(x) for x in per_invocation):
            w = wall_clock(speed, scaling, phases, mem, partition_mb, concurrency=concurrency, orch=orch,
                           seed=seed, per_invocation=k)
            if rows and any(r["memory_mb"] == w["memory_mb"] and r["items"] == w["items"] for r in rows):
                continue  # a larger k that gives the same grouping (e.g. k >= partitions)
            rows.append(w)
    fastest = min(rows, key=lambda r: (r["wall_s"], r["usd_per_gb"]))
    ok = [r for r in rows if r["wall_s"] <= target_s]
    cheapest_ok = min(ok, key=lambda r: (r["usd_per_gb"], r["wall_s"])) if ok else None
    b = fastest["breakdown_s"]
    bound = {
        "orchestration_overhead_s": b["orchestration_overhead"],
        "last_dispatch_s": b["last_dispatch"],
        "cold_extra_s": b["cold_extra"],
        "invocation_warm_max_s": b["invocation_warm_max"],
        "floor_s": b["orchestration_overhead"] + b["cold_extra"],
        "why": (f"fixed overhead {b['orchestration_overhead']:.1f} s (fitted) + cold start {b['cold_extra']:.1f} s "
                f"(published init + measured model load) are paid whatever the grouping; then fewer, longer "
                f"invocations trade dispatch ({fastest['items']} items handed out by "
                f"{b['last_dispatch']:.1f} s at the fitted start rate) against per-invocation compute "
                f"({fastest['per_invocation']} partitions: {b['invocation_warm_max']:.1f} s warm)"),
    }
    compact = [{k: r[k] for k in ("partition_mb", "memory_mb", "per_invocation", "world_size", "items", "wall_s",
                                  "usd_per_gb", "max_invocation_s")} | {"meets_target": r["wall_s"] <= target_s}
               for r in rows]
    return {"partition_mb": partition_mb, "target_s": target_s, "grid": compact,
            "fastest": _config(fastest, target_s), "cheapest_meeting_target": _config(cheapest_ok, target_s)
            if cheapest_ok else None, "bound": bound}


def _config(row: Mapping[str, Any], target_s: float) -> dict[str, Any]:
    """A grid row with its configuration spelled out (what to deploy / request) and the target verdict."""
    ws = row["world_size"]
    how = (f"Lambda memory {row['memory_mb']:.0f} MB, request world_size={ws} "
           f"({row['per_invocation']} partitions per invocation)" if ws is not None
           else f"Lambda memory {row['memory_mb']:.0f} MB, one partition per invocation (world_size unset)")
    return {**row, "config": how, "deployed_asl_runs_it": True, "meets_target": row["wall_s"] <= target_s}


# ------------------------------------------------------------------ published comparison points
def published_points(reference_dir: Path | None = None, prices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Published $/GB (billed by configured memory) and the published 12.6 GB wall clocks, with their sources."""
    ref = Path(reference_dir or config.REFERENCE_DIR)
    reports = simulate.published_lambda_durations(reference_dir)
    billed = float(np.median([r["billed_duration"] for r in reports]))
    mem = float(np.median([r["memory_size"] for r in reports]))
    cai_gb = _partition_gb(75.0)
    lam = cost.lambda_cost([billed], mem, prices=prices, already_billed=True)
    cai = {"label": "Cosmic AI (published REPORT lines, 75 MB partitions)", "kind": "published",
           "source": "data/reference/cai/lambda_report_lines.txt (median Billed Duration)",
           "memory_mb": mem, "partition_mb": 75.0, "billed_ms": billed, "usd_per_gb": lam.total_usd / cai_gb}
    team6 = []
    with open(ref / "team6" / "lambda_table.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r["section"] != "partition":
                continue
            mb, n = float(r["partition_mb"]), int(r["lambdas"])
            b = cost.billed_for_published_row(mb, n, float(r["avg_runtime_s"]), prices=prices)
            team6.append({"label": f"team6 {mb:g} MB (published runtimes, ASSUMED 10,240 MB configured)",
                          "kind": "published", "source": "data/reference/team6/lambda_table.csv (section partition)",
                          "memory_mb": b["billed_assumed_memory_mb"], "partition_mb": mb,
                          "avg_runtime_s": float(r["avg_runtime_s"]),
                          "usd_per_gb": b["billed_lambda_usd"] / (n * _partition_gb(mb))})
    walls = [r for r in simulate.published_runs(reference_dir)
             if r["source"] == "total_execution_time" and abs(r["data_gb"] - LARGEST_PUBLISHED_GB) < 1e-9]
    by_mb: dict[float, list[float]] = {}
    for r in walls:
        by_mb.setdefault(r["partition_mb"], []).append(float(r["wall_s"]))
    wall = [{"partition_mb": mb, "runs_s": sorted(v), "median_s": float(np.median(v)), "kind": "published",
             "source": "data/reference/cai/total_execution_time.csv (12.6 GB rows, 10,240 MB Lambdas)"}
            for mb, v in sorted(by_mb.items())]
    return {"cosmic_ai": cai, "team6": team6, "wall_12_6gb": wall}


# ------------------------------------------------------------------ the whole record
def project(bench_path: Path | str | None = None, allow_two_thread: bool = False, engine: str | None = None,
            memory_mbs: Sequence[float] = MEMORY_SIZES_MB, partition_mb: float = TABLE_PARTITION_MB,
            wall_partitions_mb: Sequence[float] = WALL_PARTITIONS_MB, concurrency: int = ACCOUNT_CONCURRENCY,
            beyond_two: str = "flat", reference_dir: Path | None = None, seed: int = 0,
            per_invocation_grid: Sequence[int] = PER_INVOCATION_GRID) -> dict[str, Any]:
    """The projection record (what ``cosmic simulate --project --json FILE`` writes)."""
    prices = cost.load_prices()
    speed = read_engine_speed(bench_path, allow_two_thread, engine)
    scaling = scaling_from(speed, beyond_two)
    phases = published_phases(reference_dir)
    table = memory_table(speed, scaling, phases, memory_mbs, partition_mb, prices)
    best = min(table, key=lambda r: r["usd_per_gb"])
    fitted = simulate.load_fitted()
    orch = replace(fitted[1] if fitted else simulate.Orchestration(), account_concurrency=concurrency,
                   max_concurrency=0)
    walls = []
    for mem in dict.fromkeys([best["memory_mb"], float(simulate.PUBLISHED_MEMORY_MB)]):
        for mb in wall_partitions_mb:
            walls.append(wall_clock(speed, scaling, phases, mem, mb, concurrency=concurrency, orch=orch,
                                    seed=seed))
    grid_mem = memory_grid(memory_mbs, prices)
    searches = [fastest_configuration(speed, scaling, phases, mb, grid_mem, per_invocation_grid,
                                      concurrency=concurrency, orch=orch, seed=seed)
                for mb in wall_partitions_mb]
    pub = published_points(reference_dir, prices)
    pub25 = next((w["median_s"] for w in pub["wall_12_6gb"] if w["partition_mb"] == 25.0), None)
    best_walls = [w for w in walls if w["memory_mb"] == best["memory_mb"]]
    overall = min((x["fastest"] for x in searches), key=lambda r: (r["wall_s"], r["usd_per_gb"]), default=None)
    meeting = [x["cheapest_meeting_target"] for x in searches if x["cheapest_meeting_target"]]
    cheapest_ok = min(meeting, key=lambda r: r["usd_per_gb"]) if meeting else None
    lam = prices["lambda"]
    label = (f"projected from {speed.cpu_model} bench, {speed.threads_used} thread"
             + ("" if speed.threads_used == 1 else "s (FALLBACK)"))
    return {
        "kind": "projected",
        "label": label,
        "command": COMMAND if speed.threads_used == 1
        else COMMAND.replace("--project", "--project --allow-two-thread"),
        "inputs": {
            "engine": {**asdict(speed), "two_thread_ratio": speed.two_thread_ratio,
                       "kind": "measured (bench record, this machine)" if speed.threads_used == 1
                       else "measured at 2 threads, used as 1 vCPU (FALLBACK)"},
            "scaling": {**asdict(scaling), "parallel_fraction": scaling.parallel_fraction,
                        "description": scaling.describe(), "kind": "measured ratio, extrapolated"},
            "cpu_share": {"mb_per_vcpu": float(lam["mb_per_vcpu"]), "max_vcpus": float(lam["max_vcpus"]),
                          "kind": "published (AWS Lambda)"},
            "phases": {**asdict(phases), "model_load_s": speed.model_load_s,
                       "model_load_kind": "measured (bench meta.model_load_s, this machine)"
                       if speed.model_load_s is not None else "not recorded: 0 assumed",
                       "kind": "published (S3, init) + measured (model load)"},
            "prices": {"as_of": str(prices["as_of"]), "region": str(prices["region"]),
                       "gb_second_usd": dict(lam["gb_second_usd"]),
                       "request_usd_per_million": float(lam["request_usd_per_million"]),
                       "billing_granularity_ms": int(lam["billing_granularity_ms"]),
                       "gb_definition": "billed GB-s use memory_mb / 1024; $/GB uses GB = 1e9 bytes of samples"},
            "orchestration": {**asdict(orch), "kind": "fitted on the published runs (simulator_validation.json)"
                              if fitted else "simulator defaults (no simulator_validation.json)"},
            "partition_mb": partition_mb, "samples_per_partition": config.samples_per_partition(partition_mb),
        },
        "memory": table,
        "best_memory_mb": best["memory_mb"],
        "best": {k: best[k] for k in ("memory_mb", "vcpu", "duration_s", "usd_per_gb", "engine", "cpu_model")},
        "arm64": {"speed": ARM64_NOT_MEASURED, "usd_per_gb": ARM64_NOT_MEASURED,
                  "why": "no arm64 (Graviton) bench exists; only its price per GB-s is known"},
        "wall_clock_12_6gb": walls,
        "wall_clock_12_6gb_fastest": searches,
        "published": pub,
        "targets": {
            "kind": "reported, not asserted",
            "usd_per_gb_target": TARGET_USD_PER_GB, "usd_per_gb_at_best": best["usd_per_gb"],
            "usd_per_gb_met": best["usd_per_gb"] <= TARGET_USD_PER_GB,
            "wall_target_s": TARGET_WALL_S,
            "wall_s_at_best": {f"{w['partition_mb']:g}MB": w["wall_s"] for w in best_walls},
            "wall_met_fixed": {f"{w['partition_mb']:g}MB": w["wall_s"] <= TARGET_WALL_S for w in best_walls},
            "wall_met": {f"{x['partition_mb']:g}MB": x["fastest"]["meets_target"] for x in searches},
            "wall_s_fastest": {f"{x['partition_mb']:g}MB": x["fastest"]["wall_s"] for x in searches},
            "wall_met_any": (overall["wall_s"] <= TARGET_WALL_S) if overall else False,
            "wall_met_by": (cheapest_ok["config"] + f", {cheapest_ok['partition_mb']:g} MB partitions"
                            if cheapest_ok else None),
            "wall_best_found": ({k: overall[k] for k in ("config", "partition_mb", "memory_mb", "per_invocation",
                                                         "world_size", "items", "wall_s", "usd_per_gb")}
                                if overall else None),
            "wall_met_note": ("wall_met / wall_s_fastest: per partition size, the fastest configuration over "
                              "memory x partitions per invocation (wall_clock_12_6gb_fastest); wall_met_any: any "
                              "of them (wall_best_found says which); wall_met_fixed / wall_s_at_best: one "
                              "partition per invocation at the best-cost memory"),
            "published_wall_12_6gb_25mb_median_s": pub25,
            "published_usd_per_gb_cosmic_ai": pub["cosmic_ai"]["usd_per_gb"],
        },
    }


def write(record: Mapping[str, Any], path: Path | str) -> Path:
    """Write the record as JSON (sorted keys off: inputs first, as built)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return p


def load(path: Path | str | None = None) -> dict[str, Any] | None:
    """The shipped record (data/records/lambda_projection.json), None when absent."""
    p = Path(path or config.RECORDS_DIR / "lambda_projection.json")
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def describe(record: Mapping[str, Any]) -> list[str]:
    """Text lines that print every input and the headline numbers (what the CLI shows)."""
    i = record["inputs"]
    e, s, ph, pr = i["engine"], i["scaling"], i["phases"], i["prices"]
    lines = [f"PROJECTION ({record['label']}; every number below is projected unless labelled)",
             f"  engine: {e['engine']} batch {e['batch_size']}, {e['samples_per_s_1t']:.1f} samples/s at "
             f"{e['threads_used']} thread(s) [measured, {e['cpu_model']}, run {e['bench_run_id']}, {e['bench_path']}]"
             + (f"; {e['note']}" if e.get("note") else ""),
             f"  engine choice: {e['engine_choice']}",
             f"  scaling: {s['description']}",
             f"  S3: {ph['s3_s_per_mb'] * 1000:.2f} ms per MB [{ph['s3_source']}]",
             f"  cold start: init {ph['init_s']:.3f} s [{ph['init_source']}] + model load "
             + (f"{ph['model_load_s']:.3f} s [{ph['model_load_kind']}]" if ph.get("model_load_s") is not None
                else "0 s [not recorded]"),
             f"  prices ({pr['as_of']}, {pr['region']}): x86_64 {pr['gb_second_usd']['x86_64']} and arm64 "
             f"{pr['gb_second_usd']['arm64']} USD per GB-s, {pr['request_usd_per_million']} USD per million requests; "
             f"{pr['gb_definition']}",
             f"  orchestration: overhead {i['orchestration']['overhead_s']} s, dispatch "
             f"{i['orchestration']['dispatch_rate0']} items/s + {i['orchestration']['dispatch_ramp']} items/s^2, "
             f"account concurrency {i['orchestration']['account_concurrency']} [{i['orchestration']['kind']}]",
             f"  arm64 (Graviton): speed {record['arm64']['speed']}, $/GB {record['arm64']['usd_per_gb']}"]
    return lines



def best_per_invocation(search: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For one partition size, the fastest grid row at each partitions-per-invocation value (ties: cheaper)."""
    best: dict[int, dict[str, Any]] = {}
    for r in search["grid"]:
        k = int(r["per_invocation"])
        if k not in best or (r["wall_s"], r["usd_per_gb"]) < (best[k]["wall_s"], best[k]["usd_per_gb"]):
            best[k] = dict(r)
    return [best[k] for k in sorted(best)]


def describe_fastest(record: Mapping[str, Any]) -> list[str]:
    """Text lines for the fastest-configuration search (what the CLI prints after the fixed rows)."""
    searches = record.get("wall_clock_12_6gb_fastest") or []
    t = record["targets"]
    if not searches:
        return []
    lines = [f"{LARGEST_PUBLISHED_GB} GB fastest configuration over memory x partitions per invocation "
             f"(projected, simulated schedule; target {t['wall_target_s']:g} s, reported not asserted):"]
    for x in searches:
        lines.append(f"  {x['partition_mb']:g} MB partitions, fastest memory for each partitions-per-invocation k:")
        lines.append(f"    {'k':>3} {'memory_mb':>9} {'items':>6} {'wall_s':>7} {'usd_per_gb':>10} {'max_inv_s':>9}")
        for r in best_per_invocation(x):
            lines.append(f"    {r['per_invocation']:>3} {r['memory_mb']:>9.0f} {r['items']:>6} {r['wall_s']:>7.1f} "
                         f"{r['usd_per_gb']:>10.5f} {r['max_invocation_s']:>9.1f}"
                         + ("  meets target" if r["meets_target"] else ""))
        f = x["fastest"]
        lines.append(f"    fastest: {f['config']}: {f['wall_s']:.1f} s, {f['usd_per_gb']:.4g} USD/GB, "
                     f"{f['items']} items" + (" (meets the target)" if f["meets_target"] else " (misses the target)"))
        c = x["cheapest_meeting_target"]
        if c:
            lines.append(f"    cheapest meeting {t['wall_target_s']:g} s: {c['config']}: {c['wall_s']:.1f} s, "
                         f"{c['usd_per_gb']:.4g} USD/GB")
        else:
            lines.append(f"    no configuration meets {t['wall_target_s']:g} s; bound: {x['bound']['why']}")
    b = t.get("wall_best_found") or {}
    lines.append(f"  wall target met: {'yes' if t['wall_met_any'] else 'no'}"
                 + (f" (best found: {b['config']}, {b['partition_mb']:g} MB partitions, {b['wall_s']:.1f} s)" if b else "")
                 + (f"; cheapest meeting it: {t['wall_met_by']}" if t.get("wall_met_by") else ""))
    return lines
