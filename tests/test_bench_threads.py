"""``cosmic bench --threads 1 2``: the plan per thread count, the budget guard, the summary per
thread count, and (tiny, untrained) one run that really applies 1 and 2 threads. No timings asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.inference.bench import (
    BenchConfig,
    apply_budget,
    batch_plan,
    estimate_speed_s,
    format_table,
    measured_at,
    run_bench,
    summarize,
    thread_counts,
)


def test_plan_per_thread_count_and_compiled_engines_at_256_only() -> None:
    assert thread_counts([1, 2, 2]) == [2, 1] and thread_counts(1) == [1]
    cfg = BenchConfig(batch_sizes=(64, 256, 512))
    assert batch_plan(cfg, [2, 1]) == {2: [64, 256, 512], 1: [256]}
    cfg.batch_sizes_by_threads = {1: (64, 256)}
    assert batch_plan(cfg, [2, 1]) == {2: [64, 256, 512], 1: [64, 256]}
    assert batch_plan(BenchConfig(batch_sizes=(8,)), [2, 1]) == {2: [8], 1: [8]}
    assert not measured_at("torch-compile", 64, cfg) and measured_at("torch-compile", 256, cfg)
    assert measured_at("onnx", 64, cfg) and measured_at("torch-compile", 64, BenchConfig(compile_batch_sizes=()))


def test_budget_guard_trims_until_the_estimate_fits() -> None:
    cfg = BenchConfig(batch_sizes=(64, 256, 512), samples=512, repeats=3)
    plan = batch_plan(cfg, [2, 1])
    rates = {"torch": 100.0, "onnx": 100.0, "torch-eager": 50.0}

    def est(p: Any) -> dict[int, float]:
        return estimate_speed_s(p, rates, 2, cfg, reload_s=5.0)

    full = sum(est(plan).values())
    assert est(plan)[1] > est({2: [], 1: [256]})[1] - 1e-9  # 1 thread charged the reload
    assert apply_budget(plan, est, full + 1, cfg) == [] and cfg.repeats == 3
    trimmed = apply_budget(plan, est, 0.6 * full, cfg)
    assert trimmed and trimmed[0] == "repeats 3 -> 2"
    assert 256 in plan[2] and plan[1] == [256] and sum(est(plan).values()) <= 0.6 * full or cfg.repeats == 1
    apply_budget(plan, est, 1.0, cfg)  # impossible budget: 256 at every thread count stays
    assert plan == {2: [256], 1: [256]} and cfg.repeats == 1


def _row(engine: str, precision: str, sps: float, threads: int, pub: float, **kw: Any) -> dict[str, Any]:
    return {"engine": engine, "precision": precision, "batch_size": 256, "threads": threads, "samples_per_s": sps,
            "ratio_vs_published_loop": sps / pub, "gflops": 1.0, "peak_fraction": 0.1, "batch_p50_ms": 1.0,
            "nmad_delta_rel": 0.0, "max_abs_dz": 1e-3, "check_passed": True, "calibration_passed": True, **kw}


def test_summary_by_threads_and_lambda_choice_at_one_thread() -> None:
    rows = [_row("published-loop", "fp32", 200.0, 2, 200.0), _row("onnx", "fp32", 500.0, 2, 200.0),
            _row("onnx-int8", "int8", 450.0, 2, 200.0),  # slower than onnx at 2 threads
            _row("published-loop", "fp32", 100.0, 1, 100.0), _row("onnx", "fp32", 210.0, 1, 100.0),
            _row("onnx-int8", "int8", 320.0, 1, 100.0)]  # faster than onnx at 1 thread
    checks = [{"engine": "onnx-int8", "calibration": {"rows": 256, "nmad_delta_rel": 0.0, "max_abs_dz": 1e-3,
                                                      "passed": True}}]
    doc = {"meta": {"trained_model": True, "cpu_type": "x", "cpu_model": "X", "isa": "avx2", "threads": 2,
                    "matmul_peak_gflops": 1.0, "flops_per_sample": 2e8}, "rows": rows, "checks": checks}
    doc["summary"] = s = summarize(doc)
    one, two = s["by_threads"]["1"], s["by_threads"]["2"]
    assert two["lambda_engine"]["engine"] == "onnx" and one["lambda_engine"]["engine"] == "onnx-int8"
    assert one["lambda_engine"]["samples_per_s"] == 320.0 and one["lambda_engine"]["ratio_vs_published_loop"] == 3.2
    assert one["lambda_fp32_ratio_target_2x"] is True and one["lambda_reduced_ratio_target_3x"] is True
    assert two["lambda_reduced_ratio_target_3x"] is False and two["best_fp32"]["engine"] == "onnx"
    assert s["lambda_engine"]["engine"] == "onnx-int8" and s["lambda_engine"]["threads"] == 1
    assert s["threads"] == 2 and s["best_fp32"]["samples_per_s"] == 500.0  # old keys: the largest count
    text = format_table(doc)
    assert "threads=1 (measured" in text and "threads=2 (measured" in text and "decided at threads=1" in text


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, untrained_artifact_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("bench") / "model"
    shutil.copytree(untrained_artifact_dir, out)
    return out


@pytest.mark.slow  # ~30 s on 2 shared cores (two published-loop children) + the untrained artifact
def test_bench_runs_each_thread_count_with_that_many_threads(artifact: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmic_utils.inference import measure

    monkeypatch.setattr(measure, "LOCAL_RUNS_DIR", tmp_path / "runs" / "local")
    cfg = BenchConfig(model_dir=artifact, engines=("torch", "onnx"), batch_sizes=(8,), samples=16, repeats=1,
                      threads=(1, 2), check_rows=24, json_out=tmp_path / "bench.json", run_id="bench-threads")
    doc = run_bench(cfg)
    rows = doc["rows"]
    assert {(r["engine"], r["threads"]) for r in rows} == {(e, t) for e in ("published-loop", "torch", "onnx")
                                                           for t in (1, 2)}
    for r in rows:  # the thread count really applied: ORT session options / torch inside predict / the child
        assert r["threads_observed"] == r["threads"], r
        for key in ("engine", "batch_size", "threads", "samples_per_s", "ratio_vs_published_loop", "check_passed",
                    "cpu_model", "cpu_type"):
            assert key in r
    pub = {r["threads"]: r["samples_per_s"] for r in rows if r["engine"] == "published-loop"}
    for r in rows:
        assert r["ratio_vs_published_loop"] == pytest.approx(r["samples_per_s"] / pub[r["threads"]])
    assert len(doc["checks"]) == 3  # once per engine (torch-eager, torch, onnx), not per thread count
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert set(saved["summary"]["by_threads"]) == {"1", "2"}
    assert saved["summary"]["lambda_engine"]["threads"] == 1
    assert "total_s" in saved["meta"]["phases_s"] and saved["meta"]["estimated_s"]
    text = format_table(doc)
    assert "threads=1 (measured" in text and "threads=2 (measured" in text and "phases (measured" in text
