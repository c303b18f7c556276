"""Scale simulator: wall clock and cost of a serverless run at any data size and partition size, event-driven
and seeded, FITTED on the published Cosmic AI runs (:func:`fit`) and reported on held-out rows (:func:`validate`).
Model and fit: docs/cost_and_simulation.md, "Scale simulator".
"""


from __future__ import annotations

import csv
import heapq
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.analysis import cost
from cosmic_utils.analysis.lambda_model import (  # the one set of memory sizes; the REPORT-line parser
    MEMORY_SIZES_MB,
    PUBLISHED_MEMORY_MB,
)

log = logging.getLogger(__name__)

#: Distributed Map: at most 10,000 concurrent child executions.
MAP_MAX_CONCURRENCY: int = 10_000


# ------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class Orchestration:
    """How Step Functions and Lambda hand out work; the first four are fitted (see :func:`fit`)."""

    overhead_s: float = 7.0  #: Init + Map start + Summarize of one run (s)
    dispatch_rate0: float = 12.0  #: Map items dispatched per second at the start
    dispatch_ramp: float = 0.5  #: increase of the dispatch rate per second (items/s**2)
    per_item_summarize_s: float = 0.0  #: Summarize time per record (s)
    account_concurrency: int = 1000  #: Lambda concurrent executions of the account (default quota)
    max_concurrency: int = 0  #: Map MaxConcurrency (0: none; Distributed Map allows 10,000)
    burst: int = 1000  #: Lambda's concurrency available at once
    scale_per_10s: int = 1000  #: Lambda scaling rate: new concurrency per 10 s per function


@dataclass(frozen=True)
class PartitionTiming:
    """Per-partition Lambda timing; ``inference_s_per_mb`` at ``reference_memory_mb``."""

    inference_s_per_mb: float = 0.21  #: mean inference seconds per published MB (published loop: 16 s / 75 MB)
    inference_cv: float = 0.10  #: spread of a partition's inference time (coefficient of variation)
    startup_s: float = 2.0  #: per invocation: handler start, model load, result upload (s)
    per_mb_s: float = 0.2  #: non-inference work per MB: deserialising, copying (s/MB)
    s3_mb_s: float = 90.0  #: S3 download throughput of one Lambda (MB/s)
    cold_init_s: float = 0.66  #: Lambda Init Duration of a cold container (REPORT line: 663.81 ms)
    reference_memory_mb: float = PUBLISHED_MEMORY_MB
    parallel_fraction: float = 0.9  #: Amdahl fraction of inference that uses extra vCPUs
    #: measured inference seconds per MB, one per partition; when given, each simulated partition
    #: draws from these (bootstrap) instead of the log-normal
    inference_samples_s_per_mb: tuple[float, ...] = ()

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], **overrides: Any) -> PartitionTiming:
        """Timing fitted to per-partition run records: inference s/MB (mean, spread), load + upload as startup."""
        inf, rest, mbs, mem = [], [], [], []
        for r in records:
            try:
                mb = float(r["data_bytes"]) / config.PARTITION_MB
                t_inf = float(r["inference_s"])
            except (KeyError, TypeError, ValueError):
                continue
            if mb <= 0 or not t_inf > 0:
                continue
            other = sum(float(r.get(k) or 0.0) for k in ("load_s", "upload_s"))
            inf.append(t_inf / mb)
            rest.append(other)
            mbs.append(mb)
            if r.get("memory_mb"):
                mem.append(float(r["memory_mb"]))
        if not inf:
            raise ValueError("no usable records (need data_bytes and inference_s > 0)")
        arr = np.asarray(inf)
        kwargs: dict[str, Any] = {
            "inference_samples_s_per_mb": tuple(float(x) for x in arr),
            "inference_s_per_mb": float(arr.mean()),
            "inference_cv": float(arr.std() / arr.mean()) if len(arr) > 1 else 0.1,
            "startup_s": float(np.mean(rest)),
            "per_mb_s": 0.0,
        }
        if mem:
            kwargs["reference_memory_mb"] = float(np.median(mem))
        kwargs.update(overrides)
        return cls(**kwargs)


