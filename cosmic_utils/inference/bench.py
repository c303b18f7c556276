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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.data import dataset
from cosmic_utils.inference.engines import (
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


@dataclass
class BenchConfig:
    """Settings of one bench run (``cosmic bench --help`` documents each)."""

    model_dir: Path | None = None
    engines: Sequence[str] = ENGINE_NAMES
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    samples: int = 512
    repeats: int = 3
    threads: int | None = None
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
    return find_model(model_dir, with_onnx=with_onnx)


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


# --------------------------------------------------------------------------- the bench
def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the bench described by ``cfg``; returns (and writes) the result document."""
    import torch

    from cosmic_utils.inference.published_loop import PublishedLoopWorker, write_pt

    t_start = time.perf_counter()
    cfg.run_id = cfg.run_id or new_run_id("bench")
    threads = resolve_threads(cfg.threads)
    torch.set_num_threads(threads)
    unknown = [e for e in cfg.engines if e not in ENGINE_NAMES]
    if unknown:
        raise ValueError(f"unknown engines {unknown}; choose from {ENGINE_NAMES}")
    phases: dict[str, float] = {}
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    tp = time.perf_counter()
    model_dir, trained = resolve_model(cfg.model_dir)
    info = machine_info()
    log.info("bench %s: model %s (%s), %d threads, %s", cfg.run_id, model_dir,
             "trained" if trained else "UNTRAINED", threads, info["cpu_model"])
    peak = matmul_peak_gflops(threads)
    peak_bf16 = matmul_peak_gflops(threads, dtype="bfloat16") if {"amx_bf16", "avx512_bf16"} & set(info["flags"]) else None
    fps = flops_per_sample()
    phases["setup_s"] = time.perf_counter() - tp
    tp = time.perf_counter()

    # engines (the eager reference first: the accuracy checks compare with it)
    names = list(dict.fromkeys(["torch-eager", *cfg.engines]))
    engines: dict[str, Engine] = {}
    load_s: dict[str, float] = {}
    skipped: dict[str, str] = cuda_skips(names)
    names = [n for n in names if n not in skipped]
    for name in names:
        t0 = time.perf_counter()
        try:
            # gate=False: refused engines are measured too, so the table can say why they are refused
            engines[name] = create_engine(name, model_dir, threads=threads, gate=False)
        except Exception as exc:  # e.g. no model.onnx, no onnx package for quantising
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("engine %s skipped: %s", name, skipped[name])
            continue
        load_s[name] = time.perf_counter() - t0

    if "onnx-int8" in engines:
        try:  # list model.int8.onnx in artifact.json so deployments ship it (Lambda has no `onnx`)
            from cosmic_utils.runtime.onnx_engine import register_int8

            register_int8(model_dir)
        except Exception as exc:  # read-only artifact, foreign layout: the engine still works here
            log.warning("could not register the int8 graph in %s: %s", model_dir, exc)
    phases["engine_load_s"] = time.perf_counter() - tp
    tp = time.perf_counter()

    # accuracy checks
    image_v, mag_v, z_spec = dataset.validation_rows(cfg.check_rows)
    z_ref = predict_all(engines["torch-eager"], image_v, mag_v).astype(np.float64)
    checks = [accuracy_check(n, z_ref.astype(np.float32) if n == "torch-eager" else predict_all(e, image_v, mag_v),
                             z_ref, z_spec, trained) for n, e in engines.items()]
    by_check = {c["engine"]: c for c in checks}
    for c in checks:  # the creation-time gate on this CPU (calibration set inside the artifact)
        c.update({k: info.get(k) for k in PROBE_FIELDS})
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
    tp = time.perf_counter()

    # speed
    bench_names = [n for n in engines if n in cfg.engines]
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    # the baseline in a fresh child process: untuned allocator, as the published script ran
    with tempfile.TemporaryDirectory(prefix="cosmic-bench-") as tmp, \
            PublishedLoopWorker(model_dir, threads) as published:
        for bs in cfg.batch_sizes:
            n = max(int(cfg.samples), 2 * bs)
            n = (n + bs - 1) // bs * bs
            reps = (n + len(image_v) - 1) // len(image_v)
            image = np.ascontiguousarray(np.concatenate([image_v] * reps)[:n])
            mag = np.ascontiguousarray(np.concatenate([mag_v] * reps)[:n])
            pt = write_pt(Path(tmp) / f"bench-{bs}.pt", image, mag)
            best: dict[str, tuple[float, list[float]]] = {}
            walls: dict[str, list[float]] = {}
            pub_extra: dict[str, Any] = {}
            for e in bench_names:  # warm-up: one batch each
                engines[e].predict(image[:bs], mag[:bs])
            published.run(pt, bs, max_batches=1)
            for _ in range(max(1, cfg.repeats)):
                res = published.run(pt, bs)
                m = res.measurement
                walls.setdefault("published-loop", []).append(m.wall_s)
                if "published-loop" not in best or m.wall_s < best["published-loop"][0]:
                    best["published-loop"] = (m.wall_s, m.batch_seconds)
                    pub_extra = {"data_load_s": res.data_load_s, "first_batch_s": m.first_batch_s}
                for e in bench_names:
                    wall, lat = _engine_pass(engines[e], image, mag, bs)
                    walls.setdefault(e, []).append(wall)
                    if e not in best or wall < best[e][0]:
                        best[e] = (wall, lat)
            # the yardstick again in every round: on a shared machine one measurement can be low
            peak = max(peak, matmul_peak_gflops(threads, repeats=3))
            pub_sps = n / best["published-loop"][0]
            for e in ["published-loop", *bench_names]:
                wall, lat = best[e]
                sps = n / wall
                chk = by_check.get(e, by_check.get("torch-eager") if e == "published-loop" else None) or {}
                precision = "fp32" if e == "published-loop" else engines[e].precision
                gflops = sps * fps / 1e9
                row = {
                    "engine": e, "precision": precision, "batch_size": bs, "threads": threads, "samples": n,
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
            log.info("batch %d: %s", bs, ", ".join(f"{r['engine']} {r['samples_per_s']:.0f}/s x{r['ratio_vs_published_loop']:.2f}"
                                                   for r in rows if r["batch_size"] == bs))
    peak = max(peak, matmul_peak_gflops(threads))  # again at the end: the best measurement counts
    for r in rows:
        r["peak_fraction"] = r["gflops"] / peak
    mark_verdicts(rows)
    for rec in records:
        rec["peak_fraction"] = rec["gflops"] / peak
    for e in engines.values():
        e.close()
    phases["speed_s"] = time.perf_counter() - tp
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if max(load_start, load_end) > threads + 0.5:
        log.warning("load average %.1f / %.1f on %d CPUs: other processes shared the cores; absolute speeds are "
                    "low and the eager loop suffers most (ratios inflate)", load_start, load_end, threads)

    stream: dict[str, Any] | None = None
    if cfg.stream_gb:
        # The Lambda engine by default: the 1.5 GB target is about what a Lambda worker holds.
        stream = _run_stream_check(cfg, model_dir, cfg.stream_engine or "onnx", threads)

    doc: dict[str, Any] = {
        "meta": {
            "run_id": cfg.run_id, "created": utc_now(), "model_dir": str(model_dir), "trained_model": trained,
            "threads": threads, "flops_per_sample": fps, "matmul_peak_gflops": peak,
            "matmul_peak_bf16_gflops": peak_bf16, "sample_bytes": config.SAMPLE_BYTES,
            "engines_skipped": skipped, "model_load_s": load_s, "elapsed_s": time.perf_counter() - t_start,
            "phases_s": phases, "load_avg_1min_start": load_start, "load_avg_1min_end": load_end,
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
    speed = {(r["engine"], r["batch_size"]): r["samples_per_s"] for r in rows}
    for r in rows:
        if r["engine"] == "published-loop":
            continue
        if r["precision"] == "fp32":
            r.update(accurate=True, speed_vs_fp32=None, faster_than_fp32=None, usable=True)
            continue
        base = speed.get((gating.FP32_FALLBACK.get(r["engine"], ""), r["batch_size"]))
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


def summarize(doc: dict[str, Any], batch_size: int = 256) -> dict[str, Any]:
    """Best fp32 and best *usable* (accurate and faster) reduced engine at ``batch_size``, the
    per-engine verdicts, the Lambda's engine on this CPU, against the targets."""
    rows = [r for r in doc["rows"] if r["batch_size"] == batch_size and r["engine"] != "published-loop"]
    if not rows:
        bs = max((r["batch_size"] for r in doc["rows"]), default=None)
        rows = [r for r in doc["rows"] if r["batch_size"] == bs and r["engine"] != "published-loop"]
    if rows and "usable" not in rows[0]:
        mark_verdicts(doc["rows"])
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
    out["lambda_engine"] = lambda_choice(rows, out["engines"])
    out["cpu_type"] = doc["meta"].get("cpu_type")
    out["checks_on_trained_model"] = bool(doc["meta"].get("trained_model"))
    return out


def format_table(doc: dict[str, Any]) -> str:
    """The bench rows as a fixed-width text table (what ``cosmic bench`` prints)."""
    head = (f"{'engine':<15}{'prec':<6}{'batch':>6}{'samples/s':>11}{'x pub':>7}{'GFLOP/s':>9}{'peak':>7}"
            f"{'p50 ms':>9}{'nmad d%':>9}{'max|dz|':>10}{'check':>7}")
    lines = [head, "-" * len(head)]
    for r in doc["rows"]:
        nd = r.get("nmad_delta_rel")
        md = r.get("max_abs_dz")
        chk = r.get("check_passed")
        lines.append(
            f"{r['engine']:<15}{r['precision']:<6}{r['batch_size']:>6}{r['samples_per_s']:>11.1f}"
            f"{r['ratio_vs_published_loop']:>7.2f}{r['gflops']:>9.1f}{r['peak_fraction']:>7.1%}{r['batch_p50_ms']:>9.1f}"
            f"{(100 * nd if nd is not None else float('nan')):>9.2f}{(md if md is not None else float('nan')):>10.2e}"
            f"{('pass' if chk else 'FAIL') if chk is not None else '':>7}")
    meta = doc["meta"]
    lines.append(f"fp32 matmul peak {meta['matmul_peak_gflops']:.0f} GFLOP/s"
                 + (f", bf16 {meta['matmul_peak_bf16_gflops']:.0f}" if meta.get("matmul_peak_bf16_gflops") else "")
                 + f" on {meta['threads']} threads ({meta['cpu_model']}); {meta['flops_per_sample'] / 1e6:.1f} MFLOP/sample;"
                 + f" model {'trained' if meta['trained_model'] else 'UNTRAINED (checks not meaningful)'}")
    summary = doc.get("summary") or {}
    if summary.get("engines"):
        lines.append(f"on this CPU ({meta.get('cpu_model')}, isa {meta.get('isa')}"
                     + (f", caps {meta['isa_caps']}" if meta.get("isa_caps") else "") + f"), batch {summary['batch_size']}:")
        for name, v in summary["engines"].items():
            cal = v.get("calibration") or {}
            acc = (f"accurate {'yes' if v['accurate'] else 'NO'} (bench sigma_NMAD "
                   f"{100 * (v['nmad_delta_rel'] if v['nmad_delta_rel'] is not None else float('nan')):+.2f} %, max|dz| "
                   f"{(v['max_abs_dz'] if v['max_abs_dz'] is not None else float('nan')):.2e}; calibration "
                   + (f"max|dz| {cal['max_abs_dz']:.2e} {'pass' if cal.get('passed') else 'FAIL'}" if cal else "none")
                   + ")")
            ratio = v.get("speed_vs_fp32")
            fast = f"faster {'yes' if v.get('faster_than_fp32') else 'no'} ({ratio:.2f}x fp32)" if ratio else "faster ?"
            lines.append(f"  {name:<11} {acc}; {fast} -> {'used by default when fastest' if v['usable'] else 'not used'}"
                         + (f": {v['why_not']}" if v.get("why_not") else ""))
        lam = summary.get("lambda_engine") or {}
        lines.append(f"Lambda (ONNX only) on this CPU: {lam.get('engine')} - {lam.get('why')}"
                     + (f"; a run asking for onnx-int8 is served {lam['int8_request_gets']}"
                        if lam.get("int8_request_gets") else ""))
    if doc.get("stream"):
        s = doc["stream"]
        lines.append(f"streaming {s['data_gb']:.3f} GB with {s['engine']} (batch {s['batch_size']}): "
                     f"{s['samples_per_s']:.0f} samples/s, peak RSS {s['peak_rss_mb']:.0f} MB "
                     f"({'<' if s['peak_rss_ok'] else '>='} {s['peak_rss_target_mb']:.0f} MB target)")
    return "\n".join(lines)
