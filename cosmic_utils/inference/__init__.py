"""Local inference: interchangeable engines, the streaming runner, measurements and the
published-loop baseline.

* :mod:`~cosmic_utils.inference.engines` - the :class:`Engine` interface, :func:`create_engine`,
  :func:`default_engine` (torch-free);
* :mod:`~cosmic_utils.runtime.onnx_engine` - ONNX Runtime fp32 / int8 (torch-free: Lambda);
* :mod:`~cosmic_utils.inference.torch_engines` - eager, restructured fp32, bf16, int8 (torch);
* :mod:`~cosmic_utils.inference.streaming` - bounded-memory streaming over partitions with a
  background prefetch thread, and one local run -> one record;
* :mod:`~cosmic_utils.inference.measure` - timers, peak RSS, machine info, matmul peak, records;
* :mod:`~cosmic_utils.inference.published_loop` - the published ``torch.load`` + ``DataLoader``
  + eager model loop, the in-run baseline of every comparison.

Importing this package imports nothing heavy (no torch, no onnxruntime).
"""

from __future__ import annotations

from cosmic_utils.inference.engines import ENGINE_NAMES, ENGINE_PRECISION, create_engine, default_engine
from cosmic_utils.runtime.engine import Engine

__all__ = ["ENGINE_NAMES", "ENGINE_PRECISION", "Engine", "create_engine", "default_engine"]
