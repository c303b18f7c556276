"""The local backend end to end: the aws deploy code against an embedded moto server, moto's ASL
interpreter running the real definition, Lambda invocations routed to the real handlers (from the
deployed zips) in child processes by the moto hook, with the real ONNX engine.

The model is a tiny ONNX graph in the artifact format (z = mean r-band magnitude / 100), so the
runs take seconds; the untrained full network is exercised by the slow test at the end.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from test_handlers import make_dataset  # tests/ is on sys.path under pytest

from cosmic_utils.cloud import moto_hook, runner
from cosmic_utils.jobs.reliability import write_tiny_artifact
from cosmic_utils.runtime.storage import open_storage


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_artifact(tmp_path_factory.mktemp("model") / "tiny")


def _request(run_id: str, data: Path, model: Path, **kw: Any) -> dict[str, Any]:
    return {"run_id": run_id, "data": str(data), "model": str(model), "results": "s3://cosmic-local-results/runs",
            "batch_size": 4, "max_concurrency": 4, "memory_mb": 1024, "timeout_s": 60, "threads": 1, **kw}


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "records.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_hook_matches_pinned_moto() -> None:
    cls = moto_hook.check_moto()
    assert list(inspect.signature(cls._invoke_lambda).parameters) == ["self", "event"]


def test_hook_fails_loudly_when_moto_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.awslambda import models

    def changed(self: Any, event: Any = None, context: Any = None) -> Any:  # a different signature
        return None

    monkeypatch.setattr(models.LambdaFunction, "_invoke_lambda", changed)
    with pytest.raises(moto_hook.MotoHookError, match="changed"):
        moto_hook.check_moto()
    monkeypatch.delattr(models.LambdaFunction, "_invoke_lambda")
    with pytest.raises(moto_hook.MotoHookError, match="gone"):
        moto_hook.check_moto()


def test_local_run_end_to_end_with_a_corrupt_partition_then_redrive(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    store = open_storage(data)
    make_dataset(store, 6, samples=10, corrupt=(3,))
    run_dir = tmp_path / "runs" / "e2e"
    result = runner.run_pipeline(_request("e2e", data, tiny_model), backend="local", run_dir=run_dir,
                                 progress=False, timeout_s=300)
    s = result.summary
    assert result.status == "SUCCEEDED"
    assert s["partitions"] == 6 and s["partitions_ok"] == 5 and s["partitions_failed"] == 1
    assert [f["partition_id"] for f in s["failed"]] == ["part-00003"]
    assert "checksum" in s["failed"][0]["error"]
    assert s["summary_in_execution"]["partitions_ok"] == 5  # Summarize ran inside the state machine
    assert s["billing"]["billed_source"]["report"] == 6  # REPORT lines of the hook, parsed like CloudWatch's
    assert s["accuracy"]["labelled_samples"] == 50 and s["accuracy"]["mae"] < 0.05
    assert s["wall_s"] > 0 and s["throughput"]["end_to_end_gb_s"] > 0
    rows = _rows(run_dir)
    assert list(rows[0])[:19] == list(runner.RECORD_COLUMNS)
    assert len(rows) == 6 and {r["backend"] for r in rows} == {"local"}
    assert all(int(r["billed_duration_ms"]) >= 1 and r["memory_mb"] == "1024" for r in rows)
    assert any(r["cold_start"] == "True" for r in rows)
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == [
        f"part-0000{k}.csv" for k in (0, 1, 2, 4, 5)]
    for name in ("request.json", "summary.json", "partitions.json"):
        assert (run_dir / name).exists()

    # fix the partition, redrive: only it runs, the others keep their records
    before = {r["partition_id"]: r["request_id"] for r in rows}
    make_dataset(store, 6, samples=10)
    again = runner.redrive(run_dir, backend="local", progress=False, timeout_s=300)
    assert again.summary["partitions_ok"] == 6 and again.summary["partitions_failed"] == 0
    assert again.summary["redrives"] == 1 and len(again.summary["executions"]) == 2
    after = {r["partition_id"]: r for r in _rows(run_dir)}
    assert len(after) == 6 and after["part-00003"]["status"] == "ok" and after["part-00003"]["attempt"] == "2"
    assert all(after[p]["request_id"] == before[p] for p in before if p != "part-00003")
    assert after["part-00003"]["request_id"] != before["part-00003"]
    # a second redrive of a complete run does nothing
    assert runner.redrive(run_dir, backend="local", progress=False).status == "NOTHING_TO_REDRIVE"


def test_world_size_and_staged_data(tmp_path: Path, tiny_model: Path) -> None:
    data = tmp_path / "data"
    make_dataset(open_storage(data), 5, samples=4)
    result = runner.run_pipeline(_request("ws", data, tiny_model, world_size=2), backend="local",
                                 run_dir=tmp_path / "ws", progress=False, stage_data=True, timeout_s=300)
    assert result.summary["partitions_ok"] == 5 and result.summary["workers"] == 2
    assert json.loads((tmp_path / "ws" / "request.json").read_text())["data"].startswith("s3://")
    rows = _rows(tmp_path / "ws")
    assert sorted({r["worker_id"] for r in rows}) == ["0", "1"]
    assert len({r["request_id"] for r in rows}) == 2  # two invocations, billed once each


# ------------------------------------------------------------------ the runtime behind the hook
HANDLER = '''
import os, time
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("bad data " + str(event["fail"]))
    if event.get("torch"):
        import torch  # noqa: F401
    print("to the log, not the protocol")
    return {"pid": os.getpid(), "mem": context.memory_limit_in_mb, "rid": context.aws_request_id,
            "endpoint": os.environ["AWS_ENDPOINT_URL"], "left": context.get_remaining_time_in_millis()}
'''


class _Logs:
    def ensure_log_group(self, name: str) -> None:
        pass


class FakeFunction:
    """The attributes of moto's LambdaFunction the runtime reads."""

    def __init__(self, timeout: int = 5) -> None:
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("handler.py", HANDLER)
        self.code_bytes = buf.getvalue()
        self.code_sha_256 = hashlib.sha256(self.code_bytes).hexdigest()
        self.timeout, self.memory_size, self.handler = timeout, 512, "handler.handler"
        self.function_name, self.region = "fake-fn", "us-east-1"
        self.function_arn = "arn:aws:lambda:us-east-1:123456789012:function:fake-fn"
        self.environment_vars = {"EXTRA": "1"}
        self.logs_backend, self.logs_group_name = _Logs(), "/aws/lambda/fake-fn"
        self.saved: list[str] = []

    def save_logs(self, text: str) -> None:
        self.saved.append(text)


