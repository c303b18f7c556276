"""The inference graph (preprocessing + network) as a torch module, and its ONNX export.

:class:`Preprocess` is the torch twin of :class:`cosmic_utils.runtime.preprocess.Preprocessing`
(same ops, order and dtypes); :class:`RedshiftPredictor` chains it with the network:
``(image float32 [B,5,32,32], magnitude float64 [B,5]) -> redshift float32 [B]``, the signature
of ``model.onnx``. The exported graph is :func:`graph_predictor` (``FastAstro``, opset 23), and
every export is verified against the eager fp32 model (:data:`EXPORT_RTOL`).
Reasoning: docs/inference.md (the ONNX graph), docs/model.md "Export to ONNX".
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmic_utils.model.astromae import build_model
from cosmic_utils.model.fastastro import ONNX_TRANSLATIONS, FastAstro
from cosmic_utils.runtime.artifact import GRAPH_FORM_KEY, ONNX_GRAPH_FORM
from cosmic_utils.runtime.preprocess import Preprocessing, magnitude_matrix

log = logging.getLogger(__name__)

#: ONNX opset of the exported graph (>= 17: LayerNormalization is one op; >= 23: attention is one
#: ``Attention`` node, which ONNX Runtime >= 1.23 runs on CPU).
ONNX_OPSET: int = 23
INPUT_NAMES: tuple[str, str] = ("image", "magnitude")
OUTPUT_NAME: str = "redshift"
#: Largest |onnx - torch| accepted when an export verifies itself.
EXPORT_ATOL: float = 1e-4
#: Largest max|onnx - reference| / max|reference| accepted (the reference is the eager fp32 model).
EXPORT_RTOL: float = 1e-4


class ExportError(RuntimeError):
    """The ONNX export failed or does not reproduce the torch model."""


class Preprocess(nn.Module):
    """Torch version of :meth:`Preprocessing.apply_numpy` (same ops, same dtypes). Buffers are non-persistent
    (never in ``model.pt``: the artifact's ``preprocessing`` is the one source)."""

    def __init__(self, preprocessing: Preprocessing | None = None, log_asinh: bool = False) -> None:
        """``log_asinh``: ``asinh`` as ``sign(x) log(|x| + sqrt(x^2 + 1))`` (the exported form, vectorised in
        ONNX Runtime): equal to float32 rounding (~1e-7 absolute) while ``|x| < 1e18``."""
        super().__init__()
        pre = preprocessing or Preprocessing()
        self.log_asinh = bool(log_asinh)
        self.preprocessing = pre
        self.image_identity = pre.image_is_identity
        self.asinh = pre.image_transform == "asinh"
        self.magnitude_identity = pre.magnitude_is_identity
        self.register_buffer("image_scale", torch.from_numpy(pre.image_scale_array().copy()), persistent=False)
        matrix_t = np.ascontiguousarray(magnitude_matrix(pre.magnitude_features).T)
        self.register_buffer("magnitude_matrix_t", torch.from_numpy(matrix_t), persistent=False)
        self.register_buffer("magnitude_mean", torch.tensor(pre.magnitude_mean, dtype=torch.float64), persistent=False)
        self.register_buffer("magnitude_std", torch.tensor(pre.magnitude_std, dtype=torch.float64), persistent=False)

    def forward(self, image: Tensor, magnitude: Tensor) -> tuple[Tensor, Tensor]:
        """Raw ``image`` float32, ``magnitude`` float64 -> network inputs (float32, float64)."""
        x = image.to(torch.float32)
        if not self.image_identity:
            x = x / self.image_scale
            if self.asinh and self.log_asinh:
                x = torch.sign(x) * torch.log(x.abs() + torch.sqrt(x * x + 1.0))
            elif self.asinh:
                x = torch.asinh(x)
        m = magnitude.to(torch.float64)
        if not self.magnitude_identity:
            m = (m @ self.magnitude_matrix_t - self.magnitude_mean) / self.magnitude_std
        return x, m


class RedshiftPredictor(nn.Module):
    """Preprocess + ``ViTAstro`` (or any network called as ``model(x, m)``, e.g. ``FastAstro``):
    raw ``(image, magnitude)`` -> redshift float32 ``[B]``."""

    def __init__(self, model: nn.Module | None = None, preprocessing: Preprocessing | None = None) -> None:
        super().__init__()
        self.preprocess = Preprocess(preprocessing)
        self.model = model if model is not None else build_model()

    def forward(self, image: Tensor, magnitude: Tensor) -> Tensor:
        x, m = self.preprocess(image, magnitude)
        return self.model(x, m).reshape(-1).to(torch.float32)

    @torch.inference_mode()
    def predict_numpy(self, image: np.ndarray, magnitude: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Batched eval-mode prediction on numpy arrays -> float32 ``[N]``."""
        was_training = self.training
        self.eval()
        try:
            out = np.empty(len(image), dtype=np.float32)
            for start in range(0, len(image), batch_size):
                im = torch.from_numpy(np.ascontiguousarray(image[start:start + batch_size], dtype=np.float32))
                mg = torch.from_numpy(np.ascontiguousarray(magnitude[start:start + batch_size], dtype=np.float64))
                out[start:start + len(im)] = self(im, mg).numpy()
            return out
        finally:
            self.train(was_training)


def graph_predictor(model: nn.Module, preprocessing: Preprocessing | None = None) -> RedshiftPredictor:
    """The module exported as ``model.onnx``: preprocessing (log-form asinh) + ``FastAstro(model)`` of the
    eager ``ViTAstro``, which stays the reference the export is checked against."""
    pred = RedshiftPredictor(FastAstro(model.eval(), onnx_attention=True), preprocessing)
    pred.preprocess = Preprocess(preprocessing, log_asinh=True)
    return pred.eval()


def export_graph(model: nn.Module, preprocessing: Preprocessing | None, path: str | os.PathLike[str],
                 example: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Export :func:`graph_predictor` of ``model`` as one ONNX file (dynamic batch axis, graph form in its
    metadata), checked on ``example`` against the eager model (:data:`EXPORT_ATOL` / :data:`EXPORT_RTOL`,
    else :class:`ExportError`). Returns ``{"path", "opset", "export_s", "max_abs_diff", "max_rel_diff",
    "verified_samples", "graph_form"}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    predictor = graph_predictor(model, preprocessing)
    eager = RedshiftPredictor(model.eval(), preprocessing).eval()
    if example is None:  # two seeded random rows
        g = torch.Generator().manual_seed(0)
        image = torch.randn(2, 5, 32, 32, generator=g) * 0.1
        magnitude = 17.0 + torch.randn(2, 5, generator=g, dtype=torch.float64)
    else:
        image = torch.from_numpy(np.ascontiguousarray(example[0], dtype=np.float32))
        magnitude = torch.from_numpy(np.ascontiguousarray(example[1], dtype=np.float64))
    if image.shape[0] < 2:
        # batch 1 would be specialised as a constant by torch.export; trace with two rows.
        image, magnitude = torch.cat([image, image]), torch.cat([magnitude, magnitude])
    batch = torch.export.Dim("batch")
    t0 = time.perf_counter()
    sink = io.StringIO()
    # the exporter prints progress lines and logs "torchvision is not installed" warnings: keep them
    # out of the console, but in the error message if the export fails
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            torch.onnx.export(predictor, (image, magnitude), str(path), input_names=list(INPUT_NAMES),
                              output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch}, {0: batch}), opset_version=ONNX_OPSET,
                              dynamo=True, external_data=False, verbose=False,
                              custom_translation_table=ONNX_TRANSLATIONS)
    except Exception as exc:  # the exporter raises many types; keep its message
        raise ExportError(f"ONNX export to {path} failed: {exc}\n{sink.getvalue()[-2000:]}") from exc
    finally:
        for lg, lvl in zip(quiet, levels, strict=True):
            lg.setLevel(lvl)
    export_s = time.perf_counter() - t0
    stray = path.with_name(path.name + ".data")
    if stray.exists():
        raise ExportError(f"ONNX export wrote external data {stray}; expected one self-contained file")
    from cosmic_utils.runtime.onnx_engine import stamp_graph

    stamp_graph(path, {GRAPH_FORM_KEY: ONNX_GRAPH_FORM})
    with torch.inference_mode():
        ref = eager(image, magnitude).numpy()
    got = onnx_predict(path, image.numpy(), magnitude.numpy())
    diff, rel = parity(got, ref)
    if not np.isfinite(diff) or diff > EXPORT_ATOL or rel > EXPORT_RTOL:
        raise ExportError(f"ONNX graph {path} differs from the reference torch model by {diff:.3g} "
                          f"({rel:.3g} relative; limits {EXPORT_ATOL} absolute, {EXPORT_RTOL} relative) on the example batch")
    log.info("exported %s in %.1f s (opset %d, max |onnx - torch| = %.2e, %.2e relative)", path, export_s,
             ONNX_OPSET, diff, rel)
    return {"path": str(path), "opset": ONNX_OPSET, "export_s": export_s, "max_abs_diff": diff,
            "max_rel_diff": rel, "verified_samples": int(len(ref)), "graph_form": ONNX_GRAPH_FORM}


def parity(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """max |got - ref| and the same relative to max |ref| (floored at 1e-3, a redshift scale)."""
    if not len(ref):
        return 0.0, 0.0
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    return diff, diff / max(float(np.max(np.abs(ref))), 1e-3)


def onnx_predict(path: str | os.PathLike[str], image: np.ndarray, magnitude: np.ndarray, batch_size: int = 512,
                 threads: int | None = None) -> np.ndarray:
    """Run an exported graph with ONNX Runtime (CPU) on raw arrays -> float32 ``[N]`` (the Lambda engine, one
    ``session.run`` per ``batch_size`` rows)."""
    from cosmic_utils.runtime.onnx_engine import OnnxEngine

    with OnnxEngine(path, threads=threads, chunk=batch_size, parallel="intra") as engine:
        return engine.predict(image, magnitude)


def compare_onnx_torch(predictor: RedshiftPredictor, onnx_path: str | os.PathLike[str], image: np.ndarray,
                       magnitude: np.ndarray, batch_size: int = 512) -> dict[str, float]:
    """Max and mean |onnx - torch| over the given raw arrays (e.g. the whole validation set)."""
    ref = predictor.predict_numpy(image, magnitude, batch_size=batch_size)
    got = onnx_predict(onnx_path, image, magnitude, batch_size=batch_size)
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return {"samples": float(len(diff)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
