"""How record quantities are named in the report and the README, where a bare number would overclaim."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def galaxies_text(samples: int, summary: Mapping[str, Any] | None = None) -> str:
    """``N samples`` with how many distinct galaxies they are (issue 21: resampled galaxies are not distinct).

    A record that carries ``distinct_galaxies`` gives the count; otherwise the bound is the validation
    catalogue the datasets are rendered from (``config.VALID_CATALOG``, resampled with replacement),
    so the text says "at most" that many distinct galaxies.
    """
    distinct = (summary or {}).get("distinct_galaxies")
    if distinct:
        return f"{int(samples):,} samples of {int(distinct):,} distinct galaxies"
    from cosmic_utils.data import catalog

    n = len(catalog.valid_catalog())
    return f"{int(samples):,} samples resampled from the {n:,}-galaxy validation catalogue (at most {n:,} distinct)"
