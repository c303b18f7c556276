"""Local inference: interchangeable engines (:mod:`~cosmic_utils.inference.engines`), streaming,
measurements and the published-loop baseline (docs/inference.md).

Importing this package imports nothing heavy (no torch, no onnxruntime).
"""

from __future__ import annotations

from cosmic_utils.inference.engines import ENGINE_NAMES, ENGINE_PRECISION, create_engine, default_engine
from cosmic_utils.runtime.engine import Engine

__all__ = ["ENGINE_NAMES", "ENGINE_PRECISION", "Engine", "create_engine", "default_engine"]
