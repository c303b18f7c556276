"""One storage interface over a local folder and S3 (moto): operations, errors, pagination."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cosmic_utils.runtime.storage import (
    InvalidKeyError,
    LocalStorage,
    MissingObjectError,
    S3Storage,
    Storage,
    StorageError,
    open_storage,
    validate_key,
)

BUCKET = "cosmic-test-bucket"


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        yield open_storage(tmp_path / "root")
    else:
        client = request.getfixturevalue("s3_client")
        yield open_storage(f"s3://{BUCKET}/some/prefix", s3_client=client)


def test_open_storage_kinds(tmp_path: Path) -> None:
    assert isinstance(open_storage(tmp_path), LocalStorage)
    assert isinstance(open_storage(f"file://{tmp_path}"), LocalStorage)
    s3 = open_storage("s3://bucket/a/b/", s3_client=object())
    assert isinstance(s3, S3Storage) and s3.bucket == "bucket" and s3.prefix == "a/b"
    assert s3.uri("x/y.cpart") == "s3://bucket/a/b/x/y.cpart"
    with pytest.raises(StorageError, match="unsupported storage URI"):
        open_storage("gs://bucket/x")
    with pytest.raises(StorageError, match="no bucket"):
        open_storage("s3:///x", s3_client=object())


def test_basic_operations(store: Storage, tmp_path: Path) -> None:
    assert store.list_keys() == []
    store.write_bytes("a.bin", b"0123456789")
    store.write_bytes("sub/dir/b.bin", b"hello")
    store.write_text("preds/part-00000.csv", "z\n0.1\n")
    assert store.list_keys() == ["a.bin", "preds/part-00000.csv", "sub/dir/b.bin"]
    assert store.list_keys("sub/") == ["sub/dir/b.bin"]
    assert store.list_keys("pre") == ["preds/part-00000.csv"]
    assert store.read_bytes("a.bin") == b"0123456789"
    assert store.read_range("a.bin", 2, 3) == b"234"
    assert store.read_range("a.bin", 8, 10) == b"89"
    assert store.read_range("a.bin", 0, 0) == b""
    assert store.size("a.bin") == 10
    assert store.exists("a.bin") and not store.exists("nope.bin")
    store.write_bytes("a.bin", b"new")  # overwrite
    assert store.read_bytes("a.bin") == b"new"
    src = tmp_path / "local.dat"
    src.write_bytes(os.urandom(1000))
    store.upload_file(src, "up/local.dat")
    dst = tmp_path / "down" / "copy.dat"
    store.download_file("up/local.dat", dst)
    assert dst.read_bytes() == src.read_bytes()
    store.delete("a.bin")
    store.delete("a.bin")  # deleting twice is fine
    assert not store.exists("a.bin")
    assert store.uri("sub/dir/b.bin").endswith("sub/dir/b.bin")


def test_missing_key_errors_name_the_uri(store: Storage, tmp_path: Path) -> None:
    for call in (
        lambda: store.read_bytes("missing/part-00009.cpart"),
        lambda: store.read_range("missing/part-00009.cpart", 0, 10),
        lambda: store.size("missing/part-00009.cpart"),
        lambda: store.download_file("missing/part-00009.cpart", tmp_path / "x"),
    ):
        with pytest.raises(MissingObjectError) as info:
            call()
        assert "part-00009.cpart" in str(info.value) and isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "x").exists()
    with pytest.raises(MissingObjectError, match="no such local file"):
        store.upload_file(tmp_path / "not-there.bin", "k")


@pytest.mark.parametrize("key", ["../evil", "a/../../b", "/etc/passwd", "a//b", "./a", "", "a\\..\\b", "C:/x"])
def test_key_traversal_rejected(store: Storage, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.write_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.read_bytes(key)


def test_validate_key() -> None:
    assert validate_key("a/b/c.cpart") == "a/b/c.cpart"
    with pytest.raises(InvalidKeyError, match="path traversal"):
        validate_key("runs/../../x")
    with pytest.raises(InvalidKeyError, match="absolute"):
        validate_key("/x")


def test_local_writes_are_atomic_and_leave_no_temp(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    store.write_bytes("x/y.bin", b"abc")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y.bin"]
    assert oct((tmp_path / "x" / "y.bin").stat().st_mode & 0o777) != oct(0o600)
    # a temp file from an interrupted write is not listed
    (tmp_path / "x" / ".z.bin.tmp-123").write_bytes(b"partial")
    assert store.list_keys() == ["x/y.bin"]
    assert store.local_path("x/y.bin") == tmp_path / "x" / "y.bin"


def test_s3_pagination_beyond_1000_keys(s3_client: object) -> None:
    store = open_storage(f"s3://{BUCKET}/many", s3_client=s3_client)
    for i in range(1005):
        s3_client.put_object(Bucket=BUCKET, Key=f"many/part-{i:05d}.cpart", Body=b"x")
    s3_client.put_object(Bucket=BUCKET, Key="other/part-99999.cpart", Body=b"x")
    keys = store.list_keys()
    assert len(keys) == 1005 and keys[0] == "part-00000.cpart" and keys[-1] == "part-01004.cpart"
    assert len(store.list_keys("part-010")) == 5


def test_s3_missing_bucket(s3_client: object, tmp_path: Path) -> None:
    store = open_storage("s3://no-such-bucket-here/prefix", s3_client=s3_client)
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    for call in (store.list_keys, lambda: store.read_bytes("k"), lambda: store.write_bytes("k", b"x"),
                 lambda: store.upload_file(src, "k"), lambda: store.download_file("k", tmp_path / "d"),
                 lambda: store.exists("k")):
        with pytest.raises(StorageError) as info:
            call()
        assert "no-such-bucket-here" in str(info.value) and "does not exist" in str(info.value)


def test_s3_multipart_upload(s3_client: object, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    payload = os.urandom(9 * 2**20)  # above boto3's 8 MB multipart threshold
    big.write_bytes(payload)
    store = open_storage(f"s3://{BUCKET}", s3_client=s3_client)
    store.upload_file(big, "big.bin")
    assert store.size("big.bin") == len(payload)
    assert store.read_range("big.bin", 8 * 2**20 - 2, 4) == payload[8 * 2**20 - 2 : 8 * 2**20 + 2]
    etag = s3_client.head_object(Bucket=BUCKET, Key="big.bin")["ETag"]
    assert "-" in etag, "expected a multipart upload"
