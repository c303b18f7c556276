"""``cosmic bench``: every engine x batch size against the published loop, in one run.

What one bench run does (all numbers of one run come from the same process, machine state and
threads, so the ratios are honest even when absolute speeds drift):

1. **Machine and yardsticks**: CPU model and flags, library versions; the fp32 (and bf16)
   ``torch.mm`` peak on the engine threads, measured at the start, after every batch size and
   at the end (the best counts: other processes only ever lower it); FLOPs per sample from
   ``count_flops`` (~221.5 M).
2. **Accuracy checks** on the first ``check_rows`` (2,500) galaxies of the validation
   catalogue, rendered as the training code renders them: every engine is compared with the
   eager fp32 model (``torch-eager``): largest ``|z - z_fp32|``, sigma_NMAD of
   ``(z - z_spec) / (1 + z_spec)`` and its relative change. A reduced-precision engine passes
   when ``|sigma_NMAD / sigma_NMAD_fp32 - 1| <= 2 %``; an fp32 engine when it agrees with the
   eager model to 1e-3, and a reduced engine must also keep ``max |z - z_fp32| <= 0.05`` (the
   rule is :func:`cosmic_utils.runtime.gating.compare_to_fp32`, the same one the engines'
   creation-time gate applies to the artifact's calibration set; that gate's verdict on this
   CPU is recorded too). Results go to ``runs/bench/engine_checks.json``; without a trained
   model (``models/default``) the checks run on an untrained artifact and are labelled
   ``trained_model: false``, and :func:`cosmic_utils.inference.engines.default_engine` ignores
   them (reduced precision is then not used by default).
3. **Speed**: for each batch size, the same ``samples`` rows go through the published loop
   (``torch.load`` of a ``.pt`` + ``DataLoader`` + eager model under ``no_grad``; the load is
   timed separately) and through each engine (``engine.predict`` per batch on arrays in
   memory). The published loop runs in a fresh Python process
   (:class:`~cosmic_utils.inference.published_loop.PublishedLoopWorker`) so it keeps glibc's
   default allocator while the engines' process is tuned (:mod:`cosmic_utils.inference.tuning`);
   parent and child take turns. Passes are interleaved (published, engine 1, engine 2, ... then again) ``repeats``
   times and the best pass of each counts, which keeps the comparison fair when other
   processes share the cores. ``ratio_vs_published_loop`` divides by the published loop at
   the same batch size in the same run.
4. Optional **streaming memory check** (``stream_gb``): a fresh process streams a dataset of
   that size (reused when present) through the default engine; its peak RSS is recorded
   against the 1.5 GB target.

**Verdicts** (printed under the table, ``summary.engines``): per engine, *accurate* (bench
check and calibration gate passed on this CPU type), *faster* (samples/s above its fp32
counterpart, :data:`~cosmic_utils.runtime.gating.FP32_FALLBACK`, same batch, same run) and
*usable* (both). ``best_reduced`` and :func:`~cosmic_utils.inference.engines.default_engine`
consider only usable reduced engines; ``summary.lambda_engine`` says which ONNX engine the
inference Lambda would serve on this CPU type and why. Every row, record and the checks file
carry the CPU probe (:func:`cosmic_utils.runtime.cpu.cpu_probe`: ``cpu_model``, ``isa``,
``cpu_flags``, ``isa_caps``, ``cpu_type``).

Outputs: ``--json`` (``{"meta", "rows", "checks", "stream"}``, one row per engine x batch
size), ``runs/bench/engine_checks.json`` and ``runs/local/<run-id>/records.csv`` (one record
per engine x batch size, the columns of docs/architecture.md).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.data import dataset
from cosmic_utils.inference.engines import (
    COMPILED_ENGINE_NAMES,
    CUDA_ENGINE_NAMES,
    ENGINE_NAMES,
    ENGINE_PRECISION,
    create_engine,
    cuda_available,
)
from cosmic_utils.inference.measure import (
    RunMeasurement,
    machine_info,
    matmul_peak_gflops,
    new_run_id,
    percentile_ms,
    utc_now,
    write_records,
)
from cosmic_utils.model.artifacts import find_model, is_trained  # noqa: F401  is_trained: bench API
from cosmic_utils.provenance import stamped
from cosmic_utils.runtime import gating
from cosmic_utils.runtime.engine import Engine, resolve_threads

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES: tuple[int, ...] = (32, 64, 128, 256, 512)
QUICK_BATCH_SIZES: tuple[int, ...] = (32, 256)
#: fp32 engines must agree with the eager model to this (absolute redshift; the gate's rule).
FP32_ATOL: float = gating.FP32_ATOL
#: CPU probe fields copied into every bench row.
PROBE_FIELDS: tuple[str, ...] = ("cpu_model", "isa", "cpu_flags", "isa_caps", "cpu_type")
STREAM_RSS_TARGET_MB: float = 1.5e9 / 2**20  # 1.5 GB
#: The batch size of the summary, the Lambda choice and the 1-thread rows (the Lambda's batch).
SUMMARY_BATCH: int = 256
#: Compiled engines (torch-compile) are timed only at these batch sizes by default: each new
#: shape costs a compile (~20 s on the 2-core Xeon, 56-73 s on the 2-core EPYC).
COMPILE_BATCH_SIZES: tuple[int, ...] = (SUMMARY_BATCH,)
#: ESTIMATED seconds of one matmul-peak probe (the budget guard's allowance per batch size).
PEAK_PROBE_S: float = 2.0
#: The Lambda's choice is made at this thread count: 1,769 MB is one vCPU.
LAMBDA_THREADS: int = 1


@dataclass
class BenchConfig:
    """Settings of one bench run (``cosmic bench --help`` documents each)."""

    model_dir: Path | None = None
    engines: Sequence[str] = ENGINE_NAMES
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    samples: int = 512
    repeats: int = 3
    threads: Sequence[int] | int | None = None
    batch_sizes_by_threads: dict[int, Sequence[int]] | None = None
    compile_batch_sizes: Sequence[int] | None = COMPILE_BATCH_SIZES
    budget_s: float | None = None
    check_rows: int = 2500
    json_out: Path | None = None
    checks_out: Path | None = None
    run_id: str | None = None
    stream_gb: float | None = None
    stream_dataset: Path | None = None
    stream_engine: str | None = None
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **kw: Any) -> BenchConfig:
        """The ``--quick`` settings: two batch sizes, a few hundred samples, one pass, 500 check rows."""
        base = dict(batch_sizes=QUICK_BATCH_SIZES, samples=256, repeats=1, check_rows=500, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)


# --------------------------------------------------------------------------- model and data
def resolve_model(model_dir: str | os.PathLike[str] | None, with_onnx: bool = True) -> tuple[Path, bool]:
    """The artifact to bench and whether it is trained (:func:`cosmic_utils.model.artifacts.find_model`)."""
    # the bench times the network; an untrained stand-in is allowed here and recorded as such (meta.trained_model)
    return find_model(model_dir, with_onnx=with_onnx, allow_untrained=True)


def flops_per_sample() -> float:
    """FLOPs of one sample through the network (counted once with ``count_flops``)."""
    from cosmic_utils.model.astromae import build_model, count_flops

    return count_flops(build_model(), batch_size=4) / 4


# --------------------------------------------------------------------------- accuracy
def predict_all(engine: Engine, image: np.ndarray, magnitude: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``engine.predict`` over arrays in batches -> float32 ``[N]``.

    The output starts as NaN and every batch must return exactly one value per row (no
    broadcasting of a short answer), so no prediction is ever read from an unfilled buffer."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.full(len(image), np.nan, dtype=np.float32)
    for s in range(0, len(image), batch_size):
        z = np.asarray(engine.predict(image[s:s + batch_size], magnitude[s:s + batch_size])).reshape(-1)
        want = min(batch_size, len(image) - s)
        if z.shape[0] != want:
            raise ValueError(f"{engine.name}: {z.shape[0]} predictions for a batch of {want} rows")
        out[s:s + want] = z
    return out


def accuracy_check(name: str, z: np.ndarray, z_ref: np.ndarray, z_spec: np.ndarray, trained: bool) -> dict[str, Any]:
    """One engine's check against the fp32 reference predictions: the gate's rule
    (:func:`cosmic_utils.runtime.gating.compare_to_fp32`) on the bench's validation rows."""
    out = gating.compare_to_fp32(name, ENGINE_PRECISION.get(name, "fp32"), z, z_ref, z_spec)
    out["trained_model"] = trained
    return out


