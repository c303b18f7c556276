"""The artifact's ONNX graph: the restructured network, checked against the eager model; its
session options; the int8 graph's weights; a stale graph detected rather than used silently."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cosmic_utils.model import artifacts
from cosmic_utils.model.export import EXPORT_RTOL, ExportError, Preprocess
from cosmic_utils.model.fastastro import FastAstro
from cosmic_utils.runtime import onnx_engine
from cosmic_utils.runtime.artifact import GRAPH_FORM_KEY, ONNX_GRAPH_FORM, ArtifactError, ModelArtifact
from cosmic_utils.runtime.onnx_engine import SPINNING_KEY, OnnxEngine, int8_model_path, register_int8
from cosmic_utils.runtime.preprocess import default_preprocessing


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, untrained_artifact_dir: Path) -> Path:
    """A private copy of the shared untrained artifact (int8 graphs are written next to it)."""
    out = tmp_path_factory.mktemp("graph") / "model"
    shutil.copytree(untrained_artifact_dir, out)
    return out


def _meta(folder: Path) -> dict:
    return json.loads((folder / "artifact.json").read_text())


def test_graph_is_the_restructured_network(artifact: Path) -> None:
    model = onnx.load(str(artifact / "model.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Attention") == 12  # one per cell, heads split inside the kernel
    assert "Softmax" not in ops and "Asinh" not in ops and "BatchNormalization" not in ops
    assert {p.key: p.value for p in model.metadata_props}[GRAPH_FORM_KEY] == ONNX_GRAPH_FORM
    export = _meta(artifact)["onnx_export"]
    assert export["graph_form"] == ONNX_GRAPH_FORM
    # checked against the eager fp32 model on the trace example and the calibration set
    assert export["max_rel_diff"] <= EXPORT_RTOL and export["calibration_max_rel_diff"] <= EXPORT_RTOL
    assert export["calibration_rows"] > 0


def test_graph_matches_eager_relative(artifact: Path) -> None:
    """Parity on the calibration galaxies, fresh from ONNX Runtime (1e-4 of the output scale)."""
    from cosmic_utils.model.export import onnx_predict

    art = ModelArtifact.load(artifact)
    with np.load(artifact / "calibration.npz") as npz:
        image, magnitude = npz["image"][:64], npz["magnitude"][:64]
    ref = artifacts.predictor(art).predict_numpy(image, magnitude).astype(np.float64)
    got = onnx_predict(artifact / "model.onnx", image, magnitude).astype(np.float64)
    assert float(np.max(np.abs(got - ref))) <= EXPORT_RTOL * max(float(np.max(np.abs(ref))), 1e-3)


def test_export_parts_equal_eager() -> None:
    """The export-only forms (log asinh, 3-D token attention, q/k/v Linears) compute the eager function."""
    from cosmic_utils.model.astromae import build_model

    torch.manual_seed(3)
    model = build_model().eval()
    image = torch.randn(3, 5, 32, 32) * 0.2
    mags = 17 + torch.randn(3, 5, dtype=torch.float64)
    pre = default_preprocessing()
    with torch.inference_mode():
        x, m = Preprocess(pre)(image * 50, mags)
        x_log, _ = Preprocess(pre, log_asinh=True)(image * 50, mags)
        # log(1 + small) keeps the absolute, not the relative, precision of asinh near 0
        np.testing.assert_allclose(x_log.numpy(), x.numpy(), rtol=1e-6, atol=3e-7)
        ref = model([x, m]).reshape(-1)
        fast = FastAstro(model)(x, m)
        export_form = FastAstro(model, onnx_attention=True)(x, m)
    scale = float(ref.abs().max())
    assert float((fast - ref).abs().max()) <= 1e-4 * scale
    assert float((export_form - ref).abs().max()) <= 1e-4 * scale


def test_calibration_parity_fails_loudly(artifact: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(artifact, bad)
    with np.load(bad / "calibration.npz") as npz:
        data = dict(npz)
    data["z_fp32"] = data["z_fp32"] + 0.01  # an eager model the graph does not reproduce
    np.savez_compressed(bad / "calibration.npz", **data)
    with pytest.raises(ExportError, match="calibration set"):
        artifacts.check_onnx_on_calibration(ModelArtifact.load(bad, verify=False))


@pytest.mark.parametrize("threads", [1, 2])
def test_session_options_applied(artifact: Path, threads: int) -> None:
    eng = OnnxEngine.from_artifact(artifact, threads=threads)
    opts = eng.session.get_session_options()
    # row-parallel (the default): one intra-op thread per run, ``threads`` runs at once
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1 and eng.workers == threads
    assert opts.get_session_config_entry(SPINNING_KEY) == "0"
    assert eng.graph_form == ONNX_GRAPH_FORM
    spin = OnnxEngine.from_artifact(artifact, threads=threads, spinning=True)
    assert spin.session.get_session_options().get_session_config_entry(SPINNING_KEY) == "1"
    with pytest.raises(ValueError, match="optimization"):
        onnx_engine.session_options(1, optimization="max")


def test_int8_graph_weights_are_7_bit(artifact: Path) -> None:
    """reduce_range: int8 weights in [-64, 63] (VPMADDUBSW on AVX2-only CPUs must not saturate)."""
    path = register_int8(artifact)
    model = onnx.load(str(path))
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 60  # every weight Gemm of the 12 cells and the heads
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64
    meta = _meta(artifact)
    assert meta["onnx_int8"]["source_sha256"] == meta["files"]["onnx"]["sha256"]


def test_stale_graphs_are_detected(artifact: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    old = tmp_path / "old"
    shutil.copytree(artifact, old)
    register_int8(old)
    meta = _meta(old)
    meta["onnx_export"].pop("graph_form")  # exported by older code
    meta["onnx_int8"]["source_sha256"] = "0" * 64  # quantised from another model.onnx
    (old / "artifact.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        eng = OnnxEngine.from_artifact(old, threads=1)
    assert eng.graph_form is None and "cosmic model export" in caplog.text
    # inside Lambda (no onnx package) a stale int8 graph is refused, never served
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ArtifactError, match="stale int8 graph"):
        int8_model_path(old)


def test_micro_batches_do_not_change_fp32_results(artifact: Path) -> None:
    with np.load(artifact / "calibration.npz") as npz:
        image, magnitude = npz["image"][:20], npz["magnitude"][:20]
    whole = OnnxEngine.from_artifact(artifact, threads=1, chunk=None).predict(image, magnitude)
    chunked = OnnxEngine.from_artifact(artifact, threads=1, chunk=7)  # 7 + 7 + 6 rows
    assert chunked.chunk == 7 and OnnxEngine.from_artifact(artifact, threads=1).chunk == onnx_engine.DEFAULT_CHUNK
    got = chunked.predict(image, magnitude)
    assert got.shape == (20,) and got.dtype == np.float32
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    assert chunked.predict(image[:0], magnitude[:0]).shape == (0,)


def test_row_parallel_threads_match_one_thread(artifact: Path) -> None:
    """threads=2 runs micro-batches concurrently on one-thread sessions: same numbers, rows in order."""
    with np.load(artifact / "calibration.npz") as npz:
        image, magnitude = npz["image"][:21], npz["magnitude"][:21]
    one = OnnxEngine.from_artifact(artifact, threads=1, chunk=None).predict(image, magnitude)
    rows = OnnxEngine.from_artifact(artifact, threads=2, chunk=4)  # 6 runs of <= 4 rows over 2 workers
    assert (rows.parallel, rows.workers) == ("rows", 2)
    assert rows.session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(rows.predict(image, magnitude), one, rtol=0, atol=1e-6)
    # a batch smaller than workers x chunk still gives every worker rows (3 rows: 2 + 1)
    np.testing.assert_allclose(rows.predict(image[:3], magnitude[:3]), one[:3], rtol=0, atol=1e-6)
    intra = OnnxEngine.from_artifact(artifact, threads=2, parallel="intra")
    assert (intra.workers, intra.session.get_session_options().intra_op_num_threads) == (1, 2)
    np.testing.assert_allclose(intra.predict(image, magnitude), one, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="parallel must be one of"):
        OnnxEngine.from_artifact(artifact, threads=2, parallel="processes")
    rows.close()
    with pytest.raises(RuntimeError, match="closed"):
        rows.predict(image, magnitude)
