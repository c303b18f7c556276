"""Figures of Lambda behaviour: the study's published series beside this repository's projections.

Why these are apart from the local figures: nothing here is measured on a Lambda by this
repository unless aws-backend records exist (drawn with the same code when they do). A
published series names its source, a projected one the measured compute that drives it
(:mod:`cosmic_utils.analysis.figdata`), a simulated one the simulator fitted on published runs.
The local backend's own measurements are never drawn here (see ``local_backend_sweeps``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cosmic_utils.analysis import cost, figdata, simulate
from cosmic_utils.analysis.figstyle import (
    color,
    figure_legend,
    log2_x,
    note,
    plain_log,
    plot_range,
    plot_series,
    series_label,
)

#: aws-backend sweep metrics, in the panel order of the batch and partition figures.
AWS_METRICS = ["mean_duration_s", "throughput_per_worker_gb_s", "total_usd", "efficiency_published_gb_s_per_usd"]


def _team6(recs: dict[str, pd.DataFrame], section: str) -> pd.DataFrame:
    t6 = recs.get("published_team6", pd.DataFrame())
    return t6[t6["section"] == section].copy() if not t6.empty else pd.DataFrame()


def _aws(axes: list[plt.Axes], recs: dict[str, pd.DataFrame], sweep: str, param: str) -> None:
    """aws-backend sweep points (median, min-max) on the four panels, when records exist."""
    pts = figdata.sweep_points(recs, sweep, param, [*AWS_METRICS, "data_gb"], backend="aws")
    if pts.empty:
        return
    gb = pts["data_gb_med"]
    size = f"{gb.min():.2g} GB" if np.isclose(gb.min(), gb.max(), rtol=0.05) else f"{gb.min():.2g}-{gb.max():.2g} GB"
    lab = series_label("measured", f"this repo on AWS Lambda, {size}, {figdata.spread_text(pts)}",
                       "aws backend")
    for ax, m in zip(axes, AWS_METRICS, strict=True):
        plot_range(ax, pts[param], pts[f"{m}_med"], pts[f"{m}_min"], pts[f"{m}_max"], "measured", lab, color(3))


def _argmax_text(df: pd.DataFrame, x: str, y: str, what: str) -> str:
    if df.empty:
        return ""
    best = df.loc[df[y].astype(float).idxmax()]
    return f"published {what} at {best[x]:g}"


def fig_lambda_batch_size(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Batch size: Lambda runtime, throughput, cost and efficiency (team6 study, projected, aws)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.6), layout="constrained")
    ax_w, ax_t, ax_c, ax_e = axes.ravel()
    pub = _team6(recs, "batch_size")
    sizes = sorted(int(b) for b in pub["batch_size"]) if not pub.empty else [32, 64, 128, 256, 512]
    gb = float(pub["data_gb"].iloc[0]) if not pub.empty else 0.1
    mb = float(pub["partition_mb"].iloc[0]) if not pub.empty else 100.0
    if not pub.empty:
        lab = series_label("published", f"1 Lambda, {mb:g} MB ({gb:g} GB)", "team6")
        for ax, col in ((ax_w, "avg_runtime_s"), (ax_t, "throughput_gb_s"), (ax_c, "cost_usd"),
                        (ax_e, "perf_efficiency_gb_s_per_usd")):
            plot_series(ax, pub["batch_size"], pub[col], "published", lab, color(0))
    proj, rate = figdata.projected_batch(recs, sizes, gb, mb, fitted)
    if not proj.empty and rate is not None:
        lab = series_label("projected", f"1 Lambda, {mb:g} MB, {proj['memory_mb'].iloc[0]:,.0f} MB memory",
                           f"simulator + {rate.engine} {rate.precision} measured on {rate.machine}, "
                           f"{rate.threads} threads")
        for ax, col in ((ax_w, "runtime_s"), (ax_t, "throughput_gb_s"), (ax_c, "lambda_usd"), (ax_e, "efficiency")):
            plot_series(ax, proj["batch_size"], proj[col], "projected", lab, color(1))
    _aws([ax_w, ax_t, ax_c, ax_e], recs, "batch_size", "batch_size")
    ax_w.set_title("Mean Lambda runtime")
    ax_t.set_title("Throughput = data / mean runtime" + (f"\n({_argmax_text(pub, 'batch_size', 'throughput_gb_s', 'maximum')})"
                                                           if not pub.empty else ""))
    ax_c.set_title("Lambda cost of the run")
    ax_e.set_title("Efficiency = throughput / cost" + (
        f"\n({_argmax_text(pub, 'batch_size', 'perf_efficiency_gb_s_per_usd', 'maximum')})" if not pub.empty else ""))
    for ax, ylab in ((ax_w, "runtime (s)"), (ax_t, "throughput (GB/s)"), (ax_c, "cost (USD)"),
                     (ax_e, "efficiency (GB/s per USD)")):
        log2_x(ax, sizes)
        ax.set_xlabel("batch size (samples)")
        ax.set_ylabel(ylab)
        ax.set_yscale("log")
        plain_log(ax, "y")
    fig.suptitle("Lambda: batch size (study: cost from average used memory; projection: billed configured memory)")
    figure_legend(fig, ncols=1)
    return fig


def fig_lambda_partition_size(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Partition size at 1 GB: runtime, throughput, cost, efficiency and concurrency."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.6), layout="constrained")
    ax_w, ax_t, ax_c, ax_e, ax_n, ax_x = axes.ravel()
    ax_x.remove()
    pub = _team6(recs, "partition")
    mbs = sorted(float(m) for m in pub["partition_mb"]) if not pub.empty else [10.0, 25.0, 50.0, 75.0, 100.0]
    gb = float(pub["data_gb"].min()) if not pub.empty else 1.0
    if not pub.empty:
        lab = series_label("published", f"{gb:g}-{pub['data_gb'].max():g} GB, batch 256", "team6")
        for ax, col in ((ax_w, "avg_runtime_s"), (ax_t, "throughput_gb_s"), (ax_c, "cost_usd"),
                        (ax_e, "perf_efficiency_gb_s_per_usd"), (ax_n, "lambdas")):
            plot_series(ax, pub["partition_mb"], pub[col], "published", lab, color(0))
    proj, rate = figdata.projected_grid(recs, [1.0], mbs, fitted)
    if not proj.empty and rate is not None:
        lab = series_label("projected", f"1 GB, batch 256, {proj['memory_mb'].iloc[0]:,.0f} MB memory",
                           f"simulator + {rate.engine} measured on {rate.machine}, {rate.threads} threads")
        for ax, col in ((ax_w, "runtime_s"), (ax_t, "throughput_gb_s"), (ax_c, "lambda_usd"), (ax_e, "efficiency"),
                        (ax_n, "lambdas")):
            plot_series(ax, proj["partition_mb"], proj[col], "projected", lab, color(1))
    _aws([ax_w, ax_t, ax_c, ax_e], recs, "partition_size", "partition_mb")
    for ax, ylab, title in ((ax_w, "runtime (s)", "Mean Lambda runtime"),
                            (ax_t, "throughput (GB/s)", "Throughput = data / mean runtime"),
                            (ax_c, "cost (USD)", "Lambda cost of the run"),
                            (ax_e, "efficiency (GB/s per USD)", "Efficiency = throughput / cost"),
                            (ax_n, "Lambdas (count)", "Concurrency: one Lambda per partition")):
        ax.set_xlabel("partition size (MB)")
        ax.set_ylabel(ylab)
        ax.set_title(title)
        ax.set_xscale("log")
        ax.set_xticks(mbs, [f"{m:g}" for m in mbs])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_yscale("log")
        plain_log(ax, "y")
    fig.suptitle(f"Lambda: partition size at about 1 GB (study: {gb:g}-{pub['data_gb'].max():g} GB; projection: 1 GB)"
                 if not pub.empty else "Lambda: partition size at 1 GB")
    figure_legend(fig, ncols=1, axes=[ax_w, ax_n])
    return fig


def fig_lambda_data_size(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Data size 1-12 GB, 10 MB and 25 MB partitions: the study, its 1,000-partition limit, the projection."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    ax_t, ax_w, ax_c, ax_e = axes.ravel()
    claims = figdata.published_claims(recs)
    limit = float(claims["map_item_limit"]["value"]) if "map_item_limit" in claims else None
    peaks: list[str] = []
    costs: list[np.ndarray] = []
    for i, mb in enumerate((10, 25)):
        pub = _team6(recs, f"data_size_{mb}mb")
        if not pub.empty:
            lab = series_label("published", f"{mb} MB partitions", "team6")
            for ax, col in ((ax_t, "throughput_gb_s"), (ax_w, "avg_runtime_s"), (ax_c, "cost_usd"),
                            (ax_e, "perf_efficiency_gb_s_per_usd")):
                plot_series(ax, pub["data_gb"], pub[col], "published", lab, color(2 * i))
            best = pub.loc[pub["perf_efficiency_gb_s_per_usd"].idxmax()]
            peaks.append(f"{mb} MB peak {best['perf_efficiency_gb_s_per_usd']:g} at {best['data_gb']:g} GB")
        gbs = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        proj, rate = figdata.projected_grid(recs, gbs, [float(mb)], fitted)
        if not proj.empty and rate is not None:
            lab = series_label("projected", f"{mb} MB, Distributed Map (no 1,000 limit)",
                               f"simulator + {rate.engine} measured on {rate.machine}")
            costs.append(proj["lambda_usd"].to_numpy())
            for ax, col in ((ax_t, "throughput_gb_s"), (ax_w, "runtime_s"), (ax_c, "lambda_usd"),
                            (ax_e, "efficiency")):
                plot_series(ax, proj["data_gb"], proj[col], "projected", lab, color(2 * i + 1),
                            marker="v^"[i], markevery=(i, 2))
    if limit:
        for i, mb in enumerate((10, 25)):
            at = limit * mb / 1024.0
            if at <= 13:
                for ax in (ax_t, ax_w, ax_c, ax_e):
                    ax.axvline(at, color=color(2 * i), lw=1.2, ls=(0, (1, 1)),
                               label=f"{limit:,.0f}-partition limit of the study's pipeline: "
                                     f"{mb} MB series ends below {at:.1f} GB [published: team6 study]")
    if len(costs) == 2:
        spread = float(np.max(np.abs(costs[0] - costs[1]) / np.minimum(costs[0], costs[1])))
        ax_c.plot([], [], " ", label=f"the two projected cost lines lie within {spread:.0%} of each other "
                                     "(same compute per sample; markers staggered)")
    ax_t.set_title("Throughput = data / mean Lambda runtime")
    ax_w.set_title("Mean Lambda runtime")
    ax_c.set_title("Lambda cost of the run")
    ax_e.set_title("Efficiency = throughput / cost" + (f"\n({'; '.join(peaks)})" if peaks else ""))
    for ax, ylab in ((ax_t, "throughput (GB/s)"), (ax_w, "runtime (s)"), (ax_c, "cost (USD)"),
                     (ax_e, "efficiency (GB/s per USD)")):
        ax.set_xlabel("data size (GB)")
        ax.set_ylabel(ylab)
        ax.set_xticks([1, 2, 4, 6, 8, 10, 12])
    fig.suptitle("Lambda: data size (study's formulas; projection billed at configured memory)")
    figure_legend(fig, ncols=1)
    return fig


def fig_memory(recs: dict[str, pd.DataFrame], record: dict[str, Any] | None = None) -> plt.Figure | None:
    """Lambda memory vs duration and cost per GB of 75 MB partitions: the one Lambda model per measured CPU.

    Drawn from the projection record (``data/records/lambda_projection.json``, ``by_cpu``: the tables
    of :func:`cosmic_utils.analysis.lambda_model.memory_table`), so its cheapest memory is the one
    the record, the report and the README name (the suptitle writes it with
    :func:`~cosmic_utils.analysis.lambda_model.claim`). Each measured CPU is a line (point) with its
    range as bars (low: Amdahl, no residual; high: the published REPORT durations' unexplained
    residual kept); the published REPORT lines sit at 10,240 MB. None without a record.
    """
    from cosmic_utils.analysis import lambda_model, projection

    rec = record if record is not None else projection.load()
    if not rec or not rec.get("by_cpu"):
        return None
    mb = lambda_model.PUBLISHED_PARTITION_MB
    key = f"{mb:g}"
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(11, 5.4), layout="constrained")
    measured = [c for c in rec["by_cpu"] if key in (c.get("tables") or {})]
    for i, c in enumerate(measured):
        t = pd.DataFrame(c["tables"][key])
        where = f"{c['engine']} on {c['machine']}, {c['bench_path']}"
        lab = series_label("projected", f"{mb:g} MB partition, one Lambda model", where)
        x = t["memory_mb"] * (1.0 + 0.02 * (i - (len(measured) - 1) / 2))  # staggered so the bars do not overlap
        for ax, col in ((ax_d, "duration_s"), (ax_c, "usd_per_gb")):
            plot_range(ax, x, t[col], t[f"{col}_low"], t[f"{col}_high"], "projected", lab, color(i + 1))
    reports = recs.get("published_lambda_reports", pd.DataFrame())
    if not reports.empty:
        lab = series_label("published", f"{mb:g} MB partitions, CloudWatch REPORT lines", "cai")
        ax_d.plot(reports["memory_size"], reports["duration"] / 1000.0, "s", mfc="white", color=color(0), label=lab)
        per_gb = [cost.lambda_cost([d], m).total_usd / lambda_model.partition_gb(mb)
                  for d, m in zip(reports["billed_duration"], reports["memory_size"], strict=True)]
        ax_c.plot(reports["memory_size"], per_gb, "s", mfc="white", color=color(0), label=lab)
    ax_d.plot([], [], " ", label="markers staggered around their memory size; bars: low (Amdahl above 2 vCPU) .. high (the published REPORT duration's "
                                 "unexplained part kept; decomposition in the report)")
    for ax, ylab, title in ((ax_d, "duration per partition (s)", "Duration vs memory"),
                            (ax_c, "billed Lambda cost per GB (USD)", "Cost per GB vs memory (log)")):
        ax.set_xlabel("configured Lambda memory (MB)")
        ax.set_ylabel(ylab)
        ax.set_title(title)
    ax_c.set_yscale("log")
    plain_log(ax_c, "y")
    claims = lambda_model.claims_of(measured, mb, bounds=("point", "high"))
    fig.suptitle("Lambda memory, x86_64 (arm64 not measured), projected:\n" + "\n".join(claims), fontsize=8.5)
    figure_legend(fig, ncols=1)
    return fig


MARKERS = ("o", "s", "^", "D")


def fig_scale(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Simulated wall clock and cost per GB from 1 GB to 1 TB, the published runs overlaid."""
    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    timing, orch = fitted or (simulate.PartitionTiming(), simulate.Orchestration())
    gbs = np.geomspace(1, 1000, 13)
    costs: dict[int, np.ndarray] = {}
    for i, mb in enumerate((25, 50, 75, 100)):
        sims = [simulate.simulate_run(float(gb), mb, timing=timing, orch=orch, published_units=True) for gb in gbs]
        lab = series_label("simulated", f"{mb} MB partitions, 10,240 MB", "simulator fitted on Cosmic AI runs")
        kw: dict[str, Any] = {"marker": MARKERS[i], "markevery": (i, 4), "ms": 6}
        plot_series(ax_w, gbs, [s.wall_s for s in sims], "simulated", lab, color(i), **kw)
        costs[mb] = np.array([s.cost_usd / s.data_gb for s in sims])
        plot_series(ax_c, gbs, costs[mb], "simulated", lab, color(i), **kw)
    quota = replace(orch, account_concurrency=1000)
    sims = [simulate.simulate_run(float(gb), 100, timing=timing, orch=quota, published_units=True) for gb in gbs]
    plot_series(ax_w, gbs, [s.wall_s for s in sims], "simulated", series_label(
        "simulated", "100 MB, account quota 1,000", "simulator fitted on Cosmic AI runs"), "0.35")
    sfn = recs.get("published_cai_sfn", pd.DataFrame())
    for i, mb in enumerate((25, 50, 75, 100)):
        if not sfn.empty:
            g = sfn[sfn["partition_mb"] == mb]
            ax_w.plot(g["data_gb"], g["wall_s"], MARKERS[i], mfc="white", color=color(i), ls="none",
                      label=series_label("published", f"{mb} MB Step Functions runs", "cai"))
    val = recs.get("simulator_validation", pd.DataFrame())
    if not val.empty and "source" in val.columns:
        big = val[val["source"] == "state_machine_logs"]
        ax_w.plot(big["data_gb"], big["wall_s"], "X", color=color(4), ls="none",
                  label=series_label("published", "100 MB, 100 GB-1 TB runs", "cai"))
    stack = np.vstack(list(costs.values()))
    spread = float(np.max((stack.max(axis=0) - stack.min(axis=0)) / stack.min(axis=0)))
    ax_c.plot([], [], " ", label=f"cost per GB of the four partition sizes differs by at most {spread:.0%} "
                                 "(markers staggered to keep each line visible)")
    for ax in (ax_w, ax_c):
        ax.set_xscale("log")
        ax.set_xlabel("data size (GB)")
    ax_w.set_yscale("log")  # cost per GB stays linear: its lines differ by a few percent
    plain_log(ax_w)
    plain_log(ax_c, "x")
    ax_w.set_ylabel("Step Functions wall clock (s)")
    ax_c.set_ylabel("cost per GB (USD/GB)")
    ax_w.set_title(f"Wall clock (effective concurrency {orch.account_concurrency:,})")
    ax_c.set_title("Billed cost per GB")
    fig.suptitle("Scale simulation, 1 GB to 1 TB")
    figure_legend(fig, ncols=2)
    return fig


