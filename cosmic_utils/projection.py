"""What a run will cost and how long it will take, before it starts (``cosmic run --max-usd``).

The projection is the scale simulator (:func:`cosmic_utils.simulate.simulate_run`, parameters
fitted on the published runs when ``data/records/simulator_validation.json`` exists) applied to
the run's own dataset (its manifest: partition count and size), its memory size and its Map
concurrency, with the inference part divided by this repository's measured engine speedup over
the published loop (``bench.json``, :func:`cosmic_utils.simulate.read_engine_speedup`) when one
is recorded. It is an estimate, printed as one; the budget check compares the budget with it.
The worst case (every invocation to its timeout, retried) is :func:`cosmic_utils.backends.aws.plan`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from cosmic_utils import config


class BudgetExceeded(RuntimeError):
    """The run's projected cost is above the budget; the message gives both."""


@dataclass(frozen=True)
class RunProjection:
    """Projected wall clock and cost of one run."""

    partitions: int
    invocations: int
    data_gb: float
    partition_mb: float
    memory_mb: float
    wall_s: float
    cost_usd: float
    engine_speedup: float | None
    fitted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def one_line(self) -> str:
        speed = f"engine speedup {self.engine_speedup:.2f}x (bench.json)" if self.engine_speedup else \
            "published engine speed (no bench.json)"
        return (f"PROJECTION: {self.partitions} partitions ({self.data_gb:.3g} GB, {self.partition_mb:.3g} MB each) "
                f"in {self.invocations} invocations at {self.memory_mb:.0f} MB: ~{self.wall_s:.0f} s wall clock, "
                f"~{self.cost_usd:.4g} USD ({speed}; simulator "
                f"{'fitted on the published runs' if self.fitted else 'defaults'})")


def project_run(request: Any, s3_client: Any = None) -> RunProjection:
    """The projection of ``request`` (a RunRequest) from its dataset's manifest."""
    from cosmic_utils import simulate
    from cosmic_utils.manifest import Manifest
    from cosmic_utils.storage import open_storage

    manifest = Manifest.read(open_storage(request.data, s3_client=s3_client))
    entries = list(manifest.entries)
    if request.partitions:
        wanted = {str(k) for k in request.partitions}
        entries = [e for e in entries if e.key in wanted]
    elif request.partition_limit:
        entries = entries[: request.partition_limit]
    n = max(1, len(entries))
    mb = sum(e.data_bytes for e in entries) / config.PARTITION_MB / n if entries else 0.0
    data_gb = sum(e.data_bytes for e in entries) / config.GB
    invocations = min(n, request.world_size) if getattr(request, "world_size", None) else n
    item_mb = mb * n / invocations
    fitted = simulate.load_fitted()
    timing, orch = fitted if fitted else (simulate.PartitionTiming(), simulate.Orchestration())
    speedup = simulate.read_engine_speedup()
    if speedup:
        timing = replace(timing, inference_s_per_mb=timing.inference_s_per_mb / speedup,
                         inference_samples_s_per_mb=tuple(x / speedup for x in timing.inference_samples_s_per_mb))
    orch = replace(orch, max_concurrency=int(request.max_concurrency or 0))
    sim = simulate.simulate_run(data_gb, item_mb, float(request.memory_mb), timing=timing, orch=orch,
                                n_partitions=invocations)
    return RunProjection(partitions=len(entries), invocations=invocations, data_gb=data_gb, partition_mb=mb,
                         memory_mb=float(request.memory_mb), wall_s=float(sim.wall_s),
                         cost_usd=float(sim.cost_usd), engine_speedup=speedup, fitted=fitted is not None)


def check_budget(projection: RunProjection, max_usd: float | None) -> None:
    """Raise BudgetExceeded when the projected cost is above ``max_usd`` (None: no budget)."""
    if max_usd is None:
        return
    if not math.isfinite(max_usd) or max_usd < 0:
        raise ValueError(f"--max-usd {max_usd}: expected a number >= 0")
    if projection.cost_usd > max_usd:
        raise BudgetExceeded(f"refused: projected cost {projection.cost_usd:.4g} USD "
                             f"(~{projection.wall_s:.0f} s, {projection.partitions} partitions at "
                             f"{projection.memory_mb:.0f} MB) is above the budget --max-usd {max_usd:g}")
