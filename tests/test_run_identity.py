"""Run and model identity (issue 13): the run-folder lock, the execution chain that Summarize
counts, the model's sha256 in the engine cache key and in every record, manifest keys refused at
Init as failure records, unlisted files. Handlers run in-process on local folders with the tiny
ONNX artifact of the reliability harness, so every test takes well under a second or two."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmic_utils.cloud import runner
from cosmic_utils.cloud.lock import RunLockedError, run_lock
from cosmic_utils.jobs.reliability import make_dataset, write_tiny_artifact
from cosmic_utils.runtime.items import RunLayout
from cosmic_utils.runtime.steps import inference as step_inference
from cosmic_utils.runtime.steps import init as step_init
from cosmic_utils.runtime.steps import summarize as step_summarize
from cosmic_utils.runtime.storage import open_storage


class Ctx:
    aws_request_id = "req"
    memory_limit_in_mb = 1024


def _request(tmp: Path, **kw: Any) -> dict[str, Any]:
    return {"run_id": "ident", "data": str(tmp / "data"), "model": str(tmp / "model"),
            "results": str(tmp / "results"), "batch_size": 4, "threads": 1, **kw}


def _execute(request: dict[str, Any], exec_id: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Init -> Inference of every item (but those of ``skip``: a crashed worker) -> Summarize, in-process."""
    state = step_init.init_step({"request": request, "execution": {"id": exec_id}}, Ctx())
    items = json.loads(Path(state["items"]["uri"]).read_text())
    for item in items:
        if item["partitions"][0]["partition_id"] in skip:
            continue
        step_inference.inference_step({"item": item, "request": state["request"], "execution": state["execution"]}, Ctx())
    step_summarize.summarize_step({"state": state, "execution": {"id": exec_id}})
    return json.loads((Path(request["results"]) / "ident" / "summary.json").read_text())


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "data", 3)
    write_tiny_artifact(tmp_path / "model", scale=0.01)
    step_inference._ENGINES.clear()
    step_inference._MODEL_IDS.clear()
    return tmp_path


# ------------------------------------------------------------------ lock
def test_second_writer_refused_with_holder_pid(tmp_path: Path) -> None:
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            with run_lock(tmp_path / "run"):
                pass
        with pytest.raises(RunLockedError, match=str(os.getpid())):  # the runner refuses before touching it
            runner.run_pipeline(_request(tmp_path), run_dir=tmp_path / "run")
    with run_lock(tmp_path / "run"):  # released: taken again
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from cosmic_utils.cloud.lock import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"process {child.pid}"):
            with run_lock(tmp_path / "run"):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with run_lock(tmp_path / "run"):  # the kernel released the dead holder's lock
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


# ------------------------------------------------------------------ execution chain
def test_overwrite_never_counts_the_earlier_runs_records(tiny: Path) -> None:
    first = _execute(_request(tiny), "exec-A")
    assert first["partitions_ok"] == 3
    # The reproduction: StartExecution with overwrite=true over that run, partition 1 crashes.
    second = _execute(_request(tiny, overwrite=True), "exec-B", skip=("part-00001",))
    assert second["partitions_ok"] == 2 and second["partitions_failed"] == 1
    assert second["failed"][0]["partition_id"] == "part-00001" and "no record" in second["failed"][0]["error"]
    assert second["execution_chain"] == ["exec-B"]
    # A record of the earlier execution that reappears (a late writer) is still not counted.
    results = open_storage(str(tiny / "results"))
    old = json.loads(results.read_text("ident/records/part-00000.json"))
    results.write_text("ident/records/part-00001.json", json.dumps(dict(old, partition_id="part-00001",
                                                                        execution_id="exec-A")))
    again = step_summarize.summarize_records(step_summarize.iter_records(results, "ident"),
                                    json.loads(results.read_text("ident/partitions.json")),
                                    step_init.parse_request(_request(tiny)), None,
                                    executions=step_init.execution_chain(results, "ident"))
    assert again["partitions_ok"] == 2 and again["records_of_other_executions_ignored"] == 1


def test_redrive_extends_the_chain_and_counts_both(tiny: Path) -> None:
    first = _execute(_request(tiny), "exec-A", skip=("part-00002",))
    assert first["partitions_ok"] == 2
    second = _execute(_request(tiny, partitions=["part-00002.cpart"], redrive=True), "exec-B")
    assert second["partitions_ok"] == 3 and second["execution_chain"] == ["exec-A", "exec-B"]
    rec = json.loads((tiny / "results" / "ident" / "records" / "part-00002.json").read_text())
    assert rec["execution_id"] == "exec-B" and rec["attempt"] == 2


