"""The torch-free engine interface every inference engine implements (Lambda runs the ONNX one).
The registry that also knows the torch and CUDA engines is :mod:`cosmic_utils.inference.engines`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from cosmic_utils.runtime.artifact import read_meta as artifact_meta  # noqa: F401  the reader engines use
from cosmic_utils.runtime.partition import IMAGE_SHAPE, N_BANDS

#: Precision of each engine (fp32 engines need no accuracy check).
ENGINE_PRECISION: dict[str, str] = {
    "torch-eager": "fp32", "torch": "fp32", "torch-compile": "fp32", "torch-bf16": "bf16", "torch-int8": "int8",
    "onnx": "fp32", "onnx-int8": "int8",
    "torch-cuda": "fp32", "torch-cuda-bf16": "bf16", "torch-cuda-fp16": "fp16",
}
ONNX_ENGINE_NAMES: tuple[str, ...] = ("onnx", "onnx-int8")


class EngineUnavailableError(RuntimeError):
    """The engine cannot run on this machine (e.g. no CUDA device); the message says why."""


def resolve_threads(threads: int | None) -> int:
    """Intra-op threads: the given number, else the CPUs this process may run on."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        return int(threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Engine(ABC):
    """One way to run the model. Subclasses set ``name``, ``precision``, ``framework``."""

    name: str = "engine"
    precision: str = "fp32"
    framework: str = ""
    threads: int = 1
    #: Set by the gate (:mod:`cosmic_utils.runtime.gating`): verdict on this CPU (``None`` for fp32),
    #: the engine asked for, and why another one serves ("" when none).
    gate: dict[str, Any] | None = None
    requested_name: str = ""
    fallback_reason: str = ""
    #: Set by the inference step: sha256 of the ``artifact.json`` the engine was loaded from.
    model_sha256: str | None = None

    @abstractmethod
    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        """Raw ``image`` float32 [N,5,32,32] and ``magnitude`` float64 [N,5] -> redshift float32 [N]."""

    def close(self) -> None:
        """Release the runtime (sessions, thread pools). Idempotent."""
        return None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.precision} threads={self.threads}>"

    @staticmethod
    def check_inputs(image: Any, magnitude: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate shapes (raising ``ValueError`` naming the array) and return numpy arrays."""
        image, magnitude = np.asarray(image), np.asarray(magnitude)
        if image.ndim != 4 or tuple(image.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(f"image must have shape [N, 5, 32, 32], got {list(image.shape)}")
        if magnitude.shape != (image.shape[0], N_BANDS):
            raise ValueError(f"magnitude must have shape [{image.shape[0]}, 5], got {list(magnitude.shape)}")
        return image.astype(np.float32, copy=False), magnitude.astype(np.float64, copy=False)