#: The simulator's parameters when no fit is stored (:func:`load_fitted` returns None).
DEFAULTS: tuple[PartitionTiming, Orchestration] = (PartitionTiming(), Orchestration())


@dataclass(frozen=True)
class SimResult:
    """One simulated run (all times in seconds)."""

    data_gb: float
    partition_mb: float
    memory_mb: float
    partitions: int
    wall_s: float
    map_s: float
    mean_duration_s: float
    max_concurrency_reached: int
    cost_usd: float
    lambda_usd: float
    usd_per_gb: float
    throughput_e2e_gb_s: float
    label: str = "simulated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ pieces
def cpu_speed(memory_mb: float, parallel_fraction: float = 0.9) -> float:
    """Relative speed of CPU-bound work at ``memory_mb`` (1.0 = one full vCPU)."""
    v = cost.vcpus_for_memory(memory_mb)
    if v < 1.0:
        return v
    return 1.0 / ((1.0 - parallel_fraction) + parallel_fraction / v)


def partitions_for(data_gb: float, partition_mb: float, published_units: bool = False) -> int:
    """Partitions of ``partition_mb`` for ``data_gb``: whole samples of 1e9-byte GB, or with ``published_units``
    ``ceil(data_gb * 1024 / partition_mb)`` (1 GB of 25 MB partitions -> 41 workers)."""
    if published_units:
        return max(1, math.ceil(round(data_gb * 1024.0 / partition_mb, 9)))
    return max(1, math.ceil(config.samples_for_gb(data_gb) / config.samples_per_partition(partition_mb)))


def dispatch_times(n: int, rate0: float, ramp: float) -> np.ndarray:
    """Times at which the Map hands out items 0..n-1 with a linearly ramping dispatch rate."""
    k = np.arange(n, dtype=float)
    if ramp <= 0:
        return k / rate0
    # solve rate0 * t + ramp * t**2 / 2 = k
    return (-rate0 + np.sqrt(rate0**2 + 2.0 * ramp * k)) / ramp


def _slot_times(n_slots: int, burst: int, scale_per_10s: int) -> list[float]:
    """When each concurrency slot becomes usable under Lambda's scaling rate."""
    return [0.0 if k < burst else 10.0 * math.ceil((k - burst + 1) / max(1, scale_per_10s)) for k in range(n_slots)]


def slot_limit(orch: Orchestration, items: int) -> int:
    """Concurrency slots the Map runs ``items`` on: account quota, Map cap, MaxConcurrency, item count."""
    limit = min(orch.account_concurrency, MAP_MAX_CONCURRENCY)
    if orch.max_concurrency and orch.max_concurrency > 0:
        limit = min(limit, orch.max_concurrency)
    return max(1, min(limit, items))


