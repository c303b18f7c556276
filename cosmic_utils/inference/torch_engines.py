"""Torch inference engines: eager fp32, a restructured fp32 network, bf16 and int8.

Why a restructured network (:class:`FastAstro`) rather than the eager ``ViTAstro``: profiling the
published loop on a 2-core Xeon (torch.profiler, batch 256) showed that the matrix multiplies
that hold 91 % of the FLOPs took well under half of the time. The rest went to

* the grouped 1x1 convolutions of the 12 PCM modules (48 groups of 4 -> 16 channels, a
  memory-bound op that oneDNN runs slowly on NCHW tensors),
* ``contiguous()`` / ``permute`` copies between token and grid layouts,
* 3x3 stride-1 max pooling on NCHW tensors (ATen's NCHW kernel is several times slower than
  its channels-last kernel),
* BatchNorm, ReLU and concatenations around the small inception convolutions.

:class:`FastAstro` computes the same function from the same weights with fewer, larger ops:

* every BatchNorm is folded into the convolution before it (inference statistics);
* the 1x1 convolutions that read the same input inside an inception block (branch1,
  branch2[0], branch3[0]) are merged into one convolution;
* the image CNN runs channels-last (max pooling and convolutions take the fast NHWC kernels);
* the transformer keeps tokens as one 2-D ``[B*17, 192]`` matrix so every Linear is one GEMM,
  attention uses ``scaled_dot_product_attention`` (one fused kernel), and the PCM convolution
  runs on a channels-last view of the token grid, which is exactly the token layout, so no
  copies are made between the two;
* the ``(q_bias, 0, v_bias)`` qkv bias is built once, not at every call.

Its outputs agree with the eager model to float32 rounding (tests check 1e-4 relative).
Reduced precision runs the same restructured network:

* ``torch-bf16``: weights and activations in bfloat16 (oneDNN uses AMX / AVX-512 BF16 where the
  CPU has them; without them it is slower than fp32, so the bench never makes it the default);
* ``torch-int8``: dynamic int8 quantisation of every Linear (``torch.ao`` dynamic quant; weights
  int8 per tensor, activations quantised per batch at run time), the rest fp32.

torch is imported at module level: this module never runs inside Lambda
(:mod:`cosmic_utils.runtime.onnx_engine` does).
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosmic_utils.runtime.artifact import read_meta
from cosmic_utils.runtime.engine import Engine, resolve_threads

log = logging.getLogger(__name__)

__all__ = [
    "FastAstro",
    "TorchEagerEngine",
    "TorchFastEngine",
    "TorchCompiledEngine",
    "TorchBf16Engine",
    "TorchInt8Engine",
    "load_torch_model",
    "cpu_has_bf16",
]


# --------------------------------------------------------------------------- helpers
def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (BatchNorm in eval mode)."""
    w = conv.weight.detach().clone()
    b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(w.shape[0])
    if bn is None:
        return w, b
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b = (b - bn.running_mean.detach()) * scale + bn.bias.detach()
    return w, b


