"""docs/report.md is generated from the records: every section, the claims table, loud refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from cosmic_utils import config
from cosmic_utils.analysis import report


@pytest.fixture()
def src(tmp_path: Path) -> report.Sources:
    """A copy of the shipped records and reference (tests edit the copy)."""
    shutil.copytree(config.RECORDS_DIR, tmp_path / "records")
    return report.Sources(records=tmp_path / "records", reference=config.REFERENCE_DIR)


def test_report_from_shipped_records_has_every_section_and_claim(src: report.Sources) -> None:
    text = report.build_report(src)
    for title in report.SECTIONS:
        assert f"\n## {title}\n" in text, title
    claims = text.split("## Claims of the study")[1]
    for words in ("Smaller partitions", "Batch 256", "Batch 64", "25 MB", "0.018 Gbit/s", "out of memory at 8 GB",
                  "storage speed", "Lambda beats the local computer", "GPU"):
        assert words in claims, words
    rows = [line for line in claims.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 8 and all(any(f"**{v}**" in r for v in report.VERDICTS) for r in rows)
    for stem in report.FIGURE_STEMS:
        assert f"](../figures/{stem}.png)" in text, stem


def test_embedded_figures_are_drawn_by_the_project() -> None:
    """Each embedded stem is drawn by `cosmic figures` (plots.FIGURES) or `cosmic model evaluate`."""
    import re

    from cosmic_utils.analysis.plots import FIGURES

    stems = set(re.findall(r"\]\(\.\./figures/([A-Za-z0-9_]+)\.png\)", report.build_report()))
    assert stems, "the report embeds no figure"
    assert not stems - set(FIGURES) - {"model_evaluation_default"}, stems - set(FIGURES)
    with pytest.raises(ValueError, match="FIGURE_STEMS"):
        report.figure("not_a_figure", "x")


def test_gbit_values_are_never_called_gb_per_s() -> None:
    text = report.build_report()
    assert "0.018 GB/s" not in text and "0.0185 GB/s" not in text
    assert "0.018 Gbit/s (0.00225 GB/s" in text


def _claim_rows(text: str) -> list[str]:
    return [line for line in text.split("## Claims of the study")[1].splitlines() if line.startswith("| ")]


def test_lambda_verdicts_ignore_the_local_backend(src: report.Sources) -> None:
    """A local-backend sweep describes this machine: changing it changes its rows, never a Lambda verdict."""
    before = report.build_report(src)
    path = src.records / "sweeps" / "batch_size" / "batch_size-256" / "summary.json"
    data = json.loads(path.read_text())
    data["timing"]["sum_duration_s"] /= 100.0
    path.write_text(json.dumps(data))
    after = report.build_report(src)
    assert after != before
    assert _claim_rows(after) == _claim_rows(before)
    assert "local backend on a machine its sweep records do not name: describes that machine, not Lambda" in after


def test_batch_verdict_follows_the_projection(src: report.Sources) -> None:
    """The projection is driven by the measured engine speed: make batch 256 fastest and the claim holds."""
    path = src.records / "local_cpu.csv"
    df = pd.read_csv(path)
    at256 = (df["engine"] == "onnx") & (df["batch_size"] == 256)
    verdicts = {}
    for factor in (0.5, 3.0):  # batch 256 clearly slower (beyond the run-to-run noise), then clearly fastest
        changed = df.copy()
        changed.loc[at256, "samples_per_s"] *= factor
        changed.to_csv(path, index=False)
        verdicts[factor] = report.build_report(src)
    assert "| Batch 256 gives the most throughput | **not supported** |" in verdicts[0.5]
    text = verdicts[3.0]
    assert "| Batch 256 gives the most throughput | **supported** |" in text
    assert "projected by the simulator from" in text.split("## Batch size")[1].split("\n## ")[0]


def test_projection_section_from_record(src: report.Sources) -> None:
    proj = json.loads((src.records / "lambda_projection.json").read_text())
    sec = report.build_report(src).split("## This repository's Lambda engine")[1].split("\n## ")[0]
    assert proj["label"] in sec
    assert f"cheapest {int(proj['best_memory_mb']):,} MB at {proj['best']['usd_per_gb']:.3g} USD/GB**" in sec
    assert "| **unexplained** |" in sec and "AMD EPYC (avx2)" in sec  # the decomposition and the per-CPU table
    assert "speed **not measured**" in sec
    assert ("| met |" if proj["targets"]["usd_per_gb_met"] else "| not met |") in sec
    for w in proj["wall_clock_12_6gb"]:
        assert f"| {report.g(float(w['wall_s']))} |" in sec
    assert "machine, not Lambda" in sec  # the local-backend rows: "describes this|that machine, not Lambda"
    proj["targets"]["usd_per_gb_met"] = False
    proj["targets"]["usd_per_gb_at_best"] = 0.0123
    (src.records / "lambda_projection.json").write_text(json.dumps(proj))
    sec = report.build_report(src).split("## This repository's Lambda engine")[1].split("\n## ")[0]
    assert f"cheapest {int(proj['best_memory_mb']):,} MB at 0.0123 USD/GB (warm, projected)" in sec and "| not met |" in sec
    del proj["memory"]
    (src.records / "lambda_projection.json").write_text(json.dumps(proj))
    with pytest.raises(report.ReportError, match="lambda_projection.json is malformed.*memory"):
        report.build_report(src)
    (src.records / "lambda_projection.json").unlink()
    assert "**Not generated yet**" in report.build_report(src)


@pytest.mark.parametrize("victim", ["bench.json", "sweeps/batch_size/batch_size-64/summary.json",
                                    "simulator_validation.json"])
def test_missing_record_is_refused_naming_it(src: report.Sources, victim: str) -> None:
    (src.records / victim).unlink()
    with pytest.raises(report.ReportError, match=f"data/records/{victim}.*missing"):
        report.build_report(src)


def test_malformed_record_is_refused_naming_it(src: report.Sources) -> None:
    path = src.records / "sweeps" / "partition_size" / "partition_mb-25" / "summary.json"
    good = path.read_text()
    data = json.loads(good)
    del data["cost"]
    path.write_text(json.dumps(data))
    with pytest.raises(report.ReportError, match="partition_mb-25/summary.json is malformed.*cost"):
        report.build_report(src)
    path.write_text(good)
    (src.records / "bench.json").write_text("{not json")
    with pytest.raises(report.ReportError, match="bench.json is unreadable"):
        report.build_report(src)


def test_numbers_follow_the_records(src: report.Sources) -> None:
    before = report.build_report(src)
    path = src.records / "simulator_validation.json"
    data = json.loads(path.read_text())
    data["median_abs_error"] = 0.4321
    path.write_text(json.dumps(data))
    after = report.build_report(src)
    assert "43.2 %" in after and "43.2 %" not in before


def test_optional_local_data_size_section(src: report.Sources) -> None:
    (src.records / "local_data_size.csv").unlink(missing_ok=True)  # the shipped study: absent here first
    assert "**Not measured yet**: no `data/records/local_data_size.csv`" in report.build_report(src)
    rows = [{"data_gb": gb, "requested_gb": gb, "samples": config.samples_for_gb(gb), "wall_s": 10.0 * gb,
             "gb_per_s": gps, "peak_rss_mb": 400.0 + gb, "engine": "onnx", "precision": "fp32", "threads": 2,
             "batch_size": 256, "cpu_model": "Test CPU", "repeat": 1}
            for gb, gps in ((1.0, 0.0100), (2.0, 0.0101), (8.0, 0.0099))]
    pd.DataFrame(rows).to_csv(src.records / "local_data_size.csv", index=False)
    text = report.build_report(src)
    local = text.split("## Local computer")[1].split("\n## ")[0]
    assert "| 8.00 | 0.00990 | 0.0792 | 408 | 389,864 |" in local and "Test CPU" in local
    claims = text.split("## Claims of the study")[1]
    assert "flat with data size | **supported** |" in claims and "0.018 GB/s" not in text
    pd.DataFrame(rows).drop(columns=["peak_rss_mb"]).to_csv(src.records / "local_data_size.csv", index=False)
    with pytest.raises(report.ReportError, match="local_data_size.csv is malformed.*peak_rss_mb"):
        report.build_report(src)


def test_cli_check_fails_when_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils import cli

    out = tmp_path / "report.md"
    assert cli.main(["report", "--out", str(out)]) == 0
    assert cli.main(["report", "--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("supported", "SUPPORTED", 1))
    assert cli.main(["report", "--check", "--out", str(out)]) == 1
    assert "run `make report`" in capsys.readouterr().err
    assert cli.main(["report", "--check", "--out", str(out), "--records", str(tmp_path / "none")]) == 1


def test_shipped_report_is_current() -> None:
    """docs/report.md is what the shipped records give (regenerate with `make report`)."""
    assert not report.write_report(check=True)
