"""Torch preprocessing == numpy preprocessing; ONNX graph == torch within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cosmic_utils.data import catalog
from cosmic_utils.data.render import render_cutouts
from cosmic_utils.model import artifacts
from cosmic_utils.model.export import Preprocess, RedshiftPredictor, onnx_predict
from cosmic_utils.runtime.artifact import ModelArtifact
from cosmic_utils.runtime.preprocess import Preprocessing, default_preprocessing, fit_preprocessing, identity


@pytest.fixture(scope="module")
def cutouts() -> tuple[np.ndarray, np.ndarray]:
    valid = catalog.valid_catalog().iloc[:40]
    mags = catalog.magnitudes(valid)
    return render_cutouts(mags, catalog.magnitude_errors(valid), seed=0), mags


@pytest.fixture(scope="module")
def artifact(untrained_artifact_dir: Path) -> ModelArtifact:
    """The session's shared random-weights artifact (conftest), read-only."""
    return ModelArtifact.load(untrained_artifact_dir)


@pytest.mark.parametrize("kind", ["identity", "default", "fitted", "magnitudes"])
def test_numpy_and_torch_preprocessing_agree(kind: str, cutouts: tuple[np.ndarray, np.ndarray]) -> None:
    image, mags = cutouts
    pre = {"identity": identity(), "default": default_preprocessing(),
           "fitted": fit_preprocessing(image, mags),
           "magnitudes": fit_preprocessing(image, mags, magnitude_features="magnitudes")}[kind]
    x_np, m_np = pre.apply_numpy(image, mags)
    with torch.no_grad():
        x_t, m_t = Preprocess(pre)(torch.from_numpy(image), torch.from_numpy(mags))
    assert x_np.dtype == np.float32 and m_np.dtype == np.float64
    assert x_t.dtype == torch.float32 and m_t.dtype == torch.float64
    # float32 asinh of numpy (libm, <= 2 ulp) and of torch (SLEEF or libm by CPU, <= 2 ulp): 4 ulp
    # together, on any CPU (this machine: 2 ulp on every ISA cap); not an rtol set on one CPU
    np.testing.assert_array_max_ulp(x_t.numpy(), x_np, maxulp=4)
    np.testing.assert_allclose(m_t.numpy(), m_np, rtol=1e-15, atol=1e-13)
    if kind == "identity":
        assert np.array_equal(x_np, image) and np.array_equal(m_np, mags)
    else:
        assert abs(float(m_np[:, 0].mean())) < 1.5  # standardised r, not 17
        assert not np.array_equal(x_np, image)


def test_fitted_preprocessing_standardises(cutouts: tuple[np.ndarray, np.ndarray]) -> None:
    image, mags = cutouts
    pre = fit_preprocessing(image, mags)
    _, m = pre.apply_numpy(image, mags)
    np.testing.assert_allclose(m.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(m.std(axis=0), 1, atol=1e-9)
    np.testing.assert_allclose(m[:, 2] * pre.magnitude_std[2] + pre.magnitude_mean[2], mags[:, 1] - mags[:, 2])


def test_predictor_signature() -> None:
    torch.manual_seed(0)
    pred = RedshiftPredictor(preprocessing=default_preprocessing()).eval()
    image = torch.randn(3, 5, 32, 32) * 0.1
    mags = 17 + torch.randn(3, 5, dtype=torch.float64)
    with torch.no_grad():
        z = pred(image, mags)
    assert z.shape == (3,) and z.dtype == torch.float32
    # preprocessing buffers never enter the network's state_dict
    assert not any(k.startswith("preprocess") for k in pred.state_dict())
    assert len(pred.model.state_dict()) == 508


def test_onnx_graph_signature(artifact: ModelArtifact) -> None:
    model = onnx.load(str(artifact.onnx_path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (image, magnitude), (out,) = model.graph.input, model.graph.output
    assert (image.name, magnitude.name, out.name) == ("image", "magnitude", "redshift")
    assert image.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert magnitude.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [5, 32, 32]
    assert len(out.type.tensor_type.shape.dim) == 1
    assert not Path(str(artifact.onnx_path) + ".data").exists()


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_onnx_matches_torch(artifact: ModelArtifact, cutouts: tuple[np.ndarray, np.ndarray], batch: int) -> None:
    image, mags = cutouts[0][:batch], cutouts[1][:batch]
    ref = artifacts.predictor(artifact).predict_numpy(image, mags)
    got = onnx_predict(artifact.onnx_path, image, mags)
    assert got.shape == (batch,) and got.dtype == np.float32
    assert float(np.max(np.abs(got - ref))) <= 1e-4
    # the preprocessing is inside the graph: raw inputs give the same as torch on raw inputs,
    # and feeding already-preprocessed inputs gives something else
    x, m = artifact.preprocessing.apply_numpy(image, mags)
    assert not np.allclose(onnx_predict(artifact.onnx_path, x, m), ref, atol=1e-4)


def test_identity_predictor_is_the_bare_network(cutouts: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(1)
    pred = RedshiftPredictor(preprocessing=Preprocessing()).eval()
    image, mags = cutouts[0][:4], cutouts[1][:4]
    with torch.no_grad():
        bare = pred.model([torch.from_numpy(image), torch.from_numpy(mags)]).reshape(-1).numpy()
    np.testing.assert_array_equal(pred.predict_numpy(image, mags), bare)
