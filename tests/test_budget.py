"""Projected cost before a run, and `--max-usd` refusing a run projected above it (nothing started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmic_utils.analysis.projection import BudgetExceeded, check_budget, project_run
from cosmic_utils.cli import main
from cosmic_utils.runtime.request import parse_request


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cosmic_utils.data.dataset import prepare_dataset

    out = tmp_path_factory.mktemp("budget") / "ds"
    prepare_dataset(out, 0.004, 2, seed=3, progress=False)
    return out


def _request(dataset: Path, **kw: object) -> object:
    return parse_request({"run_id": "b1", "data": str(dataset), "model": "models/default",
                          "results": "s3://example-cosmic-results/runs", **kw})


def test_projection_scales_with_the_run(dataset: Path) -> None:
    full = project_run(_request(dataset))
    one = project_run(_request(dataset, partition_limit=1))
    assert full.partitions == 2 and one.partitions == 1
    assert 0 < one.cost_usd < full.cost_usd and full.wall_s > 0
    big = project_run(_request(dataset, memory_mb=10240))
    assert big.memory_mb == 10240 and big.cost_usd != full.cost_usd
    check_budget(full, full.cost_usd * 2)  # within budget: no exception
    check_budget(full, None)
    with pytest.raises(BudgetExceeded, match="above the budget"):
        check_budget(full, full.cost_usd / 2)


def test_max_usd_refuses_before_anything_starts(dataset: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "tiny"
    rc = main(["run", "--data", str(dataset), "--out", str(out), "--max-usd", "0.0000001", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "PROJECTION" in captured.out and "--max-usd 1e-07" in captured.err and "projected cost" in captured.err
    assert not out.exists()  # refused before the run folder, a deployment or an execution


def test_max_usd_needs_a_readable_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), "--max-usd", "5"])
    assert rc == 1 and "cannot be checked" in capsys.readouterr().err