def fig_validation(recs: dict[str, pd.DataFrame]) -> plt.Figure | None:
    """Simulator: predicted vs observed published wall clocks, training and held-out rows."""
    val = recs.get("simulator_validation", pd.DataFrame())
    if val.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.8, 6.4), layout="constrained")
    for i, (split, marker) in enumerate((("train", "o"), ("held_out", "^"))):
        s = val[val["split"] == split]
        med = float(np.median(np.abs(s["error_rel"]))) if not s.empty else float("nan")
        ax.plot(s["wall_s"], s["predicted_wall_s"], marker, ls="none", alpha=0.75, color=color(i),
                label=series_label("simulated", f"{split.replace('_', '-')} rows ({len(s)}), median |error| {med:.0%}",
                                   "vs published Cosmic AI wall clocks"))
    lim = [15, float(max(val["wall_s"].max(), val["predicted_wall_s"].max())) * 1.2]
    ax.plot(lim, lim, "k-", lw=0.8, label="simulated = published (reference line)")
    ax.plot(lim, [v * 1.2 for v in lim], "k:", lw=0.6, label="+-20% (reference lines)")
    ax.plot(lim, [v * 0.8 for v in lim], "k:", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log(ax)
    ax.set_xlabel("published wall clock (s)")
    ax.set_ylabel("simulated wall clock (s)")
    ax.set_title("Simulator vs published Step Functions runs")
    figure_legend(fig, ncols=1)
    return fig


def no_data(ax: plt.Axes, what: str) -> None:
    """An empty panel that says why it is empty."""
    note(ax, what)
    ax.set_xticks([])
    ax.set_yticks([])
