"""The GPU engine: the model on a CUDA device, fp32 or bf16 / fp16 autocast, with prefetch.

Pinned double-buffered uploads on a side stream, ``FastAstro`` when it agrees with the eager
model on the device; without CUDA, creation raises :class:`CudaUnavailableError` (after the
argument checks). Reasoning: docs/inference.md ("GPU baseline").
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from cosmic_utils.inference.torch_engines import FastAstro, load_torch_artifact
from cosmic_utils.model.export import Preprocess
from cosmic_utils.runtime.engine import Engine, EngineUnavailableError, resolve_threads

log = logging.getLogger(__name__)

T = TypeVar("T")

#: precision -> autocast dtype (None: plain fp32).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Default samples per device batch (large: a GPU needs thousands of rows to fill).
DEFAULT_DEVICE_BATCH: int = 4096
#: FastAstro must agree with the eager model on the device to this (redshift, fp32).
FAST_CHECK_ATOL: float = 1e-3
#: ... and to this under bf16 / fp16 autocast (both networks run at the reduced precision).
REDUCED_CHECK_ATOL: float = 0.05


class CudaUnavailableError(EngineUnavailableError):
    """No CUDA device is present (``torch.cuda.is_available()`` is False)."""


def check_arguments(precision: str, batch_size: int) -> None:
    """Raise ``ValueError`` naming the argument; runs before anything touches CUDA."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {', '.join(AUTOCAST_DTYPES)}, got {precision!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def require_cuda(engine: str = "torch-cuda") -> None:
    """Raise :class:`CudaUnavailableError` (one clear line) when no CUDA device is present."""
    if not torch.cuda.is_available():
        raise CudaUnavailableError(
            f"{engine}: no CUDA device is present (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, built with CUDA {torch.version.cuda or 'none'}); run it on a GPU machine")


