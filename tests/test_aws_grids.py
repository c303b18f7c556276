"""Every sweep file the docs name exists, loads and validates against notebook 03; the aws grids
are the study's set-ups; repeated ``--only`` filters combine."""

from __future__ import annotations

import re

import pytest

from cosmic_utils import cli, config
from cosmic_utils.analysis import simulate, sweep

DOCS = [config.PROJECT_ROOT / "README.md", *sorted((config.PROJECT_ROOT / "docs").glob("*.md"))]


def _referenced() -> set[str]:
    names: set[str] = set()
    for doc in DOCS:
        names |= set(re.findall(r"sweeps/([A-Za-z0-9_.-]+)\.yaml", doc.read_text(encoding="utf-8")))
    return names - {"NAME"}  # docs/…: the placeholder of "sweeps/NAME.yaml"


def test_docs_reference_the_aws_grids() -> None:
    assert {"aws_batch_size", "aws_data_size", "aws_partition_size"} <= _referenced()


@pytest.mark.parametrize("name", sorted(_referenced()))
def test_every_referenced_sweep_file_is_shipped_and_valid(name: str) -> None:
    grid = sweep.validate_grid(config.SWEEP_GRIDS_DIR / f"{name}.yaml")
    assert grid.combinations()


def test_every_shipped_grid_validates() -> None:
    for path in sorted(config.SWEEP_GRIDS_DIR.glob("*.yaml")):
        sweep.validate_grid(path)


def test_validate_refuses_a_misspelt_parameter(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnotebook: notebooks/03_lambda_sweep.ipynb\nparameters: {batchsize: 3}\n"
                   "grid: {data_gb: [1]}\n")
    with pytest.raises(ValueError, match="batchsize"):
        sweep.validate_grid(bad)


def _points(name: str) -> list[dict]:
    g = sweep.load_grid(config.SWEEP_GRIDS_DIR / f"{name}.yaml")
    return [{**g.parameters, **c} for c in g.combinations()]


def test_aws_grids_are_the_study_setups() -> None:
    batch = _points("aws_batch_size")
    assert [p["batch_size"] for p in batch] == [32, 64, 128, 256, 512]
    assert {(simulate.partitions_for(p["data_gb"], p["partition_mb"]), p["partition_mb"], p["world_size"])
            for p in batch} == {(1, 100, 1)}  # one 100 MB partition in one Lambda
    part = _points("aws_partition_size")
    assert [p["partition_mb"] for p in part] == [10, 25, 50, 75, 100] and {p["data_gb"] for p in part} == {1.0}
    data = _points("aws_data_size")
    assert {p["partition_mb"] for p in data} == {10, 25} and max(p["data_gb"] for p in data) == 12
    assert max(simulate.partitions_for(p["data_gb"], p["partition_mb"]) for p in data) > 1000  # Distributed Map
    assert [p["memory_mb"] for p in _points("aws_lambda_memory")] == [1769, 3008, 5307, 10240]
    for name in ("aws_batch_size", "aws_partition_size", "aws_data_size", "aws_lambda_memory"):
        assert all(p["backend"] == "aws" and p["results"].startswith("s3://") for p in _points(name))
    local = _points("study_batch_size")
    strip = {"backend", "results", "data_upload", "model_upload"}
    assert [{k: v for k, v in p.items() if k not in strip} for p in local] == \
        [{k: v for k, v in p.items() if k not in strip} for p in batch]  # the same set-up, locally
    assert {p["backend"] for p in local} == {"local"}


def test_repeated_only_is_a_union(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "aws_batch_size.yaml"), "--dry-run", "--repeats", "1",
                     "--only", "batch_size=32", "--only", "batch_size=256"]) == 0
    out = capsys.readouterr().out
    assert "planned  batch_size-32 " in out and "planned  batch_size-256 " in out
    assert "batch_size-64" not in out and "2 runs" in out


def test_only_on_two_keys_is_an_intersection(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "aws_data_size.yaml"), "--dry-run", "--repeats", "1",
                     "--only", "data_gb=12", "--only", "partition_mb=10", "--only", "partition_mb=25"]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out and "data_gb-12__partition_mb-10" in out and "data_gb-12__partition_mb-25" in out
