"""A partition counts only when its predictions are on disk as its record says; links are not followed.

Issue 22: a full disk left a 0-byte predictions file under an "ok" record and the redrive found
nothing to do; a partition file replaced by a symbolic link was read through the link and its
target's first bytes were copied into the run's outputs. Local backend, tiny ONNX model.
"""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path
from typing import Any

import pytest
from test_handlers import make_dataset
from test_local_backend import _request

from cosmic_utils.cloud import runner
from cosmic_utils.jobs.reliability import write_tiny_artifact
from cosmic_utils.runtime.storage import open_storage

SECRET = "root:x:0:0:SECRET-OUTSIDE-THE-DATASET"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("model") / "tiny")


def _status(run_dir: Path) -> dict[str, str]:
    with (run_dir / "records.csv").open() as fh:
        return {r["partition_id"]: r["status"] for r in csv.DictReader(fh)}


def _all_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_a_linked_partition_is_refused_unopened_and_nothing_of_its_target_is_published(
        tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    make_dataset(open_storage(data), 4, samples=8)
    outside = tmp_path / "passwd"
    outside.write_text(SECRET + "\n" * 100)
    (data / "part-00002.cpart").unlink()
    (data / "part-00002.cpart").symlink_to(outside)
    run_dir = tmp_path / "runs" / "link"
    s = runner.run_pipeline(_request("link", data, tiny_model), backend="local", run_dir=run_dir,
                            progress=False, timeout_s=300).summary
    assert s["partitions_ok"] == 3 and [f["partition_id"] for f in s["failed"]] == ["part-00002"]
    assert "symbolic link" in s["failed"][0]["error"]
    assert "root:x" not in _all_text(run_dir) and "SECRET" not in _all_text(run_dir)


def test_full_disk_fails_the_partition_and_the_redrive_reruns_it(tmp_path: Path, tiny_model: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_dataset(open_storage(data), 6, samples=10)
    real = runner.durable_write

    def full(path: Any, body: bytes) -> None:
        if Path(path).parent.name == "predictions" and Path(path).name.startswith("part-00004"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, body)

    monkeypatch.setattr(runner, "durable_write", full)
    run_dir = tmp_path / "runs" / "full"
    s = runner.run_pipeline(_request("full", data, tiny_model), backend="local", run_dir=run_dir,
                            progress=False, timeout_s=300).summary
    assert s["partitions_ok"] == 5 and [f["partition_id"] for f in s["failed"]] == ["part-00004"]
    assert "No space left on device" in s["failed"][0]["error"] and "--redrive" in s["failed"][0]["error"]
    assert _status(run_dir)["part-00004"] == "failed"
    assert not list((run_dir / "predictions").glob("part-00004*"))  # no 0-byte file left behind
    assert not list((run_dir / "predictions").glob(".*tmp*"))
    monkeypatch.setattr(runner, "durable_write", real)  # space freed
    assert runner.failed_partitions(run_dir) == ["part-00004.cpart"]
    again = runner.redrive(run_dir, backend="local", progress=False, timeout_s=300)
    assert again.summary["partitions_ok"] == 6 and _status(run_dir)["part-00004"] == "ok"
    rec = json.loads((run_dir / "records" / "part-00004.json").read_text())
    assert (run_dir / "predictions" / rec["predictions_file"]).stat().st_size == rec["predictions_bytes"] > 0


def test_an_ok_record_whose_file_is_short_or_gone_is_redriven(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    make_dataset(open_storage(data), 4, samples=8)
    run_dir = tmp_path / "runs" / "short"
    runner.run_pipeline(_request("short", data, tiny_model), backend="local", run_dir=run_dir,
                        progress=False, timeout_s=300)
    assert runner.failed_partitions(run_dir) == []
    recs = {p.stem: json.loads(p.read_text()) for p in (run_dir / "records").glob("*.json")}
    assert all(r["predictions_bytes"] > 0 and len(r["predictions_sha256"]) == 64 for r in recs.values())
    (run_dir / "predictions" / recs["part-00001"]["predictions_file"]).write_bytes(b"")  # a crash mid-copy
    (run_dir / "predictions" / recs["part-00003"]["predictions_file"]).unlink()
    assert runner.failed_partitions(run_dir) == ["part-00001.cpart", "part-00003.cpart"]
    assert "0 bytes, its record says" in (runner.predictions_problem(run_dir, recs["part-00001"]) or "")
    again = runner.redrive(run_dir, backend="local", progress=False, timeout_s=300)
    assert again.summary["partitions_ok"] == 4 and runner.failed_partitions(run_dir) == []


def test_read_only_results_folder_mid_run_reports_nothing_as_done(tmp_path: Path, tiny_model: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_dataset(open_storage(data), 3, samples=8)
    real = runner.durable_write

    def read_only(path: Any, body: bytes) -> None:
        if Path(path).parent.name == "records":
            raise OSError(errno.EROFS, "Read-only file system")
        real(path, body)

    monkeypatch.setattr(runner, "durable_write", read_only)
    run_dir = tmp_path / "runs" / "ro"
    with pytest.raises(OSError, match="Read-only"):
        runner.run_pipeline(_request("ro", data, tiny_model), backend="local", run_dir=run_dir,
                            progress=False, timeout_s=300)
    assert not (run_dir / "records.csv").exists() and not (run_dir / "summary.json").exists()
    monkeypatch.setattr(runner, "durable_write", real)
    assert len(runner.failed_partitions(run_dir)) == 3  # no record: none counts as done
    again = runner.redrive(run_dir, backend="local", progress=False, timeout_s=300)
    assert again.summary["partitions_ok"] == 3
