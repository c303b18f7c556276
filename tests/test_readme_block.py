"""The README's "What it measures" table is what the shipped records say, nothing typed by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cosmic_utils.analysis import readme

ROOT = Path(__file__).resolve().parent.parent


def test_readme_block_matches_the_shipped_records() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.current_block(text)
    expected = readme.render_block(readme.measured_rows(ROOT / "data" / "records"))
    assert block == expected, "README.md's measured table differs from data/records/: run `make readme`"


def _summary(wall_s: float, provenance: dict | None) -> dict:
    doc = {"run_id": "demo-x", "created": "2026-01-01T00:00:00", "backend": "local", "partitions": 2,
           "partitions_ok": 2, "samples": 100, "data_gb": 0.2, "wall_s": wall_s,
           "throughput": {"end_to_end_gb_s": 0.2 / wall_s, "per_worker_gb_s": 0.0138}}
    if provenance is not None:
        doc["provenance"] = provenance
    return doc


def test_rows_come_from_records_and_name_the_machine(tmp_path: Path) -> None:
    recs = tmp_path / "records"
    recs.mkdir()
    prov = {"cpu_model": "AMD EPYC 7R13", "cpus": 2, "isa": "avx2"}
    (recs / "pipeline_demo-x_summary.json").write_text(json.dumps(_summary(35.532, prov)))
    rows = {r.what: r for r in readme.measured_rows(recs)}
    pipe = rows["local pipeline, 0.2 GB (local backend)"]
    assert "35.5 s execution" in pipe.result and "0.00563 GB/s" in pipe.result
    assert pipe.machine == "AMD EPYC 7R13, 2 cores, avx2"
    # a record without provenance does not borrow a machine from elsewhere
    (recs / "pipeline_demo-x_summary.json").write_text(json.dumps(_summary(20.0, None)))
    pipe = {r.what: r for r in readme.measured_rows(recs)}["local pipeline, 0.2 GB (local backend)"]
    assert "20.0 s execution" in pipe.result and pipe.machine == readme.NOT_RECORDED


def test_missing_records_give_no_numbers(tmp_path: Path) -> None:
    rows = readme.measured_rows(tmp_path)
    assert rows and all(r.result.startswith("not measured") for r in rows)
    for r in rows:  # no measured digit typed in: only what the command line itself holds
        assert not re.search(r"\d", r.result.split("(`")[0]), r


def test_check_fails_when_a_record_changes(tmp_path: Path) -> None:
    recs = tmp_path / "records"
    recs.mkdir()
    (recs / "pipeline_demo-x_summary.json").write_text(json.dumps(_summary(35.5, None)))
    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n\n{readme.BEGIN}\nold\n{readme.END}\n\nafter\n")
    assert readme.update_readme(doc, recs, check=True) is True
    assert "old" in doc.read_text()  # --check writes nothing
    assert readme.update_readme(doc, recs) is True
    assert readme.update_readme(doc, recs, check=True) is False
    assert doc.read_text().endswith("\n\nafter\n") and "35.5 s" in doc.read_text()
    (recs / "pipeline_demo-x_summary.json").write_text(json.dumps(_summary(40.0, None)))
    assert readme.update_readme(doc, recs, check=True) is True


def test_missing_markers_name_the_file(tmp_path: Path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text("# no markers\n")
    with pytest.raises(ValueError, match="README.md: the measured-table markers are missing"):
        readme.update_readme(doc, tmp_path)



def test_lambda_engine_projection_and_data_size_rows(tmp_path: Path) -> None:
    """The Lambda-engine, projection and data-size rows come from their records, or say 'not measured'."""
    import shutil

    from cosmic_utils import config

    shipped = readme.measured_rows()
    lam = next(r for r in shipped if r.what.startswith("Lambda engine (ONNX Runtime"))
    assert "1 thread:" in lam.result and "2 threads:" in lam.result
    proj = next(r for r in shipped if r.what.startswith("PROJECTED Lambda cost"))
    assert "USD/GB" in proj.result and "arm64 not measured" in proj.result
    assert "AMD EPYC" in proj.result and "unexplained" in proj.result  # both measured CPUs, the decomposition
    size = next(r for r in shipped if r.what.startswith("local data-size study"))
    assert "GB/s" in size.result and "peak RSS" in size.result and "8 GB" in size.result
    # an empty records folder: every one of these rows says it was not measured, none invents a number
    empty = tmp_path / "records"
    empty.mkdir()
    shutil.copy(config.RECORDS_DIR / "simulator_validation.json", empty)
    texts = {r.what: r.result for r in readme.measured_rows(empty)}
    for what in ("Lambda engine (ONNX) at 1 and 2 threads", "Lambda cost and 12.6 GB wall clock (projected)",
                 "local data-size study (streamed)"):
        assert texts[what].startswith("not measured"), (what, texts[what])
