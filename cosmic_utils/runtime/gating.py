"""The accuracy gate: a reduced-precision engine serves only on a CPU type where it is accurate.

:func:`check_engine` runs an engine on the artifact's ``calibration.npz`` and applies
:func:`compare_to_fp32` (the project's one accuracy rule, also ``cosmic bench``'s); results are
cached per ``(cpu_type, engine, artifact identity)``. :func:`create_engine_with_fallback` is the
run policy: a refused engine is replaced by its fp32 counterpart, and says so. numpy only (Lambda).
Reasoning and numbers: docs/portability.md "Reduced-precision engines across CPUs".
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.runtime import cpu
from cosmic_utils.runtime.artifact import (
    CALIBRATION_FILE,
    ROLE_CALIBRATION,
    ArtifactError,
    ArtifactNotFoundError,
)
from cosmic_utils.runtime.engine import Engine, artifact_meta
from cosmic_utils.runtime.metrics import delta_z, sigma_nmad

log = logging.getLogger(__name__)

#: Rows of the calibration set (about a second of int8 inference at one vCPU).
CALIBRATION_ROWS: int = 256
#: Reduced precision: largest accepted |sigma_NMAD(engine) / sigma_NMAD(fp32) - 1|.
NMAD_TOLERANCE_REL: float = 0.02
#: Reduced precision: largest accepted |z - z_fp32| of any galaxy (the 0.05 outlier cut of dz).
MAX_ABS_DZ: float = 0.05
#: fp32 engines must agree with the eager model to this (absolute redshift).
FP32_ATOL: float = 1e-3
#: The fp32 engine that serves when a reduced engine is refused.
FP32_FALLBACK: dict[str, str] = {"onnx-int8": "onnx", "torch-int8": "torch", "torch-bf16": "torch"}

_CACHE: dict[tuple[str, str, str], dict[str, Any]] = {}


class EngineRefusedError(RuntimeError):
    """A reduced-precision engine refuses to serve on this CPU; the message says why."""

    def __init__(self, engine: str, reason: str, verdict: dict[str, Any] | None = None) -> None:
        probe = cpu.cpu_probe()
        self.engine = engine
        self.reason = reason
        self.verdict = verdict or {}
        self.cpu_model = probe["cpu_model"]
        self.cpu_type = probe["cpu_type"]
        super().__init__(f"engine {engine} refused on this CPU ({self.cpu_model}; cpu_type {self.cpu_type}): {reason}")


class EngineAccuracyError(EngineRefusedError):
    """The engine failed its calibration check on this CPU type, or the artifact has no calibration set."""


@dataclass(frozen=True)
class Calibration:
    """The calibration set of an artifact (raw inputs, labels, eager fp32 predictions)."""

    image: np.ndarray
    magnitude: np.ndarray
    z_fp32: np.ndarray
    z_spec: np.ndarray
    sha256: str


def compare_to_fp32(name: str, precision: str, z: np.ndarray, z_fp32: np.ndarray,
                    z_spec: np.ndarray | None) -> dict[str, Any]:
    """The accuracy rule against fp32 (:data:`NMAD_TOLERANCE_REL`, :data:`MAX_ABS_DZ`, :data:`FP32_ATOL`):
    numbers and ``passed``; unlabelled rows skip sigma_NMAD."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    ref = np.asarray(z_fp32, dtype=np.float64).reshape(-1)
    out: dict[str, Any] = {"engine": name, "precision": precision, "rows": int(len(z))}
    finite = bool(len(z) and np.isfinite(z).all())
    diff = np.abs(z - ref) if finite else np.array([np.inf])
    out.update(max_abs_dz=float(diff.max()), mean_abs_dz=float(diff.mean()))
    nmad = nmad_ref = rel = float("nan")
    if finite and z_spec is not None:
        spec = np.asarray(z_spec, dtype=np.float64).reshape(-1)
        labelled = np.isfinite(spec)
        if labelled.any():
            nmad = sigma_nmad(delta_z(spec[labelled], z[labelled]))
            nmad_ref = sigma_nmad(delta_z(spec[labelled], ref[labelled]))
            rel = nmad / nmad_ref - 1.0 if nmad_ref > 0 else float("nan")
    out.update(sigma_nmad=nmad, sigma_nmad_fp32=nmad_ref, nmad_delta_rel=rel)
    if not finite:
        out.update(passed=False, rule="outputs must be finite")
    elif precision == "fp32":
        out.update(passed=bool(out["max_abs_dz"] <= FP32_ATOL), rule=f"max |z - z_fp32| <= {FP32_ATOL}")
    else:
        nmad_ok = not np.isfinite(nmad_ref) or (np.isfinite(rel) and abs(rel) <= NMAD_TOLERANCE_REL)
        out.update(passed=bool(nmad_ok and out["max_abs_dz"] <= MAX_ABS_DZ),
                   rule=f"|sigma_NMAD / sigma_NMAD_fp32 - 1| <= {NMAD_TOLERANCE_REL:.0%} and "
                        f"max |z - z_fp32| <= {MAX_ABS_DZ}")
    return out


