"""The main job (``cosmic demo``, ``make demo``): real galaxies -> partitions -> trained model -> the
state machine, locally.

Each step reuses what an earlier run left: the 0.2 GB dataset under data/generated/, the default
model in models/default (retrained only when its configuration or data change); then the local
backend runs the real ASL definition and handlers, writes runs/<run-id>/ and redraws the figures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cosmic_utils import config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the main job (the defaults are what ``make demo`` runs)."""

    data_gb: float = 0.2
    partition_mb: float = 25.0
    seed: int = 0
    batch_size: int = 256
    max_concurrency: int = 4
    memory_mb: int = 3008
    engine: str = "onnx"
    train_config: str = "default"
    figures: bool = True


@contextmanager
def _timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[label] = round(time.perf_counter() - t0, 2)
    log.info("%s done in %.1f s", label, timings[label])


def run_demo(cfg: DemoConfig | None = None) -> dict[str, Any]:
    """Run the main job end to end; returns the run's summary with the step timings added."""
    from cosmic_utils.cloud import runner
    from cosmic_utils.data import dataset
    from cosmic_utils.model.train import train_default

    cfg = cfg or DemoConfig()
    config.ensure_dirs()
    timings: dict[str, float] = {}

    with _timed("data", timings):  # the dataset is reused once made
        data = dataset.ensure_dataset(cfg.data_gb, cfg.partition_mb, seed=cfg.seed, progress=True)
    with _timed("model", timings):
        artifact = train_default(cfg=cfg.train_config)

    run_id = "demo-" + datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = config.RUNS_DIR / run_id
    request = {
        "run_id": run_id,
        "data": str(data),
        "model": str(artifact.path),
        "results": "s3://cosmic-local-results/runs",
        "batch_size": cfg.batch_size,
        "engine": cfg.engine,
        "max_concurrency": cfg.max_concurrency,
        "memory_mb": cfg.memory_mb,
        "tags": {"job": "demo", "data_gb": f"{cfg.data_gb:g}", "partition_mb": f"{cfg.partition_mb:g}"},
    }
    with _timed("pipeline", timings):
        result = runner.run_pipeline(request, backend="local", run_dir=run_dir, progress=True)

    figures_failed: list[str] = []
    if cfg.figures:
        from cosmic_utils.analysis.plots import make_all_figures

        with _timed("figures", timings):
            make_all_figures(failed=figures_failed)
    return {**result.summary, "demo_timings_s": timings, "run_dir": str(run_dir), "figures_failed": figures_failed}
