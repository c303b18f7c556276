"""`cosmic model upload` / `cosmic data upload`: versioned, idempotent, resumable, verified (moto S3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cosmic_utils.cli import main
from cosmic_utils.cloud.upload import UploadError, model_version, sync_file, upload_dataset, upload_model
from cosmic_utils.runtime.storage import open_storage


@pytest.fixture()
def s3(moto_aws_backend: Any) -> Any:
    client = moto_aws_backend.client("s3")
    client.create_bucket(Bucket="example-cosmic-models")
    return client


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cosmic_utils.model.artifacts import create_untrained_artifact

    out = tmp_path_factory.mktemp("art") / "m"
    create_untrained_artifact(out, seed=0, with_onnx=False)
    return out


def test_model_upload_is_versioned_and_idempotent(s3: Any, small_artifact: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dest = "s3://example-cosmic-models/models"
    assert main(["model", "upload", str(small_artifact), dest]) == 0
    uri = capsys.readouterr().out.strip()
    version = model_version(small_artifact)
    assert uri == f"{dest}/{version}" and len(version) == 16
    store = open_storage(uri, s3_client=s3)
    meta = json.loads((small_artifact / "artifact.json").read_text())
    assert sorted(store.list_keys()) == sorted(["artifact.json", *(f["path"] for f in meta["files"].values())])
    again = upload_model(small_artifact, dest, s3_client=s3)
    assert again.uploaded == 0 and again.uri == uri
    # A changed model (other metadata) gets another folder; the first one is left as it was.
    import shutil

    changed = tmp_path / "m2"
    shutil.copytree(small_artifact, changed)
    meta["name"] = meta["name"] + "-retrained"
    (changed / "artifact.json").write_text(json.dumps(meta))
    second = upload_model(changed, dest, s3_client=s3)
    assert second.uri != uri and store.read_bytes("artifact.json") == (small_artifact / "artifact.json").read_bytes()


def test_model_upload_refuses_a_corrupt_artifact(s3: Any, small_artifact: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(small_artifact, bad)
    meta = json.loads((bad / "artifact.json").read_text())
    path = bad / next(iter(meta["files"].values()))["path"]
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert main(["model", "upload", str(bad), "s3://example-cosmic-models/models"]) == 1
    assert "sha256" in capsys.readouterr().err
    assert open_storage("s3://example-cosmic-models/models", s3_client=s3).list_keys() == []


def test_data_upload_sends_only_what_differs(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.data.dataset import prepare_dataset
    from cosmic_utils.runtime.manifest import Manifest

    src = tmp_path / "ds"
    prepare_dataset(src, 0.004, 2, seed=3, progress=False)
    dest = "s3://example-cosmic-models/data/small"
    assert main(["data", "upload", str(src), dest]) == 0
    assert capsys.readouterr().out.strip() == dest
    store = open_storage(dest, s3_client=s3)
    assert Manifest.read(store).verify(store).ok
    assert upload_dataset(src, dest, s3_client=s3).uploaded == 0
    # One partition damaged at the destination, one missing, manifest gone (an interrupted upload):
    # only those two are sent again; the intact one is verified by its checksum and kept.
    store.write_bytes("part-00000.cpart", b"x" * store.size("part-00000.cpart"))
    store.delete("part-00001.cpart")
    store.delete("manifest.json")
    report = upload_dataset(src, dest, s3_client=s3)
    assert report.actions == {"part-00000.cpart": "uploaded", "part-00001.cpart": "uploaded",
                              "manifest.json": "uploaded"}
    assert Manifest.read(store).verify(store).ok


def test_upload_verification_catches_a_mismatch(s3: Any, tmp_path: Path) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"abc")
    store = open_storage("s3://example-cosmic-models/x", s3_client=s3)
    with pytest.raises(UploadError, match="sha256 after upload"):
        sync_file(store, local, "f.bin", "0" * 64, 3, trusted=False)
    assert main(["data", "upload", str(tmp_path / "missing"), "s3://example-cosmic-models/x"]) == 1
