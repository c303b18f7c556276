"""Papermill sweeps: one folder per combination, resumable, failures recorded, unique slugs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from cosmic_utils.analysis import sweep


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\nlabel = "a"\noutput_dir = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from pathlib import Path\n"
        "if x == 3:\n    raise ValueError('boom at x=3')\n"
        "Path(output_dir, 'records.csv').write_text(f'x,label\\n{x},{label}\\n')\n")
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _grid(tmp_path: Path, grid: dict, name: str = "tiny") -> Path:
    nb = _notebook(tmp_path / "tiny.ipynb")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "notebook": str(nb), "parameters": {"label": "fixed"},
                                    "grid": grid}))
    return path


def test_sweep_runs_resumes_and_records_failures(tmp_path: Path) -> None:
    grid = _grid(tmp_path, {"x": [1, 2, 3]})
    out = tmp_path / "sweeps"
    rows = sweep.run_sweep(grid, sweeps_dir=out, repeats=1)
    status = {r["x"]: r["status"] for r in rows}
    assert status == {1: "done", 2: "done", 3: "failed"}
    d1 = out / "tiny" / sweep.slug({"x": 1})
    assert (d1 / "_done.json").exists() and (d1 / "tiny.ipynb").exists()
    assert (d1 / "records.csv").read_text().splitlines()[1] == "1,fixed"
    failed = json.loads((out / "tiny" / sweep.slug({"x": 3}) / "_failed.json").read_text())
    assert "boom at x=3" in failed["error"] and failed["parameters"]["x"] == 3
    # second run: done combinations are skipped, the failed one is tried again
    again = {r["x"]: r["status"] for r in sweep.run_sweep(grid, sweeps_dir=out, repeats=1)}
    assert again == {1: "skipped", 2: "skipped", 3: "failed"}
    on_disk = {r["slug"]: r["status"] for r in sweep.sweep_status("tiny", out)}
    assert sorted(on_disk.values()) == ["done", "done", "failed"]


def test_dry_run_and_only(tmp_path: Path) -> None:
    grid = _grid(tmp_path, {"x": [1, 2], "label": ["p", "q"]}, name="dry")
    # label is both fixed and in the grid -> error naming the file
    with pytest.raises(ValueError, match="dry.yaml"):
        sweep.run_sweep(grid, dry_run=True, sweeps_dir=tmp_path)
    grid = _grid(tmp_path, {"x": [1, 2, 4]}, name="dry2")
    rows = sweep.run_sweep(grid, dry_run=True, sweeps_dir=tmp_path / "s", repeats=1)
    assert [r["status"] for r in rows] == ["planned"] * 3
    assert not (tmp_path / "s").exists()
    only = sweep.run_sweep(grid, dry_run=True, only=["x=2"], sweeps_dir=tmp_path / "s", repeats=1)
    assert [r["x"] for r in only] == [2]
    # repeated --only on one key: a union (it used to keep only the last one)
    both = sweep.run_sweep(grid, dry_run=True, only=["x=1", "x=4"], sweeps_dir=tmp_path / "s", repeats=1)
    assert [r["x"] for r in both] == [1, 4]
    with pytest.raises(ValueError, match="not a parameter"):
        sweep.run_sweep(grid, dry_run=True, only=["y=2"], sweeps_dir=tmp_path / "s")


def test_repeats_default_grid_key_and_resume_per_repeat(tmp_path: Path) -> None:
    grid = _grid(tmp_path, {"x": [1, 2]}, name="rep")
    rows = sweep.run_sweep(grid, dry_run=True, sweeps_dir=tmp_path / "s")
    assert len(rows) == 2 * sweep.DEFAULT_REPEATS  # every point 3 times by default, repeat-major
    assert [(r["x"], r["repeat"]) for r in rows[:3]] == [(1, 1), (2, 1), (1, 2)]
    assert rows[0]["slug"] == sweep.slug({"x": 1}) and rows[2]["slug"] == sweep.slug({"x": 1}) + "__repeat-2"
    # a (point, repeat) whose folder is done is skipped; the other repeats of that point are not
    for name in (sweep.repeat_slug(sweep.slug({"x": 1}), 1), sweep.repeat_slug(sweep.slug({"x": 1}), 3)):
        (tmp_path / "s" / "rep" / name).mkdir(parents=True)
        (tmp_path / "s" / "rep" / name / sweep.DONE_MARKER).write_text("{}")
    status = {(r["x"], r["repeat"]): r["status"] for r in sweep.run_sweep(grid, dry_run=True, sweeps_dir=tmp_path / "s")}
    assert status == {(1, 1): "skipped", (2, 1): "planned", (1, 2): "planned", (2, 2): "planned",
                      (1, 3): "skipped", (2, 3): "planned"}
    assert len(sweep.run_sweep(grid, dry_run=True, sweeps_dir=tmp_path / "s", repeats=1)) == 2
    data = yaml.safe_load(grid.read_text())
    grid.write_text(yaml.safe_dump({**data, "repeats": 5}))
    assert sweep.load_grid(grid).repeats == 5
    for bad in (0, "two", True):
        grid.write_text(yaml.safe_dump({**data, "repeats": bad}))
        with pytest.raises(ValueError, match="repeats"):
            sweep.load_grid(grid)


def test_aggregate_repeats_median_range_and_old_records() -> None:
    import pandas as pd

    from cosmic_utils.analysis.records import aggregate_repeats

    df = pd.DataFrame({"b": [64, 64, 64, 256], "repeat": [1, 2, 3, 1], "v": [1.0, 5.0, 2.0, 7.0]})
    out = aggregate_repeats(df, by=["b"], value="v").set_index("b")
    assert out.loc[64].tolist() == [2.0, 1.0, 5.0, 3] and out.loc[256].tolist() == [7.0, 7.0, 7.0, 1]
    with pytest.raises(KeyError, match="nope"):
        aggregate_repeats(df, by=["nope"], value="v")


def test_slugs_are_unique_and_readable() -> None:
    assert sweep.slug({"batch_size": 64}) == "batch_size-64"
    assert sweep.slug({"b_x": 2, "a": "onnx"}) == "a-onnx__b_x-2"
    combos = [{"v": "a/b"}, {"v": "a_b"}, {"v": "a-b"}, {"v": 1}, {"v": 1.0}, {"v": "1"}, {"v": True}]
    slugs = [sweep.slug(c) for c in combos]
    assert len(set(slugs)) == len(slugs), slugs
    assert all("/" not in s for s in slugs)
    assert len(sweep.slug({"k": "x" * 300})) < 100


def test_grid_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnotebook: n.ipynb\ngrid: {a: 3}\n")
    with pytest.raises(ValueError, match="bad.yaml.*'a'"):
        sweep.load_grid(bad)
    bad.write_text("notebook: n.ipynb\ngrid: {a: [1]}\n")
    with pytest.raises(ValueError, match="missing field 'name'"):
        sweep.load_grid(bad)


def test_shipped_grids_parse() -> None:
    from cosmic_utils import config

    names = {p.stem for p in config.SWEEP_GRIDS_DIR.glob("*.yaml")}
    assert {"batch_size", "partition_size", "data_size", "lambda_memory", "engine"} <= names
    for p in config.SWEEP_GRIDS_DIR.glob("*.yaml"):
        g = sweep.load_grid(p)
        assert g.notebook.name == "03_lambda_sweep.ipynb"
        combos = g.combinations()
        assert combos and len({sweep.slug(c) for c in combos}) == len(combos)
        sweep.validate_grid(p)  # every key is a parameter of notebook 03


def test_sweep_cli_dry_run(capsys) -> None:
    from cosmic_utils import cli, config

    assert cli.main(["sweep", str(config.SWEEP_GRIDS_DIR / "batch_size.yaml"), "--dry-run", "--only",
                     "batch_size=64"]) == 0
    out = capsys.readouterr().out
    assert "planned  batch_size-64" in out and "planned  batch_size-64__repeat-3" in out
    assert "3 runs (combination x repeat)" in out


def test_point_with_failed_partitions_is_failed_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that ran but whose pipeline run lost partitions is a failed point, not a success."""
    from cosmic_utils import cli, config

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\noutput_dir = ""')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import json\nfrom pathlib import Path\n"
        "failed = [{'partition_id': 'part-00001', 'error': 'checksum mismatch'}] if x == 2 else []\n"
        "Path(output_dir, 'summary.json').write_text(json.dumps({'execution_status': 'SUCCEEDED', 'partitions': 3,\n"
        "    'partitions_ok': 3 - len(failed), 'partitions_failed': len(failed), 'failed': failed}))\n")
    nb.cells = [params, body]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    grid = tmp_path / "pts.yaml"
    grid.write_text(yaml.safe_dump({"name": "pts", "notebook": str(tmp_path / "nb.ipynb"), "grid": {"x": [1, 2]}}))
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", tmp_path / "sweeps")
    assert cli.main(["sweep", str(grid), "--repeats", "1"]) == 3
    captured = capsys.readouterr()
    assert "cosmic sweep: point x-2 failed: 1 of 3 partitions failed (first: part-00001: checksum mismatch)" \
        in captured.err
    point = tmp_path / "sweeps" / "pts" / "x-2"
    info = json.loads((point / "_failed.json").read_text())
    assert info["failed_partitions"] == [{"partition_id": "part-00001", "error": "checksum mismatch"}]
    assert not (point / "_done.json").exists() and (tmp_path / "sweeps" / "pts" / "x-1" / "_done.json").exists()


def test_failed_points_are_not_plotted(tmp_path: Path) -> None:
    """The one sweep-point reader (figures and report) leaves out failed and partial points."""
    from cosmic_utils.analysis import records

    def point(slug: str, ok: int | None, marker: str = "_done.json") -> None:
        d = tmp_path / "sweeps" / "batch_size" / slug
        d.mkdir(parents=True)
        (d / marker).write_text(json.dumps({"parameters": {"batch_size": 64}}))
        if ok is not None:
            (d / "summary.json").write_text(json.dumps({
                "data_gb": 0.1, "wall_s": 10.0, "partitions": 2, "partitions_ok": ok,
                "throughput": {"end_to_end_gb_s": 0.01}, "timing": {"sum_duration_s": 4.0},
                "cost": {"lambda_usd": 1e-4, "total_usd": 2e-4}, "billing": {"memory_mb_configured": 1024}}))

    point("ok", 2)
    point("partial", 1)
    point("marked", 2, "_failed.json")
    runs = records.load_sweep_points(tmp_path / "sweeps", tmp_path / "no_records")
    assert list(runs["slug"]) == ["ok"]
