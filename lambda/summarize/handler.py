"""Summarize Lambda: gather every record (paginated), write summary.json.

Thin on purpose: the logic lives in :func:`cosmic_utils.runtime.steps.summarize.summarize_step`.
"""

from __future__ import annotations

import logging
from typing import Any

from cosmic_utils.runtime.steps import summarize as steps

logging.getLogger().setLevel(logging.INFO)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``{"state": <Init output>, "execution": {...}}`` -> where the summary is, with counts."""
    return steps.summarize_step(event, context)
