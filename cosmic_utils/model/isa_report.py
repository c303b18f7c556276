"""What torch's three CPU libraries say about the code path they took, on any CPU vendor.

ISA caps (:data:`cosmic_utils.model.numerics.ISA_CAPS`) make a wide CPU run a narrower one's
kernels; whether a cap reached ATen, oneDNN and MKL can only be read from each library's own
report, and MKL's differs by vendor (on AMD it names no ISA and ignores the cap, so its dispatch
index is read instead). Reasoning and measurements: docs/portability.md "Two CPU families".
``python -m cosmic_utils.model.isa_report [--cap avx2] [--qemu-cpu EPYC] [--raw]`` prints the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from cosmic_utils.model.numerics import ISA_CAPS

#: The probe run in a fresh process (caps are read when torch loads): one matmul (MKL sgemm),
#: one convolution (oneDNN), ATen's capability, and MKL's dispatch index where exported.
PROBE_CODE = """
import ctypes, os, torch
print('aten', torch.backends.cpu.get_cpu_capability())
x = torch.randn(64, 64); x @ x
torch.nn.functional.conv2d(torch.randn(2, 8, 8, 8), torch.randn(8, 8, 3, 3))
try:
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), 'lib', 'libtorch_cpu.so'))
    for name in ('mkl_serv_cpu_detect', 'mkl_serv_intel_cpu_true'):
        fn = getattr(lib, name); fn.restype = ctypes.c_int
        print(name, fn())
except (OSError, AttributeError) as exc:
    print('mkl_probe unavailable', type(exc).__name__)
