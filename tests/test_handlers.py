"""Handlers called as Lambda calls them: handler(event, context) with JSON event files and a fake
context, against moto's in-process S3. Init and Summarize are also checked beyond 1,000 partitions.

The Inference tests replace the engine by a tiny deterministic double (in this file only) so
they stay fast; the real ONNX engine runs in tests/test_local_backend.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from cosmic_utils import config
from cosmic_utils.jobs.fault_kit import partition_bytes
from cosmic_utils.runtime.items import RunLayout, build_items, split_even
from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import partition_name
from cosmic_utils.runtime.steps import common as step_common
from cosmic_utils.runtime.steps import inference as step_inference
from cosmic_utils.runtime.steps import summarize as step_summarize
from cosmic_utils.runtime.storage import open_storage

EVENTS = Path(__file__).parent / "events"
DATA_BUCKET = "test-data-bucket"
RESULTS_BUCKET = "test-results-bucket"


class FakeContext:
    """The context attributes the handlers read."""

    def __init__(self, memory_mb: int = 2048, request_id: str = "req-1") -> None:
        self.aws_request_id = request_id
        self.memory_limit_in_mb = memory_mb
        self.function_name = "test-fn"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-fn"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class DoubleEngine:
    """Test double of the engine interface: z = mean of the r-band magnitude / 100."""

    name = "double"
    precision = "fp32"

    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        return (magnitude[:, 2] / 100.0).astype(np.float32)

    def close(self) -> None:
        pass


def load_handler(name: str) -> ModuleType:
    path = config.LAMBDA_DIR / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_handler", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_dataset(store: Any, partitions: int, samples: int = 5, corrupt: tuple[int, ...] = ()) -> Manifest:
    """``partitions`` tiny partitions plus manifest.json; ``corrupt`` ones are damaged AFTER the
    manifest recorded their checksum (what a bit flip in transit looks like)."""
    import hashlib

    entries = []
    for k in range(partitions):
        blob = partition_bytes(samples, k)
        key = partition_name(k)
        entries.append(ManifestEntry(k, key, samples, len(blob), hashlib.sha256(blob).hexdigest(), "test", k))
        if k in corrupt:
            blob = blob[:-64] + b"\xff" * 64
        store.write_bytes(key, blob)
    manifest = Manifest(entries=entries, source="test")
    manifest.write(store)
    return manifest


def event(name: str, **request_updates: Any) -> dict[str, Any]:
    ev = json.loads((EVENTS / f"{name}.json").read_text())
    req = ev if name == "init" else ev["request"] if name == "inference" else ev["state"]["request"]
    req.update(request_updates)
    return ev


@pytest.fixture()
def s3(monkeypatch: pytest.MonkeyPatch) -> Any:
    from moto import mock_aws

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("COSMIC_S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=DATA_BUCKET)
        client.create_bucket(Bucket=RESULTS_BUCKET)
        yield client


@pytest.fixture()
def double_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step_inference, "get_engine", lambda request: (DoubleEngine(), 0.01, True))


def run_all(init_event: dict[str, Any]) -> dict[str, Any]:
    """Init -> every item through Inference -> Summarize, in process (what the Map does)."""
    init_out = load_handler("init").handler(init_event, FakeContext())
    request = parse = init_out["request"]
    results = open_storage(parse["results"])
    items = json.loads(results.read_text(RunLayout(request["run_id"]).items))
    inference = load_handler("inference")
    for i, item in enumerate(items):
        out = inference.handler({"item": item, "request": request}, FakeContext(request_id=f"req-{i}"))
        assert set(out) == {"ok", "failed"}
    return load_handler("summarize").handler(
        {"state": init_out, "execution": {"id": "x", "start_time": "2026-01-01T00:00:00Z"}}, FakeContext())


def test_init_handler_writes_items(s3: Any) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 3)
    out = load_handler("init").handler(event("init"), FakeContext())
    assert out["partitions"] == 3 and out["workers"] == 3
    assert out["items"] == {"uri": f"s3://{RESULTS_BUCKET}/runs/handler-test/items.json",
                            "bucket": RESULTS_BUCKET, "key": "runs/handler-test/items.json"}
    assert len(json.dumps(out)) < 256 * 1024
    items = json.loads(s3.get_object(Bucket=RESULTS_BUCKET, Key="runs/handler-test/items.json")["Body"].read())
    assert [it["partitions"][0]["key"] for it in items] == [partition_name(k) for k in range(3)]
    assert all(it["partitions"][0]["sha256"] for it in items)


def test_init_refuses_code_fields(s3: Any) -> None:
    with pytest.raises(ValueError, match="script"):
        load_handler("init").handler({**event("init"), "script": "/tmp/x.py"}, FakeContext())


def test_world_size_spreads_partitions_evenly(s3: Any) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 7)
    out = load_handler("init").handler(event("init", world_size=3), FakeContext())
    items = json.loads(open_storage(f"s3://{RESULTS_BUCKET}/runs").read_text("handler-test/items.json"))
    assert out["workers"] == 3 and [len(it["partitions"]) for it in items] == [3, 2, 2]
    assert [len(s) for s in split_even(list(range(10)), 4)] == [3, 3, 2, 2]
    assert len(build_items([{"k": 1}, {"k": 2}], 5)) == 2


def test_full_run_in_process(s3: Any, double_engine: None) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 4, samples=6, corrupt=(2,))
    out = run_all(event("init"))
    assert out["partitions"] == 4 and out["partitions_ok"] == 3 and out["partitions_failed"] == 1
    results = open_storage(f"s3://{RESULTS_BUCKET}/runs")
    summary = json.loads(results.read_text("handler-test/summary.json"))
    assert [f["partition_id"] for f in summary["failed"]] == ["part-00002"]
    assert "checksum" in summary["failed"][0]["error"] or "part-00002" in summary["failed"][0]["error"]
    assert summary["samples"] == 18 and summary["data_bytes"] == 18 * config.SAMPLE_BYTES
    assert summary["accuracy"]["labelled_samples"] == 18
    assert summary["accuracy"]["mae"] < 0.05 and summary["accuracy"]["sigma_nmad"] < 0.05
    assert summary["accuracy"]["outlier_015"] == 0.0
    assert summary["throughput"]["per_worker_gb_s"] > 0 and summary["billing"]["gb_seconds"] > 0
    rec = json.loads(results.read_text("handler-test/records/part-00000.json"))
    for key in ("download_s", "load_s", "inference_s", "upload_s", "peak_rss_mb", "cold_start", "engine",
                "batch_size", "memory_mb", "request_id"):
        assert key in rec
    assert rec["memory_mb"] == 2048 and rec["status"] == "ok"
    preds = results.read_text("handler-test/predictions/part-00000.csv").splitlines()
    assert preds[0] == "partition_id,row,z_pred,z_true" and len(preds) == 7
    assert not results.exists("handler-test/predictions/part-00002.csv")


def test_missing_record_counts_as_failed(s3: Any, double_engine: None) -> None:
    store = open_storage(f"s3://{DATA_BUCKET}/ds")
    make_dataset(store, 3)
    init_out = load_handler("init").handler(event("init"), FakeContext())
    items = json.loads(open_storage(f"s3://{RESULTS_BUCKET}/runs").read_text("handler-test/items.json"))
    load_handler("inference").handler({"item": items[0], "request": init_out["request"]}, FakeContext())
    out = load_handler("summarize").handler({"state": init_out, "execution": {}}, FakeContext())
    assert out["partitions_ok"] == 1 and out["partitions_failed"] == 2
    summary = json.loads(open_storage(f"s3://{RESULTS_BUCKET}/runs").read_text("handler-test/summary.json"))
    assert {f["error"] for f in summary["failed"]} == {step_common.NO_RECORD}


def test_retry_overwrites_only_its_own_outputs(s3: Any, double_engine: None) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 2)
    run_all(event("init"))
    results = open_storage(f"s3://{RESULTS_BUCKET}/runs")
    other = results.read_bytes("handler-test/records/part-00001.json")
    items = json.loads(results.read_text("handler-test/items.json"))
    req = json.loads(results.read_text("handler-test/partitions.json"))
    assert len(req) == 2
    init_request = event("init")
    load_handler("inference").handler({"item": items[0], "request": init_request}, FakeContext(request_id="again"))
    assert results.read_bytes("handler-test/records/part-00001.json") == other
    assert json.loads(results.read_text("handler-test/records/part-00000.json"))["request_id"] == "again"


def test_infrastructure_error_raises(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 1)
    ev = event("inference")
    ev["request"]["results"] = "s3://no-such-results-bucket/runs"
    monkeypatch.setattr(step_inference, "get_engine", lambda request: (DoubleEngine(), 0.0, True))
    with pytest.raises(step_common.InfrastructureError, match="no-such-results-bucket"):
        load_handler("inference").handler(ev, FakeContext())


def test_model_load_failure_is_infrastructure(s3: Any) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 1)
    step_inference._ENGINES.clear()
    with pytest.raises(step_common.InfrastructureError, match="loading model"):
        load_handler("inference").handler(event("inference"), FakeContext())


def test_init_and_summarize_beyond_1000_partitions(s3: Any) -> None:
    n = 1105
    for k in range(n):  # Init only lists keys; contents do not matter here
        s3.put_object(Bucket=DATA_BUCKET, Key=f"many/{partition_name(k)}", Body=b"x")
    out = load_handler("init").handler(event("init", data=f"s3://{DATA_BUCKET}/many", run_id="many"), FakeContext())
    assert out["partitions"] == n
    results = open_storage(f"s3://{RESULTS_BUCKET}/runs")
    expected = json.loads(results.read_text("many/partitions.json"))
    assert len(expected) == n
    body = {"status": "ok", "samples": 2, "data_bytes": 2 * config.SAMPLE_BYTES, "inference_s": 0.01,
            "duration_s": 0.02, "memory_mb": 1024, "cold_start": False, "run_id": "many"}
    for k, e in enumerate(expected[:-3]):
        rec = dict(body, partition_id=e["partition_id"], key=e["key"], worker_id=k)
        s3.put_object(Bucket=RESULTS_BUCKET, Key=f"runs/many/records/{e['partition_id']}.json", Body=json.dumps(rec))
    summ = load_handler("summarize").handler({"state": out, "execution": {}}, FakeContext())
    assert summ["partitions"] == n and summ["partitions_ok"] == n - 3 and summ["partitions_failed"] == 3
    summary = json.loads(results.read_text("many/summary.json"))
    assert summary["samples"] == 2 * (n - 3)
    assert summary["billing"]["billed_ms_total"] == 20 * n - 60
    assert summary["billing"]["gb_seconds"] == pytest.approx((n - 3) * 0.02)


def test_partition_limit_and_explicit_partitions(s3: Any) -> None:
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 5)
    out = load_handler("init").handler(event("init", partition_limit=2), FakeContext())
    assert out["partitions"] == 2
    out = load_handler("init").handler(event("init", run_id="pick", partitions=["part-00004.cpart"]), FakeContext())
    assert out["partitions"] == 1
    with pytest.raises(step_common.DataError, match="part-00009"):
        load_handler("init").handler(event("init", partitions=["part-00009.cpart"]), FakeContext())


def test_accuracy_sums_merge_to_global_metrics() -> None:
    rng = np.random.default_rng(0)
    zt = rng.uniform(0.02, 0.3, 4000)
    zp = zt + rng.normal(0, 0.02, zt.size) * (1 + zt)
    agg = step_summarize.RunAggregate([{"partition_id": str(i)} for i in range(4)])
    for i, sl in enumerate(np.array_split(np.arange(zt.size), 4)):
        agg.add({"partition_id": str(i), "status": "ok", "accuracy": step_inference.accuracy_sums(zp[sl], zt[sl])})
    acc = agg.accuracy()
    from cosmic_utils.runtime.metrics import redshift_metrics

    ref = redshift_metrics(zt, zp)  # the project's definitions, on all predictions at once
    assert acc["labelled_samples"] == ref["n"]
    assert acc["sigma_nmad"] == pytest.approx(ref["sigma_nmad"], abs=3e-4)
    for key in ("mae", "mse", "bias", "outlier_005", "outlier_015", "r2"):
        assert acc[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key


@pytest.fixture(scope="module")
def untrained_artifact(untrained_artifact_dir: Path) -> Path:
    """The real network (random weights) exported to ONNX, shared by the session (conftest)."""
    return untrained_artifact_dir


def test_inference_handler_with_the_real_onnx_model(s3: Any, untrained_artifact: Path) -> None:
    """Init -> Inference -> Summarize with the exported pcm-AstroMAE graph, the model read from S3
    (as on Lambda: downloaded once to /tmp, engine cached per warm container)."""
    models = open_storage(f"s3://{RESULTS_BUCKET}/models/untrained")
    for name in ("artifact.json", "model.onnx"):
        models.upload_file(untrained_artifact / name, name)
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 2, samples=6)
    step_inference._ENGINES.clear()
    ev = event("init", model=f"s3://{RESULTS_BUCKET}/models/untrained", run_id="real-model", threads=1)
    out = run_all(ev)
    assert out["partitions_ok"] == 2
    results = open_storage(f"s3://{RESULTS_BUCKET}/runs")
    recs = [json.loads(results.read_text(f"real-model/records/part-0000{k}.json")) for k in range(2)]
    assert recs[0]["model_load_s"] > 0 and recs[1]["model_load_s"] == 0.0  # loaded once per container
    assert recs[0]["engine"] == "onnx" and all(r["samples"] == 6 for r in recs)
    preds = results.read_text("real-model/predictions/part-00000.csv").splitlines()[1:]
    assert len(preds) == 6 and all(np.isfinite(float(p.split(",")[2])) for p in preds)
    step_inference._ENGINES.clear()


def test_engine_error_becomes_failure_record(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(DoubleEngine):
        def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
            raise ValueError("shape mismatch")

    monkeypatch.setattr(step_inference, "get_engine", lambda request: (Broken(), 0.0, True))
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), 1)
    out = load_handler("inference").handler(event("inference"), FakeContext())
    assert out == {"ok": 0, "failed": 1}
    rec = json.loads(open_storage(f"s3://{RESULTS_BUCKET}/runs").read_text("handler-test/records/part-00000.json"))
    assert rec["status"] == "failed" and "shape mismatch" in rec["error"]


# ------------------------------------------------------------------ phases, prefetch, zero-copy reads
PHASES = ("download_s", "decode_s", "preprocess_s", "inference_s", "upload_s")


def _one_item_run(partitions: int, corrupt: tuple[int, ...] = ()) -> tuple[Any, list[dict[str, Any]]]:
    """Init with world_size=1 (one Map item holding every partition), then that item through Inference."""
    make_dataset(open_storage(f"s3://{DATA_BUCKET}/ds"), partitions, samples=6, corrupt=corrupt)
    init_out = load_handler("init").handler(event("init", world_size=1), FakeContext())
    results = open_storage(f"s3://{RESULTS_BUCKET}/runs")
    items = json.loads(results.read_text("handler-test/items.json"))
    assert len(items) == 1 and len(items[0]["partitions"]) == partitions
    load_handler("inference").handler({"item": items[0], "request": init_out["request"]}, FakeContext())
    recs = [json.loads(results.read_text(f"handler-test/records/part-{k:05d}.json")) for k in range(partitions)]
    return results, recs


def test_records_carry_phase_seconds_that_fit_in_the_total(s3: Any, double_engine: None) -> None:
    _, recs = _one_item_run(3)
    for rec in recs:
        assert rec["status"] == "ok"
        assert all(isinstance(rec[k], float) and rec[k] >= 0.0 for k in (*PHASES, "fetch_wait_s", "duration_s"))
        assert rec["download_s"] > 0 and rec["decode_s"] > 0 and rec["inference_s"] > 0 and rec["upload_s"] > 0
        assert rec["preprocess_s"] == 0.0  # inside the ONNX graph: counted in inference_s
        assert rec["load_s"] == rec["decode_s"]  # the older name, kept for readers
        # duration runs from the start of this partition's download; fetch_wait is time spent waiting
        # for that (background) download/decode, so it overlaps them and is not added to the sum
        assert sum(rec[k] for k in PHASES) <= rec["duration_s"] + 1e-3
        assert rec["fetch_wait_s"] <= rec["download_s"] + rec["decode_s"] + 1e-3
    assert [r["prefetched"] for r in recs] == [False, True, True]


def test_prefetch_keeps_the_good_partitions_when_the_next_is_corrupt(s3: Any, double_engine: None) -> None:
    results, recs = _one_item_run(3, corrupt=(1,))
    assert [r["status"] for r in recs] == ["ok", "failed", "ok"]
    assert "part-00001" in recs[1]["error"] and recs[1]["prefetched"] is True
    assert not results.exists("handler-test/predictions/part-00001.csv")
    data = open_storage(f"s3://{DATA_BUCKET}/ds")
    for k in (0, 2):  # each partition's predictions are its own rows, in order
        from cosmic_utils.runtime.partition import read_partition

        part = read_partition(data.read_bytes(partition_name(k)))
        lines = results.read_text(f"handler-test/predictions/part-{k:05d}.csv").splitlines()[1:]
        got = np.array([float(line.split(",")[2]) for line in lines])
        assert {line.split(",")[0] for line in lines} == {f"part-{k:05d}"}
        np.testing.assert_allclose(got, part.magnitude[:, 2] / 100.0, atol=1e-5)
        np.testing.assert_allclose([float(line.split(",")[3]) for line in lines], part.redshift, atol=1e-5)


def test_partition_arrays_share_the_buffer_read_from_storage(s3: Any, tmp_path: Path) -> None:
    from cosmic_utils.runtime.partition import read_partition

    blob = partition_bytes(6, 3)
    for store in (open_storage(f"s3://{DATA_BUCKET}/zc"), open_storage(tmp_path)):
        store.write_bytes("p.bin", blob)
        buf = store.read_buffer("p.bin")
        assert isinstance(buf, bytearray) and bytes(buf) == blob
        part = read_partition(buf, name="p.bin")
        assert np.shares_memory(part.image, np.frombuffer(buf, np.uint8))  # no copy
        assert part.image.flags.writeable