def _conv(w: Tensor, b: Tensor, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    out_ch, in_per_group, k, _ = w.shape
    conv = nn.Conv2d(in_per_group * groups, out_ch, k, padding=padding, groups=groups)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    return conv


def _linear(src: nn.Linear) -> nn.Linear:
    dst = nn.Linear(src.in_features, src.out_features, bias=src.bias is not None)
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst


class _FastInception(nn.Module):
    """An inception block with folded BatchNorms and its shared-input 1x1 convolutions merged."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.custom = bool(block.custom)
        heads = [block.branch1, block.branch2[0]] + ([] if self.custom else [block.branch3[0]])
        folded = [_fold_bn(cb.conv, cb.bn) for cb in heads]
        self.width = int(folded[0][0].shape[0])
        self.entry = _conv(torch.cat([w for w, _ in folded]), torch.cat([b for _, b in folded]))
        self.conv3 = _conv(*_fold_bn(block.branch2[1].conv, block.branch2[1].bn), padding=1)
        self.conv5 = None if self.custom else _conv(*_fold_bn(block.branch3[1].conv, block.branch3[1].bn), padding=2)
        self.pool_conv = _conv(*_fold_bn(block.branch4[1].conv, block.branch4[1].bn))

    def forward(self, x: Tensor) -> Tensor:
        w = self.width
        entry = F.relu(self.entry(x))
        b1 = entry[:, :w]
        b2 = F.relu(self.conv3(entry[:, w : 2 * w]))
        b4 = F.relu(self.pool_conv(F.max_pool2d(x, 3, 1, 1)))
        if self.custom:
            return torch.cat((b1, b2, b4), dim=1)
        b3 = F.relu(self.conv5(entry[:, 2 * w : 3 * w]))
        return torch.cat((b1, b2, b3, b4), dim=1)


class _FastCell(nn.Module):
    """One normal cell on a 2-D token matrix ``[B*17, 192]``.

    ``pcm_vector``: compute the PCM's two grouped 1x1 convolutions as broadcast multiply-adds
    on a ``[tokens, 48 groups, 16]`` layout instead of oneDNN grouped convolutions. In eager
    mode that is many small ops (slower); compiled by inductor it becomes one vectorised loop
    whose 16-wide inner dimension is one AVX-512 register (1.0 vs 1.5 ms per cell at 128
    samples on the 2-core Xeon), so ``torch-compile`` uses it.
    """

    def __init__(self, cell: nn.Module, pcm_vector: bool = False) -> None:
        super().__init__()
        self.pcm_vector = pcm_vector
        self.norm1 = copy.deepcopy(cell.norm1)
        self.norm2 = copy.deepcopy(cell.norm2)
        attn = cell.attn
        self.heads = int(attn.num_heads)
        self.head_dim = int(attn.head_dim)
        self.qkv = nn.Linear(attn.qkv.in_features, attn.qkv.out_features)
        with torch.no_grad():
            self.qkv.weight.copy_(attn.qkv.weight)
            self.qkv.bias.copy_(torch.cat((attn.q_bias, torch.zeros_like(attn.v_bias), attn.v_bias)))
        self.proj = _linear(attn.proj)
        self.fc1 = _linear(cell.mlp.fc1)
        self.fc2 = _linear(cell.mlp.fc2)
        pcm = cell.PCM
        self.pcm1 = _conv(*_fold_bn(pcm[0], pcm[1]), groups=pcm[0].groups)
        self.pcm2 = _conv(*_fold_bn(pcm[3], None), groups=pcm[3].groups)
        if pcm_vector:
            g = int(pcm[0].groups)
            w1, b1 = self.pcm1.weight.detach(), self.pcm1.bias.detach()  # [768, 4, 1, 1]
            w2, b2 = self.pcm2.weight.detach(), self.pcm2.bias.detach()  # [192, 16, 1, 1]
            hid, per_in = w1.shape[0] // g, w1.shape[1]
            out, per_hid = w2.shape[0] // g, w2.shape[1]
            # w1[i] [groups, hidden]: input channel i of every group times its hidden outputs
            self.register_buffer("pcm_w1", w1.reshape(g, hid, per_in).permute(2, 0, 1).contiguous(), persistent=False)
            self.register_buffer("pcm_b1", b1.reshape(g, hid).clone(), persistent=False)
            self.register_buffer("pcm_w2", w2.reshape(g, out, per_hid).clone(), persistent=False)
            self.register_buffer("pcm_b2", b2.reshape(g, out).clone(), persistent=False)

    def _pcm_vector(self, tokens: Tensor) -> Tensor:
        """The PCM on patch tokens ``[B, 16, C]`` as broadcast multiply-adds (class doc)."""
        b, p, c = tokens.shape
        w1 = self.pcm_w1
        xv = tokens.reshape(b * p, w1.shape[1], w1.shape[0])  # [tokens, groups, in per group]
        h = self.pcm_b1 + xv[:, :, 0:1] * w1[0]
        for i in range(1, w1.shape[0]):
            h = h + xv[:, :, i : i + 1] * w1[i]
        h = F.silu(h)  # [tokens, groups, hidden per group]
        return ((h.unsqueeze(2) * self.pcm_w2).sum(-1) + self.pcm_b2).reshape(b, p, c)

    def forward(self, x: Tensor, batch: int, side: int) -> Tensor:
        n = side * side + 1
        c = x.shape[-1]
        x3 = x.view(batch, n, c)
        if self.pcm_vector:
            conv = self._pcm_vector(x3[:, 1:, :])
        else:
            # PCM on the patch tokens: an NHWC view of [B, 16, C] is the token layout itself.
            grid = x3[:, 1:, :].reshape(batch, side, side, c).permute(0, 3, 1, 2)
            grid = grid.contiguous(memory_format=torch.channels_last)
            conv = self.pcm2(F.silu(self.pcm1(grid)))  # channels-last [B, C, s, s]
            conv = conv.permute(0, 2, 3, 1).reshape(batch, n - 1, c)
        qkv = self.qkv(self.norm1(x)).view(batch, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # scale = head_dim**-0.5
        att = att.transpose(1, 2).reshape(batch * n, c)
        x = x + self.proj(att)
        x3 = x.view(batch, n, c)
        x = torch.cat((x3[:, :1], x3[:, 1:] + conv), dim=1).view(batch * n, c)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class FastAstro(nn.Module):
    """``ViTAstro`` restructured for inference (same weights, same function; see module doc).

    ``forward(image float32 [B,5,32,32], magnitude [B,5]) -> redshift float32 [B]``.
    ``pcm_vector``: see :class:`_FastCell` (for compiled use).
    """

    def __init__(self, model: nn.Module, pcm_vector: bool = False) -> None:
        super().__init__()
        model = model.eval()
        self.patch = copy.deepcopy(model.patch_embed.proj)
        self.cls_pos = nn.Parameter((model.cls_token + model.pos_embed[:, :1]).detach().clone(), requires_grad=False)
        self.pos = nn.Parameter(model.pos_embed[:, 1:].detach().clone(), requires_grad=False)
        self.cells = nn.ModuleList(_FastCell(c, pcm_vector) for c in model.blocks)
        self.fc_norm = copy.deepcopy(model.fc_norm)
        self.head = _linear(model.head)
        self.vit1 = _linear(model.vit_block[0])
        self.vit2 = _linear(model.vit_block[2])
        inc = model.inception_model
        vis = inc.vis_inception
        self.conv_init = copy.deepcopy(vis[0])
        self.inc = nn.ModuleList(_FastInception(vis[i]) for i in (2, 3, 5, 6, 8))
        self.img1 = _linear(vis[10])
        self.img2 = _linear(vis[12])
        self.mag = nn.ModuleList(_linear(inc.magnitude_block[i]) for i in (0, 2, 4, 6, 8))
        self.cat1 = _linear(model.concat_block[0])
        self.cat2 = _linear(model.concat_block[2])
        self.requires_grad_(False)

    def transformer(self, image: Tensor) -> Tensor:
        b = image.shape[0]
        tokens = self.patch(image)  # [B, C, 4, 4]
        side = tokens.shape[-1]
        c = tokens.shape[1]
        tokens = tokens.flatten(2).transpose(1, 2) + self.pos  # [B, 16, C]
        x = torch.cat((self.cls_pos.expand(b, -1, -1), tokens), dim=1).reshape(b * (side * side + 1), c)
        for cell in self.cells:
            x = cell(x, b, side)
        pooled = x.view(b, side * side + 1, c)[:, 1:].mean(dim=1)
        return self.vit2(F.relu(self.vit1(self.head(self.fc_norm(pooled)))))

    def cnn(self, image: Tensor) -> Tensor:
        x = self.conv_init(image.contiguous(memory_format=torch.channels_last))
        x = F.avg_pool2d(x, 2)
        x = self.inc[1](self.inc[0](x))
        x = F.avg_pool2d(x, 2)
        x = self.inc[3](self.inc[2](x))
        x = F.avg_pool2d(x, 2)
        x = self.inc[4](x)
        x = x.contiguous().flatten(1)  # NCHW flatten order, as published
        return self.img2(F.relu(self.img1(x)))

    def magnitudes(self, magnitude: Tensor) -> Tensor:
        x = magnitude.to(self.fc_norm.weight.dtype)  # float32 (bf16 in the bf16 engine)
        x = self.mag[0](x)
        for lin in self.mag[1:]:
            x = lin(F.relu(x))
        return x

    def forward(self, image: Tensor, magnitude: Tensor) -> Tensor:
        feats = torch.cat((self.transformer(image), self.cnn(image), self.magnitudes(magnitude)), dim=1)
        return self.cat2(F.relu(self.cat1(feats))).reshape(-1)


# --------------------------------------------------------------------------- CPU features
def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AMX-BF16 or AVX-512 BF16, not capped away)."""
    from cosmic_utils.runtime.gating import native_bf16

    return native_bf16()


# --------------------------------------------------------------------------- engines
def load_torch_model(artifact_dir: str | os.PathLike[str]) -> nn.Module:
    """The ``ViTAstro`` of an artifact folder, weights loaded, in eval mode."""
    from cosmic_utils.model.astromae import build_model

    folder = Path(artifact_dir)
    meta = read_meta(folder)
    rel = ((meta.get("files") or {}).get("state_dict") or {}).get("path", "model.pt")
    path = folder / rel
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {folder}: state_dict file {rel} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model()
    model.load_state_dict(state)
    return model.eval()


class _TorchEngine(Engine):
    """Shared plumbing: threads, the artifact's preprocessing (the torch twin of the ONNX
    graph's, :class:`cosmic_utils.model.export.Preprocess`), micro-batching, numpy in and out.

    ``chunk``: largest number of samples sent through the network at once. Batches larger than
    that are split: the activations of 128 samples (17 tokens x 768 channels) stay in the
    caches, which on the 2-core Xeon made batch 256 ~10 % faster than one 256-sample pass.
    """

    name = "torch"
    precision = "fp32"
    framework = "torch"
    default_chunk: int | None = None

    def __init__(self, model: nn.Module, preprocessing: Any = None, threads: int | None = None,
                 chunk: int | None = None) -> None:
        from cosmic_utils.inference.tuning import keep_freed_memory
        from cosmic_utils.model.export import Preprocess

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
        from cosmic_utils.runtime.preprocess import Preprocessing

        meta = read_meta(Path(artifact_dir))
        pre = Preprocessing.from_dict(meta.get("preprocessing"))
        return cls(load_torch_model(artifact_dir), pre, threads=threads, **kwargs)


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
    """:class:`FastAstro` (vectorised PCM) compiled by TorchInductor, fp32, fixed shapes.

    Inductor (``torch.compile``, ``freezing=True``: weights become constants, Linear weights are
    pre-packed for MKL) fuses the element-wise work around the matrix multiplies (bias, GELU,
    SiLU, LayerNorm, residual adds, the PCM, the preprocessing) into generated C++ loops.
    Shapes are static:
    a micro-batch of ``n`` rows runs at the smallest power of two ``>= max(n, 32)`` (at most
    ``chunk``, 128), zero-padded, so a run compiles at most three shapes (32, 64, 128) however
    its partitions end. Compiling costs ~20 s per shape on 2 cores (the 128 shape is compiled
    when the engine is created and counted in its model load time; ``compile_seconds`` holds
    each shape's cost). Inductor caches its output on disk (``TORCHINDUCTOR_CACHE_DIR``, default
    under the system temp folder), so later processes compile faster.

    Needs a C++ compiler and the Python headers (inductor builds its kernels); without them the
    engine fails at creation with a message saying so, and ``cosmic bench`` skips it.
    """

    name = "torch-compile"
    default_chunk = 128
    min_shape = 32

    def _prepare(self, model: nn.Module) -> nn.Module:
        from cosmic_utils.model.export import RedshiftPredictor

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
        shape = self.min_shape
        while shape < min(n, top):
            shape *= 2
        return min(shape, top) if n <= top else n

    def _call(self, image: Tensor, magnitude: Tensor) -> Tensor:
        import time

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


class TorchInt8Engine(_TorchEngine):
    """:class:`FastAstro` with every Linear dynamically quantised to int8 (torch.ao)."""

    name = "torch-int8"
    precision = "int8"
    default_chunk = 128

    def _prepare(self, model: nn.Module) -> nn.Module:
        from torch.ao.quantization import quantize_dynamic

        fast = FastAstro(model).eval()
        with warnings.catch_warnings():  # torch.ao deprecation notices
            warnings.simplefilter("ignore")
            return quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8)

    def _run(self, image: Tensor, magnitude: Tensor) -> Tensor:
        return self.module(image, magnitude)


#: Engine name -> class (read by :func:`cosmic_utils.inference.engines.create_engine`).
TORCH_ENGINES: dict[str, Callable[..., _TorchEngine]] = {
    "torch-eager": TorchEagerEngine.from_artifact,
    "torch": TorchFastEngine.from_artifact,
    "torch-compile": TorchCompiledEngine.from_artifact,
    "torch-bf16": TorchBf16Engine.from_artifact,
    "torch-int8": TorchInt8Engine.from_artifact,
}
