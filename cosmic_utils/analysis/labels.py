"""How record quantities are named in the report and the README, where a bare number would overclaim."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def galaxies_text(samples: int, summary: Mapping[str, Any] | None = None) -> str:
    """``N samples`` with how many distinct galaxies they are (issue 21: resampled galaxies are not distinct):
    ``distinct_galaxies`` of the record, else "at most" the validation catalogue the datasets are
    resampled from with replacement (``config.VALID_CATALOG``)."""
    distinct = (summary or {}).get("distinct_galaxies")
    if distinct:
        return f"{int(samples):,} samples of {int(distinct):,} distinct galaxies"
    from cosmic_utils.data import catalog

    n = len(catalog.valid_catalog())
    return f"{int(samples):,} samples resampled from the {n:,}-galaxy validation catalogue (at most {n:,} distinct)"
