"""Every figure of the report, by name, drawn from stored records (no experiment is re-run).

The registry :data:`FIGURES` maps each file stem in ``figures/`` to the function that draws it;
the report (docs/report.md) embeds exactly these stems. The drawing lives in one module per
concern: :mod:`~cosmic_utils.analysis.figstyle` (one style, series naming, saving),
:mod:`~cosmic_utils.analysis.figdata` (tables: sweep repeats, measured compute, projections),
:mod:`~cosmic_utils.analysis.figs_lambda` (Lambda behaviour: published, projected, aws records),
:mod:`~cosmic_utils.analysis.figs_local` (this machine: local backend, local engines, devices,
redshifts) and :mod:`~cosmic_utils.analysis.figcheck` (the quality checks the tests run).

A panel whose data is missing says so ("not measured yet (run ...)") instead of drawing anything
invented; a figure with nothing at all to draw is skipped with a log line.
:func:`make_all_figures` writes PNG and PDF files into ``figures/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cosmic_utils.analysis import figdata, figs_lambda, figs_local, figstyle, simulate
from cosmic_utils.analysis.figstyle import save, set_style

log = logging.getLogger(__name__)

#: Kept for callers of the older name (tests, notebooks): successful sweep points as a run table.
_sweep_runs = figdata.sweep_runs


# ------------------------------------------------------------------ the older drawing API
# Kept so a figure module written against it (e.g. one registered below by another change) still
# draws in the report's style and passes the quality checks; new code uses figstyle directly.
def plot_series(ax: plt.Axes, x: Any, y: Any, kind: str, label: str, color: Any = None, **kw: Any) -> None:
    """Older name of :func:`figstyle.plot_series`; kind "projection" is "projected", and the kind
    is appended to the label when the label does not say it."""
    kind = "projected" if kind == "projection" else kind
    if f"[{kind}" not in label:
        label = f"{label} [{kind}]"
    figstyle.plot_series(ax, x, y, kind, label, color, **kw)


def tag(ax: plt.Axes, text: str) -> None:
    """A model-derived panel's tag, as a small right-aligned title (never over data)."""
    ax.set_title(text, loc="right", fontsize=8, style="italic", color="0.3")


def note_missing(ax: plt.Axes, what: str) -> None:
    """Say on an empty panel that its measured data does not exist yet."""
    figstyle.note(ax, f"no measured records yet (run: {what})")


def _legend(ax: plt.Axes, outside: bool = True) -> None:
    """One legend below the panels of ``ax``'s figure (redrawn with every series so far)."""
    fig = ax.figure
    for leg in list(fig.legends):
        leg.remove()
    figstyle.figure_legend(fig, ncols=1)


def _plain_log(ax: plt.Axes, axis: str = "both") -> None:
    figstyle.plain_log(ax, axis)

# ------------------------------------------------------------------ all of them
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
}
#: Figures that take the simulator's fitted parameters (``fitted=``).
NEEDS_FIT = ("lambda_batch_size", "lambda_partition_size", "lambda_data_size", "scale_simulation", "local_gpu_lambda")

from cosmic_utils.analysis import plot_projection  # noqa: E402  (its figure drawn with this module's style)

FIGURES["lambda_engine_projection"] = plot_projection.figure_drawer(set_style, plot_series, tag)


def draw_all_figures(recs: dict[str, pd.DataFrame] | None = None,
                     only: list[str] | None = None, include_runs: bool = False) -> dict[str, plt.Figure]:
    """Every figure drawn from stored records, by name (figures without data are left out).

    ``recs`` default: the shipped records only (``include_runs`` adds runs/ as scratch series).
    Returned, not shown: notebook 04 displays them inline, :func:`make_all_figures` saves them. No
    backend is chosen here (the CLI picks a non-interactive one for itself, JupyterLab its inline one).
    """
    from cosmic_utils.analysis.records import load_all_records

    set_style()
    recs = recs if recs is not None else load_all_records(include_runs=include_runs)
    fitted = simulate.load_fitted()
    figures: dict[str, plt.Figure] = {}
    for name, func in FIGURES.items():
        if only and name not in only:
            continue
        kwargs: dict[str, Any] = {}
        if name in NEEDS_FIT:
            kwargs["fitted"] = fitted
        before = set(plt.get_fignums())
        try:
            fig = func(recs, **kwargs)
        except Exception:  # noqa: BLE001 - one broken figure must not stop the others
            log.exception("figure %s failed", name)
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
                     only: list[str] | None = None, include_runs: bool = False) -> list[Path]:
    """Draw every figure from stored records into ``out_dir`` (PNG + PDF); returns the files written."""
    return save_figures(draw_all_figures(recs, only, include_runs=include_runs), out_dir)


def fig_cutouts(cutouts: np.ndarray, bands: tuple[str, ...] = ("u", "g", "r", "i", "z"),
                stretch: float = 0.1) -> plt.Figure:
    """Rendered cutouts ``[N, 5, 32, 32]``, one row per galaxy, one column per band (asinh stretch)."""
    n = len(cutouts)
    fig, axes = plt.subplots(n, len(bands), figsize=(8, 1.7 * n), squeeze=False)
    for i in range(n):
        for b, band in enumerate(bands):
            axes[i, b].imshow(np.arcsinh(cutouts[i, b] / stretch), cmap="gray", origin="lower")
            axes[i, b].set_xticks([])
            axes[i, b].set_yticks([])
            if i == 0:
                axes[i, b].set_title(band)
    fig.tight_layout()
    return fig


def fig_local_baseline(batch_df: pd.DataFrame, size_df: pd.DataFrame, batch_sweep_gb: float) -> plt.Figure:
    """Notebook 01: samples/s against batch size and GB/s against data size, one line per engine."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    untrained = "trained_model" in batch_df and not batch_df["trained_model"].astype(bool).all()
    if untrained:
        fig.suptitle("UNTRAINED model: speeds only, no accuracy", color="red")
    for engine, grp in batch_df.groupby("engine"):
        axes[0].plot(grp["batch_size"], grp["samples_per_s"], marker="o", label=engine)
    threads = batch_df["threads"].iloc[0] if "threads" in batch_df and len(batch_df) else "?"
    axes[0].set(xscale="log", xlabel="batch size", ylabel="samples / s (measured)",
                title=f"batch sweep, {batch_sweep_gb:g} GB, {threads} threads")
    axes[0].legend()
    for engine, grp in size_df.groupby("engine"):
        axes[1].plot(grp["data_gb"], grp["gb_per_s"], marker="o", label=engine)
    axes[1].set(xscale="log", xlabel="data (GB)", ylabel="GB / s (measured, end to end)", title="data-size sweep")
    axes[1].legend()
    fig.tight_layout()
    return fig
