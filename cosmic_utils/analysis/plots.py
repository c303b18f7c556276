"""The registry of the report's figures (file stem -> drawing function) and the loop that saves them.

Drawing: :mod:`~cosmic_utils.analysis.figs_lambda`, :mod:`~cosmic_utils.analysis.figs_local`; a
figure with nothing to draw is skipped with a log line. Reasoning and quality checks: docs/figures.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from cosmic_utils.analysis import figs_lambda, figs_local, simulate
from cosmic_utils.analysis.figstyle import save, set_style

log = logging.getLogger(__name__)

FIGURES: dict[str, Callable[..., plt.Figure | None]] = {
    "lambda_batch_size": figs_lambda.fig_lambda_batch_size,
    "lambda_partition_size": figs_lambda.fig_lambda_partition_size,
    "lambda_data_size": figs_lambda.fig_lambda_data_size,
    "memory_cost_duration": figs_lambda.fig_memory,
    "scale_simulation": figs_lambda.fig_scale,
    "simulator_validation": figs_lambda.fig_validation,
    "local_backend_sweeps": figs_local.fig_local_backend_sweeps,
    "local_batch_size": figs_local.fig_local_batch_size,
    "local_data_size": figs_local.fig_local_data_size,
    "local_gpu_lambda": figs_local.fig_local_gpu_lambda,
    "redshift_pred_vs_spec": figs_local.fig_redshift,
    "lambda_engine_projection": figs_lambda.fig_lambda_engine_projection,
}
#: Figures that take the simulator's fitted parameters (``fitted=``).
NEEDS_FIT = ("lambda_batch_size", "lambda_partition_size", "lambda_data_size", "scale_simulation", "local_gpu_lambda")


def draw_all_figures(recs: dict[str, pd.DataFrame] | None = None, only: list[str] | None = None,
                     include_runs: bool = False, failed: list[str] | None = None) -> dict[str, plt.Figure]:
    """Every figure drawn from stored records (default: the shipped ones; ``include_runs`` adds runs/
    as scratch series), by name, figures without data left out. Returned, not shown, and no backend
    chosen: notebook 04 displays them inline, :func:`make_all_figures` saves them. A figure whose
    drawing raises is logged, left out and its name appended to ``failed``; the others still draw."""
    from cosmic_utils.analysis.records import load_all_records

    set_style()
    recs = recs if recs is not None else load_all_records(include_runs=include_runs)
    fitted = simulate.load_fitted()
    figures: dict[str, plt.Figure] = {}
    for name, func in FIGURES.items():
        if only and name not in only:
            continue
        kwargs: dict[str, Any] = {"fitted": fitted} if name in NEEDS_FIT else {}
        before = set(plt.get_fignums())
        try:
            fig = func(recs, **kwargs)
        except Exception:  # noqa: BLE001 - one broken figure must not stop the others
            log.exception("figure %s failed", name)
            if failed is not None:
                failed.append(name)
            for num in set(plt.get_fignums()) - before:  # its half-drawn figure only, not the others
                plt.close(num)
            continue
        if fig is None:
            log.info("figure %s skipped: no data", name)
            continue
        figures[name] = fig
    return figures


def save_figures(figures: dict[str, plt.Figure], out_dir: Path | None = None, close: bool = True) -> list[Path]:
    """Write each figure (PNG + PDF) into ``out_dir``; returns the files written."""
    written: list[Path] = []
    for name, fig in figures.items():
        written.extend(save(fig, name, out_dir, close=close))
    return written


def make_all_figures(recs: dict[str, pd.DataFrame] | None = None, out_dir: Path | None = None,
                     only: list[str] | None = None, include_runs: bool = False,
                     failed: list[str] | None = None) -> list[Path]:
    """Draw every figure from stored records into ``out_dir`` (PNG + PDF); returns the files written
    (``failed``: as in :func:`draw_all_figures`)."""
    return save_figures(draw_all_figures(recs, only, include_runs=include_runs, failed=failed), out_dir)
