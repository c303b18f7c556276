"""Map items and the key layout of a run's results (``<results>/<run_id>/...``), in one place.

A partition id is its key without ``.cpart``, ``/`` -> ``__`` (unique, file-name safe); an item is
``{"worker_id": i, "partitions": [entry, ...]}``. Layout and why: docs/pipeline.md "What each step does".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PARTITION_SUFFIX = ".cpart"


def partition_id_for(key: str) -> str:
    """Stable, file-name-safe id of the partition stored at ``key`` (relative to the data root)."""
    stem = key[: -len(PARTITION_SUFFIX)] if key.endswith(PARTITION_SUFFIX) else key
    return stem.replace("/", "__")


@dataclass(frozen=True)
class RunLayout:
    """Keys of one run, relative to the results location."""

    run_id: str

    @property
    def root(self) -> str:
        return self.run_id

    @property
    def items(self) -> str:
        return f"{self.run_id}/items.json"

    @property
    def partitions(self) -> str:
        return f"{self.run_id}/partitions.json"

    @property
    def records_prefix(self) -> str:
        return f"{self.run_id}/records/"

    def record(self, partition_id: str) -> str:
        return f"{self.run_id}/records/{partition_id}.json"

    def predictions(self, partition_id: str, fmt: str = "csv") -> str:
        return f"{self.run_id}/predictions/{partition_id}.{fmt}"

    @property
    def predictions_prefix(self) -> str:
        return f"{self.run_id}/predictions/"

    @property
    def summary(self) -> str:
        return f"{self.run_id}/summary.json"

    @property
    def executions(self) -> str:
        """The run's execution chain (first execution, then each redrive): only their records count."""
        return f"{self.run_id}/executions.json"


def split_even(entries: Sequence[Any], workers: int | None) -> list[list[Any]]:
    """Split ``entries`` into contiguous, non-empty shares whose sizes differ by at most one
    (``workers=None`` or more workers than entries: one entry per share)."""
    n = len(entries)
    if workers is None or workers >= n:
        return [[e] for e in entries]
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    base, extra = divmod(n, workers)
    bounds = [i * base + min(i, extra) for i in range(workers + 1)]
    return [list(entries[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]


def build_items(entries: Sequence[dict[str, Any]], world_size: int | None) -> list[dict[str, Any]]:
    """Map items for ``entries`` (partition dicts), numbered by ``worker_id``."""
    return [{"worker_id": i, "partitions": share} for i, share in enumerate(split_even(entries, world_size))]