# --------------------------------------------------------------------------- timing passes
def cuda_skips(names: Sequence[str]) -> dict[str, str]:
    """Engine name -> reason for the CUDA engines in ``names`` when no CUDA device is present
    (printed, so a bench on a CPU machine says why it has no GPU rows); empty otherwise."""
    wanted = [n for n in names if n in CUDA_ENGINE_NAMES]
    if not wanted or cuda_available():
        return {}
    reason = "no CUDA device is present (torch.cuda.is_available() is False)"
    print(f"cosmic bench: skipping {', '.join(wanted)}: {reason}", file=sys.stderr)
    return {n: f"EngineUnavailableError: {reason}" for n in wanted}


def _engine_pass(engine: Engine, image: np.ndarray, magnitude: np.ndarray, batch_size: int) -> tuple[float, list[float]]:
    lat: list[float] = []
    t0 = time.perf_counter()
    for s in range(0, len(image), batch_size):
        t = time.perf_counter()
        engine.predict(image[s:s + batch_size], magnitude[s:s + batch_size])
        lat.append(time.perf_counter() - t)
    return time.perf_counter() - t0, lat


def _run_stream_check(cfg: BenchConfig, model_dir: Path, engine: str, threads: int) -> dict[str, Any]:
    """Stream ``stream_gb`` of partitions through ``engine`` in a fresh process; its peak RSS."""
    gb = float(cfg.stream_gb or 1.0)
    data_dir = Path(cfg.stream_dataset) if cfg.stream_dataset else dataset.ensure_dataset(gb, 25, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stream.json"
        cmd = [sys.executable, "-m", "cosmic_utils.inference.streaming", "--dataset", str(data_dir), "--engine", engine,
               "--model", str(model_dir), "--batch-size", "256", "--threads", str(threads), "--json", str(out),
               "--run-dir", str(config.RUNS_DIR / "local" / f"{cfg.run_id}-stream")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"streaming check failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rec = json.loads(out.read_text())
    rec["dataset"] = str(data_dir)
    rec["peak_rss_target_mb"] = STREAM_RSS_TARGET_MB
    rec["peak_rss_ok"] = bool(rec["peak_rss_mb"] < STREAM_RSS_TARGET_MB)
    return rec


# --------------------------------------------------------------------------- plan and budget
def thread_counts(threads: Sequence[int] | int | None) -> list[int]:
    """The thread counts of a run, largest first (the accuracy checks run at the first)."""
    if threads is None or isinstance(threads, int):
        return [resolve_threads(threads)]
    counts = sorted({resolve_threads(int(t)) for t in threads}, reverse=True)
    if not counts:
        raise ValueError("no thread count given")
    return counts


def batch_plan(cfg: BenchConfig, counts: Sequence[int]) -> dict[int, list[int]]:
    """Batch sizes per thread count: ``cfg.batch_sizes`` at the largest count; at the others
    ``cfg.batch_sizes_by_threads[t]`` when given, else only the summary batch (256, or the largest
    listed): the 1-thread rows exist for the Lambda's 1-vCPU question, which is asked at 256."""
    top = counts[0]
    plan: dict[int, list[int]] = {}
    for t in counts:
        given = (cfg.batch_sizes_by_threads or {}).get(t)
        if given:
            plan[t] = [int(b) for b in given]
        elif t == top:
            plan[t] = [int(b) for b in cfg.batch_sizes]
        else:
            plan[t] = [SUMMARY_BATCH] if SUMMARY_BATCH in cfg.batch_sizes else [max(int(b) for b in cfg.batch_sizes)]
    return plan


def measured_at(engine: str, batch_size: int, cfg: BenchConfig) -> bool:
    """Whether ``engine`` is timed at ``batch_size``: compiled engines only at
    ``cfg.compile_batch_sizes`` (each new shape costs a compile of ~20-70 s; empty or None: at
    every batch size), the others always."""
    if engine not in COMPILED_ENGINE_NAMES or not cfg.compile_batch_sizes:
        return True
    return int(batch_size) in {int(b) for b in cfg.compile_batch_sizes}


def pass_samples(samples: int, batch_size: int) -> int:
    """Samples of one timed pass: at least ``samples`` and two batches, whole batches only."""
    n = max(int(samples), 2 * batch_size)
    return (n + batch_size - 1) // batch_size * batch_size


def estimate_speed_s(plan: Mapping[int, Sequence[int]], rates: Mapping[str, float], top: int, cfg: BenchConfig,
                     reload_s: float) -> dict[int, float]:
    """ESTIMATED seconds of the speed phase per thread count, from the samples/s each engine
    showed in the accuracy checks (at ``top`` threads, batch 256). Fewer threads are assumed to
    scale linearly (``rate * t / top``: pessimistic, so the guard errs on the safe side); the
    published loop is assumed as fast as ``torch-eager``; ``reload_s`` (engine creation and
    compiles at ``top`` threads) is charged again to every other thread count."""
    pub_rate = rates.get("torch-eager") or min(rates.values(), default=1.0)
    out: dict[int, float] = {}
    for t, sizes in plan.items():
        scale = t / top
        total = 0.0 if t == top else reload_s
        for bs in sizes:
            n = pass_samples(cfg.samples, bs)
            work = max(1, cfg.repeats) * n + bs  # timed passes + one warm-up batch
            total += work / (pub_rate * scale) + PEAK_PROBE_S
            total += sum(work / (r * scale) for e, r in rates.items() if r > 0 and measured_at(e, bs, cfg))
        out[t] = total
    return out


def apply_budget(plan: dict[int, list[int]], estimate: Any, budget_s: float, cfg: BenchConfig) -> list[str]:
    """Trim the plan until ``estimate(plan)`` fits ``budget_s``; what was trimmed, in order.

    Order: repeats down to 2; then the batch sizes other than 256 of the largest thread count,
    the most expensive first; then repeats 1. Batch 256 at every thread count always stays (the
    summary and the Lambda choice are read there)."""
    trimmed: list[str] = []
    if sum(estimate(plan).values()) <= budget_s:
        return trimmed
    if cfg.repeats > 2:
        trimmed.append(f"repeats {cfg.repeats} -> 2")
        cfg.repeats = 2
    top = max(plan)
    while sum(estimate(plan).values()) > budget_s:
        extra = [b for b in plan[top] if b != SUMMARY_BATCH]
        if not extra or len(plan[top]) == 1:
            break
        drop = max(extra)  # the largest batch costs the most (at least two batches per pass)
        plan[top].remove(drop)
        trimmed.append(f"batch {drop} at {top} threads")
    if sum(estimate(plan).values()) > budget_s and cfg.repeats > 1:
        trimmed.append(f"repeats {cfg.repeats} -> 1")
        cfg.repeats = 1
    return trimmed


def _timed_predict_all(engine: Engine, image: np.ndarray, magnitude: np.ndarray,
                       batch_size: int = SUMMARY_BATCH) -> tuple[np.ndarray, float]:
    """:func:`predict_all` and the samples/s it showed after its first batch (the first carries
    one-off costs: allocations, ORT's first run), the budget guard's speed estimate."""
    head = min(batch_size, len(image))
    t0 = time.perf_counter()
    z_head = predict_all(engine, image[:head], magnitude[:head], batch_size)
    t1 = time.perf_counter()
    z_rest = predict_all(engine, image[head:], magnitude[head:], batch_size)
    t2 = time.perf_counter()
    rate = (len(image) - head) / (t2 - t1) if len(image) > head and t2 > t1 else head / max(t1 - t0, 1e-9)
    return np.concatenate([z_head, z_rest]), rate


def observed_threads(engine: Engine) -> int:
    """The threads the engine really ran with: its ONNX Runtime session's
    ``intra_op_num_threads`` times its concurrent runs (``workers``), else torch's thread count right after its last ``predict``
    (torch engines set it on every call)."""
    session = getattr(engine, "session", None)
    if session is not None:
        # row-parallel ONNX engines run ``workers`` one-thread session.run calls at once
        return int(session.get_session_options().intra_op_num_threads) * int(getattr(engine, "workers", 1))
    import torch

    return int(torch.get_num_threads())


def _create_engines(names: Sequence[str], model_dir: Path, threads: int,
                    skipped: dict[str, str]) -> tuple[dict[str, Engine], dict[str, float]]:
    engines: dict[str, Engine] = {}
    load_s: dict[str, float] = {}
    for name in names:
        if name in skipped:
            continue
        t0 = time.perf_counter()
        try:
            # gate=False: refused engines are measured too, so the table can say why they are refused
            engines[name] = create_engine(name, model_dir, threads=threads, gate=False)
        except Exception as exc:  # e.g. no model.onnx, no onnx package for quantising, no compiler
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("engine %s skipped: %s", name, skipped[name])
            continue
        load_s[name] = time.perf_counter() - t0
    return engines, load_s


# --------------------------------------------------------------------------- the bench
def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; returns (and writes) the result document."""
    import torch

    from cosmic_utils.inference.published_loop import PublishedLoopWorker, write_pt

    t_start = time.perf_counter()
    cfg.run_id = cfg.run_id or new_run_id("bench")
    counts = thread_counts(cfg.threads)
    top = counts[0]
    torch.set_num_threads(top)
    unknown = [e for e in cfg.engines if e not in ENGINE_NAMES]
    if unknown:
        raise ValueError(f"unknown engines {unknown}; choose from {ENGINE_NAMES}")
    plan = batch_plan(cfg, counts)
    phases: dict[str, float] = {}
    estimates: dict[str, float] = {}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tp = time.perf_counter()
    model_dir, trained = resolve_model(cfg.model_dir)
    info = machine_info()
    print(f"cosmic bench: threads {counts}, batch sizes {plan}; CPU {info['cpu_model']} ({info.get('cpu_vendor')}, "
          f"isa {info.get('isa')}, cpu_type {info.get('cpu_type')}); model {model_dir} "
          f"({'trained' if trained else 'UNTRAINED'})", flush=True)
    peaks = {t: matmul_peak_gflops(t) for t in counts}
    bf16 = bool({"amx_bf16", "avx512_bf16"} & set(info["flags"]))
    peaks_bf16 = {t: matmul_peak_gflops(t, dtype="bfloat16") for t in counts} if bf16 else {}
    fps = flops_per_sample()
    phases["setup_s"] = time.perf_counter() - tp
    tp = time.perf_counter()

    # engines at the largest thread count (the eager reference first: the checks compare with it)
    names = list(dict.fromkeys(["torch-eager", *cfg.engines]))
    skipped: dict[str, str] = cuda_skips(names)
    torch.set_num_threads(top)
    engines, load_s = _create_engines(names, model_dir, top, skipped)
    compile_s = {t: {} for t in counts}  # type: dict[int, dict[str, dict[int, float]]]
    for n_, e_ in engines.items():
        if getattr(e_, "compile_seconds", None):
            compile_s[top][n_] = dict(e_.compile_seconds)
    if "onnx-int8" in engines:
        try:  # list model.int8.onnx in artifact.json so deployments ship it (Lambda has no `onnx`)
            from cosmic_utils.runtime.onnx_engine import register_int8

            register_int8(model_dir)
        except Exception as exc:  # read-only artifact, foreign layout: the engine still works here
            log.warning("could not register the int8 graph in %s: %s", model_dir, exc)
    phases[f"engine_load_s[threads={top}]"] = time.perf_counter() - tp
    tp = time.perf_counter()

    # accuracy checks: once per engine (at the largest thread count; the numbers do not depend on it)
    image_v, mag_v, z_spec = dataset.validation_rows(cfg.check_rows)
    rates: dict[str, float] = {}
    z_ref, rates["torch-eager"] = _timed_predict_all(engines["torch-eager"], image_v, mag_v)
    z_ref = z_ref.astype(np.float64)
    checks = []
    for n_, e_ in engines.items():
        if n_ == "torch-eager":
            z = z_ref.astype(np.float32)
        else:
            z, rates[n_] = _timed_predict_all(e_, image_v, mag_v)
        checks.append(accuracy_check(n_, z, z_ref, z_spec, trained))
    by_check = {c["engine"]: c for c in checks}
    for c in checks:  # the creation-time gate on this CPU (calibration set inside the artifact)
        c.update({k: info.get(k) for k in PROBE_FIELDS})
        c["threads"] = top
        if c["precision"] == "fp32":
            continue
        c["gate_refusal"] = gating.speed_refusal(c["engine"], c["precision"])
        try:
            cal = gating.check_engine(engines[c["engine"]], model_dir, use_cache=False)
        except Exception as exc:  # corrupt calibration file: the engine would be refused for it
            cal, c["gate_error"] = None, f"{type(exc).__name__}: {exc}"
        c["calibration"] = {k: cal[k] for k in ("rows", "nmad_delta_rel", "max_abs_dz", "passed")} if cal else None
        c["calibration_passed"] = bool(cal and cal["passed"])
    for c in checks:
        log.info("check %-11s nmad %.5f (fp32 %.5f, %+.2f%%) max|dz| %.2e -> %s", c["engine"], c["sigma_nmad"],
                 c["sigma_nmad_fp32"], 100 * c["nmad_delta_rel"], c["max_abs_dz"], "pass" if c["passed"] else "FAIL")
    phases["checks_s"] = time.perf_counter() - tp

    # budget guard: estimate each speed phase from the check speeds, trim the plan if it cannot fit
    bench_names = [n for n in engines if n in cfg.engines]
    speed_rates = {n: rates[n] for n in bench_names if n in rates}
    reload_s = sum(load_s.get(n, 0.0) for n in bench_names)

    def estimate(p: Mapping[int, Sequence[int]]) -> dict[int, float]:
        return estimate_speed_s(p, speed_rates, top, cfg, reload_s)

    trimmed: list[str] = []
    if cfg.budget_s is not None:
        left = float(cfg.budget_s) - (time.perf_counter() - t_start)
        trimmed = apply_budget(plan, estimate, left, cfg)
    for t, est in estimate(plan).items():
        estimates[f"speed_s[threads={t}]"] = est
    print("cosmic bench: ESTIMATED speed phases (from the check speeds; fewer threads assumed proportionally slower): "
          + ", ".join(f"{k} ~{v:.0f} s" for k, v in estimates.items())
          + f"; elapsed so far {time.perf_counter() - t_start:.0f} s"
          + (f"; budget {cfg.budget_s:.0f} s, trimmed: {', '.join(trimmed)}" if trimmed else
             (f"; budget {cfg.budget_s:.0f} s: fits" if cfg.budget_s is not None else "")), flush=True)

    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    all_load_s: dict[str, dict[str, float]] = {str(top): load_s}
    with tempfile.TemporaryDirectory(prefix="cosmic-bench-") as tmp:
        for t in counts:
            tp = time.perf_counter()
            if t != top:  # fresh engines: ORT fixes its threads per session, inductor per compiled graph
                for e_ in engines.values():
                    e_.close()
                torch.set_num_threads(t)
                engines, load_t = _create_engines(bench_names, model_dir, t, dict(skipped))
                all_load_s[str(t)] = load_t
                for n_, e_ in engines.items():
                    if getattr(e_, "compile_seconds", None):
                        compile_s[t][n_] = dict(e_.compile_seconds)
                phases[f"engine_load_s[threads={t}]"] = time.perf_counter() - tp
                tp = time.perf_counter()
            names_t = [n for n in bench_names if n in engines]
            # the baseline in a fresh child process: untuned allocator, as the published script ran
            with PublishedLoopWorker(model_dir, t) as published:
                for bs in plan[t]:
                    rows_bs, recs_bs = _speed_round(cfg, t, bs, engines, [n for n in names_t if measured_at(n, bs, cfg)],
                                                    published, image_v, mag_v, Path(tmp), write_pt, by_check, info,
                                                    fps, peaks, peaks_bf16, trained, all_load_s[str(t)], model_dir)
                    rows += rows_bs
                    records += recs_bs
            phases[f"speed_s[threads={t}]"] = time.perf_counter() - tp
    for t in counts:
        peaks[t] = max(peaks[t], matmul_peak_gflops(t))  # again at the end: the best measurement counts
    for r in rows:
        r["peak_fraction"] = r["gflops"] / peaks[r["threads"]]
        r["compile_s"] = (compile_s.get(r["threads"], {}).get(r["engine"]) or {}) or None
    mark_verdicts(rows)
    for rec in records:
        rec["peak_fraction"] = rec["gflops"] / peaks[int(rec["threads"])]
    for e in engines.values():
        e.close()
    torch.set_num_threads(top)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if max(load_start, load_end) > top + 0.5:
        log.warning("load average %.1f / %.1f on %d CPUs: other processes shared the cores; absolute speeds are "
                    "low and the eager loop suffers most (ratios inflate)", load_start, load_end, top)

    stream: dict[str, Any] | None = None
    if cfg.stream_gb:
        tp = time.perf_counter()
        # The Lambda engine by default: the 1.5 GB target is about what a Lambda worker holds.
        stream = _run_stream_check(cfg, model_dir, cfg.stream_engine or "onnx", top)
        phases["stream_s"] = time.perf_counter() - tp

    phases["total_s"] = time.perf_counter() - t_start
    doc: dict[str, Any] = {
        "meta": {
            "run_id": cfg.run_id, "created": utc_now(), "model_dir": str(model_dir), "trained_model": trained,
            "threads": top, "thread_counts": counts, "batch_plan": {str(t): v for t, v in plan.items()},
            "flops_per_sample": fps, "matmul_peak_gflops": peaks[top],
            "matmul_peak_gflops_by_threads": {str(t): v for t, v in peaks.items()},
            "matmul_peak_bf16_gflops": peaks_bf16.get(top),
            "sample_bytes": config.SAMPLE_BYTES, "engines_skipped": skipped, "model_load_s": load_s,
            "model_load_s_by_threads": all_load_s,
            "compile_s_by_threads": {str(t): v for t, v in compile_s.items()},
            "elapsed_s": phases["total_s"], "phases_s": phases, "estimated_s": estimates,
            "budget": {"budget_s": cfg.budget_s, "trimmed": trimmed, "check_samples_per_s": rates},
            "load_avg_1min_start": load_start, "load_avg_1min_end": load_end,
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            **info,
        },
        "rows": rows,
        "checks": checks,
        "stream": stream,
    }
    doc["summary"] = summarize(doc)
    # A --quick run (500 check rows: sigma_NMAD noisier) never replaces the files that
    # default_engine() reads unless told to with explicit paths.
    suffix = "_quick" if cfg.quick else ""
    json_out = Path(cfg.json_out) if cfg.json_out else config.RUNS_DIR / "bench" / f"bench{suffix}.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(stamped(doc), indent=2, default=_json_default))
    checks_out = Path(cfg.checks_out) if cfg.checks_out else json_out.parent / f"engine_checks{suffix}.json"
    checks_out.write_text(json.dumps(stamped({"run_id": cfg.run_id, "created": utc_now(), "model_dir": str(model_dir),
                                              "trained_model": trained, "cpu_type": info["cpu_type"],
                                              "cpu_model": info["cpu_model"], "checks": checks}),
                                     indent=2, default=_json_default))
    write_records(records, run_id=cfg.run_id)
    return doc


def _speed_round(cfg: BenchConfig, threads: int, bs: int, engines: Mapping[str, Engine], names: Sequence[str],
                 published: Any, image_v: np.ndarray, mag_v: np.ndarray, tmp: Path, write_pt: Any,
                 by_check: Mapping[str, Any], info: Mapping[str, Any], fps: float, peaks: dict[int, float],
                 peaks_bf16: Mapping[int, float], trained: bool, load_s: Mapping[str, float],
                 model_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One batch size at one thread count: the published loop and ``names`` interleaved
    ``cfg.repeats`` times, the best pass of each counts; rows and local-run records."""
    n = pass_samples(cfg.samples, bs)
    reps = (n + len(image_v) - 1) // len(image_v)
    image = np.ascontiguousarray(np.concatenate([image_v] * reps)[:n])
    mag = np.ascontiguousarray(np.concatenate([mag_v] * reps)[:n])
    pt = write_pt(tmp / f"bench-{threads}-{bs}.pt", image, mag)
    best: dict[str, tuple[float, list[float]]] = {}
    walls: dict[str, list[float]] = {}
    pub_extra: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for e in names:  # warm-up: one batch each
        engines[e].predict(image[:bs], mag[:bs])
    published.run(pt, bs, max_batches=1)
    for _ in range(max(1, cfg.repeats)):
        res = published.run(pt, bs)
        m = res.measurement
        seen["published-loop"] = int(m.threads)
        walls.setdefault("published-loop", []).append(m.wall_s)
        if "published-loop" not in best or m.wall_s < best["published-loop"][0]:
            best["published-loop"] = (m.wall_s, m.batch_seconds)
            pub_extra = {"data_load_s": res.data_load_s, "first_batch_s": m.first_batch_s}
        for e in names:
            wall, lat = _engine_pass(engines[e], image, mag, bs)
            seen[e] = observed_threads(engines[e])
            walls.setdefault(e, []).append(wall)
            if e not in best or wall < best[e][0]:
                best[e] = (wall, lat)
    # the yardstick again in every round: on a shared machine one measurement can be low
    peaks[threads] = max(peaks[threads], matmul_peak_gflops(threads, repeats=3))
    peak = peaks[threads]
    peak_bf16 = peaks_bf16.get(threads)
    pub_sps = n / best["published-loop"][0]
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for e in ["published-loop", *names]:
        wall, lat = best[e]
        sps = n / wall
        chk = by_check.get(e, by_check.get("torch-eager") if e == "published-loop" else None) or {}
        precision = "fp32" if e == "published-loop" else engines[e].precision
        gflops = sps * fps / 1e9
        row = {
            "engine": e, "precision": precision, "batch_size": bs, "threads": threads,
            "threads_observed": seen.get(e), "samples": n,
            "repeats": len(walls[e]), "samples_per_s": sps,
            "samples_per_s_median": n / float(np.median(walls[e])),
            "gb_per_s": sps * config.SAMPLE_BYTES / config.GB,
            "ratio_vs_published_loop": sps / pub_sps, "published_samples_per_s": pub_sps,
            "gflops": gflops, "peak_fraction": gflops / peak,
            "peak_fraction_bf16": (gflops / peak_bf16) if peak_bf16 else None,
            "batch_p50_ms": percentile_ms(lat, 50), "batch_p95_ms": percentile_ms(lat, 95),
            "nmad_delta_rel": chk.get("nmad_delta_rel"), "max_abs_dz": chk.get("max_abs_dz"),
            "check_passed": chk.get("passed"), "trained_model": trained,
            "calibration_passed": chk.get("calibration_passed") if precision != "fp32" else None,
            **{k: info.get(k) for k in PROBE_FIELDS},
        }
        rows.append(row)
        meas = RunMeasurement(
            engine=e, precision=precision, batch_size=bs, threads=threads, samples=n, wall_s=wall,
            model_load_s=load_s.get(e, 0.0), first_batch_s=(pub_extra.get("first_batch_s") if e == "published-loop"
                                                            else (lat[0] if lat else float("nan"))),
            batch_seconds=lat, peak_rss_mb=float("nan"),
            kind=getattr(engines.get(e), "kind", "local_cpu"), device=getattr(engines.get(e), "device_name", "cpu"),
            extra={"source": "bench", "ratio_vs_published_loop": sps / pub_sps, "gflops": gflops,
                   "peak_fraction": gflops / peak, "model_dir": str(model_dir), "trained_model": trained,
                   **({"data_load_s": pub_extra.get("data_load_s")} if e == "published-loop" else {})},
        )
        records.append(meas.record(cfg.run_id, info))
    log.info("threads %d batch %d: %s", threads, bs, ", ".join(
        f"{r['engine']} {r['samples_per_s']:.0f}/s x{r['ratio_vs_published_loop']:.2f}" for r in rows))
    return rows, records


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def mark_verdicts(rows: list[dict[str, Any]]) -> None:
    """Add ``accurate``, ``speed_vs_fp32``, ``faster_than_fp32`` and ``usable`` to every engine row.

    fp32 engines are accurate by definition of the reference and usable. A reduced engine is
    accurate when the bench check and the calibration gate both passed on this CPU, faster when
    its samples/s beat its fp32 counterpart's at the same batch size in the same run, and usable
    when it is both and not refused for speed (bf16 emulated here).
    """
    speed = {(r["engine"], r["batch_size"], r.get("threads")): r["samples_per_s"] for r in rows}
    for r in rows:
        if r["engine"] == "published-loop":
            continue
        if r["precision"] == "fp32":
            r.update(accurate=True, speed_vs_fp32=None, faster_than_fp32=None, usable=True)
            continue
        base = speed.get((gating.FP32_FALLBACK.get(r["engine"], ""), r["batch_size"], r.get("threads")))
        ratio = r["samples_per_s"] / base if base else None
        r["accurate"] = bool(r.get("check_passed")) and bool(r.get("calibration_passed"))
        r["speed_vs_fp32"] = ratio
        r["faster_than_fp32"] = bool(ratio is not None and ratio > 1.0)
        r["usable"] = bool(r["accurate"] and r["faster_than_fp32"]
                           and not gating.speed_refusal(r["engine"], r["precision"]))


def engine_verdicts(doc: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per engine at the summary batch size: accurate (numbers), faster (ratio), usable, and why not."""
    checks = {c["engine"]: c for c in doc.get("checks", [])}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("precision") == "fp32":
            continue
        c = checks.get(r["engine"], {})
        why = []
        if not r.get("check_passed"):
            why.append(f"bench check failed ({gating.describe(c)})" if c else "no bench check")
        cal = c.get("calibration")
        if cal is None:
            why.append(c.get("gate_error") or "no calibration set in the artifact (re-export it)")
        elif not cal.get("passed"):
            why.append(f"calibration check failed (max |dz| {cal['max_abs_dz']:.2e}, "
                       f"sigma_NMAD {100 * (cal['nmad_delta_rel'] or 0):+.1f} %)")
        if c.get("gate_refusal"):
            why.append(c["gate_refusal"])
        if r.get("faster_than_fp32") is False:
            why.append(f"not faster than {gating.FP32_FALLBACK.get(r['engine'])} ({r['speed_vs_fp32']:.2f}x)")
        out[r["engine"]] = {
            "accurate": r.get("accurate"), "nmad_delta_rel": r.get("nmad_delta_rel"), "max_abs_dz": r.get("max_abs_dz"),
            "calibration": cal, "faster_than_fp32": r.get("faster_than_fp32"), "speed_vs_fp32": r.get("speed_vs_fp32"),
            "usable": r.get("usable"), "why_not": "; ".join(why),
        }
    return out


def lambda_choice(rows: list[dict[str, Any]], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The ONNX engine for the inference Lambda on this CPU type (it runs ONNX only), and why.

    ``engine``: ``onnx-int8`` when it is usable here (accurate and faster than ``onnx``), else
    ``onnx``. ``int8_request_gets``: what a run that asks for ``onnx-int8`` is served at cold
    start, which only the calibration gate decides (refused -> ``onnx``, recorded).
    """
    v = verdicts.get("onnx-int8")
    if v is None:
        return {"engine": "onnx", "why": "onnx-int8 was not measured in this run", "int8_request_gets": None}
    cal = v.get("calibration") or {}
    gets = "onnx-int8" if cal.get("passed") else "onnx"
    if v.get("usable"):
        why = f"onnx-int8 is accurate on this CPU and {v['speed_vs_fp32']:.2f}x onnx"
    elif not cal.get("passed"):
        why = f"onnx-int8 is refused at cold start on this CPU: {v['why_not']}"
    else:
        why = f"onnx-int8 passes its calibration gate here but is not chosen: {v['why_not']}"
    return {"engine": "onnx-int8" if v.get("usable") else "onnx", "why": why, "int8_request_gets": gets}


def _with_speed(choice: dict[str, Any], rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``choice`` plus the chosen engine's ``samples_per_s`` and ``ratio_vs_published_loop`` in ``rows``."""
    row = next((r for r in rows if r["engine"] == choice.get("engine")), None)
    return {**choice, "samples_per_s": row["samples_per_s"] if row else None,
            "ratio_vs_published_loop": row["ratio_vs_published_loop"] if row else None}


def _summarize_rows(doc: dict[str, Any], all_rows: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """Best fp32, best usable reduced, verdicts and the Lambda's ONNX engine among ``all_rows``
    (one thread count) at ``batch_size`` (else the largest batch measured)."""
    rows = [r for r in all_rows if r["batch_size"] == batch_size and r["engine"] != "published-loop"]
    if not rows:
        bs = max((r["batch_size"] for r in all_rows), default=None)
        rows = [r for r in all_rows if r["batch_size"] == bs and r["engine"] != "published-loop"]
    fp32 = [r for r in rows if r["precision"] == "fp32"]
    reduced = [r for r in rows if r["precision"] != "fp32" and r.get("usable")]
    best_fp32 = max(fp32, key=lambda r: r["samples_per_s"], default=None)
    best_red = max(reduced, key=lambda r: r["samples_per_s"], default=None)
    out: dict[str, Any] = {"batch_size": rows[0]["batch_size"] if rows else None}
    if best_fp32:
        out["best_fp32"] = {k: best_fp32[k] for k in ("engine", "samples_per_s", "ratio_vs_published_loop",
                                                       "gflops", "peak_fraction")}
        out["fp32_ratio_target_2x"] = best_fp32["ratio_vs_published_loop"] >= 2.0
        out["fp32_peak_target_70pct"] = best_fp32["peak_fraction"] >= 0.70
    if best_red:
        out["best_reduced"] = {k: best_red[k] for k in ("engine", "precision", "samples_per_s",
                                                         "ratio_vs_published_loop", "nmad_delta_rel", "speed_vs_fp32")}
        out["reduced_ratio_target_3_5x"] = best_red["ratio_vs_published_loop"] >= 3.5
    out["engines"] = engine_verdicts(doc, rows)
    lam = _with_speed(lambda_choice(rows, out["engines"]), rows)
    out["lambda_engine"] = lam
    onnx = next((r for r in rows if r["engine"] == "onnx"), None)
    int8 = next((r for r in rows if r["engine"] == "onnx-int8"), None)
    # the Lambda's targets: fp32 ONNX >= 2x and a usable reduced ONNX engine >= 3x the published loop
    out["lambda_fp32_ratio_target_2x"] = bool(onnx and onnx["ratio_vs_published_loop"] >= 2.0) if onnx else None
    out["lambda_reduced_ratio_target_3x"] = (bool(int8.get("usable") and int8["ratio_vs_published_loop"] >= 3.0)
                                             if int8 else None)
    return out


def summarize(doc: dict[str, Any], batch_size: int = SUMMARY_BATCH) -> dict[str, Any]:
    """The summary of a bench document: ``by_threads`` {"1": {...}, "2": {...}} (best fp32, best
    *usable* (accurate and faster) reduced engine, per-engine verdicts, the Lambda's engine with
    its samples/s and ratio, the targets) at ``batch_size``; the top-level keys are those of the
    largest thread count (what older readers expect), except ``lambda_engine``, which is decided
    at :data:`LAMBDA_THREADS` (1: a 1,769 MB Lambda has one vCPU) when that was measured."""
    meta = doc.get("meta") or {}
    default_t = meta.get("threads")
    for r in doc["rows"]:
        r.setdefault("threads", default_t)
    if doc["rows"] and any("usable" not in r for r in doc["rows"] if r["engine"] != "published-loop"):
        mark_verdicts(doc["rows"])
    counts = sorted({r["threads"] for r in doc["rows"] if r.get("threads") is not None}, reverse=True)
    by_threads = {str(t): _summarize_rows(doc, [r for r in doc["rows"] if r.get("threads") == t], batch_size)
                  for t in counts}
    head_t = counts[0] if counts else default_t
    out: dict[str, Any] = dict(by_threads.get(str(head_t)) or _summarize_rows(doc, doc["rows"], batch_size))
    out["threads"] = head_t
    lam_t = LAMBDA_THREADS if str(LAMBDA_THREADS) in by_threads else head_t
    if str(lam_t) in by_threads:
        out["lambda_engine"] = {**by_threads[str(lam_t)]["lambda_engine"], "threads": lam_t,
                                "basis": (f"threads={lam_t}: a 1,769 MB Lambda has one vCPU" if lam_t == LAMBDA_THREADS
                                          else f"threads={lam_t} (no 1-thread rows in this run)")}
    out["by_threads"] = by_threads
    out["cpu_type"] = meta.get("cpu_type")
    out["checks_on_trained_model"] = bool(meta.get("trained_model"))
    return out


def _nan(x: Any) -> float:
    return float("nan") if x is None else float(x)


def format_table(doc: dict[str, Any]) -> str:
    """What ``cosmic bench`` prints: the CPU probe, one table per thread count (ratios against
    the published loop at the same thread count, accuracy checks), the verdicts, the Lambda's
    engine and why, the phase times and the total."""
    meta = doc["meta"]
    summary = doc.get("summary") or {}
    lines = [f"CPU (measured probe): {meta.get('cpu_model')}; vendor {meta.get('cpu_vendor')}; isa {meta.get('isa')}"
             + (f", caps {meta['isa_caps']}" if meta.get("isa_caps") else "") + f"; cpu_type {meta.get('cpu_type')}"]
    head = (f"{'engine':<15}{'prec':<6}{'batch':>6}{'samples/s':>11}{'x pub':>7}{'GFLOP/s':>9}{'peak':>7}"
            f"{'p50 ms':>9}{'nmad d%':>9}{'max|dz|':>10}{'check':>7}{'thr':>5}")
    counts = sorted({r.get("threads", meta.get("threads")) for r in doc["rows"]}, reverse=True)
    peaks = meta.get("matmul_peak_gflops_by_threads") or {}
    for t in counts:
        peak = peaks.get(str(t), meta.get("matmul_peak_gflops") if t == meta.get("threads") else None)
        lines += ["", f"threads={t} (measured; x pub = vs the published loop at {t} thread(s), same run"
                  + (f"; fp32 matmul peak {peak:.0f} GFLOP/s" if peak else "") + ")", head, "-" * len(head)]
        for r in (r for r in doc["rows"] if r.get("threads", meta.get("threads")) == t):
            nd, md, chk = r.get("nmad_delta_rel"), r.get("max_abs_dz"), r.get("check_passed")
            lines.append(
                f"{r['engine']:<15}{r['precision']:<6}{r['batch_size']:>6}{r['samples_per_s']:>11.1f}"
                f"{r['ratio_vs_published_loop']:>7.2f}{r['gflops']:>9.1f}{r['peak_fraction']:>7.1%}{r['batch_p50_ms']:>9.1f}"
                f"{100 * _nan(nd):>9.2f}{_nan(md):>10.2e}"
                f"{('pass' if chk else 'FAIL') if chk is not None else '':>7}{str(r.get('threads_observed', '')):>5}")
    lines.append("")
    lines.append(f"{meta['flops_per_sample'] / 1e6:.1f} MFLOP/sample; model "
                 + ("trained" if meta['trained_model'] else "UNTRAINED (checks not meaningful)")
                 + "; accuracy checks once per engine at "
                 + f"{meta.get('threads')} threads (thr = threads the engine really ran with)")
    for t, sub in (summary.get("by_threads") or {str(meta.get("threads")): summary}).items():
        if not sub.get("engines"):
            continue
        lines.append(f"verdicts at threads={t}, batch {sub['batch_size']}:")
        for name, v in sub["engines"].items():
            cal = v.get("calibration") or {}
            acc = (f"accurate {'yes' if v['accurate'] else 'NO'} (bench sigma_NMAD "
                   f"{100 * _nan(v['nmad_delta_rel']):+.2f} %, max|dz| {_nan(v['max_abs_dz']):.2e}; calibration "
                   + (f"max|dz| {cal['max_abs_dz']:.2e} {'pass' if cal.get('passed') else 'FAIL'}" if cal else "none")
                   + ")")
            ratio = v.get("speed_vs_fp32")
            fast = f"faster {'yes' if v.get('faster_than_fp32') else 'no'} ({ratio:.2f}x fp32)" if ratio else "faster ?"
            lines.append(f"  {name:<11} {acc}; {fast} -> {'used by default when fastest' if v['usable'] else 'not used'}"
                         + (f": {v['why_not']}" if v.get("why_not") else ""))
        lam = sub.get("lambda_engine") or {}
        if lam.get("samples_per_s"):
            lines.append(f"  Lambda engine at threads={t}: {lam.get('engine')} {lam['samples_per_s']:.1f} samples/s, "
                         f"{lam['ratio_vs_published_loop']:.2f}x the published loop (targets: onnx fp32 >= 2x "
                         f"{_yn(sub.get('lambda_fp32_ratio_target_2x'))}, reduced >= 3x "
                         f"{_yn(sub.get('lambda_reduced_ratio_target_3x'))})")
    lam = summary.get("lambda_engine") or {}
    if lam:
        lines.append(f"Lambda (ONNX only) on this CPU: {lam.get('engine')}"
                     + (f", decided at {lam['basis']}" if lam.get("basis") else "") + f" - {lam.get('why')}"
                     + (f"; a run asking for onnx-int8 is served {lam['int8_request_gets']}"
                        if lam.get("int8_request_gets") else ""))
    if doc.get("stream"):
        s = doc["stream"]
        lines.append(f"streaming {s['data_gb']:.3f} GB with {s['engine']} (batch {s['batch_size']}): "
                     f"{s['samples_per_s']:.0f} samples/s, peak RSS {s['peak_rss_mb']:.0f} MB "
                     f"({'<' if s['peak_rss_ok'] else '>='} {s['peak_rss_target_mb']:.0f} MB target)")
    phases = meta.get("phases_s") or {}
    if phases:
        est = meta.get("estimated_s") or {}
        lines.append("phases (measured s" + (", ESTIMATED before the speed phase in brackets" if est else "") + "): "
                     + ", ".join(f"{k} {v:.1f}" + (f" [{est[k]:.0f}]" if k in est else "")
                                 for k, v in phases.items() if k != "total_s")
                     + f"; total {phases.get('total_s', meta.get('elapsed_s', float('nan'))):.1f} s")
        comp = {t: v for t, v in (meta.get("compile_s_by_threads") or {}).items() if v}
        if comp:
            lines.append("compile time (not in samples/s): " + "; ".join(
                f"threads={t}: " + ", ".join(f"{e} " + ", ".join(f"shape {sh} {sec:.1f} s" for sh, sec in shapes.items())
                                             for e, shapes in v.items()) for t, v in comp.items()))
        trimmed = (meta.get("budget") or {}).get("trimmed")
        if trimmed:
            lines.append(f"budget {meta['budget']['budget_s']:.0f} s: trimmed {', '.join(trimmed)}")
    return "\n".join(lines)


def _yn(value: Any) -> str:
    return "n/a" if value is None else ("met" if value else "NOT met")
