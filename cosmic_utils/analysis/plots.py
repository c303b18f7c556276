"""Every figure of the report, in one style, from stored records (no experiment is re-run).

Conventions, the same on every figure:

* **measured** values (our runs): filled circles, solid lines;
* **published** values (data/reference): open squares, dashed lines, "(published)" in the label;
* **simulated** values (the scale simulator): no marker, dotted lines, and a "simulated" tag;
* **projection** (engine speedup applied to published durations): triangles, dash-dot lines,
  and a "projection" tag.

A panel whose measured data is missing says so ("no measured records yet (run ...)") instead of
drawing anything invented; a figure with nothing at all to draw is skipped with a log line.
:func:`make_all_figures` writes PNG and PDF files into ``figures/``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from cosmic_utils import config
from cosmic_utils.analysis import cost, simulate
from cosmic_utils.runtime.metrics import sigma_nmad

log = logging.getLogger(__name__)

#: Line and marker style of each kind of value.
STYLES: dict[str, dict[str, Any]] = {
    "measured": {"marker": "o", "linestyle": "-", "markerfacecolor": None},
    "published": {"marker": "s", "linestyle": "--", "markerfacecolor": "none"},
    "simulated": {"marker": "", "linestyle": ":", "markerfacecolor": None},
    "projection": {"marker": "^", "linestyle": "-.", "markerfacecolor": None},
}
#: The run that produces the records a panel needs (shown when they are missing).
HOW_TO: dict[str, str] = {
    "local": "cosmic bench / notebook 01",
    "gpu": "notebook 02 on a GPU machine",
    "batch_size": "cosmic sweep sweeps/batch_size.yaml",
    "partition_size": "cosmic sweep sweeps/partition_size.yaml",
    "data_size": "cosmic sweep sweeps/data_size.yaml",
    "lambda_memory": "cosmic sweep sweeps/lambda_memory.yaml",
    "pipeline": "cosmic run (or make demo)",
    "predictions": "cosmic predict / make demo",
}


def set_style() -> None:
    """The report's style: seaborn whitegrid, paper context, colour-blind palette."""
    sns.set_theme(style="whitegrid", context="paper", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "legend.fontsize": 8, "axes.titlesize": 11})


def plot_series(ax: plt.Axes, x: Any, y: Any, kind: str, label: str, color: Any = None, **kw: Any) -> None:
    """Draw one series with the style of its kind ("measured", "published", "simulated", "projection")."""
    style = dict(STYLES[kind])
    face = style.pop("markerfacecolor")
    if face is not None:
        kw.setdefault("markerfacecolor", face)
    suffix = "" if kind == "measured" or f"({kind})" in label else f" ({kind})"
    ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), color=color, label=label + suffix,
            **style, **kw)


def tag(ax: plt.Axes, text: str) -> None:
    """Corner tag for model-derived panels ("simulated", "projection")."""
    ax.text(0.99, 0.02, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=9, style="italic",
            color="0.3", bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.2"})


def note_missing(ax: plt.Axes, what: str) -> None:
    """Say on the panel that its measured data does not exist yet, and how to make it."""
    ax.text(0.5, 0.13, f"no measured records yet (run: {HOW_TO.get(what, what)})", transform=ax.transAxes,
            ha="center", va="bottom", fontsize=7.5, color="0.35",
            bbox={"facecolor": "0.96", "edgecolor": "0.7", "boxstyle": "round"})


def _plain_log(ax: plt.Axes, axis: str = "both") -> None:
    """Log axes with plain numbers (20, 50, 100) instead of 2x10^1."""
    axes = (ax.xaxis, ax.yaxis) if axis == "both" else ((ax.xaxis,) if axis == "x" else (ax.yaxis,))
    for a in axes:
        a.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        a.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _legend(ax: plt.Axes, outside: bool = False) -> None:
    """Legend inside the axes, or to their right (``outside``: for plots with many series)."""
    if ax.get_legend_handles_labels()[0]:
        if outside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=True)
        else:
            ax.legend(loc="best", frameon=True)