def describe(verdict: dict[str, Any]) -> str:
    """One line of numbers: ``sigma_NMAD +0.4 % (0.0120 vs 0.0119), max |dz| 2.1e-03``."""
    parts = []
    rel = verdict.get("nmad_delta_rel")
    if rel is not None and np.isfinite(rel):
        parts.append(f"sigma_NMAD {100 * rel:+.1f} % ({verdict['sigma_nmad']:.4f} vs fp32 {verdict['sigma_nmad_fp32']:.4f})")
    parts.append(f"max |z - z_fp32| {verdict.get('max_abs_dz', float('nan')):.2e}")
    return ", ".join(parts) + f" on {verdict.get('rows', 0)} rows"


def native_bf16(probe: dict[str, Any] | None = None) -> bool:
    """Whether bf16 matmuls run natively (AMX-BF16 / AVX512-BF16 / arm64 BF16), with no oneDNN ISA cap
    below them (``ONEDNN_MAX_CPU_ISA=AVX2`` ...) making oneDNN emulate bf16."""
    p = probe or cpu.cpu_probe()
    flags = set(p["cpu_flags"].split())
    if not ({"amx_bf16", "avx512_bf16"} & flags or ("bf16" in flags and p["arch"] in {"aarch64", "arm64"})):
        return False
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        cap = os.environ.get(var, "").upper()
        if cap and cap not in {"ALL", "DEFAULT"} and "BF16" not in cap and "AMX" not in cap:
            return False
    return True


def speed_refusal(name: str, precision: str) -> str | None:
    """Why ``name`` would be slower than fp32 on this CPU without measuring it (``None``: no reason)."""
    if name.startswith("torch-cuda"):  # a GPU's bf16 / fp16 are native; only the accuracy check applies
        return None
    if precision == "bf16" and not native_bf16():
        return ("bf16 is emulated on this CPU (no amx_bf16 / avx512_bf16, or oneDNN capped below them): "
                "slower than fp32")
    return None


def load_calibration(artifact_dir: str | os.PathLike[str]) -> Calibration | None:
    """The artifact's calibration set, sha256 checked (else :class:`ArtifactError`); ``None`` if unlisted."""
    folder = Path(artifact_dir)
    entry = (artifact_meta(folder, missing_ok=True).get("files") or {}).get(ROLE_CALIBRATION)
    if not entry:
        return None
    path = folder / str(entry.get("path", CALIBRATION_FILE))
    if not path.is_file():
        raise ArtifactNotFoundError(f"model artifact {folder}: calibration file {entry.get('path')} not found")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise ArtifactError(f"model artifact {folder}: checksum mismatch for {entry.get('path')} (calibration): "
                            f"artifact.json says {str(entry.get('sha256'))[:12]}..., file is {digest[:12]}...")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return Calibration(image=np.ascontiguousarray(npz["image"], dtype=np.float32),
                           magnitude=np.ascontiguousarray(npz["magnitude"], dtype=np.float64),
                           z_fp32=np.asarray(npz["z_fp32"], dtype=np.float64),
                           z_spec=np.asarray(npz["z_spec"], dtype=np.float64), sha256=digest)


def artifact_identity(artifact_dir: str | os.PathLike[str]) -> str:
    """A short key of the artifact's content: the sha256s that ``artifact.json`` lists (no hashing)."""
    files = artifact_meta(artifact_dir, missing_ok=True).get("files") or {}
    joined = ";".join(f"{role}={(files[role] or {}).get('sha256', '')}" for role in sorted(files))
    return hashlib.sha256(joined.encode()).hexdigest()[:16] if joined else f"path:{Path(artifact_dir).resolve()}"


