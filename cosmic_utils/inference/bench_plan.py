"""``cosmic bench`` planning: its settings, the thread counts and batch sizes it times, and the budget guard.

:class:`BenchConfig` holds one run's settings; :func:`batch_plan` and :func:`measured_at` say what is
timed where; :func:`estimate_speed_s`, :func:`apply_budget` and :func:`guard_budget` trim the plan
to ``--budget-s``. Running: :mod:`cosmic_utils.inference.bench`. Reasoning: docs/bench.md "Plan and budget".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cosmic_utils.inference.engines import COMPILED_ENGINE_NAMES, ENGINE_NAMES
from cosmic_utils.runtime.engine import resolve_threads

DEFAULT_BATCH_SIZES: tuple[int, ...] = (32, 64, 128, 256, 512)
QUICK_BATCH_SIZES: tuple[int, ...] = (32, 256)
#: The batch size of the summary, the Lambda choice and the 1-thread rows (the Lambda's batch).
SUMMARY_BATCH: int = 256
#: Compiled engines (torch-compile) are timed only at these batch sizes by default: each new
#: shape costs a compile (~20 s on the 2-core Xeon, 56-73 s on the 2-core EPYC).
COMPILE_BATCH_SIZES: tuple[int, ...] = (SUMMARY_BATCH,)
#: ESTIMATED seconds of one matmul-peak probe (the budget guard's allowance per batch size).
PEAK_PROBE_S: float = 2.0


@dataclass
class BenchConfig:
    """Settings of one bench run (``cosmic bench --help`` documents each)."""

    model_dir: Path | None = None
    engines: Sequence[str] = ENGINE_NAMES
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    samples: int = 512
    repeats: int = 3
    threads: Sequence[int] | int | None = None
    batch_sizes_by_threads: dict[int, Sequence[int]] | None = None
    compile_batch_sizes: Sequence[int] | None = COMPILE_BATCH_SIZES
    budget_s: float | None = None
    check_rows: int = 2500
    json_out: Path | None = None
    checks_out: Path | None = None
    run_id: str | None = None
    stream_gb: float | None = None
    stream_dataset: Path | None = None
    stream_engine: str | None = None
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **kw: Any) -> BenchConfig:
        """The ``--quick`` settings: two batch sizes, a few hundred samples, one pass, 500 check rows."""
        base = dict(batch_sizes=QUICK_BATCH_SIZES, samples=256, repeats=1, check_rows=500, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)


def thread_counts(threads: Sequence[int] | int | None) -> list[int]:
    """The thread counts of a run, largest first (the accuracy checks run at the first)."""
    if threads is None or isinstance(threads, int):
        return [resolve_threads(threads)]
    counts = sorted({resolve_threads(int(t)) for t in threads}, reverse=True)
    if not counts:
        raise ValueError("no thread count given")
    return counts


def batch_plan(cfg: BenchConfig, counts: Sequence[int]) -> dict[int, list[int]]:
    """Batch sizes per thread count: ``cfg.batch_sizes`` at the largest count; at the others
    ``cfg.batch_sizes_by_threads[t]`` when given, else only the summary batch (256, or the largest listed)."""
    plan: dict[int, list[int]] = {}
    for t in counts:
        given = (cfg.batch_sizes_by_threads or {}).get(t)
        if given:
            plan[t] = [int(b) for b in given]
        elif t == counts[0]:
            plan[t] = [int(b) for b in cfg.batch_sizes]
        else:
            plan[t] = [SUMMARY_BATCH] if SUMMARY_BATCH in cfg.batch_sizes else [max(int(b) for b in cfg.batch_sizes)]
    return plan


def measured_at(engine: str, batch_size: int, cfg: BenchConfig) -> bool:
    """Whether ``engine`` is timed at ``batch_size``: compiled engines only at ``cfg.compile_batch_sizes``
    (empty or None: at every batch size), the others always."""
    if engine not in COMPILED_ENGINE_NAMES or not cfg.compile_batch_sizes:
        return True
    return int(batch_size) in {int(b) for b in cfg.compile_batch_sizes}


def pass_samples(samples: int, batch_size: int) -> int:
    """Samples of one timed pass: at least ``samples`` and two batches, whole batches only."""
    n = max(int(samples), 2 * batch_size)
    return (n + batch_size - 1) // batch_size * batch_size


def estimate_speed_s(plan: Mapping[int, Sequence[int]], rates: Mapping[str, float], top: int, cfg: BenchConfig,
                     reload_s: float) -> dict[int, float]:
    """ESTIMATED seconds of the speed phase per thread count, from the samples/s each engine showed in
    the accuracy checks at ``top`` threads; ``reload_s`` (engine creation) is charged to every other count."""
    pub_rate = rates.get("torch-eager") or min(rates.values(), default=1.0)
    out: dict[int, float] = {}
    for t, sizes in plan.items():
        scale = t / top
        total = 0.0 if t == top else reload_s
        for bs in sizes:
            work = max(1, cfg.repeats) * pass_samples(cfg.samples, bs) + bs  # timed passes + one warm-up batch
            total += work / (pub_rate * scale) + PEAK_PROBE_S
            total += sum(work / (r * scale) for e, r in rates.items() if r > 0 and measured_at(e, bs, cfg))
        out[t] = total
    return out


def apply_budget(plan: dict[int, list[int]], estimate: Any, budget_s: float, cfg: BenchConfig) -> list[str]:
    """Trim ``plan`` (and ``cfg.repeats``) until ``estimate(plan)`` fits ``budget_s``; what was trimmed,
    in order. Batch 256 at every thread count always stays."""
    trimmed: list[str] = []
    if sum(estimate(plan).values()) <= budget_s:
        return trimmed
    if cfg.repeats > 2:
        trimmed.append(f"repeats {cfg.repeats} -> 2")
        cfg.repeats = 2
    top = max(plan)
    while sum(estimate(plan).values()) > budget_s:
        extra = [b for b in plan[top] if b != SUMMARY_BATCH]
        if not extra or len(plan[top]) == 1:
            break
        drop = max(extra)  # the largest batch costs the most (at least two batches per pass)
        plan[top].remove(drop)
        trimmed.append(f"batch {drop} at {top} threads")
    if sum(estimate(plan).values()) > budget_s and cfg.repeats > 1:
        trimmed.append(f"repeats {cfg.repeats} -> 1")
        cfg.repeats = 1
    return trimmed


def guard_budget(cfg: BenchConfig, plan: dict[int, list[int]], rates: Mapping[str, float], reload_s: float,
                 top: int, t_start: float) -> tuple[list[str], dict[str, float]]:
    """Estimate each speed phase from the check speeds, trim the plan to what is left of ``cfg.budget_s``
    and print the estimate; returns (what was trimmed, estimated seconds by phase)."""
    estimate = partial(estimate_speed_s, rates=rates, top=top, cfg=cfg, reload_s=reload_s)
    trimmed: list[str] = []
    if cfg.budget_s is not None:
        trimmed = apply_budget(plan, estimate, float(cfg.budget_s) - (time.perf_counter() - t_start), cfg)
    estimates = {f"speed_s[threads={t}]": est for t, est in estimate(plan).items()}
    print("cosmic bench: ESTIMATED speed phases (from the check speeds; fewer threads assumed proportionally slower): "
          + ", ".join(f"{k} ~{v:.0f} s" for k, v in estimates.items())
          + f"; elapsed so far {time.perf_counter() - t_start:.0f} s"
          + (f"; budget {cfg.budget_s:.0f} s, trimmed: {', '.join(trimmed)}" if trimmed else
             (f"; budget {cfg.budget_s:.0f} s: fits" if cfg.budget_s is not None else "")), flush=True)
    return trimmed, estimates