""".strip()

#: oneDNN's ISA names (``isa:...`` line) mapped to the short labels ATen uses.
_ONEDNN_ISA = (("AVX-512 with Intel AMX", "AVX512_AMX"), ("AVX-512", "AVX512"), ("AVX2", "AVX2"), ("AVX", "AVX"),
               ("SSE4.1", "SSE41"))
#: MKL banner ISA names (inside ``(Intel(R) ...) enabled processors``) mapped to the same labels.
_MKL_ISA = (("AMX", "AVX512_AMX"), ("AVX-512", "AVX512"), ("AVX512", "AVX512"), ("AVX2", "AVX2"), ("AVX", "AVX"),
            ("SSE4.2", "SSE42"))


@dataclass(frozen=True)
class LibraryReport:
    """The parsed verbose output of :data:`PROBE_CODE` (``None``: the library said nothing)."""

    aten: str | None  # ATen's dispatch capability (AVX2, AVX512, DEFAULT)
    onednn_isa: str | None  # oneDNN's reported ISA as a short label (AVX2, AVX512...)
    onednn_isa_text: str | None  # oneDNN's isa: text as printed ("Intel AVX2" on every vendor)
    onednn_kernels: tuple[str, ...]  # the jit: implementations of the convolutions oneDNN ran
    mkl_banner: str | None  # MKL's verbose banner (its first MKL_VERBOSE line)
    mkl_isa: str | None  # the code path MKL's banner names; None when it names none (non-Intel CPUs)
    mkl_ran_sgemm: bool  # whether MKL logged the probe's SGEMM (MKL is torch's BLAS here)
    mkl_dispatch: int | None  # MKL's dispatch index (mkl_serv_cpu_detect); None where not exported
    mkl_intel_cpu: bool | None  # MKL's verdict mkl_serv_intel_cpu_true (whether it takes its Intel paths)
    notes: tuple[str, ...] = field(default=())  # what the parser could not read, in words


def _label(text: str, table: Sequence[tuple[str, str]]) -> str | None:
    return next((label for needle, label in table if needle in text), None)


def parse_report(text: str) -> LibraryReport:
    """Parse the stdout of :data:`PROBE_CODE` run with ``ONEDNN_VERBOSE=1 MKL_VERBOSE=1`` (any vendor's; real
    captures in tests/fixtures/cpus/): an unrecognised or missing line becomes ``None`` plus a note, never an error."""
    notes: list[str] = []
    aten = re.search(r"^aten (\S+)\s*$", text, re.M)
    isa = re.search(r"^onednn_verbose,.*?,info,cpu,isa:(.+?)\s*$", text, re.M)
    kernels = tuple(sorted(set(re.findall(r"^onednn_verbose,.*?,exec,cpu,convolution,(jit:[\w]+)", text, re.M))))
    banner = re.search(r"^MKL_VERBOSE (oneMKL|Intel\(R\) MKL) .*$", text, re.M)
    mkl_isa = None
    if banner:
        named = re.search(r"\(Intel\(R\) ([^)]+)\) enabled processors", banner.group(0))
        if named:
            mkl_isa = _label(named.group(1), _MKL_ISA) or named.group(1)
        elif "Intel(R) Architecture processors" in banner.group(0):
            notes.append("MKL's banner names no ISA (its non-Intel dispatch)")
        else:
            notes.append("MKL's banner not recognised")
    else:
        notes.append("no MKL banner (MKL_VERBOSE unset, or torch built without MKL)")
    dispatch = re.search(r"^mkl_serv_cpu_detect (-?\d+)\s*$", text, re.M)
    intel = re.search(r"^mkl_serv_intel_cpu_true (-?\d+)\s*$", text, re.M)
    if dispatch is None:
        notes.append("MKL's dispatch index not readable")
    return LibraryReport(
        aten=aten.group(1).upper() if aten else None,
        onednn_isa=_label(isa.group(1), _ONEDNN_ISA) if isa else None,
        onednn_isa_text=isa.group(1) if isa else None,
        onednn_kernels=kernels,
        mkl_banner=banner.group(0) if banner else None,
        mkl_isa=mkl_isa,
        mkl_ran_sgemm=bool(re.search(r"^MKL_VERBOSE SGEMM\(", text, re.M)),
        mkl_dispatch=int(dispatch.group(1)) if dispatch else None,
        mkl_intel_cpu=bool(int(intel.group(1))) if intel else None,
        notes=tuple(notes),
    )


def run_report(cap: str = "native", *, qemu_cpu: str | None = None, python: str = sys.executable,
               timeout: float = 600.0) -> tuple[LibraryReport, str]:
    """Run :data:`PROBE_CODE` under the ISA cap ``cap`` (a key of ``ISA_CAPS``) in a fresh process -> (report,
    raw). ``qemu_cpu``: under ``qemu-x86_64 -cpu MODEL`` (``EPYC``: AMD, AVX2; ``Haswell``: Intel), changing
    ``cpuid``."""
    if cap not in ISA_CAPS:
        raise ValueError(f"unknown ISA cap {cap!r}: one of {', '.join(ISA_CAPS)}")
    env = {k: v for k, v in os.environ.items() if k not in {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                             "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"}}
    env.update(ISA_CAPS[cap])
    env.update({"ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1"})
    cmd = [python, "-c", PROBE_CODE]
    if qemu_cpu:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise FileNotFoundError("qemu-x86_64 not found: `make qemu` (apt-get install qemu-user)")
        cmd = [qemu, "-cpu", qemu_cpu, *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"library probe failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    return parse_report(proc.stdout), proc.stdout


def cap_findings(capped: LibraryReport, native: LibraryReport, cap_label: str = "AVX2") -> tuple[list[str], list[str]]:
    """``(problems, findings)``: whether a cap to ``cap_label`` reached each library (``capped`` vs
    ``native``). ATen and oneDNN must report the cap (oneDNN running a ``jit:`` kernel of it); MKL must run
    SGEMM. A banner naming an ISA (Intel) must name the cap, dispatch not above native; naming none (other
    vendors), dispatch must not move and MKL must not claim its Intel path. A finding is a non-failure worth
    printing."""
    problems: list[str] = []
    findings: list[str] = []
    if capped.aten != cap_label:
        problems.append(f"ATen reports {capped.aten!r}, expected {cap_label!r}")
    if capped.onednn_isa != cap_label:
        problems.append(f"oneDNN reports isa {capped.onednn_isa_text!r}, expected {cap_label}")
    kernel = f"jit:{cap_label.lower()}"
    if not any(k.startswith(kernel) for k in capped.onednn_kernels):
        problems.append(f"oneDNN ran {list(capped.onednn_kernels)}, no {kernel} convolution")
    if not capped.mkl_ran_sgemm:
        problems.append("MKL logged no SGEMM (is MKL torch's BLAS?)")
    if capped.mkl_isa is not None:
        if capped.mkl_isa != cap_label:
            problems.append(f"MKL's banner names {capped.mkl_isa}, expected {cap_label}")
        if capped.mkl_dispatch is not None and native.mkl_dispatch is not None \
                and capped.mkl_dispatch > native.mkl_dispatch:
            problems.append(f"MKL's dispatch rose under the cap ({native.mkl_dispatch} -> {capped.mkl_dispatch})")
        findings.append(f"MKL names its path: {capped.mkl_isa} (dispatch {capped.mkl_dispatch})")
    elif capped.mkl_banner is None:
        problems.append("MKL printed no banner")
    else:
        if capped.mkl_dispatch is None or native.mkl_dispatch is None:
            findings.append("MKL's banner names no ISA and its dispatch index is not exported: "
                            "the cap's effect on MKL is not observable on this CPU")
        elif capped.mkl_dispatch != native.mkl_dispatch:
            problems.append(f"MKL's banner names no ISA, yet its dispatch changed under the cap "
                            f"({native.mkl_dispatch} -> {capped.mkl_dispatch})")
        if capped.mkl_intel_cpu:
            problems.append("MKL's banner names no ISA, yet MKL says it is on its Intel path")
        findings.append(f"MKL's banner names no ISA: non-Intel dispatch {capped.mkl_dispatch} with and "
                        f"without the cap (MKL_ENABLE_INSTRUCTIONS does not reach MKL on this CPU)")
    return problems, findings


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the parsed library report (or the raw text) for one cap, optionally under QEMU."""
    parser = argparse.ArgumentParser(prog="python -m cosmic_utils.model.isa_report", description=__doc__.split("\n")[0])
    parser.add_argument("--cap", default="native", choices=list(ISA_CAPS))
    parser.add_argument("--qemu-cpu", default=None, help="run under `qemu-x86_64 -cpu MODEL` (EPYC, Haswell)")
    parser.add_argument("--raw", action="store_true", help="print the libraries' raw output instead")
    args = parser.parse_args(argv)
    report, raw = run_report(args.cap, qemu_cpu=args.qemu_cpu)
    if args.raw:
        print(raw, end="")
        return 0
    print(json.dumps({"cap": args.cap, "qemu_cpu": args.qemu_cpu, **asdict(report)}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
