"""Bad input, injected faults and load through the local backend: every partition ends with its
result or in the failed list with its reason, the summary is always written, redrive recovers.

One embedded moto server (and its warm handler processes) serves the whole module; the model is
the tiny ONNX artifact of :func:`cosmic_utils.jobs.reliability.write_tiny_artifact` (the real artifact
format and engine, a graph that runs in microseconds), so the module stays around a minute. Several
bad inputs and faults share one run where they hit different partitions; the per-scenario runs
are what ``cosmic reliability`` does.

Throttling: the moto hook answers HTTP 429 ``TooManyRequestsException``; moto's Step Functions
interpreter calls Lambda with botocore retries switched off (``total_max_attempts=1``), so a
throttled partition that ends ``ok`` was re-invoked by the definition's own Retry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.jobs import reliability as rel
from cosmic_utils.runtime.request import RequestError, check_allowed, parse_request
from cosmic_utils.runtime.steps import common as step_common
from cosmic_utils.runtime.steps import inference as step_inference


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with rel.Harness(tmp_path_factory.mktemp("reliability"), concurrency=4) as h:
        rel.make_dataset(h.workdir / "inputs" / "good", 3)
        yield h


BAD = {1: "truncated", 2: "corrupt", 3: "wrong_shape", 4: "wrong_dtype", 5: "nan_image", 6: "inf_magnitude",
       7: "empty", 8: "checksum"}
EXPECT = {"truncated": "truncated: header says", "corrupt": "bad magic", "wrong_shape": "wrong shape",
          "wrong_dtype": "wrong dtype", "nan_image": "non-finite values (NaN) in image",
          "inf_magnitude": "non-finite values (inf) in magnitude", "empty": "empty partition",
          "checksum": "checksum mismatch", "missing": "missing from"}


def test_every_bad_partition_is_named_and_nothing_is_lost(harness: Any) -> None:
    data = harness.folder("bad-partitions")
    ids = rel.make_dataset(data, 12, damage=BAD, missing=(9,))
    result, run_dir = harness.run(harness.request("t-bad-partitions", data))
    assert result.status == "SUCCEEDED"
    acc = rel.account(run_dir, ids)
    assert (acc["ok"], acc["failed"], acc["lost"]) == (3, 9, 0)
    reasons = acc["failed_reasons"]
    for k, kind in {**BAD, 9: "missing"}.items():
        assert EXPECT[kind] in reasons[ids[k]], (kind, reasons[ids[k]])
        assert f"part-{k:05d}.cpart" in reasons[ids[k]]  # the message names the file
    assert result.summary["partitions_ok"] == 3 and result.summary["partitions_failed"] == 9


@pytest.mark.parametrize("scenario", ["duplicate_ids_manifest", "duplicate_ids_keys", "outside_allow_list",
                                      "run_id_reuse"])
def test_refusals_on_the_server(harness: Any, scenario: str) -> None:
    out = next(s for s in rel.SCENARIOS if s.__name__ == scenario)(harness)
    assert out.passed, out.row()
    assert out.lost == 0 and out.error


def test_request_refusals_name_the_problem(harness: Any) -> None:
    names = [s.__name__ for s in rel.SCENARIOS if s.__name__ in (
        "unknown_field", "missing_field", "code_field", "batch_size_zero", "batch_size_huge", "key_traversal",
        "key_absolute", "s3_traversal")]
    assert len(names) == 8
    for scenario in rel.SCENARIOS:
        if scenario.__name__ in names:
            out = scenario(harness)
            assert out.passed and out.outcome.startswith("refused"), out.row()


@pytest.mark.parametrize("scenario", ["model_missing", "model_checksum", "model_version", "predictions_nonfinite"])
def test_model_problems_fail_every_partition_with_the_reason(harness: Any, scenario: str) -> None:
    out = next(s for s in rel.SCENARIOS if s.__name__ == scenario)(harness)
    assert out.passed, out.row()
    assert (out.ok, out.failed, out.lost) == (0, 3, 0)
    if scenario == "predictions_nonfinite":
        rec = json.loads((harness.workdir / "runs" / "rel-predictions-nonfinite" / "records" /
                          "part-00000.json").read_text())
        assert rec["status"] == "failed" and rec["nonfinite_predictions"] == 4


def test_faults_then_redrive(harness: Any) -> None:
    data = harness.folder("faults")
    ids = rel.make_dataset(data, 6)
    faults = [
        {"kind": "crash", "partition": ids[1]},
        {"kind": "timeout", "partition": ids[2]},
        {"kind": "throttle", "partition": ids[3], "times": 2},
        {"kind": "upload_error", "partition": ids[4], "times": 1},
        {"kind": "upload_error", "partition": ids[5]},
    ]
    result, run_dir = harness.run(harness.request("t-faults", data, timeout_s=5), faults=faults)
    fired = {f["id"]: 0 for f in harness.fired}
    for f in harness.fired:
        fired[f["id"]] += 1
    # throttled twice then ok; upload failed once then ok; persistent upload: 1 attempt + 3 Retry (MaxAttempts 3)
    assert fired["f2"] == 2 and fired["f3"] == 1 and fired["f0"] >= 1 and fired["f1"] >= 1 and fired["f4"] == 4
    assert result.status == "SUCCEEDED" and (run_dir / "summary.json").exists()
    acc = rel.account(run_dir, ids)
    assert (acc["ok"], acc["failed"], acc["lost"]) == (3, 3, 0)
    reasons = acc["failed_reasons"]
    assert set(reasons) == {ids[1], ids[2], ids[5]}
    assert reasons[ids[1]] == step_common.NO_RECORD and reasons[ids[2]] == step_common.NO_RECORD
    assert "injected fault: upload" in reasons[ids[5]] and "writing predictions" in reasons[ids[5]]
    # redrive (the faults are gone): only the three failed partitions run, then everything is ok
    before = {p: json.loads((run_dir / "records" / f"{p}.json").read_text()).get("request_id") for p in ids[:1]}
    again = harness.redrive(run_dir)
    acc = rel.account(run_dir, ids)
    assert again.summary["partitions_ok"] == 6 and (acc["ok"], acc["failed"], acc["lost"]) == (6, 0, 0)
    assert json.loads((run_dir / "records" / f"{ids[0]}.json").read_text())["request_id"] == before[ids[0]]
    assert harness.redrive(run_dir).status == "NOTHING_TO_REDRIVE"


def test_crash_inside_a_multi_partition_invocation(harness: Any) -> None:
    out = next(s for s in rel.SCENARIOS if s.__name__ == "crash_with_world_size")(harness)
    assert out.passed, out.row()
    # partition 0 is in flight while partition 1 is prefetched: it may fail with the crash, never be lost
    assert (out.ok + out.failed, out.lost) == (3, 0) and out.failed >= 2, out.row()
    assert out.redrive.startswith("succeeded: 3 ok")


def test_small_load_through_the_map(harness: Any) -> None:
    out = rel.load_test(harness.workdir, partitions=24, max_concurrency=8, harness=harness)
    assert out.passed and (out.ok, out.lost) == (24, 0), out.row()
    assert out.details["summarize_peak_rss_mb"] is not None


@pytest.mark.slow
def test_load_2000_partitions(tmp_path: Path) -> None:
    out = rel.load_test(tmp_path, partitions=2000, max_concurrency=8)
    print(f"load: {out.outcome}; details {out.details}")
    assert out.passed and out.ok == 2000 and out.lost == 0
    assert out.details["summarize_peak_rss_mb"] < 400  # streamed: records are never all in memory


# ------------------------------------------------------------------ units
def test_allow_list_matches_whole_segments_and_resolves_paths(tmp_path: Path) -> None:
    req = parse_request({"run_id": "r", "data": "s3://data-bucket/runs2/x", "model": str(tmp_path / "m"),
                         "results": "s3://res-bucket/runs/a"})
    with pytest.raises(RequestError, match="field 'data'"):
        check_allowed(req, ["s3://data-bucket/runs", str(tmp_path)], ["s3://res-bucket/runs"])
    check_allowed(req, ["s3://data-bucket/runs2", str(tmp_path)], ["s3://res-bucket/runs"])
    sneaky = req.model_copy(update={"model": str(tmp_path / "m" / ".." / ".." / "etc")})
    with pytest.raises(RequestError, match="field 'model'"):
        check_allowed(sneaky, ["s3://data-bucket", str(tmp_path)], None)
    check_allowed(req, None, None)  # no allow-list configured: nothing checked


def test_verify_model_uses_the_artifact_checks(tmp_path: Path) -> None:
    model = rel.write_tiny_artifact(tmp_path / "tiny")
    step_inference.verify_model(model, "onnx")
    (model / "model.onnx").write_bytes((model / "model.onnx").read_bytes() + b"x")
    with pytest.raises(step_common.ModelError, match="sha256 mismatch"):
        step_inference.verify_model(model, "onnx")


def test_table_files(tmp_path: Path) -> None:
    outs = [rel.Outcome("a", "fault", "what", outcome="run succeeded", ok=2, failed=1, passed=True)]
    csv_path, md_path = rel.write_table(outs, tmp_path)
    assert csv_path.read_text().splitlines()[0].split(",") == list(rel.COLUMNS)
    assert "| a | what | run succeeded |" in md_path.read_text() and "faults fired" in md_path.read_text()


def test_cli_reliability(tmp_path: Path) -> None:
    """In a subprocess: the module's harness holds this process's moto hook."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "cosmic_utils.cli", "reliability", "--out", str(tmp_path / "out"),
                           "--only", "unknown_field,partition_wrong_dtype", "--load-partitions", "0"],
                          capture_output=True, text=True, timeout=300)
    printed = proc.stdout
    assert proc.returncode == 0, printed + proc.stderr[-2000:]
    assert "partition_wrong_dtype" in printed and "wrong dtype" in printed
    assert (tmp_path / "out" / "reliability.csv").exists() and (tmp_path / "out" / "reliability.md").exists()


def test_runner_refuses_an_existing_run_folder(tmp_path: Path) -> None:
    from cosmic_utils.cloud import runner

    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text("{}")
    req = {"run_id": "taken", "data": str(tmp_path), "model": str(tmp_path), "results": rel.LOCAL_RESULTS}
    with pytest.raises(runner.RunExistsError, match="--overwrite"):
        runner.run_pipeline(req, backend="local", run_dir=run_dir, progress=False)
    assert (run_dir / "summary.json").read_text() == "{}"  # untouched
    with pytest.raises(RequestError, match="redrive"):
        parse_request({**req, "redrive": True})  # a redrive must list its partitions