#: Metadata written into each format. Everything time- or version-dependent is dropped (None
#: removes a key), so ``make figures`` on an unchanged checkout writes the same bytes and git stays
#: clean: PDF CreationDate (the only timestamp matplotlib writes by default), the Producer/Creator
#: and PNG Software strings (they name the matplotlib version), SVG Date. SOURCE_DATE_EPOCH is
#: not needed.
SAVE_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def save(fig: plt.Figure, name: str, out_dir: Path | None = None,
         formats: tuple[str, ...] = ("png", "pdf"), close: bool = True) -> list[Path]:
    """Write ``name``.png and ``name``.pdf into the figures folder, byte-reproducibly; returns the paths.

    ``close=False`` keeps the figure open (a notebook displays it afterwards)."""
    out = Path(out_dir or config.FIGURES_DIR)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for fmt in formats]
    for p, fmt in zip(paths, formats, strict=True):
        with matplotlib.rc_context({"svg.hashsalt": "cosmic-figures", "pdf.compression": 6}):
            fig.savefig(p, format=fmt, metadata=SAVE_METADATA.get(fmt))
    if close:
        plt.close(fig)
    return paths


def _sweep_runs(recs: dict[str, pd.DataFrame], sweep: str) -> pd.DataFrame:
    """Per-combination table of one sweep (see records.runs_table), successful points only.

    A point marked failed by the sweep (``point_status``) or with fewer ok partitions than
    partitions is left out with a warning: its throughput and cost would describe part of the
    data as if it were all of it.
    """
    from cosmic_utils.analysis.records import runs_table

    sw = recs.get("sweeps", pd.DataFrame())
    if sw.empty or "sweep" not in sw.columns:
        return pd.DataFrame()
    sub = sw[sw["sweep"] == sweep]
    if "point_status" in sub.columns:
        bad = sorted(set(sub.loc[sub["point_status"] == "failed", "slug"].astype(str)))
        if bad:
            log.warning("sweep %s: %d failed point(s) not plotted: %s", sweep, len(bad), ", ".join(bad))
        sub = sub[sub["point_status"] != "failed"]
    if sub.empty:
        return pd.DataFrame()
    runs = runs_table(sub, recs.get("sweep_summary"), group=("sweep", "slug"))
    if not runs.empty and {"partitions", "partitions_ok"} <= set(runs.columns):
        partial = runs["partitions_ok"] < runs["partitions"]
        if partial.any():
            log.warning("sweep %s: point(s) with failed partitions not plotted: %s", sweep,
                        ", ".join(map(str, runs.loc[partial, "slug"])))
        runs = runs[~partial]
    return runs


def _gb_s(bps: pd.Series) -> pd.Series:
    return bps.astype(float) / 8.0 / 1e9