# ------------------------------------------------------------------ model identity
def _preds(tiny: Path, pid: str) -> np.ndarray:
    lines = (tiny / "results" / "ident" / "predictions" / f"{pid}.csv").read_text().splitlines()[1:]
    return np.array([float(line.split(",")[2]) for line in lines])


def test_model_replaced_in_place_is_used_at_once(tiny: Path) -> None:
    sha1 = hashlib.sha256((tiny / "model" / "artifact.json").read_bytes()).hexdigest()
    s1 = _execute(_request(tiny), "exec-A")
    z1 = _preds(tiny, "part-00000")
    assert s1["model_sha256"] == sha1
    time.sleep(0.01)
    write_tiny_artifact(tiny / "model", scale=0.02)  # same location, new model; the engine cache is warm
    sha2 = hashlib.sha256((tiny / "model" / "artifact.json").read_bytes()).hexdigest()
    assert sha2 != sha1
    s2 = _execute(_request(tiny, overwrite=True), "exec-B")
    np.testing.assert_allclose(_preds(tiny, "part-00000"), 2 * z1, rtol=1e-5)
    assert s2["model_sha256"] == sha2
    rec = json.loads((tiny / "results" / "ident" / "records" / "part-00001.json").read_text())
    assert rec["model_sha256"] == sha2


def test_summary_lists_each_model_with_its_partitions(tiny: Path) -> None:
    recs = [{"partition_id": str(i), "status": "ok", "model_sha256": "a" if i < 2 else "b"} for i in range(3)]
    s = step_summarize.summarize_records(recs, [{"partition_id": str(i)} for i in range(3)],
                                step_init.parse_request(_request(tiny)), None)
    assert s["model_sha256"] is None and "2 different models" in s["models_note"]
    assert s["models"] == [{"model_sha256": "a", "partitions_ok": 2}, {"model_sha256": "b", "partitions_ok": 1}]


# ------------------------------------------------------------------ manifest keys, unlisted files
def test_bad_manifest_key_is_a_failure_record_and_never_blocks_redrive(tiny: Path) -> None:
    raw = json.loads((tiny / "data" / "manifest.json").read_text())
    raw["entries"][1]["key"] = "../x.cpart"
    raw["entries"].append(dict(raw["entries"][0], partition_id=7, key="/abs.cpart"))
    (tiny / "data" / "manifest.json").write_text(json.dumps(raw))
    (tiny / "data" / "stray.cpart").write_bytes((tiny / "data" / "part-00000.cpart").read_bytes())
    state = step_init.init_step({"request": _request(tiny), "execution": {"id": "exec-A"}}, Ctx())
    assert state["partitions"] == 4 and state["invalid_keys"] == 2 and state["workers"] == 2
    assert state["unlisted"] == 2 and "stray.cpart" in state["unlisted_keys"]  # + part-00001, no longer listed
    summary = _execute(_request(tiny, overwrite=True), "exec-B")
    reasons = {f["key"]: f["error"] for f in summary["failed"]}
    assert summary["partitions_ok"] == 2 and set(reasons) == {"../x.cpart", "/abs.cpart"}
    assert "'..' segment" in reasons["../x.cpart"] and "absolute" in reasons["/abs.cpart"]
    assert summary["unlisted"] == 2
    # the runner's redrive list skips the refused keys, so it never carries an invalid key
    run_dir = tiny / "run"
    (run_dir / "records").mkdir(parents=True)
    layout = RunLayout("ident")
    results = open_storage(str(tiny / "results"))
    (run_dir / "partitions.json").write_text(results.read_text(layout.partitions))
    for key in results.list_keys(layout.records_prefix):
        (run_dir / "records" / key.rsplit("/", 1)[-1]).write_text(results.read_text(key))
    (run_dir / "predictions").mkdir()  # an ok partition counts only with its predictions on disk
    for key in results.list_keys(layout.predictions_prefix):
        (run_dir / "predictions" / key.rsplit("/", 1)[-1]).write_bytes(results.read_bytes(key))
    assert runner.failed_partitions(run_dir) == []
