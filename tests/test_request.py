"""The run request: validation, refusal of unknown / code-carrying fields, seed translation."""

from __future__ import annotations

import json

import pytest

from cosmic_utils import config
from cosmic_utils.runtime.request import RequestError, RunRequest, from_seed_payload, parse_request

BASE = {"run_id": "r1", "data": "s3://data-bucket/parts", "model": "models/default", "results": "s3://res-bucket/runs"}


def test_minimal_request_gets_defaults() -> None:
    req = parse_request(BASE)
    assert req.engine == "onnx" and req.batch_size == 256 and req.world_size is None
    assert isinstance(req, RunRequest)
    assert parse_request(req.to_json()) == req


@pytest.mark.parametrize("field", ["script", "S3_object_name", "object_type"])
def test_code_fields_are_refused_with_reason(field: str) -> None:
    with pytest.raises(RequestError, match=field) as err:
        parse_request({**BASE, field: "/tmp/x.py"})
    assert "never carries code" in str(err.value)


def test_unknown_and_missing_fields_are_named() -> None:
    with pytest.raises(RequestError) as err:
        parse_request({"run_id": "r1", "data": "d", "results": "s3://res-bucket/x", "colour": "red"})
    msg = str(err.value)
    assert "unknown field 'colour'" in msg and "missing field 'model'" in msg


@pytest.mark.parametrize("bad", [
    {"batch_size": 0}, {"batch_size": 8193}, {"run_id": "has space"}, {"run_id": "../x"},
    {"engine": "torch"}, {"max_concurrency": 0}, {"tolerated_failure_percentage": 101},
    {"memory_mb": 64}, {"data": "ftp://x/y"}, {"partitions": ["../etc/passwd"]}, {"partitions": []},
    {"world_size": 5, "partition_limit": 2},
])
def test_bad_values_rejected(bad: dict) -> None:
    with pytest.raises(RequestError):
        parse_request({**BASE, **bad})


def test_batch_size_bounds_accepted() -> None:
    assert parse_request({**BASE, "batch_size": 1}).batch_size == 1
    assert parse_request({**BASE, "batch_size": 8192}).batch_size == 8192


def test_seed_payload_translated() -> None:
    seed = json.loads((config.STEPFUNCTIONS_DIR / "examples" / "seed_payload.json").read_text())
    req = from_seed_payload(seed, model="s3://res-bucket/models/default")
    assert req.data == "s3://example-data-bucket/100MB"
    assert req.results == "s3://example-results-bucket/result-partition-100MB/1GB/1"
    assert req.partition_limit == 11 and req.batch_size == 512 and req.world_size == 4
    assert req.run_id == "result-partition-100MB-1GB-1"


def test_seed_payload_with_script_refused() -> None:
    seed = {"bucket": "b-bucket", "file_limit": "11", "batch_size": 512, "object_type": "folder",
            "S3_object_name": "Anomaly Detection", "script": "/tmp/Anomaly Detection/Inference/inference.py",
            "result_path": "r", "data_bucket": "d-bucket", "data_prefix": "100MB"}
    with pytest.raises(RequestError) as err:
        from_seed_payload(seed, model="m")
    msg = str(err.value)
    assert "'script'" in msg and "'S3_object_name'" in msg and "'object_type'" in msg


def test_seed_payload_bad_number() -> None:
    with pytest.raises(RequestError, match="file_limit"):
        from_seed_payload({"bucket": "b-bucket", "file_limit": "eleven", "result_path": "r",
                           "data_bucket": "d-bucket"}, model="m")


def test_example_request_is_valid() -> None:
    parse_request((config.STEPFUNCTIONS_DIR / "examples" / "run_request.json").read_text())
