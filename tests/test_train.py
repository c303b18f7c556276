"""Training: the cached-feature path equals the full network; a tiny run writes a usable artifact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmic_utils import config
from cosmic_utils.data import catalog
from cosmic_utils.model import artifacts
from cosmic_utils.model.astromae import build_model
from cosmic_utils.model.export import RedshiftPredictor
from cosmic_utils.model.train import (
    CONFIGS,
    TrainResult,
    cached_artifact,
    cached_features,
    freeze_for_cached_training,
    head_forward,
    split_holdout,
    train,
    train_default,
    training_data_sha256,
)
from cosmic_utils.runtime.artifact import ModelArtifact
from cosmic_utils.runtime.preprocess import default_preprocessing


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    # no ONNX here (tests/test_export.py covers the export; it costs ~15-30 s)
    return train("quick", tmp_path_factory.mktemp("train") / "quick", progress=False, with_onnx=False)


def test_cached_path_equals_full_network() -> None:
    valid = catalog.valid_catalog().iloc[:6]
    from cosmic_utils.data.render import render_cutouts

    mags = catalog.magnitudes(valid)
    image = render_cutouts(mags, catalog.magnitude_errors(valid), seed=0)
    torch.manual_seed(0)
    model = build_model().eval()
    pre = default_preprocessing()
    pooled, cnn = cached_features(model, pre.apply_image(image))
    with torch.no_grad():
        head = head_forward(model, torch.from_numpy(pooled), torch.from_numpy(cnn),
                            torch.from_numpy(pre.apply_magnitude(mags))).numpy()
    full = RedshiftPredictor(model, pre).predict_numpy(image, mags)
    np.testing.assert_allclose(head, full, rtol=1e-5, atol=1e-6)


def test_freezing() -> None:
    model = build_model()
    params = freeze_for_cached_training(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in params) == 10_364_897
    assert not any(n.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed")) for n in trainable)
    assert "inception_model.vis_inception.10.weight" in trainable
    assert "inception_model.vis_inception.2.branch1.conv.weight" not in trainable
    assert "inception_model.magnitude_block.0.weight" in trainable and "concat_block.2.bias" in trainable


def test_holdout_split_is_seeded_and_disjoint() -> None:
    a_fit, a_hold = split_holdout(100, 0.1, 0)
    b_fit, b_hold = split_holdout(100, 0.1, 0)
    assert np.array_equal(a_hold, b_hold) and len(a_hold) == 10
    assert not set(a_fit) & set(a_hold) and len(a_fit) + len(a_hold) == 100
    assert not np.array_equal(split_holdout(100, 0.1, 1)[1], a_hold)


def test_quick_training_artifact(quick: TrainResult) -> None:
    art = ModelArtifact.load(quick.artifact.path)
    cfg = CONFIGS["quick"]
    assert art.config["name"] == "quick" and art.config["epochs"] == cfg.epochs
    assert art.training_data_sha256 == training_data_sha256(config.TRAIN_CATALOG, cfg.render_seed)
    assert art.preprocessing.image_transform == "asinh" and not art.preprocessing.is_identity
    assert art.metrics["validation"]["n"] == cfg.eval_rows and art.metrics["knn"]["n"] == cfg.eval_rows
    assert {"holdout", "validation_render_seed"} <= set(art.metrics)
    epochs = [h for h in quick.history if "train_loss" in h]
    assert len(epochs) == cfg.epochs
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    # the frozen encoder keeps its seeded initial weights; the heads moved
    torch.manual_seed(cfg.seed)
    init = build_model().state_dict()
    trained = artifacts.load_state_dict(art)
    assert torch.equal(trained["blocks.3.attn.qkv.weight"], init["blocks.3.attn.qkv.weight"])
    assert not torch.equal(trained["concat_block.0.weight"], init["concat_block.0.weight"])
    meta = json.loads((art.path / "artifact.json").read_text())
    assert meta["timings"]["wall_s"] > 0 and meta["trained"] is True


def test_train_default_reuses_matching_artifact(quick: TrainResult, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = quick.artifact.path
    exported: list[Path] = []
    monkeypatch.setattr("cosmic_utils.model.train.add_onnx", lambda art: exported.append(art.path) or art)
    monkeypatch.setattr("cosmic_utils.model.train.train", lambda *a, **k: pytest.fail("retrained a cached model"))
    again = train_default(cfg="quick", out_dir=folder, progress=False)
    assert again.created == quick.artifact.created
    assert exported == [folder]  # the cached artifact had no model.onnx: exported, not retrained
    assert cached_artifact(CONFIGS["quick"], folder) is not None
    assert cached_artifact(replace(CONFIGS["quick"], epochs=99), folder) is None
    assert cached_artifact(CONFIGS["quick"], Path(folder).parent / "missing") is None
    monkeypatch.setattr("cosmic_utils.model.train.training_data_sha256", lambda *a, **k: "0" * 64)
    assert cached_artifact(CONFIGS["quick"], folder) is None


def test_unknown_config() -> None:
    with pytest.raises(ValueError, match="unknown training config"):
        train("nope")
