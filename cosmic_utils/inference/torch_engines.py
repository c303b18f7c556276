"""Torch inference engines: eager fp32, the restructured fp32 network (:class:`FastAstro`), its
TorchInductor-compiled form, bf16 and dynamic int8 (``torch.ao``, every Linear).

Why ``FastAstro`` (folded BatchNorms, merged 1x1 convolutions, channels-last CNN, 2-D token
GEMMs, SDPA) and what each engine costs: docs/inference.md ("Where the time went", "torch-compile").
torch is imported at module level: this module never runs inside Lambda.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmic_utils.inference.tuning import keep_freed_memory
from cosmic_utils.model.astromae import build_model
from cosmic_utils.model.export import Preprocess, RedshiftPredictor
from cosmic_utils.model.fastastro import FastAstro
from cosmic_utils.runtime.artifact import read_meta
from cosmic_utils.runtime.engine import Engine, resolve_threads
from cosmic_utils.runtime.preprocess import Preprocessing

log = logging.getLogger(__name__)


def load_torch_artifact(artifact_dir: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """The ``ViTAstro`` of an artifact folder (weights loaded, eval mode) and its ``Preprocessing``."""
    folder = Path(artifact_dir)
    meta = read_meta(folder)
    rel = ((meta.get("files") or {}).get("state_dict") or {}).get("path", "model.pt")
    path = folder / rel
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {folder}: state_dict file {rel} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model()
    model.load_state_dict(state)
    return model.eval(), Preprocessing.from_dict(meta.get("preprocessing"))


class _TorchEngine(Engine):
    """Shared plumbing: threads, the artifact's preprocessing (``model.export.Preprocess``), numpy in and out,
    and micro-batches of at most ``chunk`` samples (128 keeps activations in cache, docs/inference.md)."""

    name = "torch"
    precision = "fp32"
    framework = "torch"
    default_chunk: int | None = None

    def __init__(self, model: nn.Module, preprocessing: Any = None, threads: int | None = None,
                 chunk: int | None = None) -> None:
        self.threads = resolve_threads(threads)
        torch.set_num_threads(self.threads)
        self.malloc_tuned = keep_freed_memory()
        self.preprocess = Preprocess(preprocessing).eval()
        self.chunk = chunk if chunk is not None else self.default_chunk
        self.module = self._prepare(model.eval())

    def _prepare(self, model: nn.Module) -> nn.Module:
        return model

    def _run(self, image: Tensor, magnitude: Tensor) -> Tensor:
        return self.module([image, magnitude]).reshape(-1)

    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        image, magnitude = self.check_inputs(image, magnitude)
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        n = image.shape[0]
        out = np.empty(n, dtype=np.float32)
        step = self.chunk or max(n, 1)
        with torch.inference_mode():
            for start in range(0, n, step):
                z = self._forward_chunk(torch.from_numpy(np.ascontiguousarray(image[start:start + step])),
                                        torch.from_numpy(np.ascontiguousarray(magnitude[start:start + step])))
                out[start:start + step] = z.float().numpy()
        return out

    def _forward_chunk(self, image: Tensor, magnitude: Tensor) -> Tensor:
        """Raw arrays of one micro-batch -> redshifts (preprocessing, then the network)."""
        x, m = self.preprocess(image, magnitude)
        return self._run(x, m)

    @classmethod
    def from_artifact(cls, artifact_dir: str | os.PathLike[str], threads: int | None = None,
                      **kwargs: Any) -> _TorchEngine:
        """The engine on an artifact folder (``model.pt`` + the preprocessing of artifact.json)."""
        return cls(*load_torch_artifact(artifact_dir), threads=threads, **kwargs)


class TorchEagerEngine(_TorchEngine):
    """The eager ``ViTAstro`` under ``torch.inference_mode`` with tuned threads."""

    name = "torch-eager"


class TorchFastEngine(_TorchEngine):
    """:class:`FastAstro` in fp32: folded BatchNorms, merged 1x1 convolutions, channels-last CNN."""

    name = "torch"
    default_chunk = 128

    def _prepare(self, model: nn.Module) -> nn.Module:
        return FastAstro(model).eval()

    def _run(self, image: Tensor, magnitude: Tensor) -> Tensor:
        return self.module(image, magnitude)


class TorchCompiledEngine(_TorchEngine):
    """Preprocessing + :class:`FastAstro` (vectorised PCM) compiled by TorchInductor, fp32. Static shapes: a
    micro-batch of ``n`` rows runs zero-padded at the smallest power of two ``>= max(n, 32)``, at most
    ``chunk`` (128); the 128 shape compiles at creation and ``compile_seconds`` holds each shape's cost. Needs
    a C++ compiler (docs/inference.md, "torch-compile")."""

    name = "torch-compile"
    default_chunk = 128
    min_shape = 32

    def _prepare(self, model: nn.Module) -> nn.Module:
        # preprocessing and network as one module, so one compiled graph (inductor vectorises
        # ``asinh``, which ATen runs at ~5 ms per 128 cutouts here)
        fast = RedshiftPredictor(FastAstro(model, pcm_vector=True), self.preprocess.preprocessing).eval()
        self._compiled = torch.compile(fast, dynamic=False, fullgraph=True)
        self.compile_seconds: dict[int, float] = {}
        shape = self._shape(self.chunk or self.default_chunk)
        try:
            with torch.inference_mode():
                # the dtypes check_inputs hands over (raw float32 images, float64 magnitudes)
                self._call(torch.zeros(shape, 5, 32, 32), torch.zeros(shape, 5, dtype=torch.float64))
        except Exception as exc:
            raise RuntimeError(
                "torch-compile: TorchInductor could not compile the network (it needs a C++ compiler "
                f"and the Python headers): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        return fast

    def _shape(self, n: int) -> int:
        top = max(self.chunk or self.default_chunk, self.min_shape)
        if n > top:
            return n
        return min(max(self.min_shape, 1 << (n - 1).bit_length()), top)

    def _call(self, image: Tensor, magnitude: Tensor) -> Tensor:
        import torch._inductor.config as inductor_config

        shape = image.shape[0]
        first = shape not in self.compile_seconds
        t0 = time.perf_counter()
        with inductor_config.patch(freezing=True):
            out = self._compiled(image, magnitude)
        if first:
            self.compile_seconds[shape] = time.perf_counter() - t0
            log.info("torch-compile: compiled batch shape %d in %.1f s", shape, self.compile_seconds[shape])
        return out

    def _forward_chunk(self, image: Tensor, magnitude: Tensor) -> Tensor:
        """Raw arrays, zero-padded to a compiled shape; preprocessing runs inside the graph."""
        n = image.shape[0]
        shape = self._shape(n)
        if shape != n:
            image = torch.cat((image, image.new_zeros(shape - n, *image.shape[1:])))
            magnitude = torch.cat((magnitude, magnitude.new_zeros(shape - n, *magnitude.shape[1:])))
        return self._call(image, magnitude)[:n]


class TorchBf16Engine(_TorchEngine):
    """:class:`FastAstro` with weights and activations in bfloat16 (output cast to fp32)."""

    name = "torch-bf16"
    precision = "bf16"
    default_chunk = 256

    def _prepare(self, model: nn.Module) -> nn.Module:
        return FastAstro(model).eval().to(torch.bfloat16)

    def _run(self, image: Tensor, magnitude: Tensor) -> Tensor:
        return self.module(image.to(torch.bfloat16), magnitude.to(torch.bfloat16)).float()


class TorchInt8Engine(TorchFastEngine):
    """:class:`FastAstro` with every Linear dynamically quantised to int8 (torch.ao)."""

    name = "torch-int8"
    precision = "int8"

    def _prepare(self, model: nn.Module) -> nn.Module:
        from torch.ao.quantization import quantize_dynamic

        fast = FastAstro(model).eval()
        with warnings.catch_warnings():  # torch.ao deprecation notices
            warnings.simplefilter("ignore")
            return quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8)


#: Engine name -> factory (read by :func:`cosmic_utils.inference.engines.create_engine`).
TORCH_ENGINES: dict[str, Callable[..., _TorchEngine]] = {
    cls.name: cls.from_artifact
    for cls in (TorchEagerEngine, TorchFastEngine, TorchCompiledEngine, TorchBf16Engine, TorchInt8Engine)}
