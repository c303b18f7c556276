"""Shipping measured records into data/records/ copies them unchanged and the loader finds them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cosmic_utils import config
from cosmic_utils.analysis import records


def test_ship_records_copies_runs_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, recs = tmp_path / "runs", tmp_path / "records"
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", runs / "sweeps")
    monkeypatch.setattr(config, "RECORDS_DIR", recs)
    (runs / "bench").mkdir(parents=True)
    (runs / "bench" / "bench.json").write_text(json.dumps([{"engine": "onnx", "batch_size": 256}]))
    local = runs / "local" / "r1"
    local.mkdir(parents=True)
    pd.DataFrame([{"kind": "local_cpu", "engine": "onnx", "samples_per_s": 612.5}]).to_csv(local / "records.csv", index=False)
    run = runs / "demo-1"
    run.mkdir()
    pd.DataFrame([{"partition_id": "p0", "status": "ok", "samples": 3}]).to_csv(run / "records.csv", index=False)
    (run / "summary.json").write_text(json.dumps({"run_id": "demo-1", "partitions_ok": 1}))
    combo = runs / "sweeps" / "batch_size" / "batch_size-32"
    combo.mkdir(parents=True)
    (combo / "_done.json").write_text(json.dumps({"parameters": {"batch_size": 32}}))
    (combo / "records.csv").write_text("partition_id,status\np0,ok\n")

    written = records.ship_records(runs_dir=runs, records_dir=recs)

    names = {p.relative_to(recs).as_posix() for p in written}
    assert {"bench.json", "local_cpu.csv", "pipeline_demo-1.csv", "pipeline_demo-1_summary.json",
            "sweeps/batch_size/batch_size-32/records.csv"} <= names
    assert (recs / "bench.json").read_bytes() == (runs / "bench" / "bench.json").read_bytes()
    assert pd.read_csv(recs / "local_cpu.csv")["samples_per_s"].tolist() == [612.5]
    # the shipped sweep is found even when runs/sweeps is gone
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", tmp_path / "nothing")
    sweep_recs, _ = records.load_sweeps()
    assert sweep_recs["param_batch_size"].tolist() == [32]


def test_ship_records_ships_the_newest_predictions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, recs = tmp_path / "runs", tmp_path / "records"
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", runs / "sweeps")
    for name, z in (("demo-1", 0.1), ("demo-2", 0.2)):
        (runs / name / "predictions").mkdir(parents=True)
        (runs / name / "summary.json").write_text(json.dumps({"run_id": name}))
        pd.DataFrame({"redshift": [z], "z_pred": [z + 0.01], "row": [0]}).to_csv(
            runs / name / "predictions" / "part-0.csv", index=False)
    records.ship_records(runs_dir=runs, records_dir=recs)
    shipped = pd.read_csv(recs / "predictions_demo-2.csv")
    assert shipped.columns.tolist() == ["z_spec", "z_pred"] and shipped["z_spec"].tolist() == [0.2]
    assert not (recs / "predictions_demo-1.csv").exists()
