"""Projection of the Lambda engine from its measured 1-thread speed (cosmic simulate --project --json)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils import config
from cosmic_utils.analysis import cost
from cosmic_utils.analysis import projection as lp


def _row(engine: str, threads: int, sps: float, batch: int = 256) -> dict[str, Any]:
    return {"engine": engine, "precision": "int8" if "int8" in engine else "fp32", "batch_size": batch,
            "threads": threads, "samples_per_s": sps, "check_passed": True, "cpu_model": "Test CPU 9000",
            "cpu_type": "x86_64|avx2|avx2,fma"}


def _bench(tmp_path: Path, rows: list[dict[str, Any]], name: str = "bench.json",
           lambda_engine: str = "onnx-int8") -> Path:
    doc = {"meta": {"run_id": "bench-test-1", "cpu_model": "Test CPU 9000", "model_load_s": {"onnx-int8": 0.4,
                                                                                            "onnx": 0.2}},
           "rows": rows, "summary": {"batch_size": 256, "lambda_engine": {"engine": lambda_engine, "why": "test"}}}
    p = tmp_path / name
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


ROWS = [_row("onnx-int8", 1, 300.0), _row("onnx-int8", 2, 480.0), _row("onnx", 1, 200.0),
        _row("onnx-int8", 2, 470.0, batch=512), _row("torch-bf16", 1, 5000.0)]


def test_uses_the_threads1_row_and_the_billed_arithmetic(tmp_path: Path) -> None:
    rec = lp.project(_bench(tmp_path, ROWS), memory_mbs=(1769, 3008, 10240), wall_partitions_mb=())
    e = rec["inputs"]["engine"]
    assert (e["engine"], e["samples_per_s_1t"], e["threads_used"], e["two_thread_ratio"]) == ("onnx-int8", 300.0, 1, 1.6)
    first = rec["memory"][0]
    assert first["kind"] == "projected" and first["cpu_model"] == "Test CPU 9000" and first["bench_run_id"] == "bench-test-1"
    # usd_per_gb at 1,769 MB (1 vCPU) from the formula: ceil(ms) x GB-s price + request, per GB of samples
    samples = config.samples_per_partition(25)
    phases = lp.published_phases()
    # the one model's point: compute + download (published) + decode per MB and upload (local backend records)
    dur_ms = (samples / 300.0 + phases.s3_s_per_mb * 25 + phases.decode_s_per_mb * 25 + phases.upload_s) * 1000.0
    price = cost.load_prices()["lambda"]
    usd = math.ceil(dur_ms) / 1000.0 * 1769 / 1024 * price["gb_second_usd"]["x86_64"] + price["request_usd_per_million"] / 1e6
    assert first["usd_per_gb"] == pytest.approx(usd / (samples * config.SAMPLE_BYTES / 1e9), rel=1e-12)
    # conservative beyond 2 vCPU: 10,240 MB runs no faster than the measured 2-thread rate; Amdahl is the bound
    big = rec["memory"][-1]
    assert big["inference_s"] == pytest.approx(samples / 480.0)
    assert big["duration_s_amdahl"] < big["duration_s"]
    # the range: low <= point <= high everywhere; the high bound keeps the published REPORT duration's
    # unexplained part, time-sliced below 1 vCPU
    for m in rec["memory"]:
        assert m["usd_per_gb_low"] <= m["usd_per_gb"] < m["usd_per_gb_high"]
        assert m["residual_s_high"] == pytest.approx(phases.residual_s_per_mb_hi * 25 / min(1.0, m["vcpu"]))
    assert rec["best_memory_mb"] == 1769.0 and first["best_memory"]
    assert first["arm64"]["usd_per_gb"] == "not measured"

    # the 1-thread row drives the result: double it, the inference time halves
    faster = [dict(r, samples_per_s=600.0) if (r["engine"], r["threads"]) == ("onnx-int8", 1) else r for r in ROWS]
    rec2 = lp.project(_bench(tmp_path, faster, "b2.json"), memory_mbs=(1769,), wall_partitions_mb=())
    assert rec2["memory"][0]["inference_s"] == pytest.approx(first["inference_s"] / 2)
    assert rec2["memory"][0]["usd_per_gb"] < first["usd_per_gb"]


def test_refuses_without_a_threads1_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    only2 = [r for r in ROWS if r["threads"] == 2]
    path = _bench(tmp_path, only2)
    with pytest.raises(lp.ProjectionRefused, match="no threads=1 row"):
        lp.project(path)
    from cosmic_utils import cli

    assert cli.main(["simulate", "--project", "--bench", str(path)]) == 1
    assert "threads=1" in capsys.readouterr().err
    rec = lp.project(path, allow_two_thread=True, memory_mbs=(1769,), wall_partitions_mb=())
    assert "FALLBACK" in rec["label"] and rec["inputs"]["engine"]["threads_used"] == 2


def test_cli_json_has_the_required_keys_and_10mb_uses_the_distributed_map(tmp_path: Path) -> None:
    from cosmic_utils import cli

    out = tmp_path / "proj.json"
    assert cli.main(["simulate", "--project", "--bench", str(_bench(tmp_path, ROWS)), "--json", str(out)]) == 0
    rec = json.loads(out.read_text(encoding="utf-8"))
    assert rec["kind"] == "projected" and rec["label"] == "projected from Test CPU 9000 bench, 1 thread"
    assert [m["memory_mb"] for m in rec["memory"]] == [float(m) for m in lp.MEMORY_SIZES_MB]
    for m in rec["memory"]:
        assert {"memory_mb", "vcpu", "duration_s", "usd_per_gb", "engine", "cpu_model", "cpu_type",
                "bench_run_id", "kind"} <= set(m)
    assert rec["best_memory_mb"] in [m["memory_mb"] for m in rec["memory"]]
    assert {"engine", "scaling", "phases", "prices", "orchestration"} <= set(rec["inputs"])
    walls = {(w["memory_mb"], w["partition_mb"]): w for w in rec["wall_clock_12_6gb"]}
    w10 = walls[(rec["best_memory_mb"], 10.0)]
    assert w10["partitions"] == 1291 and w10["map"]["mode"] == "DISTRIBUTED"
    assert w10["map"]["queued"] and w10["map"]["slots"] == 1000 and w10["max_concurrency_reached"] == 1000
    w25 = walls[(rec["best_memory_mb"], 25.0)]
    assert w25["partitions"] == 517 and not w25["map"]["queued"]
    assert rec["targets"]["published_wall_12_6gb_25mb_median_s"] > 0
    assert rec["published"]["cosmic_ai"]["usd_per_gb"] > rec["best"]["usd_per_gb"]


def test_figure_draws_from_the_record_and_is_registered(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosmic_utils.analysis import plots

    draw = plots.FIGURES["lambda_engine_projection"]
    rec = lp.project(_bench(tmp_path, ROWS), memory_mbs=(1769, 3008, 10240))
    fig = draw(None, record=rec)
    ax, bx = fig.axes
    assert ax.get_yscale() == "log" and not ax.patches  # no bars on the log axis
    # projected 25 MB, 10 MB (one partition per invocation), the fastest grid configuration of each, published 25 MB
    assert bx.get_yscale() == "linear" and len(bx.patches) == 5
    assert sum("fastest" in t.get_text() for t in bx.get_xticklabels()) == 2
    assert all(a.get_xlabel() or a is bx for a in fig.axes) and all(a.get_ylabel() for a in fig.axes)
    assert "1 thread" in " ".join(t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)
    assert draw(None, record={}) is None


def test_fastest_configuration_groups_partitions_and_is_no_slower(tmp_path: Path) -> None:
    rec = lp.project(_bench(tmp_path, ROWS), memory_mbs=(1769, 3008), per_invocation_grid=(1, 2, 4, 8))
    assert {"wall_clock_12_6gb_fastest", "targets"} <= set(rec)
    t = rec["targets"]
    assert isinstance(t["wall_met_any"], bool) and {"wall_met_fixed", "wall_best_found", "wall_met_by"} <= set(t)
    assert set(t["wall_met"]) == set(t["wall_s_fastest"]) == {"25MB", "10MB"}
    fixed = {w["partition_mb"]: w for w in rec["wall_clock_12_6gb"] if w["memory_mb"] == rec["best_memory_mb"]}
    for x in rec["wall_clock_12_6gb_fastest"]:
        f = x["fastest"]
        assert {"config", "wall_s", "usd_per_gb", "items", "per_invocation", "world_size", "meets_target"} <= set(f)
        assert f["wall_s"] <= fixed[x["partition_mb"]]["wall_s"] + 1e-9
        assert t["wall_met"][f"{x['partition_mb']:g}MB"] == f["meets_target"]
        assert t["wall_met_any"] == any(y["fastest"]["meets_target"] for y in rec["wall_clock_12_6gb_fastest"])
        # the 2-vCPU memory (2 x 1,769 MB) is searched besides the table's sizes
        assert {r["memory_mb"] for r in x["grid"]} == {1769.0, 3008.0, 3538.0}
        # more partitions per invocation: fewer items dispatched, each invocation longer
        at = {r["per_invocation"]: r for r in x["grid"] if r["memory_mb"] == 1769.0}
        ks = sorted(at)
        assert [at[k]["items"] for k in ks] == sorted((at[k]["items"] for k in ks), reverse=True)
        assert at[ks[0]]["items"] > at[ks[-1]]["items"]
        assert at[ks[-1]]["max_invocation_s"] > at[ks[0]]["max_invocation_s"]
        # world_size=1 partition per invocation is exactly the fixed row
        assert at[1]["wall_s"] == pytest.approx(fixed[x["partition_mb"]]["wall_s"])


def test_invocation_duration_overlaps_downloads_with_compute() -> None:
    import numpy as np

    c = np.array([1.0, 2.0, 0.1, 3.0])
    # one item of four: first download, then max(compute, next download) per step, then the last compute
    assert lp.invocation_durations(c, 0.5, 1)[0] == pytest.approx(0.5 + 1.0 + 2.0 + 0.5 + 3.0)
    # one partition per item: download + compute each
    assert lp.invocation_durations(c, 0.5, None).tolist() == pytest.approx((c + 0.5).tolist())
    # grouped as Init groups them (split_even): 4 partitions over 3 items -> 2, 1, 1
    assert lp.invocation_durations(c, 0.5, 3).tolist() == pytest.approx([0.5 + 1.0 + 2.0, 0.5 + 0.1, 0.5 + 3.0])