def lognormal_times(mean_s: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` per-partition times of mean ``mean_s`` and coefficient of variation ``cv`` (constant when 0)."""
    if cv <= 0:
        return np.full(n, mean_s)
    sigma = math.sqrt(math.log(1.0 + cv**2))
    return mean_s * rng.lognormal(-sigma**2 / 2.0, sigma, size=n)


def run_cost(warm_s: np.ndarray, memory_mb: float, partitions: int, peak: int, arch: str = "x86_64",
             prices: Mapping[str, Any] | None = None) -> tuple[float, float, float]:
    """(Lambda, Step Functions, S3 requests) USD of one run: one child per item of ``warm_s``."""
    items = len(warm_s)
    lam = cost.lambda_cost((warm_s * 1000.0).tolist(), memory_mb, arch, prices=prices).total_usd
    sfn = cost.stepfunctions_cost(items, prices=prices)
    s3 = cost.s3_cost(**cost.pipeline_s3_requests(partitions, min(items, peak)), prices=prices)
    return lam, sfn, s3


def schedule(durations_warm: np.ndarray, cold_extra_s: float, orch: Orchestration,
             dispatch: np.ndarray) -> tuple[float, int]:
    """Finish time of the last item and the peak concurrency; a slot's (container's) first item pays ``cold_extra_s``."""
    n = len(durations_warm)
    limit = slot_limit(orch, n)
    if n <= limit and orch.burst >= n:  # every item has its own container: no queueing
        finish = dispatch + durations_warm + cold_extra_s
        return float(finish.max()), n
    slots = [(t, k, True) for k, t in enumerate(_slot_times(limit, orch.burst, orch.scale_per_10s))]
    heapq.heapify(slots)
    last = 0.0
    for i in range(n):
        free_at, k, cold = heapq.heappop(slots)
        start = max(free_at, float(dispatch[i]))
        end = start + float(durations_warm[i]) + (cold_extra_s if cold else 0.0)
        last = max(last, end)
        heapq.heappush(slots, (end, k, False))
    return last, limit


def run_schedule(warm_s: np.ndarray, cold_extra_s: float, orch: Orchestration, partitions: int, memory_mb: float,
                 arch: str = "x86_64", prices: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """Dispatch times, Map finish, peak concurrency, wall clock and :func:`run_cost` of Map items ``warm_s``."""
    disp = dispatch_times(len(warm_s), orch.dispatch_rate0, orch.dispatch_ramp)
    last, peak = schedule(warm_s, cold_extra_s, orch, disp)
    wall = orch.overhead_s + orch.per_item_summarize_s * partitions + last
    return disp, last, peak, wall, run_cost(warm_s, memory_mb, partitions, peak, arch, prices)


# ------------------------------------------------------------------ simulate
def simulate_run(data_gb: float, partition_mb: float, memory_mb: float = PUBLISHED_MEMORY_MB,
                 timing: PartitionTiming | None = None, orch: Orchestration | None = None,
                 n_partitions: int | None = None, published_units: bool = False,
                 inference_s_mean: float | None = None, arch: str = "x86_64", seed: int = 0,
                 prices: Mapping[str, Any] | None = None) -> SimResult:
    """One run's wall clock, cost and throughput; ``inference_s_mean`` overrides the mean inference time."""
    timing = timing or PartitionTiming()
    orch = orch or Orchestration()
    n = n_partitions or partitions_for(data_gb, partition_mb, published_units)
    rng = np.random.default_rng(seed)
    speed = cpu_speed(memory_mb, timing.parallel_fraction) / cpu_speed(timing.reference_memory_mb,
                                                                        timing.parallel_fraction)
    mean_inf = inference_s_mean if inference_s_mean is not None else timing.inference_s_per_mb * partition_mb
    mean_inf = mean_inf / speed
    if timing.inference_samples_s_per_mb and inference_s_mean is None:
        inf = rng.choice(np.asarray(timing.inference_samples_s_per_mb), size=n) * partition_mb / speed
    else:
        inf = lognormal_times(mean_inf, timing.inference_cv, n, rng)
    # startup and per-MB work are CPU-bound too; below one vCPU they slow down
    slow = 1.0 / min(1.0, cpu_speed(memory_mb, timing.parallel_fraction))
    warm = (timing.startup_s + timing.per_mb_s * partition_mb) * slow + partition_mb / timing.s3_mb_s + inf
    _, last, peak, wall, (lam, sfn, s3) = run_schedule(warm, timing.cold_init_s, orch, n, memory_mb, arch, prices)
    total = lam + sfn + s3
    gb = n * partition_mb * config.PARTITION_MB / config.GB if n_partitions or published_units else data_gb
    return SimResult(
        data_gb=gb, partition_mb=partition_mb, memory_mb=memory_mb, partitions=n, wall_s=wall,
        map_s=last, mean_duration_s=float(warm.mean()), max_concurrency_reached=peak,
        cost_usd=total, lambda_usd=lam, usd_per_gb=total / gb if gb > 0 else float("nan"),
        throughput_e2e_gb_s=gb / wall,
    )


def sweep_scale(data_gbs: Sequence[float], partition_mbs: Sequence[float],
                memory_mbs: Sequence[float] = (PUBLISHED_MEMORY_MB,), **kwargs: Any) -> list[dict[str, Any]]:
    """Simulate every (data size, partition size, memory) combination; one dict per run."""
    return [simulate_run(gb, mb, mem, **kwargs).to_dict()
            for gb, mb, mem in itertools.product(data_gbs, partition_mbs, memory_mbs)]


# ------------------------------------------------------------------ published runs
def duration_s(text: str) -> float:
    """Seconds of ``[[h:]m:]s``."""
    return sum(float(x) * 60**i for i, x in enumerate(reversed(str(text).strip().split(":"))))


def published_runs(reference_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every published Step Functions run (1 GB .. 1 TB) with wall clock, workers, per-worker inference time."""
    ref = Path(reference_dir or config.REFERENCE_DIR) / "cai"
    stats: dict[tuple[float, float, str], float] = {}
    with open(ref / "result_stats.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            stats[(float(r["partition (MB)"]), float(r["data (GB)"]), r["run"])] = float(r["total_cpu_time (seconds)"])
    rows: list[dict[str, Any]] = []
    with open(ref / "total_execution_time.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            mb, gb, run = float(r["partition(MB)"]), float(r["data(GB)"]), r["run"]
            inf = stats.get((mb, gb, run), stats.get((mb, gb, "mean")))
            rows.append({"source": "total_execution_time", "partition_mb": mb, "data_gb": gb, "run": run,
                         "workers": int(float(r["num_worlds"])), "inference_s": inf,
                         "wall_s": duration_s(r["duration"]), "map_s": float("nan")})

    with open(ref / "state_machine_logs.csv", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(GB|TB)", r["data (GB)"].strip())
            if not m or r["batch_varying"].strip().lower() == "true":
                continue
            gb = float(m.group(1)) * (1000.0 if m.group(2) == "TB" else 1.0)
            mb = float(r["partition (MB)"].replace("MB", ""))
            if gb < 50:  # already in total_execution_time.csv (the 2 GB / 50 MB row)
                continue
            inf = stats.get((mb, gb, r["run"]), stats.get((mb, gb, "mean"), stats.get((mb, 100.0, "mean"))))
            rows.append({"source": "state_machine_logs", "partition_mb": mb, "data_gb": gb, "run": r["run"],
                         "workers": partitions_for(gb, mb, published_units=True), "inference_s": inf,
                         "wall_s": float(r["total_duration (s)"]), "map_s": float(r["inference_duration (s)"])})
    return rows


# ------------------------------------------------------------------ fitting and validation
#: Parameters :func:`fit` searches, with their grids (coarse, deterministic).
FIT_GRID: dict[str, Sequence[float]] = {
    "overhead_s": (2.0, 4.0, 6.0, 8.0, 10.0, 14.0),
    "dispatch_rate0": (6.0, 9.0, 12.0, 16.0, 22.0, 30.0, 45.0),
    "dispatch_ramp": (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
    "startup_s": (0.0, 3.0, 6.0, 9.0, 12.0),
    "per_mb_s": (0.0, 0.05, 0.1, 0.15, 0.2, 0.3),
    "account_concurrency": (1000, 2000, 3000, 5000, 10000),
}


def is_training_row(row: Mapping[str, Any]) -> bool:
    """The fit split (docs/cost_and_simulation.md, "Fit and validation")."""
    if row["source"] == "total_execution_time":
        return row["partition_mb"] in (25.0, 75.0)
    return str(row["run"]) == "1"


def _predict_rows(rows: Sequence[Mapping[str, Any]], timing: PartitionTiming, orch: Orchestration,
                  seed: int) -> list[float]:
    return [simulate_run(r["data_gb"], r["partition_mb"], PUBLISHED_MEMORY_MB, timing, orch,
                         n_partitions=int(r["workers"]), inference_s_mean=r["inference_s"], seed=seed + i).wall_s
            for i, r in enumerate(rows)]


def _mean_abs_log_err(pred: Sequence[float], obs: Sequence[float]) -> float:
    return float(np.mean(np.abs(np.log(np.asarray(pred) / np.asarray(obs)))))


@dataclass
class FitResult:
    """The fitted simulator parameters."""

    timing: PartitionTiming
    orch: Orchestration


def fit(rows: Sequence[Mapping[str, Any]], seed: int = 0) -> FitResult:
    """Fit :data:`FIT_GRID` on ``rows`` by coordinate descent, minimising the mean absolute log error of wall clock."""
    timing, orch = PartitionTiming(inference_cv=0.1), Orchestration()
    obs = [float(r["wall_s"]) for r in rows]

    def score(t: PartitionTiming, o: Orchestration) -> float:
        return _mean_abs_log_err(_predict_rows(rows, t, o, seed), obs)

    best = score(timing, orch)
    timing_fields = set(PartitionTiming.__dataclass_fields__)
    for _ in range(3):
        improved = False
        for name, values in FIT_GRID.items():
            for v in values:
                t2 = replace(timing, **{name: v}) if name in timing_fields else timing
                o2 = replace(orch, **{name: type(getattr(orch, name))(v)}) if name not in timing_fields else orch
                s = score(t2, o2)
                if s < best - 1e-9:
                    best, timing, orch, improved = s, t2, o2, True
        if not improved:
            break
    return FitResult(timing, orch)


def validate(reference_dir: Path | None = None, seed: int = 0,
             fitted: FitResult | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit on the training split, predict every published run: per-row table and summary of errors."""
    rows = published_runs(reference_dir)
    train = [r for r in rows if is_training_row(r)]
    fitted = fitted or fit(train, seed=seed)
    preds = _predict_rows(rows, fitted.timing, fitted.orch, seed)
    table = [{**r, "split": "train" if is_training_row(r) else "held_out", "predicted_wall_s": p,
              "error_rel": (p - r["wall_s"]) / r["wall_s"]} for r, p in zip(rows, preds, strict=True)]

    def med(split: str | None) -> float:
        errs = [abs(t["error_rel"]) for t in table if split is None or t["split"] == split]
        return float(np.median(errs)) if errs else float("nan")

    summary = {
        "rows": len(table),
        "median_abs_error": med(None),
        "median_abs_error_held_out": med("held_out"),
        "median_abs_error_train": med("train"),
        "held_out_rows": sum(t["split"] == "held_out" for t in table),
        "train_rows": sum(t["split"] == "train" for t in table),
        "timing": asdict(fitted.timing),
        "orchestration": asdict(fitted.orch),
        "seed": seed,
    }
    return table, summary


def save_validation(out_dir: Path | None = None, seed: int = 0) -> tuple[Path, Path]:
    """Write the validation table (CSV) and its summary (JSON), by default into data/records/."""
    table, summary = validate(seed=seed)
    out = Path(out_dir or config.RECORDS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "simulator_validation.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    json_path = out / "simulator_validation.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


def load_fitted(path: Path | None = None) -> tuple[PartitionTiming, Orchestration] | None:
    """The fitted parameters stored by :func:`save_validation` (None when absent)."""
    p = Path(path or config.RECORDS_DIR / "simulator_validation.json")
    if not p.exists():
        return None
    data = json.loads(p.read_text(encoding="utf-8"))
    timing = {k: tuple(v) if isinstance(v, list) else v for k, v in data["timing"].items()}
    return PartitionTiming(**timing), Orchestration(**data["orchestration"])


# ------------------------------------------------------------------ right-sizing
def right_size_memory(data_gb: float, partition_mb: float, deadline_s: float,
                      memory_mbs: Sequence[float] = MEMORY_SIZES_MB, **kwargs: Any) -> dict[str, Any]:
    """Cheapest memory meeting ``deadline_s``, else the fastest (``meets_deadline`` False), with every candidate."""
    cands = [simulate_run(data_gb, partition_mb, m, **kwargs).to_dict() for m in memory_mbs]
    ok = [c for c in cands if c["wall_s"] <= deadline_s]
    best = min(ok, key=lambda c: c["cost_usd"]) if ok else min(cands, key=lambda c: c["wall_s"])
    return {"memory_mb": best["memory_mb"], "meets_deadline": bool(ok), "candidates": cands}