# ------------------------------------------------------------------ figures
def fig_throughput_vs_batch(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Throughput (GB/s) vs batch size: our engines (local, sweeps) and the published Lambda runs."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    local = recs.get("local", pd.DataFrame())
    drawn = False
    if not local.empty and {"batch_size", "gb_per_s"} <= set(local.columns):
        for (kind, engine), df in local.groupby(["kind", "engine"] if "engine" in local.columns else ["kind", "kind"]):
            g = df.groupby("batch_size")["gb_per_s"].max().sort_index()
            plot_series(ax, g.index, g.values, "measured", f"{engine} ({kind})")
            drawn = True
    runs = _sweep_runs(recs, "batch_size")
    if not runs.empty and "batch_size" in runs.columns:
        g = runs.groupby("batch_size")["throughput_per_worker_gb_s"].mean().sort_index()
        backends = sorted(set(runs["backend"].dropna().astype(str))) if "backend" in runs.columns else []
        label = "pipeline sweep, per-worker" + (f" ({', '.join(backends)} backend)" if backends else "")
        plot_series(ax, g.index, g.values, "measured", label)
        drawn = True
    pub = recs.get("published_cai_batch", pd.DataFrame())
    if not pub.empty:
        m = pub[pub["run"].astype(str) == "mean"]
        plot_series(ax, m["batch_size"], _gb_s(m["throughput_bps"]), "published",
                    "Cosmic AI 1 GB on 25 MB Lambdas, sum of per-worker")
    t6 = recs.get("published_team6", pd.DataFrame())
    if not t6.empty:
        b = t6[t6["section"] == "batch_size"]
        plot_series(ax, b["batch_size"], b["throughput_gb_s"], "published", "seed project, 1 Lambda 100 MB")
    if not drawn:
        note_missing(ax, "batch_size")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_yscale("log")
    _plain_log(ax, "y")
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput (GB/s)")
    ax.set_title("Throughput vs batch size")
    _legend(ax, outside=True)  # one line per engine: inside it would hide the lines
    return fig


def fig_vs_partition(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Throughput, cost and efficiency vs partition size (published formulas and billed cost labelled)."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    runs = _sweep_runs(recs, "partition_size")
    t6 = recs.get("published_team6", pd.DataFrame())
    t6p = t6[t6["section"] == "partition"] if not t6.empty else t6
    sfn = recs.get("published_cai_sfn", pd.DataFrame())
    stats = recs.get("published_cai_stats", pd.DataFrame())
    ax_t, ax_c, ax_e = axes
    if not runs.empty and "partition_mb" in runs.columns:
        g = runs.groupby("partition_mb").mean(numeric_only=True).sort_index()
        gb = f" ({g['data_gb'].mean():.2g} GB, local backend)" if "data_gb" in g.columns else " (local backend)"
        plot_series(ax_t, g.index, g["throughput_e2e_gb_s"], "measured", "pipeline, end-to-end" + gb)
        plot_series(ax_t, g.index, g["throughput_per_worker_gb_s"], "measured", "pipeline, per-worker" + gb)
        plot_series(ax_c, g.index, g["total_usd"], "measured", "pipeline, billed" + gb)
        plot_series(ax_e, g.index, g["efficiency_e2e_gb_s_per_usd"], "measured", "pipeline, end-to-end")
    else:
        for ax in axes:
            note_missing(ax, "partition_size")
    if not t6p.empty:
        plot_series(ax_t, t6p["partition_mb"], t6p["throughput_gb_s"], "published", "seed, data/avg runtime")
        plot_series(ax_c, t6p["partition_mb"], t6p["cost_usd"], "published", "seed formula (avg used memory)")
        billed = [cost.billed_for_published_row(r.partition_mb, r.lambdas, r.avg_runtime_s) for r in t6p.itertuples()]
        plot_series(ax_c, t6p["partition_mb"], [b["billed_total_usd"] for b in billed], "published",
                    f"seed runs billed, ASSUMED {cost.ASSUMED_PUBLISHED_MEMORY_MB} MB configured")
        plot_series(ax_e, t6p["partition_mb"], t6p["perf_efficiency_gb_s_per_usd"], "published",
                    "seed 'performance efficiency'")
        plot_series(ax_e, t6p["partition_mb"], [b["billed_perf_efficiency_gb_s_per_usd"] for b in billed],
                    "published", "same, billed cost (ASSUMED 10,240 MB)")
    if not sfn.empty:
        one = sfn[sfn["data_gb"] == 1.0].groupby("partition_mb")["wall_s"].mean()
        plot_series(ax_t, one.index, 1.0 / one.values, "published", "Cosmic AI 1 GB, end-to-end (wall clock)")
    if not stats.empty:
        m = stats[(stats["run"].astype(str) == "mean") & (stats["data_gb"] == 1.0)]
        plot_series(ax_t, m["partition_mb"], _gb_s(m["throughput_bps"]), "published", "Cosmic AI 1 GB, per-worker sum")
    for ax, ylab, title in ((ax_t, "throughput (GB/s)", "Throughput"), (ax_c, "cost of the run (USD)", "Cost"),
                            (ax_e, "efficiency (GB/s per USD)", "Efficiency")):
        ax.set_xlabel("partition size (MB)")
        ax.set_ylabel(ylab)
        ax.set_title(f"{title} vs partition size (published: 1 GB)")
        ax.set_yscale("log")
        _plain_log(ax, "y")
        _legend(ax)
    return fig


def fig_vs_data_size(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Wall clock, throughput and cost per GB vs data size: measured, published and simulated."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax_w, ax_t, ax_c = axes
    runs = _sweep_runs(recs, "data_size")
    if not runs.empty and "data_gb" in runs.columns:
        g = runs.groupby("data_gb").mean(numeric_only=True).sort_index()
        plot_series(ax_w, g.index, g["wall_s"], "measured", "pipeline")
        plot_series(ax_t, g.index, g["throughput_e2e_gb_s"], "measured", "pipeline, end-to-end")
        plot_series(ax_c, g.index, g["usd_per_gb"], "measured", "pipeline, billed")
    else:
        for ax in axes:
            note_missing(ax, "data_size")
    sfn = recs.get("published_cai_sfn", pd.DataFrame())
    timing, orch = fitted or (simulate.PartitionTiming(), simulate.Orchestration())
    gbs = [1, 2, 4, 8, 12.6]
    palette = sns.color_palette("colorblind")
    for i, mb in enumerate((25, 100)):
        color = palette[i]
        if not sfn.empty:
            g = sfn[sfn["partition_mb"] == mb].groupby("data_gb")["wall_s"].mean()
            plot_series(ax_w, g.index, g.values, "published", f"Cosmic AI {mb} MB", color=color)
            plot_series(ax_t, g.index, g.index / g.values, "published", f"Cosmic AI {mb} MB, end-to-end", color=color)
        sims = [simulate.simulate_run(gb, mb, timing=timing, orch=orch, published_units=True) for gb in gbs]
        plot_series(ax_w, gbs, [s.wall_s for s in sims], "simulated", f"{mb} MB", color=color)
        plot_series(ax_t, gbs, [s.throughput_e2e_gb_s for s in sims], "simulated", f"{mb} MB", color=color)
        plot_series(ax_c, gbs, [s.usd_per_gb for s in sims], "simulated", f"{mb} MB, billed 10,240 MB", color=color)
    t6 = recs.get("published_team6", pd.DataFrame())
    if not t6.empty:
        d = t6[t6["section"] == "data_size_25mb"]
        plot_series(ax_c, d["data_gb"], d["cost_usd"] / d["data_gb"], "published", "seed 25 MB, formula",
                    color=palette[4])
    for ax, ylab in ((ax_w, "wall clock (s)"), (ax_t, "throughput (GB/s)"), (ax_c, "cost per GB (USD)")):
        ax.set_xlabel("data size (GB)")
        ax.set_ylabel(ylab)
        ax.set_xscale("log")
        _plain_log(ax, "x")
        tag(ax, "simulated: model fitted to published runs")
        _legend(ax)
    ax_w.set_title("Wall clock vs data size")
    ax_t.set_title("End-to-end throughput vs data size")
    ax_c.set_title("Cost per GB vs data size")
    return fig


def fig_local_gpu_lambda(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Samples per second: local CPU vs GPU vs Lambda, measured next to published."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    bars: list[tuple[str, float, str]] = []
    local = recs.get("local", pd.DataFrame())
    if not local.empty and "samples_per_s" in local.columns:
        for kind, df in local.groupby("kind"):
            best = df.loc[df["samples_per_s"].astype(float).idxmax()]
            bars.append((f"{kind}\n{best.get('engine', '')} b{best.get('batch_size', '')}",
                         float(best["samples_per_s"]), "measured"))
    pruns = recs.get("pipeline", pd.DataFrame())
    if not pruns.empty:
        from cosmic_utils.analysis.records import runs_table

        t = runs_table(pruns, recs.get("pipeline_summary"))
        t = t[t["throughput_e2e_gb_s"].notna()] if not t.empty else t
        if not t.empty:
            best = t.loc[t["throughput_e2e_gb_s"].idxmax()]
            bars.append(("pipeline\nend-to-end", float(best["throughput_e2e_gb_s"]) * config.GB / config.SAMPLE_BYTES,
                         "measured"))
    pl = recs.get("published_cai_local", pd.DataFrame())
    if not pl.empty:
        for kind, df in pl.groupby("kind"):
            # the entry nearest the 12.6 GB of the Lambda bar, so the sizes compare
            row = df.loc[(df["data_gb"].astype(float) - 12.6).abs().idxmin()]
            bars.append((f"{kind.replace('published_', '')}\n{row['data_gb']:.0f} GB (published)",
                         float(row["samples_per_s"]), "published"))
    sfn = recs.get("published_cai_sfn", pd.DataFrame())
    if not sfn.empty:
        big = sfn[(sfn["data_gb"] == 12.6) & (sfn["partition_mb"] == 25)]
        samples = 659_857  # the paper's 12.6 GB sample count (data/reference/README.md)
        bars.append(("Lambda 12.6 GB\nend-to-end (published)", samples / float(big["wall_s"].mean()), "published"))
    if not any(b[2] == "measured" for b in bars):
        note_missing(ax, "local")
    names = [b[0] for b in bars]
    vals = [b[1] for b in bars]
    colors = ["C0" if b[2] == "measured" else "white" for b in bars]
    ax.bar(range(len(bars)), vals, color=colors, edgecolor=["C0" if b[2] == "measured" else "0.3" for b in bars],
           hatch=None, linewidth=1.2)
    for i, b in enumerate(bars):
        if b[2] == "published":
            ax.patches[i].set_hatch("//")
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(bars)), names, fontsize=8)
    ax.set_yscale("log")
    _plain_log(ax, "y")
    ax.set_ylabel("samples per second")
    ax.set_title("Local CPU vs GPU vs Lambda (filled: measured, hatched: published)")
    return fig


def fig_memory(recs: dict[str, pd.DataFrame], speedup: float | None = None) -> plt.Figure:
    """Lambda memory vs duration and cost per GB: measured sweep and the labelled projection."""
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    runs = _sweep_runs(recs, "lambda_memory")
    if not runs.empty:
        g = runs.groupby("memory_mb").mean(numeric_only=True).sort_index()
        plot_series(ax_d, g.index, g["mean_duration_s"], "measured", "pipeline, mean per partition")
        plot_series(ax_c, g.index, g["usd_per_gb"], "measured", "pipeline, billed")
    else:
        note_missing(ax_d, "lambda_memory")
    sp_label = f"our engine {speedup:.1f}x" if speedup else "published loop (speedup 1)"
    proj = pd.DataFrame(simulate.project_from_published(speedup or 1.0, partition_mb=75.0))
    plot_series(ax_d, proj["memory_mb"], proj["duration_s"], "projection", f"75 MB, {sp_label}")
    plot_series(ax_c, proj["memory_mb"], proj["usd_per_gb"], "projection", f"75 MB, {sp_label}")
    reports = recs.get("published_lambda_reports", pd.DataFrame())
    if not reports.empty:
        ax_d.plot(reports["memory_size"], reports["duration"] / 1000.0, "s", markerfacecolor="none", color="0.3",
                  label="75 MB REPORT lines (published)")
        per_gb = [cost.lambda_cost([d], m).total_usd / (75 * config.PARTITION_MB / config.GB)
                  for d, m in zip(reports["billed_duration"], reports["memory_size"], strict=True)]
        ax_c.plot(reports["memory_size"], per_gb, "s", markerfacecolor="none", color="0.3",
                  label="75 MB REPORT lines billed (published)")
    best = proj.loc[proj["usd_per_gb"].idxmin()]
    ax_c.annotate(f"cheapest: {best['memory_mb']:.0f} MB", (best["memory_mb"], best["usd_per_gb"]),
                  textcoords="offset points", xytext=(10, 10), fontsize=8)
    for ax, ylab in ((ax_d, "duration per partition (s)"), (ax_c, "Lambda cost per GB (USD)")):
        ax.set_xlabel("configured Lambda memory (MB)")
        ax.set_ylabel(ylab)
        tag(ax, "projection")
        _legend(ax)
    ax_d.set_title("Duration vs memory")
    ax_c.set_title("Cost per GB vs memory (billed by configured memory)")
    return fig


def fig_scale(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Simulated wall clock and cost from 1 GB to 1 TB, the published runs overlaid."""
    from dataclasses import replace

    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(11, 4.4))
    timing, orch = fitted or (simulate.PartitionTiming(), simulate.Orchestration())
    gbs = np.geomspace(1, 1000, 13)
    palette = sns.color_palette("colorblind")
    for i, mb in enumerate((25, 50, 75, 100)):
        sims = [simulate.simulate_run(float(gb), mb, timing=timing, orch=orch, published_units=True) for gb in gbs]
        plot_series(ax_w, gbs, [s.wall_s for s in sims], "simulated", f"{mb} MB", color=palette[i])
        plot_series(ax_c, gbs, [s.cost_usd for s in sims], "simulated", f"{mb} MB, billed 10,240 MB", color=palette[i])
    quota = replace(orch, account_concurrency=1000)
    sims = [simulate.simulate_run(float(gb), 100, timing=timing, orch=quota, published_units=True) for gb in gbs]
    plot_series(ax_w, gbs, [s.wall_s for s in sims], "simulated", "100 MB, account quota 1,000", color="0.4")
    sfn = recs.get("published_cai_sfn", pd.DataFrame())
    large = recs.get("published_cai_sfn_large", pd.DataFrame())
    for i, mb in enumerate((25, 50, 75, 100)):
        if not sfn.empty:
            g = sfn[sfn["partition_mb"] == mb]
            ax_w.plot(g["data_gb"], g["wall_s"], "s", markerfacecolor="none", color=palette[i], alpha=0.8,
                      label=f"{mb} MB (published)")
    if not large.empty:
        val = recs.get("simulator_validation", pd.DataFrame())
        if not val.empty:
            big = val[val["source"] == "state_machine_logs"]
            ax_w.plot(big["data_gb"], big["wall_s"], "D", markerfacecolor="none", color=palette[3],
                      label="100 MB, 100 GB..1 TB (published)")
    ax_w.set_xscale("log")
    ax_w.set_yscale("log")
    ax_c.set_xscale("log")
    ax_c.set_yscale("log")
    _plain_log(ax_w)
    _plain_log(ax_c, "x")
    ax_w.set_xlabel("data size (GB)")
    ax_c.set_xlabel("data size (GB)")
    ax_w.set_ylabel("Step Functions wall clock (s)")
    ax_c.set_ylabel("cost of the run (USD)")
    ax_w.set_title(f"Scale: wall clock (effective concurrency {orch.account_concurrency})")
    ax_c.set_title("Scale: billed cost")
    for ax in (ax_w, ax_c):
        tag(ax, "simulated")
        _legend(ax)
    return fig


def fig_validation(recs: dict[str, pd.DataFrame]) -> plt.Figure | None:
    """Simulator: predicted vs observed published wall clocks, training and held-out rows."""
    val = recs.get("simulator_validation", pd.DataFrame())
    if val.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    for split, marker in (("train", "o"), ("held_out", "^")):
        s = val[val["split"] == split]
        med = float(np.median(np.abs(s["error_rel"]))) if not s.empty else float("nan")
        ax.plot(s["wall_s"], s["predicted_wall_s"], marker, linestyle="none", alpha=0.7,
                label=f"{split} (median |err| {med:.0%}, {len(s)} rows)")
    lim = [15, float(max(val["wall_s"].max(), val["predicted_wall_s"].max())) * 1.2]
    ax.plot(lim, lim, "k-", lw=0.8)
    ax.plot(lim, [v * 1.2 for v in lim], "k:", lw=0.6, label="+-20%")
    ax.plot(lim, [v * 0.8 for v in lim], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log(ax)
    ax.set_xlabel("published wall clock (s)")
    ax.set_ylabel("simulated wall clock (s)")
    ax.set_title("Simulator vs published Step Functions runs")
    tag(ax, "simulated")
    _legend(ax)
    return fig


def fig_redshift(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Predicted vs spectroscopic redshift from the newest predictions file."""
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    pred = recs.get("predictions", pd.DataFrame())
    if pred.empty:
        note_missing(ax, "predictions")
    else:
        zs, zp = pred["z_spec"].astype(float), pred["z_pred"].astype(float)
        if len(pred) > 2000:
            hb = ax.hexbin(zs, zp, gridsize=60, mincnt=1, bins="log", cmap="viridis")
            fig.colorbar(hb, ax=ax, label="galaxies (log)")
        else:
            ax.plot(zs, zp, "o", ms=3, alpha=0.5)
        hi = float(max(zs.max(), zp.max()))
        ax.plot([0, hi], [0, hi], "k-", lw=0.8)
        dz = (zp - zs) / (1 + zs)
        nmad = sigma_nmad(dz)
        ax.text(0.03, 0.97, f"N = {len(pred):,}\nsigma_NMAD = {nmad:.4f}", transform=ax.transAxes, va="top",
                fontsize=9)
    if not pred.empty:
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("z_spec")
    ax.set_ylabel("z_pred")
    ax.set_title("z_pred vs z_spec (measured)")
    return fig


# ------------------------------------------------------------------ all of them
FIGURES: dict[str, Callable[..., plt.Figure | None]] = {
    "throughput_vs_batch": fig_throughput_vs_batch,
    "vs_partition_size": fig_vs_partition,
    "vs_data_size": fig_vs_data_size,
    "local_gpu_lambda": fig_local_gpu_lambda,
    "memory_cost_duration": fig_memory,
    "scale_simulation": fig_scale,
    "simulator_validation": fig_validation,
    "redshift_pred_vs_spec": fig_redshift,
}
from cosmic_utils.analysis import plot_projection  # noqa: E402  (its figure drawn with this module's style)

FIGURES["lambda_engine_projection"] = plot_projection.figure_drawer(set_style, plot_series, tag)


def draw_all_figures(recs: dict[str, pd.DataFrame] | None = None,
                     only: list[str] | None = None) -> dict[str, plt.Figure]:
    """Every figure drawn from stored records, by name (figures without data are left out).

    Returned, not shown: notebook 04 displays them inline, :func:`make_all_figures` saves them. No
    backend is chosen here (the CLI picks a non-interactive one for itself, JupyterLab its inline one).
    """
    from cosmic_utils.analysis.records import load_all_records

    set_style()
    recs = recs if recs is not None else load_all_records()
    fitted = simulate.load_fitted()
    speedup = simulate.read_engine_speedup()
    figures: dict[str, plt.Figure] = {}
    for name, func in FIGURES.items():
        if only and name not in only:
            continue
        kwargs: dict[str, Any] = {}
        if name in ("vs_data_size", "scale_simulation"):
            kwargs["fitted"] = fitted
        if name == "memory_cost_duration":
            kwargs["speedup"] = speedup
        try:
            fig = func(recs, **kwargs)
        except Exception:  # noqa: BLE001 - one broken figure must not stop the others
            log.exception("figure %s failed", name)
            plt.close("all")
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
                     only: list[str] | None = None) -> list[Path]:
    """Draw every figure from stored records into ``out_dir`` (PNG + PDF); returns the files written."""
    return save_figures(draw_all_figures(recs, only), out_dir)


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
