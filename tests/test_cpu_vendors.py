"""The CPU probe and the ISA-cap check on what real AMD and (emulated) Intel CPUs print.

Fixtures (tests/fixtures/cpus/, provenance in its README.md): ``amd-epyc-avx2`` is a real
AVX2-only AMD EPYC (lscpu and the libraries' verbose output with the AVX2 caps and with none,
captured there); ``amd-epyc-zen4`` a real AMD EPYC Zen 4 with AVX-512; ``qemu-epyc`` and
``qemu-haswell`` the same probe under ``qemu-x86_64 -cpu EPYC`` / ``-cpu Haswell``, which change
the CPUID vendor and ISA that MKL and oneDNN read. The tests at the bottom rerun the probe under
QEMU and are skipped, with the reason printed, where qemu-user is not installed (``make qemu``).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cosmic_utils.model.isa_report import cap_findings, parse_report, run_report
from cosmic_utils.runtime.cpu import parse_cpuinfo, parse_lscpu, probe_from_fields

ROOT = Path(__file__).resolve().parents[1]
CPUS = ROOT / "tests" / "fixtures" / "cpus"
AMD_RECORD = ROOT / "data" / "records" / "machines" / "amd-epyc-avx2"
NO_QEMU = shutil.which("qemu-x86_64") is None
QEMU_REASON = "needs qemu-user for an emulated CPU (`make qemu`, or apt-get install qemu-user)"


def _report(machine: str, name: str):  # noqa: ANN202 - LibraryReport
    return parse_report((CPUS / machine / name).read_text())


# --------------------------------------------------------------------------- the CPU probe


def test_probe_on_captured_amd_lscpu_gives_the_amd_records_cpu_type() -> None:
    """lscpu of the AVX2-only EPYC -> the very cpu_type its shipped bench and engine checks carry."""
    probe = probe_from_fields(parse_lscpu((CPUS / "amd-epyc-avx2" / "lscpu.txt").read_text()), arch="x86_64", cpus=2)
    bench = json.loads((AMD_RECORD / "bench.json").read_text())["meta"]
    checks = json.loads((AMD_RECORD / "engine_checks.json").read_text())
    assert probe["cpu_type"] == bench["cpu_type"] == checks["cpu_type"] == "x86_64|avx2|avx2,f16c,fma"
    assert (probe["cpu_model"], probe["cpu_vendor"], probe["isa"]) == ("AMD EPYC", "AuthenticAMD", "avx2")
    assert probe["cpu_flags"] == bench["cpu_flags"]


def test_probe_on_zen4_reads_avx512_vnni_bf16_and_no_amx() -> None:
    """The Zen 4 EPYC: AVX-512 level with VNNI and bf16 flags, and no AMX (an Intel-only extension)."""
    probe = probe_from_fields(parse_lscpu((CPUS / "amd-epyc-zen4" / "lscpu.txt").read_text()), arch="x86_64")
    assert probe["isa"] == "avx512"
    assert {"avx512_vnni", "avx512_bf16", "avx512f"} <= set(probe["cpu_flags"].split())
    assert "amx_tile" not in probe["cpu_flags"]


def test_lscpu_and_proc_cpuinfo_of_one_machine_give_one_cpu_type() -> None:
    """The two spellings of the same CPU (lscpu's and the kernel's) give the same probe."""
    from_lscpu = probe_from_fields(parse_lscpu((CPUS / "amd-epyc-zen4" / "lscpu.txt").read_text()), arch="x86_64")
    from_cpuinfo = probe_from_fields(parse_cpuinfo((CPUS / "amd-epyc-zen4" / "cpuinfo.txt").read_text()), arch="x86_64")
    assert from_lscpu == from_cpuinfo


def test_cpu_type_ignores_the_vendor() -> None:
    """Same flags, other vendor string: same cpu_type (the vendor is recorded, never compared)."""
    fields = parse_lscpu((CPUS / "amd-epyc-avx2" / "lscpu.txt").read_text())
    intel = probe_from_fields({**fields, "vendor_id": "GenuineIntel", "model name": "Xeon"}, arch="x86_64")
    amd = probe_from_fields(fields, arch="x86_64")
    assert intel["cpu_type"] == amd["cpu_type"] and intel["cpu_vendor"] != amd["cpu_vendor"]


def test_isa_caps_enter_the_cpu_type() -> None:
    """A capped run is its own CPU type (it runs other kernels than the native one)."""
    fields = parse_lscpu((CPUS / "amd-epyc-zen4" / "lscpu.txt").read_text())
    capped = probe_from_fields(fields, arch="x86_64", environ={"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert capped["cpu_type"].endswith("|caps:ONEDNN_MAX_CPU_ISA=AVX2")


# --------------------------------------------------------------------------- library reports


def test_amd_banner_names_no_isa_and_the_old_intel_only_check_fails_on_it() -> None:
    """What broke `make test` on AMD: MKL's banner there names no ISA; the parser says so."""
    text = (CPUS / "amd-epyc-avx2" / "isa_caps_avx2_output.txt").read_text()
    assert re.search(r"MKL_VERBOSE .*\(Intel\(R\) AVX2\) enabled processors", text) is None
    report = parse_report(text)
    assert report.mkl_banner is not None and report.mkl_isa is None and report.mkl_ran_sgemm
    assert any("names no ISA" in n for n in report.notes)


