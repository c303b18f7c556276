"""Map items and the key layout of a run's results.

One place decides where everything of a run lives under the results location, so Init,
Inference, Summarize, the runner and the tests agree:

```
<results>/<run_id>/items.json                 the Map's work list (JSON array; the ItemReader reads it)
<results>/<run_id>/partitions.json            every partition the run must account for
<results>/<run_id>/records/<partition>.json   one timing record per partition (ok or failed)
<results>/<run_id>/predictions/<partition>.csv|.npz
<results>/<run_id>/summary.json
<results>/<run_id>/executions.json            the execution chain whose records count (run identity)
```

A partition id is the partition's key without ``.cpart`` and with ``/`` turned into ``__``, so it
is unique within the dataset and safe as a file name. A retried partition writes the same two keys
again (idempotent) and never touches another partition's outputs.

An item is ``{"worker_id": i, "partitions": [entry, ...]}``: one entry by default, or an even
share of the partitions when the request sets ``world_size`` (fewer, longer invocations).
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
    """Split ``entries`` into contiguous shares whose sizes differ by at most one.

    ``workers=None`` gives one entry per share (the default: one partition per invocation).
    More workers than entries gives one share per entry, never an empty share.
    """
    n = len(entries)
    if workers is None or workers >= n:
        return [[e] for e in entries]
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    base, extra = divmod(n, workers)
    shares: list[list[Any]] = []
    start = 0
    for i in range(workers):
        size = base + (1 if i < extra else 0)
        shares.append(list(entries[start:start + size]))
        start += size
    return shares


def build_items(entries: Sequence[dict[str, Any]], world_size: int | None) -> list[dict[str, Any]]:
    """Map items for ``entries`` (partition dicts), numbered by ``worker_id``."""
    return [{"worker_id": i, "partitions": share} for i, share in enumerate(split_even(entries, world_size))]
