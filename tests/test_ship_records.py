"""`cosmic records ship`: only runs that pass the written admission rules enter data/records/."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cosmic_utils.analysis import admission, records
from cosmic_utils.cli import main

XEON = {"cpu_model": "Intel(R) Xeon(R) Processor", "isa": "amx"}
EPYC = {"cpu_model": "AMD EPYC", "isa": "avx2"}
GOOD_MODEL = {"model_sha256": "ab" * 32, "model_trained": True, "model_sigma_nmad": 0.0121,
              "model_knn_sigma_nmad": 0.0137}


def _summary(gb: float = 0.2, model: dict | None = None, cpu: dict | None = None, ok: int = 8) -> dict:
    return {"run_id": "x", "partitions": 8, "partitions_ok": ok, "data_gb": gb, "samples": int(gb * 48733),
            "model_info": GOOD_MODEL if model is None else model, "provenance": XEON if cpu is None else cpu}


def _records_dir(tmp_path: Path) -> Path:
    recs = tmp_path / "records"
    recs.mkdir()
    (recs / "bench.json").write_text(json.dumps({"rows": [], "provenance": XEON}))
    return recs


def _pipeline(runs: Path, name: str, summary: dict) -> Path:
    run = runs / name
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "records.csv").write_text("partition_id,status\np0,ok\n")
    return run


def _point(runs: Path, sweep: str, slug: str, value: int, summary: dict) -> None:
    combo = runs / "sweeps" / sweep / slug
    combo.mkdir(parents=True)
    (combo / "_done.json").write_text(json.dumps({"parameters": {"batch_size": value}}))
    (combo / "summary.json").write_text(json.dumps(summary))


def test_admitted_pipeline_is_shipped_and_toy_runs_are_refused_one_line_each(tmp_path: Path) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    _pipeline(runs, "good", _summary())
    _pipeline(runs, "untrained", _summary(model={**GOOD_MODEL, "model_trained": False}))
    _pipeline(runs, "quick", _summary(model={**GOOD_MODEL, "model_sigma_nmad": 0.032}))
    _pipeline(runs, "tiny", _summary(gb=0.002))
    _pipeline(runs, "nameless", _summary(cpu={}))
    _pipeline(runs, "partial", _summary(ok=7))
    res = admission.ship(runs, recs)
    assert (recs / "pipeline_good_summary.json").is_file()
    assert len(res.refused) == 5
    by_run = {line.split()[2].rstrip(":"): line for line in res.refused}
    assert "rule trained-model" in by_run["untrained"] and "UNTRAINED" in by_run["untrained"]
    assert "rule trained-model" in by_run["quick"] and "0.0320 is above the kNN anchor's 0.0137" in by_run["quick"]
    assert "rule data-size" in by_run["tiny"] and "rule machine-named" in by_run["nameless"]
    assert "rule complete" in by_run["partial"]
    assert not any((recs / f"pipeline_{n}_summary.json").exists() for n in ("untrained", "quick", "tiny"))


def test_other_machine_lives_side_by_side_and_nothing_is_replaced(tmp_path: Path) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    for r in (1, 2, 3):
        _point(runs, "batch_size", f"batch_size-32__repeat-{r}", 32, _summary(gb=0.1, cpu=EPYC))
    res = admission.ship(runs, recs)
    assert not res.refused, res.refused
    assert (recs / "machines" / "amd-epyc-avx2" / "sweeps" / "batch_size" / "batch_size-32__repeat-1").is_dir()
    assert not (recs / "sweeps").exists()  # the primary (Xeon) machine's sweeps are untouched
    # the same run again: already shipped, not rewritten; a changed file is refused (immutable)
    summ = runs / "sweeps" / "batch_size" / "batch_size-32__repeat-1" / "summary.json"
    summ.write_text(json.dumps({**_summary(gb=0.1, cpu=EPYC), "wall_s": 1.0}))
    again = admission.ship(runs, recs)
    assert any("rule immutable" in line for line in again.refused)
    loaded, _ = records.load_sweeps(tmp_path / "none", recs)
    assert set(loaded["origin"]) == {"shipped"} if not loaded.empty else True


def test_a_spread_sweep_needs_three_repeats(tmp_path: Path) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    _point(runs, "batch_size", "batch_size-256", 256, _summary(gb=0.1))
    res = admission.ship(runs, recs)
    assert len(res.refused) == 1 and "rule repeats" in res.refused[0] and "1 repeat(s)" in res.refused[0]


def test_local_run_rows_are_appended_never_rewritten(tmp_path: Path) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    old = pd.DataFrame([{"kind": "local_cpu", "run_id": "old", "engine": "onnx", "batch_size": 256, "samples": 512,
                         "samples_per_s": 441.0, **XEON}])
    old.to_csv(recs / "local_cpu.csv", index=False)
    (runs / "local" / "new").mkdir(parents=True)
    new = pd.DataFrame([{"kind": "local_cpu", "run_id": "new", "engine": "onnx", "batch_size": 256, "samples": 1024,
                         "samples_per_s": 400.0, **XEON, **GOOD_MODEL}])
    new.to_csv(runs / "local" / "new" / "records.csv", index=False)
    (runs / "local" / "toy").mkdir(parents=True)
    new.assign(run_id="toy", samples=97).to_csv(runs / "local" / "toy" / "records.csv", index=False)
    res = admission.ship(runs, recs)
    shipped = pd.read_csv(recs / "local_cpu.csv")
    assert shipped["run_id"].tolist() == ["old", "new"] and shipped["samples_per_s"].tolist() == [441.0, 400.0]
    assert len(res.refused) == 1 and "refused local toy: rule data-size" in res.refused[0]


def test_cli_refuses_with_exit_3_and_one_line_per_run(tmp_path: Path, capsys) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    _pipeline(runs, "untrained", _summary(model={**GOOD_MODEL, "model_trained": False}))
    rc = main(["records", "ship", "--runs", str(runs), "--records", str(recs)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 3 and err[0].startswith("refused pipeline untrained: rule trained-model")


def test_every_shipped_record_passes_or_is_grandfathered() -> None:
    assert admission.check_shipped() == []


def test_the_repeats_rule_counts_what_the_target_records_folder_already_holds(tmp_path: Path) -> None:
    runs, recs = tmp_path / "runs", _records_dir(tmp_path)
    for r in (1, 2):
        done = recs / "sweeps" / "batch_size" / f"batch_size-256__repeat-{r}"
        done.mkdir(parents=True)
        (done / "_done.json").write_text(json.dumps({"parameters": {"batch_size": 256, "repeat": r}}))
    _point(runs, "batch_size", "batch_size-256__repeat-3", 256, _summary(gb=0.1))
    res = admission.ship(runs, recs)
    assert not res.refused, res.refused
    assert (recs / "sweeps" / "batch_size" / "batch_size-256__repeat-3" / "summary.json").is_file()
