"""Model artifact folder: writing, loading, checksum / missing-file / version errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from cosmic_utils.model import artifacts
from cosmic_utils.model.artifacts import artifact_from_published, create_untrained_artifact
from cosmic_utils.runtime.artifact import ArtifactError, ArtifactNotFoundError, ModelArtifact, sha256_file
from cosmic_utils.runtime.preprocess import Preprocessing, PreprocessingError, default_preprocessing, identity


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return create_untrained_artifact(tmp_path_factory.mktemp("art") / "untrained", seed=3, with_onnx=False).path


@pytest.fixture
def copy(untrained: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(untrained, dst)
    return dst


def test_untrained_artifact_layout(untrained: Path) -> None:
    art = ModelArtifact.load(untrained)
    meta = json.loads((untrained / "artifact.json").read_text())
    for key in ("format_version", "name", "created", "architecture", "preprocessing", "config",
                "training_data_sha256", "metrics", "files"):
        assert key in meta
    assert meta["format_version"] == 1 and meta["architecture"] == "pcm-astromae"
    assert meta["files"]["state_dict"] == {"path": "model.pt", "sha256": sha256_file(untrained / "model.pt"),
                                           "bytes": (untrained / "model.pt").stat().st_size}
    assert art.preprocessing == default_preprocessing()
    assert not art.has("onnx")
    state = torch.load(untrained / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state)
    assert len(state) == 508  # the published layout
    assert artifacts.load_model(art).training is False


def test_seed_is_reproducible(untrained: Path, tmp_path: Path) -> None:
    again = create_untrained_artifact(tmp_path / "again", seed=3, with_onnx=False)
    other = create_untrained_artifact(tmp_path / "other", seed=4, with_onnx=False)
    same = ModelArtifact.load(untrained).files["state_dict"]["sha256"]
    assert again.files["state_dict"]["sha256"] == same
    assert other.files["state_dict"]["sha256"] != same


def test_missing_folder_and_files(copy: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFoundError, match="nowhere.*folder not found"):
        ModelArtifact.load(tmp_path / "nowhere")
    (copy / "model.pt").unlink()
    with pytest.raises(ArtifactNotFoundError, match="model.pt not found"):
        ModelArtifact.load(copy)
    (copy / "artifact.json").unlink()
    with pytest.raises(FileNotFoundError, match="artifact.json not found"):
        ModelArtifact.load(copy)


def test_checksum_mismatch(copy: Path) -> None:
    data = bytearray((copy / "model.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.pt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch for model.pt"):
        ModelArtifact.load(copy)
    ModelArtifact.load(copy, verify=False)  # opt-out still reads the metadata


def test_incompatible_version_and_bad_json(copy: Path) -> None:
    meta = json.loads((copy / "artifact.json").read_text())
    meta["format_version"] = 2
    (copy / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format_version 2 is not supported"):
        ModelArtifact.load(copy)
    meta["format_version"] = 1
    meta["files"]["state_dict"]["path"] = "../elsewhere.pt"
    (copy / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="inside the folder"):
        ModelArtifact.load(copy)
    del meta["files"]
    (copy / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="missing keys \\['files'\\]"):
        ModelArtifact.load(copy)
    (copy / "artifact.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelArtifact.load(copy)


def test_bad_preprocessing_entry(copy: Path) -> None:
    meta = json.loads((copy / "artifact.json").read_text())
    meta["preprocessing"]["image_scale"] = [1, 2, 3]
    (copy / "artifact.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="image_scale must have 5 values"):
        ModelArtifact.load(copy)


def test_save_roundtrip(copy: Path) -> None:
    art = ModelArtifact.load(copy)
    art.metrics = {"validation": {"sigma_nmad": 0.012, "r2": float("nan")}}
    art.save()
    again = ModelArtifact.load(copy)
    assert again.metrics == {"validation": {"sigma_nmad": 0.012, "r2": None}}
    assert again.preprocessing == art.preprocessing and again.files == art.files


def test_preprocessing_dict_roundtrip() -> None:
    for pre in (identity(), default_preprocessing()):
        assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    assert Preprocessing.from_dict({}).is_identity and Preprocessing.from_dict(None).is_identity
    assert identity().to_dict()["kind"] == "identity"
    with pytest.raises(PreprocessingError, match="unknown fields"):
        Preprocessing.from_dict({"bogus": 1})
    with pytest.raises(PreprocessingError, match="image_transform"):
        Preprocessing(image_transform="log")
    with pytest.raises(PreprocessingError, match="version 9"):
        Preprocessing(version=9)
    with pytest.raises(PreprocessingError, match="magnitude_std must be positive"):
        Preprocessing(magnitude_std=(1, 1, 0, 1, 1))


def test_from_published_state_dict(untrained: Path, tmp_path: Path) -> None:
    """A DataParallel-style state_dict file becomes an artifact with identity preprocessing."""
    state = torch.load(untrained / "model.pt", weights_only=True)
    src = tmp_path / "published_sd.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, src)
    art = artifact_from_published(src, tmp_path / "published", with_onnx=False)
    loaded = ModelArtifact.load(art.path)
    assert loaded.preprocessing.is_identity
    assert loaded.config["source_kind"] == "state_dict" and loaded.config["source_sha256"] == sha256_file(src)
    assert loaded.files["state_dict"]["sha256"] == sha256_file(untrained / "model.pt")


def test_from_published_pickle_needs_trust(tmp_path: Path) -> None:
    from cosmic_utils.model.astromae import build_model
    from cosmic_utils.model.checkpoint import UntrustedPickleError

    src = tmp_path / "whole_model.pt"
    torch.save(torch.nn.DataParallel(build_model()), src)
    with pytest.raises(UntrustedPickleError, match="trust"):
        artifact_from_published(src, tmp_path / "out", trust=False, with_onnx=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="not found"):
        artifact_from_published(tmp_path / "missing.pt", tmp_path / "out")
