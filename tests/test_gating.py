"""The accuracy gate of reduced-precision engines (cosmic_utils.runtime.gating): the calibration
set ships in the artifact, a failing engine refuses to serve and says why, the pipeline falls back
to fp32 and records it, default_engine() never picks an inaccurate or slower engine, and every
record carries the CPU probe.

Failures are made on purpose with a zero tolerance (int8 never equals fp32 exactly) or a
perturbed reference, so these tests fail on every CPU if the gate stops gating.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmic_utils.inference.engines import create_engine, default_engine
from cosmic_utils.runtime import cpu, gating
from cosmic_utils.runtime.onnx_engine import create_onnx_engine


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, untrained_artifact_dir: Path) -> Path:
    """A private copy of the shared untrained artifact (the int8 graph is written next to it)."""
    out = tmp_path_factory.mktemp("gating") / "model"
    shutil.copytree(untrained_artifact_dir, out)
    return out


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    gating.clear_cache()


def test_artifact_ships_a_checksummed_calibration_set(artifact: Path) -> None:
    from cosmic_utils.runtime.artifact import ModelArtifact

    art = ModelArtifact.load(artifact)  # verifies every listed sha256, the calibration file's too
    assert art.files["calibration"]["path"] == "calibration.npz"
    cal = gating.load_calibration(artifact)
    assert cal is not None and len(cal.image) == gating.CALIBRATION_ROWS == len(cal.z_fp32) == len(cal.z_spec)
    with create_engine("onnx", artifact, threads=1) as eng:  # z_fp32 is the fp32 model's output
        z = eng.predict(cal.image[:16], cal.magnitude[:16])
    np.testing.assert_allclose(z, cal.z_fp32[:16], atol=1e-4)


def test_gate_refuses_an_inaccurate_engine(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gating, "MAX_ABS_DZ", 0.0)  # int8 never matches fp32 exactly: must fail
    with pytest.raises(gating.EngineAccuracyError) as info:
        create_engine("onnx-int8", artifact, threads=1)
    msg = str(info.value)
    assert "onnx-int8 refused" in msg and "max |z - z_fp32|" in msg and cpu.cpu_probe()["cpu_model"] in msg
    assert info.value.verdict["passed"] is False and info.value.cpu_type == cpu.cpu_type()
    eng = create_engine("onnx-int8", artifact, threads=1, gate=False)  # the bench may still measure it
    assert eng.gate is None
    eng.close()


def test_gate_passes_and_caches_per_cpu_type(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with create_engine("onnx-int8", artifact, threads=1, gate=False) as eng:
        first = gating.check_engine(eng, artifact)
        assert first is not None and first["cached"] is False and first["cpu_type"] == cpu.cpu_type()
        assert gating.check_engine(eng, artifact)["cached"] is True
        other = {**cpu.cpu_probe(), "cpu_type": "x86_64|avx2|avx2,fma"}
        monkeypatch.setattr(gating.cpu, "cpu_probe", lambda: other)
        assert gating.check_engine(eng, artifact)["cached"] is False  # another CPU type checks again


def test_perturbed_reference_fails(artifact: Path, tmp_path: Path) -> None:
    from cosmic_utils.runtime.artifact import ArtifactError, ModelArtifact

    bad = tmp_path / "model"
    shutil.copytree(artifact, bad)
    cal = gating.load_calibration(bad)
    assert cal is not None
    np.savez(bad / "calibration.npz", image=cal.image, magnitude=cal.magnitude, z_spec=cal.z_spec,
             z_fp32=cal.z_fp32 + 0.1)
    with pytest.raises(ArtifactError, match="checksum mismatch.*calibration"):  # tampered: refuses to judge
        gating.load_calibration(bad)
    art = ModelArtifact.load(bad, verify=False)
    art.add_file("calibration", "calibration.npz")
    art.save()
    with pytest.raises(gating.EngineAccuracyError, match="accuracy check failed"):
        create_engine("onnx-int8", bad, threads=1)


def test_artifact_without_calibration_refuses_reduced_serves_fp32(artifact: Path, tmp_path: Path) -> None:
    from cosmic_utils.runtime.artifact import ModelArtifact

    old = tmp_path / "old"
    shutil.copytree(artifact, old)
    art = ModelArtifact.load(old, verify=False)
    del art.files["calibration"]
    art.save()
    with pytest.raises(gating.EngineAccuracyError, match="no calibration set.*cosmic model export"):
        create_engine("onnx-int8", old, threads=1)
    eng = gating.create_engine_with_fallback("onnx-int8", old, threads=1, create=create_onnx_engine)
    assert eng.name == "onnx" and eng.requested_name == "onnx-int8" and "no calibration set" in eng.fallback_reason
    assert gating.engine_fields(eng, "onnx-int8") == {"engine_requested": "onnx-int8", "engine": "onnx",
                                                      "engine_fallback_reason": eng.fallback_reason}
    eng.close()
    with create_engine("onnx", old, threads=1) as fp32:
        assert fp32.gate is None and fp32.precision == "fp32"


def test_rule_rejects_non_finite_and_judges_fp32_strictly() -> None:
    ref = np.linspace(0.05, 0.3, 50)
    spec = ref + np.random.default_rng(0).normal(0, 0.02, 50)
    bad = ref.copy()
    bad[3] = np.nan
    assert gating.compare_to_fp32("onnx-int8", "int8", bad, ref, spec)["passed"] is False
    assert gating.compare_to_fp32("onnx-int8", "int8", ref + 1e-3, ref, spec)["passed"] is True
    assert gating.compare_to_fp32("onnx", "fp32", ref + 2e-3, ref, spec)["passed"] is False
    far = ref.copy()
    far[0] += 0.2  # one galaxy moved by 0.2: sigma_NMAD barely changes, the max rule catches it
    verdict = gating.compare_to_fp32("onnx-int8", "int8", far, ref, spec)
    assert verdict["passed"] is False and abs(verdict["nmad_delta_rel"]) <= gating.NMAD_TOLERANCE_REL


def test_bf16_is_refused_where_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gating, "native_bf16", lambda probe=None: False)
    assert "emulated" in (gating.speed_refusal("torch-bf16", "bf16") or "")
    assert gating.speed_refusal("onnx-int8", "int8") is None
    monkeypatch.undo()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # a cap below the bf16 ISAs emulates bf16 everywhere
    assert gating.native_bf16() is False


def test_pipeline_falls_back_to_fp32_and_records_it(artifact: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmic_utils.runtime.items import RunLayout
    from cosmic_utils.runtime.partition import encode_partition
    from cosmic_utils.runtime.steps import inference as step_inference
    from cosmic_utils.runtime.steps import summarize as step_summarize

    data, results = tmp_path / "data", tmp_path / "results"
    data.mkdir()
    cal = gating.load_calibration(artifact)
    assert cal is not None
    (data / "part-00000.cpart").write_bytes(encode_partition(cal.image[:8], cal.magnitude[:8],
                                                             cal.z_spec[:8].astype(np.float32), {}))
    monkeypatch.setattr(gating, "MAX_ABS_DZ", 0.0)  # onnx-int8 fails its check on any CPU
    monkeypatch.setattr(step_inference, "_ENGINES", {})
    request = {"run_id": "gate-test", "data": str(data), "model": str(artifact), "results": str(results),
               "engine": "onnx-int8", "batch_size": 4, "max_concurrency": 1, "memory_mb": 2048}
    item = {"worker_id": 0, "partitions": [{"partition_id": "part-00000", "key": "part-00000.cpart",
                                            "samples": None, "bytes": None, "sha256": None}]}
    assert step_inference.inference_step({"item": item, "request": request}) == {"ok": 1, "failed": 0}
    rec = json.loads((results / RunLayout("gate-test").record("part-00000")).read_text())
    assert rec["engine"] == "onnx" and rec["engine_requested"] == "onnx-int8"
    assert "accuracy check failed" in rec["engine_fallback_reason"] and rec["cpu_model"] == cpu.cpu_probe()["cpu_model"]
    assert rec["isa"] == cpu.cpu_probe()["isa"]
    (results / RunLayout("gate-test").partitions).write_text(json.dumps(item["partitions"]))
    step_summarize.summarize_step({"state": {"request": request}})
    summary = json.loads((results / RunLayout("gate-test").summary).read_text())
    assert summary["engine"]["used"] == {"onnx": 1} and summary["engine"]["requested"] == "onnx-int8"
    assert "accuracy check failed" in summary["engine"]["fallback_reasons"][0]


def _bench(tmp_path: Path, rows: list[dict[str, Any]], cpu_type: str | None = None) -> Path:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"meta": {"cpu_type": cpu_type or cpu.cpu_type()}, "rows": rows}))
    return path


def _checks(tmp_path: Path, checks: list[dict[str, Any]], cpu_type: str | None = None) -> Path:
    path = tmp_path / "checks.json"
    path.write_text(json.dumps({"cpu_type": cpu_type or cpu.cpu_type(), "checks": checks}))
    return path


def test_default_engine_only_accurate_and_faster_on_this_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gating, "native_bf16", lambda probe=None: True)
    rows = [{"engine": "torch", "batch_size": 256, "samples_per_s": 700.0},
            {"engine": "onnx", "batch_size": 256, "samples_per_s": 600.0},
            {"engine": "onnx-int8", "batch_size": 256, "samples_per_s": 900.0},
            {"engine": "torch-bf16", "batch_size": 256, "samples_per_s": 650.0}]
    passed = [{"engine": "onnx-int8", "passed": True, "trained_model": True},
              {"engine": "torch-bf16", "passed": True, "trained_model": True}]
    bench = _bench(tmp_path, rows)
    assert default_engine(checks_path=_checks(tmp_path, passed), bench_path=bench) == "onnx-int8"
    # the same check made on another CPU type does not count here
    assert default_engine(checks_path=_checks(tmp_path, passed, "x86_64|avx2|avx2,fma"), bench_path=bench) == "torch"
    # a failed check never counts, however fast
    failed = [{"engine": "onnx-int8", "passed": False, "trained_model": True}]
    assert default_engine(checks_path=_checks(tmp_path, failed), bench_path=bench) == "torch"
    # speeds measured on another CPU type say nothing about this one
    assert default_engine(checks_path=_checks(tmp_path, passed), bench_path=_bench(tmp_path, rows, "arm64|arm64|")) \
        in ("torch", "onnx")
    # accurate but slower than its fp32 counterpart: not chosen (Lambda candidates: onnx only)
    slow = [dict(r, samples_per_s=500.0) if r["engine"] == "onnx-int8" else r for r in rows]
    assert default_engine(checks_path=_checks(tmp_path, passed), bench_path=_bench(tmp_path, slow),
                          candidates=("onnx", "onnx-int8")) == "onnx"
    # bf16 without native support is never a default, even with a passed check and a fast row
    monkeypatch.setattr(gating, "native_bf16", lambda probe=None: False)
    fast_bf16 = [dict(r, samples_per_s=5000.0) if r["engine"] == "torch-bf16" else r for r in rows]
    assert default_engine(checks_path=_checks(tmp_path, passed), bench_path=_bench(tmp_path, fast_bf16)) == "onnx-int8"


def test_records_carry_the_cpu_probe() -> None:
    from cosmic_utils.inference.measure import RECORD_COLUMNS, RunMeasurement, machine_info

    info = machine_info()
    row = RunMeasurement(engine="onnx", precision="fp32", batch_size=8, threads=1, samples=8, wall_s=1.0).record("r", info)
    for key in ("cpu_model", "isa", "cpu_flags", "isa_caps", "cpu_type"):
        assert key in RECORD_COLUMNS and row[key] == cpu.cpu_probe()[key]


def test_bench_summary_verdicts_and_lambda_choice() -> None:
    from cosmic_utils.inference.bench import format_table, summarize

    def row(engine: str, precision: str, sps: float, **kw: Any) -> dict[str, Any]:
        return {"engine": engine, "precision": precision, "batch_size": 256, "samples_per_s": sps,
                "ratio_vs_published_loop": sps / 100, "gflops": 1.0, "peak_fraction": 0.1, "batch_p50_ms": 1.0,
                "nmad_delta_rel": 0.0, "max_abs_dz": 1e-3, "check_passed": True, **kw}

    rows = [row("published-loop", "fp32", 100.0), row("torch", "fp32", 300.0), row("onnx", "fp32", 200.0),
            row("onnx-int8", "int8", 400.0, calibration_passed=False, nmad_delta_rel=0.9, max_abs_dz=0.14,
                check_passed=False),
            row("torch-int8", "int8", 250.0, calibration_passed=True)]
    checks = [{"engine": "onnx-int8", "rows": 256, "nmad_delta_rel": 0.9, "sigma_nmad": 0.02, "sigma_nmad_fp32": 0.01,
               "max_abs_dz": 0.14, "calibration": {"rows": 256, "nmad_delta_rel": 0.9, "max_abs_dz": 0.14,
                                                    "passed": False}},
              {"engine": "torch-int8", "calibration": {"rows": 256, "nmad_delta_rel": 0.0, "max_abs_dz": 1e-3,
                                                       "passed": True}}]
    doc = {"meta": {"trained_model": True, "cpu_type": cpu.cpu_type(), "cpu_model": "X", "isa": "avx2",
                    "matmul_peak_gflops": 1.0, "threads": 2, "flops_per_sample": 2e8}, "rows": rows, "checks": checks}
    doc["summary"] = summarize(doc)
    s = doc["summary"]
    assert "best_reduced" not in s  # int8 onnx inaccurate; torch-int8 accurate but slower than torch
    assert s["engines"]["onnx-int8"]["accurate"] is False and s["engines"]["torch-int8"]["faster_than_fp32"] is False
    assert s["lambda_engine"]["engine"] == "onnx" and "refused" in s["lambda_engine"]["why"]
    text = format_table(doc)
    assert "accurate NO" in text and "Lambda (ONNX only) on this CPU: onnx" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-user (`make qemu`)")
@pytest.mark.parametrize("qemu_cpu", ["Haswell", "EPYC"])
def test_int8_is_accurate_on_an_avx2_only_cpu_under_qemu(artifact: Path, tmp_path: Path, qemu_cpu: str) -> None:
    """The default int8 graph on ONNX Runtime's AVX2 (no VNNI) kernels, via QEMU's Haswell (Intel
    vendor) and EPYC (AMD vendor) models (64 calibration rows: QEMU is about 100x slower; several
    minutes on 2 cores)."""
    from cosmic_utils.inference.isa_check import main
    from cosmic_utils.runtime.onnx_engine import INT8_VARIANT

    out = tmp_path / "isa.json"
    assert main(["--model", str(artifact), "--variants", INT8_VARIANT, "--qemu-cpu", qemu_cpu, "--rows", "64",
                 "--json", str(out)]) == 0
    emulated = [r for r in json.loads(out.read_text()) if r["cpu"].startswith("qemu")]
    assert len(emulated) == 1 and emulated[0]["cpuid"]["avx2"] and not emulated[0]["cpuid"]["avx512_vnni"]
    assert not emulated[0]["cpuid"]["avx_vnni"] and emulated[0]["passed"], emulated[0]
