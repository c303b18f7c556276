"""Records loading (missing sources -> empty frames) and the figures (drawn from whatever exists)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import plots, records


def _empty_dirs(tmp_path: Path) -> dict[str, Path]:
    dirs = {"runs_dir": tmp_path / "runs", "records_dir": tmp_path / "records"}
    return dirs


def test_missing_sources_give_empty_frames(tmp_path: Path) -> None:
    recs = records.load_all_records(**_empty_dirs(tmp_path), reference_dir=tmp_path / "noref")
    assert recs, "keys are always present"
    assert all(isinstance(v, pd.DataFrame) and v.empty for v in recs.values())
    for key in ("local", "gpu", "pipeline", "aws", "sweeps", "bench", "predictions", "published_team6"):
        assert key in recs


def test_published_reference_loads() -> None:
    recs = records.load_published()
    assert len(recs["published_team6"]) == 22
    assert {"partition_mb", "data_gb", "wall_s"} <= set(recs["published_cai_sfn"].columns)
    assert len(recs["published_lambda_reports"]) == 9
    local = recs["published_cai_local"]
    assert set(local["kind"]) == {"published_local_cpu", "published_local_gpu"}
    assert local["samples_per_s"].map(lambda v: isinstance(v, float)).all()  # the tuple/list is unwrapped


def _write_runs(tmp_path: Path) -> dict[str, Path]:
    runs = tmp_path / "runs"
    (runs / "local" / "r1").mkdir(parents=True)
    pd.DataFrame([{"kind": "local_cpu", "engine": "onnx", "batch_size": b, "samples_per_s": 100.0 * b,
                   "gb_per_s": b * 1e-3} for b in (32, 256)]).to_csv(runs / "local" / "r1" / "records.csv", index=False)
    (runs / "run-a").mkdir()
    part = {"run_id": "run-a", "status": "ok", "samples": 1278, "data_bytes": 1278 * 20520, "inference_s": 2.0,
            "duration_s": 3.0, "billed_duration_ms": 3000, "memory_mb": 3008, "backend": "aws", "cold_start": True}
    pd.DataFrame([part, {**part, "partition_id": 1}]).to_csv(runs / "run-a" / "records.csv", index=False)
    (runs / "run-a" / "summary.json").write_text(json.dumps({"run_id": "run-a", "timing": {"wall_s": 10.0}}))
    combo = runs / "sweeps" / "partition_size" / "partition_mb-25"
    combo.mkdir(parents=True)
    pd.DataFrame([part]).to_csv(combo / "records.csv", index=False)
    (combo / "_done.json").write_text(json.dumps({"parameters": {"partition_mb": 25, "output_dir": str(combo)}}))
    (combo / "summary.json").write_text(json.dumps({"wall_s": 5.0}))
    pd.DataFrame({"z_spec": [0.1, 0.2], "z_pred": [0.11, 0.19]}).to_csv(runs / "run-a" / "predictions.csv", index=False)
    shipped = tmp_path / "records"
    shipped.mkdir()
    shutil.copy(config.RECORDS_DIR / "simulator_validation.csv", shipped)
    return {"runs_dir": runs, "records_dir": shipped}


def test_loads_every_kind_of_record(tmp_path: Path) -> None:
    recs = records.load_all_records(**_write_runs(tmp_path))
    assert len(recs["local"]) == 2 and recs["gpu"].empty
    assert len(recs["pipeline"]) == 2 and len(recs["aws"]) == 2
    assert recs["pipeline_summary"].loc[0, "timing.wall_s"] == 10.0
    assert recs["sweeps"].loc[0, "param_partition_mb"] == 25
    assert list(recs["predictions"].columns[:2]) == ["z_spec", "z_pred"]
    table = records.runs_table(recs["pipeline"], recs["pipeline_summary"])
    assert table.loc[0, "wall_s"] == 10.0 and table.loc[0, "partitions"] == 2
    assert table.loc[0, "throughput_e2e_gb_s"] == 2 * 1278 * 20520 / 1e9 / 10.0
    sw = records.runs_table(recs["sweeps"], recs["sweep_summary"], group=("sweep", "slug"))
    assert sw.loc[0, "partition_mb"] == 25 and sw.loc[0, "wall_s"] == 5.0


def test_figures_from_records_and_from_nothing(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    recs = records.load_all_records(**_write_runs(tmp_path))
    out = plots.make_all_figures(recs, out_dir=tmp_path / "fig")
    names = {p.name for p in out}
    for name in plots.FIGURES:
        assert f"{name}.png" in names and f"{name}.pdf" in names
    empty = records.load_all_records(runs_dir=tmp_path / "none", records_dir=tmp_path / "none",
                                     reference_dir=tmp_path / "none")
    out2 = plots.make_all_figures(empty, out_dir=tmp_path / "fig2")
    assert "simulator_validation.png" not in {p.name for p in out2}  # skipped: nothing to draw
    assert all(p.stat().st_size > 0 for p in out2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a figure raised"


def test_missing_note_is_drawn() -> None:
    import matplotlib.pyplot as plt

    fig = plots.FIGURES["redshift_pred_vs_spec"]({})
    texts = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    assert any("no measured records yet" in t for t in texts)


def test_pipeline_json_records_and_partition_predictions(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "run-j"
    (run / "records").mkdir(parents=True)
    (run / "predictions").mkdir()
    for i in range(3):
        (run / "records" / f"p{i}.json").write_text(json.dumps(
            {"run_id": "run-j", "partition_id": f"p{i}", "status": "ok", "data_bytes": 100, "duration_s": 1.0}))
        pd.DataFrame({"redshift": [0.1 * i], "z_pred": [0.1 * i + 0.01]}).to_csv(run / "predictions" / f"p{i}.csv",
                                                                                index=False)
    recs = records.load_all_records(runs_dir=tmp_path / "runs", records_dir=tmp_path / "none")
    assert len(recs["pipeline"]) == 3 and set(recs["pipeline"]["run_id"]) == {"run-j"}
    assert len(recs["predictions"]) == 3


def test_a_figure_that_fails_to_draw_is_named_and_exits_partial(tmp_path: Path, monkeypatch, capsys) -> None:
    from cosmic_utils.cli import main

    def broken(recs, **kwargs):
        raise ValueError("a column went missing")

    monkeypatch.setitem(plots.FIGURES, "local_batch_size", broken)
    rc = main(["figures", "--out", str(tmp_path), "--only", "local_batch_size", "redshift_pred_vs_spec"])
    assert rc == 3  # partial: the other figure is written, the broken one is named, not silently stale
    assert (tmp_path / "redshift_pred_vs_spec.png").is_file() and not (tmp_path / "local_batch_size.png").exists()
    assert "figure local_batch_size failed" in capsys.readouterr().err
