"""Inference Lambda: one Map item (one partition, or a share with world_size).

Thin on purpose: :func:`cosmic_utils.runtime.steps.inference.inference_step` reads the partition(s),
runs the ONNX engine (cached per warm container at module level inside ``steps``), writes
predictions and one record per partition. Data errors become failure records; infrastructure
errors raise ``InfrastructureError`` so the state machine retries. No torch here.
"""

from __future__ import annotations

import logging
from typing import Any

from cosmic_utils.runtime.steps import inference as steps

logging.getLogger().setLevel(logging.INFO)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"item": {...}, "request": {...}}`` -> ``{"ok": n, "failed": m}``."""
    return steps.inference_step(event, context)