def batch_plan(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges covering ``n`` rows in order, each at most ``batch_size``."""
    check_arguments("fp32", batch_size)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def prefetched(items: Sequence[T], load: Callable[[int, T], Any]) -> Iterator[tuple[int, T, Any]]:
    """Yield ``(i, item, load(i, item))`` with ``load`` of item ``i+1`` issued *before* item
    ``i`` is yielded, so the (asynchronous) load of the next batch overlaps the caller's work
    on the current one. At most two loads are outstanding: a double buffer."""
    if not items:
        return
    nxt = load(0, items[0])
    for i, item in enumerate(items):
        cur = nxt
        if i + 1 < len(items):
            nxt = load(i + 1, items[i + 1])
        yield i, item, cur


class CudaEngine(Engine):
    """The model on the first CUDA device (see module docstring)."""

    framework = "torch"
    kind = "local_gpu"

    def __init__(self, model: nn.Module, preprocessing: Any = None, precision: str = "fp32",
                 batch_size: int = DEFAULT_DEVICE_BATCH, threads: int | None = None) -> None:
        check_arguments(precision, batch_size)
        self.threads = resolve_threads(threads)
        self.name = "torch-cuda" if precision == "fp32" else f"torch-cuda-{precision}"
        require_cuda(self.name)
        self.precision = precision
        self.batch_size = int(batch_size)
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        self.device = torch.device("cuda")
        self.device_name = torch.cuda.get_device_name(self.device)
        self.preprocess = Preprocess(preprocessing).eval().to(self.device)
        self.module, self.network = self._choose_network(model.eval())
        self.copy_stream = torch.cuda.Stream(self.device)
        self._host: list[tuple[Tensor, Tensor]] = [
            (torch.empty(self.batch_size, 5, 32, 32, dtype=torch.float32).pin_memory(),
             torch.empty(self.batch_size, 5, dtype=torch.float64).pin_memory()) for _ in range(2)]
        self._done: list[torch.cuda.Event | None] = [None, None]

    def _choose_network(self, model: nn.Module) -> tuple[nn.Module, str]:
        """FastAstro when it runs on the device (under this engine's autocast) and agrees with the
        eager model run the same way, else the eager model."""
        fast: nn.Module | None = None
        try:  # built on the CPU (its BatchNorm folding makes CPU tensors), then moved
            fast = FastAstro(model).eval()
        except Exception as exc:  # pragma: no cover - FastAstro builds wherever the CPU engines run
            log.warning("%s: FastAstro could not be built (%s): using the eager ViTAstro", self.name, exc)
        eager = model.to(self.device)
        if fast is None:
            return eager, "eager"
        tol = FAST_CHECK_ATOL if self.autocast_dtype is None else REDUCED_CHECK_ATOL
        try:
            fast = fast.to(self.device)
            gen = torch.Generator().manual_seed(0)
            image = torch.rand(8, 5, 32, 32, generator=gen).to(self.device)
            mag = (18 + 4 * torch.rand(8, 5, generator=gen, dtype=torch.float64)).to(self.device)
            with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
                x, m = self.preprocess(image, mag)
                with self._autocast():
                    z_fast = fast(x, m).float().reshape(-1)
                    z_eager = eager([x, m]).float().reshape(-1)
            err = float((z_fast - z_eager).abs().max())
            if err <= tol:
                return fast, "fast"
            log.warning("%s: FastAstro differs from the eager model on %s by %.2e (> %.0e): using the eager ViTAstro",
                        self.name, self.device_name, err, tol)
        except Exception as exc:  # an op without a CUDA kernel, etc.: the eager model still runs
            log.warning("%s: FastAstro failed on %s (%s: %s): using the eager ViTAstro",
                        self.name, self.device_name, type(exc).__name__, exc)
        return eager, "eager"

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` at the engine's reduced precision; nothing for fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.autocast_dtype)

    def _network(self, x: Tensor, m: Tensor) -> Tensor:
        out = self.module(x, m) if self.network == "fast" else self.module([x, m])
        return out.float().reshape(-1)

    def _upload(self, slot_rows: tuple[np.ndarray, np.ndarray], slot: int) -> tuple[Tensor, Tensor]:
        """Raw rows -> pinned staging buffer ``slot`` -> device, asynchronously on the side stream."""
        image, magnitude = slot_rows
        n = image.shape[0]
        done = self._done[slot]
        if done is not None:
            done.synchronize()  # the previous upload from this buffer has finished reading it
        host_im, host_mg = self._host[slot]
        np.copyto(host_im[:n].numpy(), image)  # numpy copy: partitions may be read-only memory maps
        np.copyto(host_mg[:n].numpy(), magnitude)
        with torch.cuda.stream(self.copy_stream):
            dev_im = host_im[:n].to(self.device, non_blocking=True)
            dev_mg = host_mg[:n].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.copy_stream)
        self._done[slot] = event
        compute = torch.cuda.current_stream(self.device)
        dev_im.record_stream(compute)  # allocated on the side stream, used on the compute stream
        dev_mg.record_stream(compute)
        return dev_im, dev_mg

    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        image, magnitude = self.check_inputs(image, magnitude)
        n = image.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=self.device)
        plan = batch_plan(n, self.batch_size)
        compute = torch.cuda.current_stream(self.device)
        with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            for i, (start, stop), (im, mg) in prefetched(
                    plan, lambda i, r: self._upload((image[r[0]:r[1]], magnitude[r[0]:r[1]]), i % 2)):
                # wait for this batch's upload only (the next one is still in flight on the side stream)
                event = self._done[i % 2]
                assert event is not None
                compute.wait_event(event)
                x, m = self.preprocess(im, mg)
                with self._autocast():
                    out[start:stop] = self._network(x, m)
        return out.cpu().numpy()

    def close(self) -> None:
        self._host = []
        self._done = [None, None]

    @classmethod
    def from_artifact(cls, artifact_dir: str | os.PathLike[str], threads: int | None = None,
                      precision: str = "fp32", batch_size: int = DEFAULT_DEVICE_BATCH, **kwargs: Any) -> CudaEngine:
        """The engine on an artifact folder; refuses (before loading anything) without CUDA."""
        check_arguments(precision, batch_size)
        require_cuda("torch-cuda" if precision == "fp32" else f"torch-cuda-{precision}")
        return cls(*load_torch_artifact(artifact_dir), precision=precision, batch_size=batch_size, threads=threads,
                   **kwargs)


#: Engine name -> precision of the CUDA engines (read by ``create_engine``).
CUDA_ENGINE_PRECISION: dict[str, str] = {"torch-cuda": "fp32", "torch-cuda-bf16": "bf16", "torch-cuda-fp16": "fp16"}
