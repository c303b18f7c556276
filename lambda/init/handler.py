"""Init Lambda: validate the run request, list the partitions (paginated), write the item list.

Thin on purpose: the logic lives in :func:`cosmic_utils.runtime.steps.init.init_step`.
"""

from __future__ import annotations

import logging
from typing import Any

from cosmic_utils.runtime.steps import init as steps

logging.getLogger().setLevel(logging.INFO)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Execution input (the run request) -> ``{"request", "items": {"bucket", "key"}, ...}``."""
    return steps.init_step(event, context)
