"""What a run will cost and how long it will take, before it starts (``cosmic run --max-usd``).

The per-partition duration is THE Lambda model's
(:func:`cosmic_utils.analysis.lambda_model.partition_duration_s`) for the run's memory size, its
engine, each measured CPU type (shipped bench records: Intel and AMD) and its partition size (from
the dataset's manifest); the scale simulator (:func:`cosmic_utils.analysis.simulate.simulate_run`,
orchestration fitted on the published runs when ``data/records/simulator_validation.json`` exists)
schedules those durations over the run's partitions and Map concurrency. Lambda picks the CPU, not
the user, so the budget is checked against the costliest measured CPU's point projection; the
line printed also gives the model's high bound (the published REPORT durations' unexplained
residual kept). It is an estimate, printed as one. The worst case (every invocation to its
timeout, retried) is :func:`cosmic_utils.cloud.aws.plan`.
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
    """Projected wall clock and cost of one run (point of the costliest measured CPU; high bound beside it)."""

    partitions: int
    invocations: int
    data_gb: float
    partition_mb: float
    memory_mb: float
    wall_s: float
    cost_usd: float
    engine: str
    machine: str  #: the CPU whose projection is the costliest (the one the budget is checked against)
    cost_usd_high: float  #: the model's high bound on that CPU (published unexplained residual kept)
    per_cpu: tuple[tuple[str, float], ...]  #: (machine, point cost USD) of every measured CPU
    fitted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def one_line(self) -> str:
        cpus = ", ".join(f"{m} {c:.4g} USD" for m, c in self.per_cpu)
        return (f"PROJECTION: {self.partitions} partitions ({self.data_gb:.3g} GB, {self.partition_mb:.3g} MB each) "
                f"in {self.invocations} invocations at {self.memory_mb:.0f} MB, engine {self.engine}: "
                f"~{self.wall_s:.0f} s wall clock, ~{self.cost_usd:.4g} USD on {self.machine} (the costliest "
                f"measured CPU; {cpus}; high bound {self.cost_usd_high:.4g} USD if the published REPORT "
                f"durations' unexplained part persists; Lambda model + simulator "
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
                    getattr(request, "world_size", None), getattr(request, "engine", None))


def project_point(data_gb: float, partition_mb: float, memory_mb: float, max_concurrency: int = 0,
                  world_size: int | None = None, engine: str | None = None) -> RunProjection:
    """The projection of a sweep point from its parameters (before its dataset exists)."""
    from cosmic_utils.analysis import simulate

    n = simulate.partitions_for(data_gb, partition_mb)
    return _project(n, partition_mb, data_gb, float(memory_mb), int(max_concurrency or 0), world_size, engine)


def _project(partitions: int, mb: float, data_gb: float, memory_mb: float, max_concurrency: int,
             world_size: int | None, engine: str | None = None) -> RunProjection:
    from cosmic_utils.analysis import lambda_model, simulate

    if engine not in lambda_model.LAMBDA_ENGINES:
        engine = None  # a local-only engine (torch): Lambda runs the engine its bench record names
    n = max(1, partitions)
    invocations = min(n, world_size) if world_size else n
    item_mb = max(mb * n / invocations, 1e-9)
    fitted = simulate.load_fitted()
    base, orch = fitted if fitted else (simulate.PartitionTiming(), simulate.Orchestration())
    orch = replace(orch, max_concurrency=max_concurrency)
    phases = lambda_model.published_phases()
    cpus = lambda_model.measured_cpus()
    if not cpus:
        raise lambda_model.ProjectionRefused("no shipped bench record (data/records/bench.json): run `make bench`")
    runs = []
    for cpu in cpus:
        speed = lambda_model.read_engine_speed(cpu.bench_path(), engine=engine)
        scaling = lambda_model.scaling_from(speed)
        sims = {}
        for bound in ("point", "high"):
            d = lambda_model.partition_duration_s(speed, scaling, phases, memory_mb, item_mb, bound=bound)
            timing = replace(base, inference_s_per_mb=d["warm_s"] / item_mb, inference_samples_s_per_mb=(),
                             startup_s=0.0, per_mb_s=0.0, s3_mb_s=math.inf, cold_init_s=d["cold_extra_s"],
                             reference_memory_mb=memory_mb)
            sims[bound] = simulate.simulate_run(data_gb, item_mb, memory_mb, timing=timing, orch=orch,
                                                n_partitions=invocations)
        runs.append((speed, sims))
    speed, sims = max(runs, key=lambda r: r[1]["point"].cost_usd)
    return RunProjection(partitions=partitions, invocations=invocations, data_gb=data_gb, partition_mb=mb,
                         memory_mb=memory_mb, wall_s=float(sims["point"].wall_s),
                         cost_usd=float(sims["point"].cost_usd), engine=speed.engine, machine=speed.machine,
                         cost_usd_high=float(sims["high"].cost_usd),
                         per_cpu=tuple((s.machine, float(r["point"].cost_usd)) for s, r in runs),
                         fitted=fitted is not None)


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
                                               int(p.get("world_size") or 0) or None, p.get("engine"))))
    return out
