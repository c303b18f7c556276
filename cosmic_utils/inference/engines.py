"""Inference engines behind one interface, and the choice of the default engine.

``create_engine(name, model_dir).predict(image, magnitude)`` takes the raw arrays stored in
partitions (float32 [N,5,32,32], float64 [N,5]) and returns float32 redshifts; every engine
applies the artifact's preprocessing itself. Reduced-precision engines are gated on the
artifact's calibration set; :func:`default_engine` picks the fastest engine the last bench found
accurate on this CPU type. This module does not import torch (the inference Lambda imports it).
Engine table, gate and default rule: docs/inference.md ("Using it", "Reduced precision").
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cosmic_utils import config
from cosmic_utils.runtime import cpu
from cosmic_utils.runtime.engine import ENGINE_PRECISION, ONNX_ENGINE_NAMES, Engine
from cosmic_utils.runtime.gating import FP32_FALLBACK, gated, speed_refusal
from cosmic_utils.runtime.onnx_engine import create_onnx_engine

log = logging.getLogger(__name__)

TORCH_ENGINE_NAMES: tuple[str, ...] = ("torch-eager", "torch", "torch-compile", "torch-bf16", "torch-int8")
CUDA_ENGINE_NAMES: tuple[str, ...] = ("torch-cuda", "torch-cuda-bf16", "torch-cuda-fp16")
ENGINE_NAMES: tuple[str, ...] = TORCH_ENGINE_NAMES + ONNX_ENGINE_NAMES + CUDA_ENGINE_NAMES
#: Engines that compile on creation (~20 s per batch shape on 2 cores): used only when named,
#: never picked by :func:`default_engine`, which also serves short runs (the demo, a sweep point).
COMPILED_ENGINE_NAMES: tuple[str, ...] = ("torch-compile",)
#: Where ``cosmic bench`` writes its accuracy checks and speeds.
ENGINE_CHECKS_PATH: Path = config.RUNS_DIR / "bench" / "engine_checks.json"
BENCH_PATH: Path = config.RUNS_DIR / "bench" / "bench.json"


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device (imports torch only when installed)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def create_engine(name: str, artifact_dir: str | os.PathLike[str] | None = None, threads: int | None = None, gate: bool = True) -> Engine:
    """The engine ``name`` (``"default"``: :func:`default_engine`) on an artifact folder (default
    ``models/default``). ``gate``: a reduced-precision engine is refused (``EngineRefusedError`` /
    ``EngineAccuracyError``, engine closed) unless accurate on this CPU type; the bench passes ``gate=False``
    to measure them too."""
    folder = Path(artifact_dir if artifact_dir is not None else config.DEFAULT_MODEL_DIR)
    if name == "default":
        name = default_engine()
    engine: Engine
    if name in ONNX_ENGINE_NAMES:
        return create_onnx_engine(name, folder, threads=threads, gate=gate)
    if name in TORCH_ENGINE_NAMES:
        from cosmic_utils.inference.torch_engines import TORCH_ENGINES

        engine = TORCH_ENGINES[name](folder, threads=threads)
    elif name in CUDA_ENGINE_NAMES:
        from cosmic_utils.inference.cuda_engine import CudaEngine

        engine = CudaEngine.from_artifact(folder, threads=threads, precision=ENGINE_PRECISION[name])
    else:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    return gated(engine, name, folder, gate)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def passing_engines(checks_path: str | os.PathLike[str] | None = None) -> set[str]:
    """Every fp32 engine, plus reduced engines whose check in ``engine_checks.json`` passed on a
    trained model on this CPU type and that are not known to be slow here (emulated bf16)."""
    allowed = {n for n, p in ENGINE_PRECISION.items() if p == "fp32"}
    data = _read_json(Path(checks_path or ENGINE_CHECKS_PATH))
    checks = data.get("checks", []) if isinstance(data, dict) else []
    here = cpu.cpu_type()
    file_cpu = data.get("cpu_type") if isinstance(data, dict) else None
    for check in checks:
        if not (isinstance(check, dict) and check.get("passed") and check.get("trained_model", True)
                and (check.get("cpu_type") or file_cpu) == here):
            continue
        name = str(check.get("engine"))
        if not speed_refusal(name, ENGINE_PRECISION.get(name, "fp32")):
            allowed.add(name)
    return allowed


def default_engine(checks_path: str | os.PathLike[str] | None = None, bench_path: str | os.PathLike[str] | None = None,
                   batch_size: int = 256, candidates: Iterable[str] | None = None) -> str:
    """The fastest engine (bench samples/s at ``batch_size``) among fp32 engines and the reduced engines
    :func:`passing_engines` allows that the same bench measured faster than their fp32 counterpart. Without a
    bench: ``"torch"`` if installed, else ``"onnx"``. ``candidates`` limits the choice (Lambda:
    ``ONNX_ENGINE_NAMES``); compiled engines count only when listed there."""
    allowed = passing_engines(checks_path)
    if candidates is not None:
        allowed &= set(candidates)
    else:
        allowed -= set(COMPILED_ENGINE_NAMES)
    if allowed & set(CUDA_ENGINE_NAMES) and not cuda_available():
        allowed -= set(CUDA_ENGINE_NAMES)  # a bench file from a GPU machine must not pick them here
    data = _read_json(Path(bench_path or BENCH_PATH))
    rows = data.get("rows", []) if isinstance(data, dict) else (data or [])
    bench_cpu = ((data.get("meta") or {}).get("cpu_type") if isinstance(data, dict) else None)
    same_cpu = bench_cpu == cpu.cpu_type()
    measured: dict[str, float] = {}
    # a bench of several thread counts: compare engines at the largest (this process uses every core)
    top = max((int(r["threads"]) for r in rows if isinstance(r, dict) and r.get("threads")), default=None)
    for row in rows:
        if (not isinstance(row, dict) or int(row.get("batch_size", -1)) != batch_size
                or (top is not None and row.get("threads") is not None and int(row["threads"]) != top)):
            continue
        name = str(row.get("engine"))
        measured[name] = max(measured.get(name, 0.0), float(row.get("samples_per_s") or 0.0))
    speeds: dict[str, float] = {}
    for name, sps in measured.items():
        if name not in allowed:
            continue
        if ENGINE_PRECISION.get(name, "fp32") != "fp32":
            # speeds of another CPU type say nothing about this one; and reduced must beat fp32
            base = measured.get(FP32_FALLBACK.get(name, ""))
            if not same_cpu or base is None or sps <= base:
                continue
        speeds[name] = sps
    if speeds:
        return max(speeds, key=lambda k: speeds[k])
    import importlib.util

    fallback = "torch" if importlib.util.find_spec("torch") is not None else "onnx"
    if candidates is not None and fallback not in allowed:
        fp32 = sorted(n for n in allowed if ENGINE_PRECISION.get(n) == "fp32")
        return fp32[0] if fp32 else "onnx"
    return fallback