@pytest.fixture()
def lambda_runtime(tmp_path: Path) -> Any:
    rt = moto_hook.LocalLambdaRuntime("http://127.0.0.1:1", concurrency=2, workdir=tmp_path)
    yield rt
    rt.close()


def test_runtime_warm_reuse_report_and_errors(lambda_runtime: Any) -> None:
    from cosmic_utils.cloud.cloudwatch import parse_report_line

    fn = FakeFunction()
    payload, err, logs = lambda_runtime.invoke(fn, {})
    first = json.loads(payload)
    assert not err and first["mem"] == 512 and first["endpoint"] == "http://127.0.0.1:1"
    assert 0 < first["left"] <= 5000
    cold = parse_report_line(logs.splitlines()[-1])
    assert cold is not None and cold.cold_start and cold.memory_size_mb == 512 and cold.request_id == first["rid"]
    payload, err, logs = lambda_runtime.invoke(fn, {})
    assert json.loads(payload)["pid"] == first["pid"]  # the warm container served it
    assert not parse_report_line(logs.splitlines()[-1]).cold_start
    payload, err, _ = lambda_runtime.invoke(fn, {"fail": 7})
    assert err and json.loads(payload)["errorType"] == "ValueError" and "bad data 7" in json.loads(payload)["errorMessage"]
    payload, err, _ = lambda_runtime.invoke(fn, {"torch": True})
    assert err and "torch" in json.loads(payload)["errorMessage"]
    assert len(fn.saved) == 4 and lambda_runtime.cold_starts == 1


def test_runtime_enforces_timeout(lambda_runtime: Any) -> None:
    fn = FakeFunction(timeout=1)
    payload, err, logs = lambda_runtime.invoke(fn, {"sleep": 5})
    assert err and json.loads(payload)["errorType"] == "Sandbox.Timedout"
    payload, err, _ = lambda_runtime.invoke(fn, {})
    assert not err  # a fresh container replaced the killed one
    assert lambda_runtime.cold_starts == 2


def test_runtime_bounds_concurrency(lambda_runtime: Any) -> None:
    import threading
    import time

    fn = FakeFunction()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda_runtime.invoke, args=(fn, {"sleep": 0.5})) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 4 invocations of 0.5 s through 2 slots take at least 2 rounds
    assert time.perf_counter() - t0 >= 1.0
    assert lambda_runtime.cold_starts == 2


