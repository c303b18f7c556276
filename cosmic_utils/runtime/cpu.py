"""What CPU this process runs on: model, architecture, the ISA flags and caps that change numerics.

Every bench and run record carries this probe, and a reduced-precision engine's accuracy check
is tied to :func:`cpu_type` (flags, never the vendor). Standard library only (Lambda).
Reasoning: docs/portability.md "Two CPU families" and "Capping the ISA".
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

#: x86-64 flags (/proc/cpuinfo spelling) that decide which reduced-precision / vector paths run natively.
X86_FLAGS: tuple[str, ...] = (
    "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)

#: arm64 features (/proc/cpuinfo "Features") that matter for the same question.
ARM_FLAGS: tuple[str, ...] = ("asimd", "asimddp", "fphp", "asimdhp", "sve", "sve2", "bf16", "i8mm")
#: Environment variables that cap the vector ISA of torch / oneDNN / MKL / ONNX Runtime.
ISA_CAP_VARIABLES: tuple[str, ...] = (
    "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR", "ORT_DISABLE_AVX512",
)
#: lscpu's names of the /proc/cpuinfo fields the probe reads (tests/fixtures/cpus/ holds real outputs).
LSCPU_KEYS: dict[str, str] = {"Vendor ID": "vendor_id", "Model name": "model name", "Flags": "flags",
                              "Architecture": "architecture"}


def parse_cpuinfo(text: str) -> dict[str, str]:
    """First value of each ``key: value`` line of a /proc/cpuinfo text (its first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" not in line:
            if not line.strip() and fields:
                break  # the first processor block is enough
            continue
        key, value = line.split(":", 1)
        fields.setdefault(key.strip(), value.strip())
    return fields


def parse_lscpu(text: str) -> dict[str, str]:
    """The /proc/cpuinfo fields the probe reads, from ``lscpu`` output (same vendor-free keys)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in LSCPU_KEYS:
            fields.setdefault(LSCPU_KEYS[key.strip()], value.strip())
    return fields


def _cpuinfo_fields() -> dict[str, str]:
    """/proc/cpuinfo of this machine, parsed (empty off Linux)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return {}


def _isa_level(arch: str, flags: set[str]) -> str:
    """A short label of the widest numerics-relevant ISA: ``amx``, ``avx512``, ``avx2``, ``arm64-sve``..."""
    if arch in {"x86_64", "amd64"}:
        if {"amx_tile", "amx_int8"} <= flags or "amx_bf16" in flags:
            return "amx"
        return "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    if arch in {"aarch64", "arm64"}:
        return "arm64-sve" if "sve" in flags else "arm64"
    return arch or "unknown"


@lru_cache(maxsize=1)
def cpu_probe() -> dict[str, Any]:
    """This CPU: ``cpu_model``, ``cpu_vendor``, ``arch``, ``cpu_flags`` (sorted subset of
    :data:`X86_FLAGS` / :data:`ARM_FLAGS`), ``isa``, ``isa_caps`` (``NAME=value;...`` of the caps
    set), ``cpus`` (usable cores) and ``cpu_type`` (the key accuracy checks are cached under)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return probe_from_fields(_cpuinfo_fields(), arch=platform.machine().lower(), environ=os.environ,
                             cpus=cpus, fallback_model=platform.processor())


def probe_from_fields(fields: Mapping[str, str], *, arch: str, environ: Mapping[str, str] | None = None,
                      cpus: int = 1, fallback_model: str = "") -> dict[str, Any]:
    """The probe of :func:`cpu_probe` from given /proc/cpuinfo (or :func:`parse_lscpu`) fields; the
    vendor is recorded, never compared (``cpu_type`` uses arch, ISA level and flags only)."""
    environ = environ if environ is not None else {}
    raw = set((fields.get("flags") or fields.get("Features") or "").split())
    known = X86_FLAGS if arch in {"x86_64", "amd64"} else ARM_FLAGS
    flags = sorted(f for f in known if f in raw)
    model = fields.get("model name") or fields.get("Model") or fallback_model or arch
    vendor = fields.get("vendor_id") or fields.get("CPU implementer") or ""
    caps = ";".join(f"{k}={environ[k]}" for k in ISA_CAP_VARIABLES if environ.get(k))
    probe = {"cpu_model": model, "cpu_vendor": vendor, "arch": arch, "cpu_flags": " ".join(flags),
             "isa": _isa_level(arch, set(flags)), "isa_caps": caps, "cpus": cpus}
    probe["cpu_type"] = cpu_type(probe)
    return probe


def cpu_type(probe: dict[str, Any] | None = None) -> str:
    """The key a reduced-precision accuracy result is valid for: arch, ISA level, flags and caps
    (same key, same kernel paths in ONNX Runtime and torch)."""
    p = probe if probe is not None else cpu_probe()
    caps = f"|caps:{p['isa_caps']}" if p.get("isa_caps") else ""
    return f"{p['arch']}|{p['isa']}|{p['cpu_flags'].replace(' ', ',')}{caps}"
