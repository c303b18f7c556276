"""int8 accuracy on CPUs this machine is not: the calibration check under an emulated CPU model.

ONNX Runtime picks its int8 kernels from ``cpuid``, so the AVX2-only path is checked by running
this Python under QEMU user mode (``--qemu-cpu Haswell``): ``python -m
cosmic_utils.inference.isa_check --model DIR [--qemu-cpu Haswell] [--variants ...]`` prints one
line per (CPU, variant). Reasoning and results: docs/portability.md ("Reduced-precision engines across CPUs").
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cosmic_utils.runtime.onnx_engine import INT8_VARIANTS, onnx_model_path, quantize_onnx_int8

#: Quantisation variants compared by default (see :func:`cosmic_utils.runtime.onnx_engine.quantize_onnx_int8`;
#: ``--variants qdq-static`` adds the static QDQ graph).
VARIANTS: tuple[str, ...] = ("u8s8", "u8s8-reduce-range", "u8u8")


def cpuid_features() -> dict[str, bool]:
    """AVX2 / AVX-512F / AVX512-VNNI / AVX-VNNI / AMX-INT8 as ``cpuid`` (leaf 7) reports them, x86-64 Linux
    only: run from an executable page, so under QEMU it is the emulated CPU (QEMU user mode passes
    the host's ``/proc/cpuinfo`` through)."""
    if platform.machine().lower() not in {"x86_64", "amd64"} or sys.platform != "linux":
        return {}
    # push rbx; mov eax, edi; mov ecx, esi; cpuid; mov [rdx], eax; mov [rdx+4], ebx;
    # mov [rdx+8], ecx; mov [rdx+12], edx; pop rbx; ret   (System V: edi, esi, rdx)
    code = bytes([0x53, 0x89, 0xF8, 0x89, 0xF1, 0x49, 0x89, 0xD0, 0x0F, 0xA2, 0x41, 0x89, 0x00, 0x41, 0x89,
                  0x58, 0x04, 0x41, 0x89, 0x48, 0x08, 0x41, 0x89, 0x50, 0x0C, 0x5B, 0xC3])
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    func = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4))(addr)
    regs0, regs1 = (ctypes.c_uint32 * 4)(), (ctypes.c_uint32 * 4)()
    func(7, 0, ctypes.byref(regs0))
    func(7, 1, ctypes.byref(regs1))
    ebx, ecx, edx = regs0[1], regs0[2], regs0[3]
    del func
    return {"avx2": bool(ebx >> 5 & 1), "avx512f": bool(ebx >> 16 & 1), "avx512_vnni": bool(ecx >> 11 & 1),
            "avx_vnni": bool(regs1[0] >> 4 & 1), "amx_int8": bool(edx >> 25 & 1)}


def check_graphs(model_dir: Path, graphs: dict[str, Path], threads: int = 1, rows: int | None = None,
                 emit: bool = False) -> list[dict[str, Any]]:
    """The calibration check of each graph on this (possibly emulated) CPU, on the first ``rows``
    rows (all when ``None``; QEMU runs about 100x slower); ``emit`` prints each result as a JSON line."""
    from cosmic_utils.runtime.gating import _predict, compare_to_fp32, load_calibration
    from cosmic_utils.runtime.onnx_engine import OnnxEngine

    cal = load_calibration(model_dir)
    if cal is None:
        raise SystemExit(f"model artifact {model_dir} has no calibration set; re-export it (cosmic model export)")
    feats = cpuid_features()
    out = []
    for variant, path in graphs.items():
        engine = OnnxEngine(path, threads=threads, int8=True)
        n = len(cal.image) if rows is None else int(rows)
        z = _predict(engine, cal.image[:n], cal.magnitude[:n], batch_size=32)
        verdict = compare_to_fp32("onnx-int8", "int8", z, cal.z_fp32[:n], cal.z_spec[:n])
        verdict.update(variant=variant, cpuid=feats)
        out.append(verdict)
        if emit:
            print(json.dumps(verdict), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model artifact folder (with calibration.npz)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=INT8_VARIANTS)
    parser.add_argument("--qemu-cpu", default=None, help="also run under `qemu-x86_64 -cpu MODEL` (e.g. Haswell)")
    parser.add_argument("--graphs", default=None, help=argparse.SUPPRESS)  # inner run: JSON {variant: path}
    parser.add_argument("--rows", type=int, default=None, help="first N calibration rows only (default all)")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    model = Path(args.model)
    if args.graphs:  # the run inside QEMU: graphs already quantised by the outer run
        graphs = {k: Path(v) for k, v in json.loads(args.graphs).items()}
        check_graphs(model, graphs, rows=args.rows, emit=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="cosmic-isa-") as tmp:
        src = onnx_model_path(model)  # one int8 graph per variant of the artifact's model.onnx
        graphs = {v: quantize_onnx_int8(src, Path(tmp) / f"model.{v}.int8.onnx", variant=v) for v in args.variants}
        results = [dict(r, cpu="native") for r in check_graphs(model, graphs, rows=args.rows)]
        if args.qemu_cpu:
            qemu = shutil.which("qemu-x86_64")
            if qemu is None:
                raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
            cmd = [qemu, "-cpu", args.qemu_cpu, sys.executable, "-m", "cosmic_utils.inference.isa_check",
                   "--model", str(model), "--graphs", json.dumps({k: str(v) for k, v in graphs.items()})]
            if args.rows is not None:
                cmd += ["--rows", str(args.rows)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                raise SystemExit(f"run under QEMU failed ({proc.returncode}): {proc.stderr[-2000:]}")
            emulated = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            results += [dict(r, cpu=f"qemu -cpu {args.qemu_cpu}") for r in emulated]
    for r in results:
        feats = ",".join(k for k, v in (r.get("cpuid") or {}).items() if v) or "?"
        print(f"{r['cpu']:<20} {r['variant']:<18} cpuid[{feats}]  sigma_NMAD {100 * r['nmad_delta_rel']:+6.2f} %  "
              f"max|z - z_fp32| {r['max_abs_dz']:.3e}  mean {r['mean_abs_dz']:.2e}  -> {'pass' if r['passed'] else 'FAIL'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
