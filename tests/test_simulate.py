"""Scale simulator: scheduling, memory scaling, validation against the published runs, projection."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from cosmic_utils import config
from cosmic_utils.analysis import simulate


def test_partition_counts_published_and_project_units() -> None:
    assert simulate.partitions_for(1.0, 25, published_units=True) == 41
    assert simulate.partitions_for(12.6, 25, published_units=True) == 517
    assert simulate.partitions_for(12.6, 100, published_units=True) == 130
    assert simulate.partitions_for(1.0, 25) == -(-config.samples_for_gb(1.0) // config.samples_per_partition(25))


def test_dispatch_and_schedule() -> None:
    t = simulate.dispatch_times(100, 10.0, 0.5)
    assert t[0] == 0 and np.all(np.diff(t) > 0)
    assert simulate.dispatch_times(11, 10.0, 0.0)[-1] == pytest.approx(1.0)
    # one slot: items run back to back, the first one cold
    orch = simulate.Orchestration(account_concurrency=1, burst=1)
    last, peak = simulate.schedule(np.full(5, 2.0), 0.5, orch, np.zeros(5))
    assert last == pytest.approx(10.5) and peak == 1
    # enough slots: the slowest dispatched item decides
    orch = simulate.Orchestration(account_concurrency=1000)
    last, _ = simulate.schedule(np.full(5, 2.0), 0.5, orch, np.arange(5.0))
    assert last == pytest.approx(6.5)
    # Lambda scaling rate: slots above the burst open 10 s later
    orch = simulate.Orchestration(account_concurrency=4, burst=2, scale_per_10s=2)
    last, _ = simulate.schedule(np.full(4, 1.0), 0.0, orch, np.zeros(4))
    assert last == pytest.approx(2.0)  # 2 slots at t=0 do 4 items in 2 s before the others open


def test_simulate_run_is_seeded_and_memory_matters() -> None:
    a = simulate.simulate_run(10, 25, 3008, seed=1)
    b = simulate.simulate_run(10, 25, 3008, seed=1)
    assert a == b
    small = simulate.simulate_run(10, 25, 1769, seed=1)
    big = simulate.simulate_run(10, 25, 10240, seed=1)
    assert big.mean_duration_s < small.mean_duration_s
    assert 0.5 < simulate.cpu_speed(885) < 0.51  # half a vCPU
    assert simulate.cpu_speed(10240) > simulate.cpu_speed(5307) > 1.0
    # account concurrency bounds the wall clock at scale
    orch = simulate.Orchestration(account_concurrency=100)
    slow = simulate.simulate_run(100, 25, orch=orch)
    fast = simulate.simulate_run(100, 25, orch=replace(orch, account_concurrency=5000))
    assert slow.wall_s > fast.wall_s
    assert slow.cost_usd == pytest.approx(fast.cost_usd, rel=0.05)


def test_published_total_cpu_time_is_a_per_worker_mean() -> None:
    """total_bits / throughput_bps equals total_cpu_time per run: it is NOT a sum over workers."""
    with open(config.REFERENCE_DIR / "cai" / "result_stats.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["run"] != "mean" and float(r["data (GB)"]) <= 12.6]
    ratios = [float(r["total_bits"]) / float(r["throughput_bps"]) / float(r["total_cpu_time (seconds)"])
              for r in rows]
    assert 0.9 < float(np.median(ratios)) < 1.2


def test_validation_against_published_runs(tmp_path) -> None:
    table, summary = simulate.validate()
    assert summary["rows"] == len(table) == 104
    assert summary["held_out_rows"] > 40 and summary["train_rows"] > 40
    assert summary["median_abs_error_held_out"] <= 0.20
    assert summary["median_abs_error"] <= 0.20
    assert {t["split"] for t in table} == {"train", "held_out"}


def test_stored_validation_matches_code() -> None:
    """data/records/simulator_validation.json was produced by this code (rerun --validate --save)."""
    stored = json.loads((config.RECORDS_DIR / "simulator_validation.json").read_text())
    fitted = simulate.load_fitted()
    assert fitted is not None
    timing, orch = fitted
    rows = simulate.published_runs()
    train = [r for r in rows if simulate.is_training_row(r)]
    res = simulate.fit(train, seed=stored["seed"])
    assert res.orch == orch and res.timing == timing


def test_right_sizing_uses_the_one_set_of_memory_sizes() -> None:
    from cosmic_utils.analysis import lambda_model

    assert simulate.MEMORY_SIZES_MB is lambda_model.MEMORY_SIZES_MB  # one set, defined once
    easy = simulate.right_size_memory(1, 25, deadline_s=1e6)
    assert easy["meets_deadline"] and easy["memory_mb"] == min(simulate.MEMORY_SIZES_MB)
    hard = simulate.right_size_memory(1, 25, deadline_s=0.1)
    assert not hard["meets_deadline"]


def test_timing_from_records() -> None:
    recs = [{"data_bytes": 25 * 2**20, "inference_s": 5.0, "load_s": 0.5, "upload_s": 0.1, "memory_mb": 3008},
            {"data_bytes": 25 * 2**20, "inference_s": 6.0, "load_s": 0.5, "upload_s": 0.1, "memory_mb": 3008}]
    t = simulate.PartitionTiming.from_records(recs)
    assert t.inference_s_per_mb == pytest.approx(5.5 / 25)
    assert t.reference_memory_mb == 3008 and t.startup_s == pytest.approx(0.6)
    assert sorted(t.inference_samples_s_per_mb) == pytest.approx([5.0 / 25, 6.0 / 25])
    # bootstrap: at the reference memory every simulated inference time is one of the measured ones
    orch = simulate.Orchestration()
    fixed = replace(t, startup_s=0.0, s3_mb_s=1e12, cold_init_s=0.0)
    run = simulate.simulate_run(1.0, 25, 3008, timing=fixed, orch=orch, seed=3)
    assert 5.0 <= run.mean_duration_s <= 6.0
    with pytest.raises(ValueError):
        simulate.PartitionTiming.from_records([{"data_bytes": 0}])


def test_simulate_cli(capsys) -> None:
    from cosmic_utils import cli

    assert cli.main(["simulate", "--gb", "1", "50", "--partition-mb", "25", "--memory-mb", "3008",
                     "--deadline-s", "600"]) == 0
    out = capsys.readouterr().out
    assert "simulated" in out and "deadline" in out
    assert cli.main(["simulate", "--project"]) == 0
    out = capsys.readouterr().out
    assert "PROJECTION" in out and "UNEXPLAINED" in out and "AMD EPYC" in out
