"""Records that travel: no absolute path of the writing machine, and provenance in every record.

Shipped records are read on other machines (a fresh clone, CI), so a path like
``/home/me/cosmic/models/default`` in one is both a leak and useless there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cosmic_utils import config
from cosmic_utils.inference.measure import write_records
from cosmic_utils.provenance import find_absolute_paths, git_commit, portable_text, provenance

REPO_RECORDS = Path(__file__).resolve().parent.parent / "data" / "records"


def test_no_shipped_record_holds_an_absolute_path() -> None:
    files = [p for p in sorted(REPO_RECORDS.rglob("*")) if p.is_file()]
    assert files, f"no shipped records under {REPO_RECORDS}"
    offenders = {}
    for p in files:
        hits = find_absolute_paths(p.read_bytes().decode("utf-8", errors="replace"))
        if hits:
            offenders[p.relative_to(REPO_RECORDS).as_posix()] = hits[:2]
    assert not offenders, f"absolute paths of the writing machine in shipped records: {offenders}"


@pytest.mark.parametrize("text", ["/home/alice/cosmic/models", "x file:///work/main/y", "'/tmp/abc/d'",
                                  "/root/runs", "/Users/bob/a", "C:\\Users\\bob", "C:\\\\Users\\\\bob"])
def test_the_grep_catches_absolute_paths(text: str) -> None:
    assert find_absolute_paths(text)


@pytest.mark.parametrize("text", ["models/default", "s3://bucket/tmp/part-0.cpart", "$TMPDIR/x/y", "~/data",
                                  "runs/sweeps/a/b", "see docs/work/notes"])
def test_the_grep_leaves_portable_paths_alone(text: str) -> None:
    assert not find_absolute_paths(text)


def test_portable_text_rewrites_project_and_temp_paths() -> None:
    root = str(config.PROJECT_ROOT)
    text = f'"{root}/models/default" "{root}" {root}/data/generated/x, /tmp/cosmic-rel/a /tmpfoo/b'
    out = portable_text(text)
    assert out == '"models/default" "." data/generated/x, $TMPDIR/cosmic-rel/a /tmpfoo/b'
    assert portable_text("/srv/other/a", [("/srv/other", "")]) == "a"


def test_ship_records_makes_paths_project_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs, recs = tmp_path / "runs", tmp_path / "records"
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", runs / "sweeps")
    run = runs / "demo-1"
    run.mkdir(parents=True)
    model = config.PROJECT_ROOT / "models" / "default"
    admitted = {"partitions": 1, "partitions_ok": 1, "data_gb": 0.2,
                "provenance": {"cpu_model": "Intel(R) Xeon(R) Processor", "isa": "amx"},
                "model_info": {"model_sha256": "ab" * 32, "model_trained": True, "model_sigma_nmad": 0.012,
                               "model_knn_sigma_nmad": 0.0137}}
    (run / "summary.json").write_text(json.dumps({"run_id": "demo-1", "request": {"model": str(model)},
                                                  "wall_s": 35.5, **admitted}))
    (run / "records.csv").write_text(f"partition_id,model\np0,{model}\n")
    from cosmic_utils.analysis.admission import ship

    assert not ship(runs_dir=runs, records_dir=recs).refused
    summary = json.loads((recs / "pipeline_demo-1_summary.json").read_text())
    assert summary == {"run_id": "demo-1", "request": {"model": "models/default"}, "wall_s": 35.5, **admitted}
    assert pd.read_csv(recs / "pipeline_demo-1.csv")["model"].tolist() == ["models/default"]


def test_write_records_adds_provenance_and_relative_paths(tmp_path: Path) -> None:
    path = write_records([{"engine": "onnx", "model_dir": str(config.PROJECT_ROOT / "models" / "default")}],
                         run_dir=tmp_path)
    row = pd.read_csv(path, keep_default_na=False).iloc[0]
    assert row["model_dir"] == "models/default"
    for key in ("git_commit", "git_dirty", "python_version", "numpy_version", "torch_version",
                "onnxruntime_version", "cpu_model", "isa", "cpu_flags", "isa_caps", "cpus"):
        assert key in row.index, key
    assert int(row["cpus"]) >= 1 and row["isa"]


def test_provenance_fields_and_git_outside_a_checkout(tmp_path: Path) -> None:
    prov = provenance()
    assert prov["python_version"] and prov["numpy_version"] and prov["cpu_model"]
    assert isinstance(prov["git_dirty"], bool)
    assert git_commit(str(tmp_path)) == ("", False)