@pytest.mark.parametrize("machine", ["amd-epyc-avx2", "amd-epyc-zen4", "qemu-epyc", "qemu-haswell"])
def test_cap_check_passes_on_every_captured_cpu(machine: str) -> None:
    """The vendor-neutral check of the AVX2 caps passes on AMD (real, both kinds) and emulated AMD / Intel."""
    capped, native = _report(machine, "isa_caps_avx2_output.txt"), _report(machine, "no_caps_output.txt")
    problems, findings = cap_findings(capped, native)
    assert problems == [], problems
    assert capped.aten == "AVX2" and capped.onednn_isa == "AVX2" and "jit:avx2" in capped.onednn_kernels
    intel = machine == "qemu-haswell"
    assert (capped.mkl_isa == "AVX2") is intel
    assert any(("names its path" if intel else "names no ISA") in f for f in findings)


def test_amd_fixture_and_qemu_epyc_agree_on_what_the_libraries_report() -> None:
    """QEMU's EPYC model reproduces what the real AVX2-only EPYC printed, field by field."""
    real, emulated = _report("amd-epyc-avx2", "isa_caps_avx2_output.txt"), _report("qemu-epyc", "isa_caps_avx2_output.txt")
    for key in ("aten", "onednn_isa", "onednn_isa_text", "onednn_kernels", "mkl_isa", "mkl_ran_sgemm"):
        assert getattr(real, key) == getattr(emulated, key), key


def test_mkl_dispatch_follows_the_cap_on_intel_and_not_on_amd() -> None:
    """MKL's own dispatch index: SSE4.2 cap lowers it on (emulated) Intel, changes nothing on AMD."""
    haswell = [_report("qemu-haswell", f) for f in ("no_caps_output.txt", "isa_caps_avx2_output.txt", "isa_caps_sse_output.txt")]
    assert [r.mkl_dispatch for r in haswell] == [5, 5, 3] and all(r.mkl_intel_cpu for r in haswell)
    assert haswell[2].mkl_isa == "SSE42"
    epyc = [_report("qemu-epyc", f) for f in ("no_caps_output.txt", "isa_caps_avx2_output.txt", "isa_caps_sse_output.txt")]
    assert {r.mkl_dispatch for r in epyc} == {0} and not any(r.mkl_intel_cpu for r in epyc)
    assert epyc[2].onednn_isa == "SSE41" and epyc[2].aten == "DEFAULT"  # oneDNN and ATen still follow it


