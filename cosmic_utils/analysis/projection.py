"""What a run will cost and how long it will take, before it starts (``cosmic run --max-usd``).

The projection is the scale simulator (:func:`cosmic_utils.analysis.simulate.simulate_run`, parameters
fitted on the published runs when ``data/records/simulator_validation.json`` exists) applied to
the run's own dataset (its manifest: partition count and size), its memory size and its Map
concurrency, with the inference part divided by this repository's measured engine speedup over
the published loop (``bench.json``, :func:`cosmic_utils.analysis.simulate.read_engine_speedup`) when one
is recorded. It is an estimate, printed as one; the budget check compares the budget with it.
The worst case (every invocation to its timeout, retried) is :func:`cosmic_utils.cloud.aws.plan`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
    from cosmic_utils.runtime.manifest import Manifest
    from cosmic_utils.runtime.storage import open_storage

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
    return _project(len(entries), mb, data_gb, float(request.memory_mb), int(request.max_concurrency or 0),
                    getattr(request, "world_size", None))


def project_point(data_gb: float, partition_mb: float, memory_mb: float, max_concurrency: int = 0,
                  world_size: int | None = None) -> RunProjection:
    """The projection of a sweep point from its parameters (before its dataset exists)."""
    from cosmic_utils.analysis import simulate

    n = simulate.partitions_for(data_gb, partition_mb)
    return _project(n, partition_mb, data_gb, float(memory_mb), int(max_concurrency or 0), world_size)


def _project(partitions: int, mb: float, data_gb: float, memory_mb: float, max_concurrency: int,
             world_size: int | None) -> RunProjection:
    from cosmic_utils.analysis import simulate

    n = max(1, partitions)
    invocations = min(n, world_size) if world_size else n
    item_mb = mb * n / invocations
    fitted = simulate.load_fitted()
    timing, orch = fitted if fitted else (simulate.PartitionTiming(), simulate.Orchestration())
    speedup = simulate.read_engine_speedup()  # the 1-vCPU Lambda engine, batch 256
    if speedup:
        timing = replace(timing, inference_s_per_mb=timing.inference_s_per_mb / speedup,
                         inference_samples_s_per_mb=tuple(x / speedup for x in timing.inference_samples_s_per_mb))
    orch = replace(orch, max_concurrency=max_concurrency)
    sim = simulate.simulate_run(data_gb, item_mb, memory_mb, timing=timing, orch=orch, n_partitions=invocations)
    return RunProjection(partitions=partitions, invocations=invocations, data_gb=data_gb, partition_mb=mb,
                         memory_mb=memory_mb, wall_s=float(sim.wall_s),
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


def project_sweep(parameters: Mapping[str, Any], combinations: Iterable[Mapping[str, Any]],
                  ) -> list[tuple[dict[str, Any], RunProjection | None]]:
    """Each sweep point's projection from its parameters (None when it lacks data_gb/partition_mb)."""
    out: list[tuple[dict[str, Any], RunProjection | None]] = []
    for combo in combinations:
        p = {**parameters, **combo}
        if p.get("data_gb") is None or p.get("partition_mb") is None:
            out.append((dict(combo), None))
            continue
        out.append((dict(combo), project_point(float(p["data_gb"]), float(p["partition_mb"]),
                                               float(p.get("memory_mb") or 2048), int(p.get("max_concurrency") or 0),
                                               int(p.get("world_size") or 0) or None)))
    return out