def _predict(engine: Any, image: np.ndarray, magnitude: np.ndarray, batch_size: int = 256) -> np.ndarray:
    out = np.empty(len(image), dtype=np.float32)
    for s in range(0, len(image), batch_size):
        out[s:s + batch_size] = engine.predict(image[s:s + batch_size], magnitude[s:s + batch_size])
    return out


def check_engine(engine: Any, artifact_dir: str | os.PathLike[str], use_cache: bool = True) -> dict[str, Any] | None:
    """The :func:`compare_to_fp32` verdict on the artifact's calibration set (``None`` without one)."""
    probe = cpu.cpu_probe()
    key = (probe["cpu_type"], str(engine.name), artifact_identity(artifact_dir))
    if use_cache and key in _CACHE:
        return {**_CACHE[key], "cached": True}
    cal = load_calibration(artifact_dir)
    if cal is None:
        return None
    z = _predict(engine, cal.image, cal.magnitude)
    verdict = compare_to_fp32(engine.name, engine.precision, z, cal.z_fp32, cal.z_spec)
    verdict.update(cpu_type=probe["cpu_type"], cpu_model=probe["cpu_model"], isa=probe["isa"],
                   calibration_sha256=cal.sha256, source="calibration")
    _CACHE[key] = verdict
    log.info("calibration check %s on %s: %s -> %s", engine.name, probe["isa"], describe(verdict),
             "pass" if verdict["passed"] else "FAIL")
    return {**verdict, "cached": False}


def gate_engine(engine: Any, artifact_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The verdict letting ``engine`` serve (fp32, or passed on this CPU type); else
    :class:`EngineRefusedError` (bf16 emulated) or :class:`EngineAccuracyError` (failed, or no set)."""
    if engine.precision == "fp32":
        return None
    slow = speed_refusal(engine.name, engine.precision)
    if slow:
        raise EngineRefusedError(engine.name, slow)
    verdict = check_engine(engine, artifact_dir)
    if verdict is None:
        raise EngineAccuracyError(
            engine.name, f"model artifact {artifact_dir} has no calibration set (files.{ROLE_CALIBRATION}), so "
            "its accuracy on this CPU cannot be checked; re-export it with `cosmic model export --model DIR`")
    if not verdict["passed"]:
        raise EngineAccuracyError(engine.name, f"accuracy check failed: {describe(verdict)} "
                                               f"(rule: {verdict['rule']})", verdict)
    return verdict


def gated(engine: Engine, name: str, artifact_dir: str | os.PathLike[str], gate: bool = True) -> Engine:
    """A new engine after :func:`gate_engine` (closed when refused); every engine factory ends with this."""
    engine.requested_name = name
    if gate:
        try:
            engine.gate = gate_engine(engine, artifact_dir)
        except BaseException:
            engine.close()
            raise
    return engine


def create_engine_with_fallback(name: str, artifact_dir: str | os.PathLike[str], threads: int | None = None,
                                *, create: Callable[..., Engine]) -> Engine:
    """``create(name, artifact_dir, threads=...)`` (a gated engine; a parameter, as the ONNX engine imports
    this module), or its fp32 counterpart when refused here; sets ``requested_name``, ``fallback_reason``."""
    reason = ""
    try:
        engine = create(name, artifact_dir, threads=threads)
    except EngineRefusedError as exc:
        fallback = FP32_FALLBACK.get(exc.engine, "onnx")
        log.warning("%s; falling back to %s", exc, fallback)
        engine = create(fallback, artifact_dir, threads=threads)
        reason = str(exc)
    engine.requested_name = name
    engine.fallback_reason = reason
    return engine


def engine_fields(engine: Any, requested: str) -> dict[str, Any]:
    """The record fields of an engine choice: ``engine_requested``, ``engine``, ``engine_fallback_reason``."""
    return {"engine_requested": getattr(engine, "requested_name", requested),
            "engine": getattr(engine, "name", requested),
            "engine_fallback_reason": getattr(engine, "fallback_reason", "")}


def clear_cache() -> None:
    """Forget every cached check (tests; a process that changes its ISA caps)."""
    _CACHE.clear()