def test_cap_check_fails_when_a_library_ignores_the_cap() -> None:
    """The check can fail: each library's wrong answer is named."""
    capped, native = _report("qemu-haswell", "isa_caps_avx2_output.txt"), _report("qemu-haswell", "no_caps_output.txt")
    cases = {
        "ATen": replace(capped, aten="AVX512"),
        "oneDNN reports": replace(capped, onednn_isa="AVX512", onednn_isa_text="Intel AVX-512"),
        "no jit:avx2": replace(capped, onednn_kernels=("jit:avx512_core",)),
        "MKL's banner names AVX512": replace(capped, mkl_isa="AVX512"),
        "no SGEMM": replace(capped, mkl_ran_sgemm=False),
        "dispatch rose": replace(capped, mkl_dispatch=7),
    }
    for needle, bad in cases.items():
        problems, _ = cap_findings(bad, native)
        assert any(needle in p for p in problems), (needle, problems)
    amd, amd_native = _report("amd-epyc-zen4", "isa_caps_avx2_output.txt"), _report("amd-epyc-zen4", "no_caps_output.txt")
    problems, _ = cap_findings(replace(amd, mkl_dispatch=5), amd_native)
    assert any("dispatch changed" in p for p in problems)
    problems, _ = cap_findings(replace(amd, mkl_intel_cpu=True), amd_native)
    assert any("Intel path" in p for p in problems)


def test_parser_says_nothing_rather_than_guessing() -> None:
    """Output without verbose lines parses to None fields with notes, not an error."""
    report = parse_report("aten AVX2\n")
    assert report.mkl_banner is None and report.onednn_isa is None and report.mkl_dispatch is None
    problems, _ = cap_findings(report, report)
    assert any("no banner" in p for p in problems)


def test_no_vendor_strings_outside_the_report_parser() -> None:
    """No code or test decides on a vendor name or an Intel-only banner, but the one parser and this file."""
    allowed = {ROOT / "cosmic_utils" / "model" / "isa_report.py", Path(__file__).resolve()}
    pattern = re.compile(r"GenuineIntel|AuthenticAMD|enabled processors|Intel\\?\(R\\?\) AVX")
    offenders = [str(p.relative_to(ROOT)) for d in ("cosmic_utils", "tests", "lambda") for p in (ROOT / d).rglob("*.py")
                 if p.resolve() not in allowed and pattern.search(p.read_text(errors="replace"))]
    assert offenders == []


# --------------------------------------------------------------------------- under QEMU


@pytest.mark.skipif(NO_QEMU, reason=QEMU_REASON)
def test_cap_check_under_qemu_epyc_matches_the_real_amd_capture() -> None:
    """Rerun the probe as an AMD EPYC (CPUID vendor AuthenticAMD, AVX2): the check passes, and MKL
    reports what the real AVX2-only EPYC reported."""
    capped, _ = run_report("avx2", qemu_cpu="EPYC")
    native, _ = run_report("native", qemu_cpu="EPYC")
    problems, _ = cap_findings(capped, native)
    assert problems == [], problems
    assert capped.mkl_intel_cpu is False and capped.mkl_isa is None
    real = _report("amd-epyc-avx2", "isa_caps_avx2_output.txt")
    assert (capped.aten, capped.onednn_isa, capped.onednn_kernels) == (real.aten, real.onednn_isa, real.onednn_kernels)


@pytest.mark.skipif(NO_QEMU, reason=QEMU_REASON)
def test_cap_check_under_qemu_haswell_reads_the_intel_banner() -> None:
    """Rerun the probe as an Intel Haswell: MKL names AVX2 and its dispatch drops under the SSE cap."""
    capped, _ = run_report("avx2", qemu_cpu="Haswell")
    sse, _ = run_report("sse", qemu_cpu="Haswell")
    problems, _ = cap_findings(capped, capped)
    assert problems == [], problems
    assert capped.mkl_isa == "AVX2" and capped.mkl_intel_cpu is True
    assert sse.mkl_isa == "SSE42" and sse.mkl_dispatch is not None and capped.mkl_dispatch is not None
    assert sse.mkl_dispatch < capped.mkl_dispatch
