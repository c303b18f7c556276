"""The aws path of sweeps and notebook 03: `results` required (no default bucket), budgets, locations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cosmic_utils import config
from cosmic_utils.analysis import sweep

NB03 = config.PROJECT_ROOT / "notebooks" / "03_lambda_sweep.py"


def _grid_file(tmp_path: Path, parameters: dict[str, Any], grid: dict[str, Any]) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "notebook": str(NB03), "parameters": parameters, "grid": grid}))
    return path


def test_aws_grid_without_results_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"g\.yaml: backend aws needs 'results: s3://"):
        sweep.load_grid(_grid_file(tmp_path, {"backend": "aws"}, {"data_gb": [0.1]}))
    # aws at one point of the grid only: still refused, naming the point
    with pytest.raises(ValueError, match="'backend': 'aws'"):
        sweep.load_grid(_grid_file(tmp_path, {}, {"backend": ["local", "aws"]}))
    ok = sweep.load_grid(_grid_file(tmp_path, {"backend": "aws", "results": "s3://example-cosmic-results/runs"},
                                    {"data_location": ["s3://example-cosmic-data/a", "s3://example-cosmic-data/b"]}))
    assert [c["data_location"] for c in ok.combinations()] == ["s3://example-cosmic-data/a",
                                                                "s3://example-cosmic-data/b"]
    assert sweep.load_grid(_grid_file(tmp_path, {"backend": "local"}, {"data_gb": [0.1]})).parameters


def _cells(path: Path) -> list[str]:
    return path.read_text().split("\n# %%")


def test_notebook_03_refuses_aws_without_results(tmp_path: Path) -> None:
    """Run the notebook's first cells as papermill would with backend aws and empty results."""
    cells = _cells(NB03)
    params = next(c for c in cells if 'tags=["parameters"]' in c)
    setup = cells[cells.index(params) + 1]
    scope: dict[str, Any] = {}
    exec(params.split("\n", 1)[1], scope)  # noqa: S102 - the repository's own notebook source
    scope.update(backend="aws", results="", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="backend aws: parameter results=''"):
        exec(setup, scope)  # noqa: S102
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_sweep_passes_a_budget_to_every_point(tmp_path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('max_usd = 0.0\noutput_dir = ""')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(
        "from pathlib import Path\nPath(output_dir, 'b.txt').write_text(str(max_usd))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "b.ipynb")
    grid = tmp_path / "b.yaml"
    grid.write_text(yaml.safe_dump({"name": "b", "notebook": str(tmp_path / "b.ipynb"), "grid": {"x": [1]}}))
    rows = sweep.run_sweep(grid, sweeps_dir=tmp_path / "s", extra_parameters={"max_usd": 0.25}, repeats=1)
    assert rows[0]["status"] == "done"
    assert (Path(rows[0]["output_dir"]) / "b.txt").read_text() == "0.25"


def test_cosmic_sweep_projects_and_refuses_over_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    grid = _grid_file(tmp_path, {"backend": "aws", "results": "s3://example-cosmic-results/runs",
                                 "data_gb": 1.0, "memory_mb": 3008},
                      {"partition_mb": [25, 100]})
    assert main(["sweep", str(grid), "--dry-run", "--max-usd", "1000"]) == 0
    out = capsys.readouterr().out
    assert "PROJECTION of the sweep g" in out and out.count("partitions)") == 2
    assert main(["sweep", str(grid), "--max-usd", "0.0000001"]) == 1
    captured = capsys.readouterr()
    assert "2 point(s) projected above --max-usd 1e-07" in captured.err
    assert not (config.SWEEP_RUNS_DIR / "g").exists()  # nothing ran, not even the dry run's folders