def test_cli_run_local(tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    data = tmp_path / "data"
    make_dataset(open_storage(data), 2, samples=3)
    out = tmp_path / "runs" / "cli-run"
    code = main(["run", "--backend", "local", "--data", str(data), "--model", str(tiny_model), "--batch-size", "2",
                 "--max-concurrency", "2", "--memory-mb", "512", "--timeout-s", "60", "--out", str(out),
                 "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "partitions 2: ok 2, failed 0" in printed
    assert (out / "summary.json").exists() and (out / "records.csv").exists() and (out / "request.json").exists()
    assert main(["run", "--redrive", str(out), "--no-progress"]) == 0
    assert "nothing to redrive" in capsys.readouterr().out


def test_failed_init_is_reported_not_crashed(tmp_path: Path, tiny_model: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.run_pipeline(_request("noparts", empty, tiny_model), backend="local", run_dir=tmp_path / "np",
                                 progress=False, timeout_s=120)
    assert result.status == "FAILED" and result.summary["execution_error"] == "DataError"
    assert "no .cpart partitions" in result.summary["execution_cause"]


@pytest.mark.slow
def test_local_run_with_the_untrained_full_model(tmp_path: Path) -> None:
    """The exported pcm-AstroMAE graph (random weights) through the whole local pipeline."""
    import time

    from cosmic_utils.model.artifacts import create_untrained_artifact

    model = Path(create_untrained_artifact(tmp_path / "models" / "untrained", seed=0).path)
    data = tmp_path / "data"
    make_dataset(open_storage(data), 4, samples=32)
    t0 = time.perf_counter()
    result = runner.run_pipeline(_request("full", data, model, batch_size=16, max_concurrency=2, memory_mb=2048),
                                 backend="local", run_dir=tmp_path / "full", progress=False, timeout_s=600)
    print(f"local run, 4 partitions x 32 samples, full model: {time.perf_counter() - t0:.1f} s")
    assert result.summary["partitions_ok"] == 4
    assert result.summary["timing"]["max_peak_rss_mb"] > 100


PACKAGING_HANDLER = '''
import sys


def handler(event, context):
    import packaging
    import packaging.version

    return {"version": str(packaging.version.Version("1.2")), "packaging": packaging.__file__, "path": sys.path,
            "cosmic": sorted(m for m in sys.modules if m.startswith("cosmic_utils"))}
'''


def test_child_has_pip_packaging_and_no_package_folder_on_path(lambda_runtime: Any) -> None:
    """The child starts with the zip first on sys.path and no cosmic_utils/*/ folder (a script folder there
    once let the project's packaging.py shadow pip's, breaking onnxruntime.quantization)."""
    import io
    import zipfile

    fn = FakeFunction()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", PACKAGING_HANDLER)
    fn.code_bytes = buf.getvalue()
    fn.code_sha_256 = hashlib.sha256(fn.code_bytes).hexdigest()
    payload, err, _ = lambda_runtime.invoke(fn, {})
    assert not err, payload
    out = json.loads(payload)
    assert out["version"] == "1.2" and "cosmic_utils" not in out["packaging"]
    assert not [p for p in out["path"] if "cosmic_utils" in Path(p).parts]
    assert out["path"][0].endswith(fn.code_sha_256[:12]) or "handler.py" in {p.name for p in Path(out["path"][0]).iterdir()}
    assert not [m for m in out["cosmic"] if m.startswith("cosmic_utils.cloud")]  # not started as a module of the package


def test_onnx_int8_without_an_int8_graph_runs(tmp_path: Path, tiny_model: Path) -> None:
    """--engine onnx-int8 on an artifact with no int8 graph: the Lambda quantises it (onnx +
    onnxruntime.quantization, which imports pip's packaging) and the run does not fail on an import."""
    assert "onnx_int8" not in json.loads((tiny_model / "artifact.json").read_text())["files"]
    data = tmp_path / "data"
    make_dataset(open_storage(data), 2, samples=8)
    result = runner.run_pipeline(_request("int8", data, tiny_model, engine="onnx-int8"), backend="local",
                                 run_dir=tmp_path / "int8", progress=False, timeout_s=300)
    s = result.summary
    assert "Import" not in json.dumps(s.get("failed", [])) + str(s.get("execution_cause", ""))
    assert result.status == "SUCCEEDED" and s["partitions_ok"] == 2, s.get("failed")
