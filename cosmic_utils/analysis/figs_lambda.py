"""Figures of Lambda behaviour: the study's published series beside this repository's projections.

Nothing here is measured on a Lambda by this repository unless aws-backend records exist; each
series names its source or basis (:mod:`cosmic_utils.analysis.figdata`). The local backend's
own sweeps are in :mod:`cosmic_utils.analysis.figs_local` (docs/figures.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from cosmic_utils.analysis import cost, figdata, lambda_model, projection, simulate
from cosmic_utils.analysis.figstyle import (
    color,
    figure_legend,
    log_x,
    plain_log,
    plot_range,
    plot_series,
    series_label,
    set_style,
)

#: Columns of the runtime, throughput, cost and efficiency panels (in that order) of the batch, partition
#: and data-size figures: in the published table, the projection and the aws-backend sweep records.
PUBLISHED_COLS = ("avg_runtime_s", "throughput_gb_s", "cost_usd", "perf_efficiency_gb_s_per_usd")
PROJECTED_COLS = ("runtime_s", "throughput_gb_s", "lambda_usd", "efficiency")
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


def _argmax_text(df: pd.DataFrame, y: str) -> str:
    """A title's second line: the batch size of the published maximum of ``y`` ("" without data)."""
    if df.empty:
        return ""
    best = df.loc[df[y].astype(float).idxmax()]
    return f"\n(published maximum at {best['batch_size']:g})"


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
        for ax, col in zip((ax_w, ax_t, ax_c, ax_e), PUBLISHED_COLS, strict=True):
            plot_series(ax, pub["batch_size"], pub[col], "published", lab, color(0))
    proj, rate = figdata.projected_batch(recs, sizes, gb, mb, fitted)
    if not proj.empty and rate is not None:
        lab = series_label("projected", f"1 Lambda, {mb:g} MB, {proj['memory_mb'].iloc[0]:,.0f} MB memory",
                           f"simulator + {rate.engine} {rate.precision} measured on {rate.machine}, "
                           f"{rate.threads} threads")
        for ax, col in zip((ax_w, ax_t, ax_c, ax_e), PROJECTED_COLS, strict=True):
            plot_series(ax, proj["batch_size"], proj[col], "projected", lab, color(1))
    _aws([ax_w, ax_t, ax_c, ax_e], recs, "batch_size", "batch_size")
    for ax, ylab, title in ((ax_w, "runtime (s)", "Mean Lambda runtime"),
                            (ax_t, "throughput (GB/s)",
                             "Throughput = data / mean runtime" + _argmax_text(pub, "throughput_gb_s")),
                            (ax_c, "cost (USD)", "Lambda cost of the run"),
                            (ax_e, "efficiency (GB/s per USD)",
                             "Efficiency = throughput / cost" + _argmax_text(pub, "perf_efficiency_gb_s_per_usd"))):
        ax.set(title=title, xlabel="batch size (samples)", ylabel=ylab)
        log_x(ax, sizes, base=2)
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
        for ax, col in zip((ax_w, ax_t, ax_c, ax_e, ax_n), (*PUBLISHED_COLS, "lambdas"), strict=True):
            plot_series(ax, pub["partition_mb"], pub[col], "published", lab, color(0))
    proj, rate = figdata.projected_grid(recs, [1.0], mbs, fitted)
    if not proj.empty and rate is not None:
        lab = series_label("projected", f"1 GB, batch 256, {proj['memory_mb'].iloc[0]:,.0f} MB memory",
                           f"simulator + {rate.engine} measured on {rate.machine}, {rate.threads} threads")
        for ax, col in zip((ax_w, ax_t, ax_c, ax_e, ax_n), (*PROJECTED_COLS, "lambdas"), strict=True):
            plot_series(ax, proj["partition_mb"], proj[col], "projected", lab, color(1))
    _aws([ax_w, ax_t, ax_c, ax_e], recs, "partition_size", "partition_mb")
    for ax, ylab, title in ((ax_w, "runtime (s)", "Mean Lambda runtime"),
                            (ax_t, "throughput (GB/s)", "Throughput = data / mean runtime"),
                            (ax_c, "cost (USD)", "Lambda cost of the run"),
                            (ax_e, "efficiency (GB/s per USD)", "Efficiency = throughput / cost"),
                            (ax_n, "Lambdas (count)", "Concurrency: one Lambda per partition")):
        ax.set(xlabel="partition size (MB)", ylabel=ylab, title=title)
        log_x(ax, mbs)
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
            for ax, col in zip((ax_w, ax_t, ax_c, ax_e), PUBLISHED_COLS, strict=True):
                plot_series(ax, pub["data_gb"], pub[col], "published", lab, color(2 * i))
            best = pub.loc[pub["perf_efficiency_gb_s_per_usd"].idxmax()]
            peaks.append(f"{mb} MB peak {best['perf_efficiency_gb_s_per_usd']:g} at {best['data_gb']:g} GB")
        gbs = [1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        proj, rate = figdata.projected_grid(recs, gbs, [float(mb)], fitted)
        if not proj.empty and rate is not None:
            lab = series_label("projected", f"{mb} MB, Distributed Map (no 1,000 limit)",
                               f"simulator + {rate.engine} measured on {rate.machine}")
            costs.append(proj["lambda_usd"].to_numpy())
            for ax, col in zip((ax_w, ax_t, ax_c, ax_e), PROJECTED_COLS, strict=True):
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
    for ax, ylab, title in ((ax_t, "throughput (GB/s)", "Throughput = data / mean Lambda runtime"),
                            (ax_w, "runtime (s)", "Mean Lambda runtime"),
                            (ax_c, "cost (USD)", "Lambda cost of the run"),
                            (ax_e, "efficiency (GB/s per USD)",
                             "Efficiency = throughput / cost" + (f"\n({'; '.join(peaks)})" if peaks else ""))):
        ax.set(title=title, xlabel="data size (GB)", ylabel=ylab, xticks=[1, 2, 4, 6, 8, 10, 12])
    fig.suptitle("Lambda: data size (study's formulas; projection billed at configured memory)")
    figure_legend(fig, ncols=1)
    return fig


def fig_memory(recs: dict[str, pd.DataFrame], record: dict[str, Any] | None = None) -> plt.Figure | None:
    """Lambda memory vs duration and $/GB of 75 MB partitions, per measured CPU (None without a record),
    from the projection record's ``by_cpu``, so its cheapest memory is the one report and README name."""
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
        ax.set(xlabel="configured Lambda memory (MB)", ylabel=ylab, title=title)
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
    plain_log(ax_w)
    plain_log(ax_c, "x")  # cost per GB stays linear: its lines differ by a few percent
    ax_w.set(xlabel="data size (GB)", ylabel="Step Functions wall clock (s)",
             title=f"Wall clock (effective concurrency {orch.account_concurrency:,})")
    ax_c.set(xlabel="data size (GB)", ylabel="cost per GB (USD/GB)", title="Billed cost per GB")
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
    plain_log(ax)
    ax.set(xlabel="published wall clock (s)", ylabel="simulated wall clock (s)",
           title="Simulator vs published Step Functions runs")
    figure_legend(fig, ncols=1)
    return fig


def fig_lambda_engine_projection(recs: Any = None, record: dict[str, Any] | None = None) -> plt.Figure | None:
    """Billed $/GB vs memory (left) and 12.6 GB wall clock bars (right) from ``record`` (default: the
    shipped projection record); None when there is none."""
    rec = record if record is not None else projection.load()
    if not rec:
        return None
    set_style()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14.0, 5.0), gridspec_kw={"width_ratios": [1.0, 1.25]})
    _projection_cost_panel(ax, rec, colors)
    _projection_wall_panel(bx, rec, colors)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=True, fontsize=8)
    fig.tight_layout()
    return fig


def _projection_cost_panel(ax: plt.Axes, rec: dict[str, Any], colors: list[str]) -> None:
    """Billed $/GB vs configured memory: each measured CPU projected, the published runs, the target (log y)."""
    mem = rec["memory"]
    x = [m["memory_mb"] for m in mem]
    machine = mem[0].get("machine") or rec["label"]
    plot_series(ax, x, [m["usd_per_gb"] for m in mem], "projected", f"this engine ({rec['label']}) [projected]",
                colors[0])
    ax.fill_between(x, [m.get("usd_per_gb_low", m["usd_per_gb"]) for m in mem],
                    [m.get("usd_per_gb_high", m["usd_per_gb"]) for m in mem], color=colors[0], alpha=0.12,
                    label=f"{machine}: range low (Amdahl, no residual) .. high (published REPORT duration's "
                          "unexplained part kept) [projected]")
    ax.plot(x, [m["usd_per_gb_amdahl"] for m in mem], color=colors[0], linestyle=":", linewidth=1.0,
            label="same, Amdahl beyond 2 vCPU (optimistic bound) [projected]")
    part = rec["inputs"]["partition_mb"]
    others = [c for c in rec.get("by_cpu") or [] if c.get("tables") and c["machine"] != machine]
    for c, col in zip(others, colors[5:] + colors[:1], strict=False):
        t = c["tables"].get(f"{part:g}") or []
        plot_series(ax, [m["memory_mb"] for m in t], [m["usd_per_gb"] for m in t], "projected",
                    f"{c['engine']} on {c['machine']} ({c['bench_path']}, 1 thread) [projected]", col)
    claims = lambda_model.claims_of(rec.get("by_cpu") or [], part)
    pub = rec["published"]
    cai = pub["cosmic_ai"]
    plot_series(ax, [cai["memory_mb"]], [cai["usd_per_gb"]], "published",
                "Cosmic AI, 75 MB (REPORT lines, billed) [published]", colors[3], markersize=8)
    t6 = [t for t in pub["team6"] if t["partition_mb"] in (10.0, 25.0)]
    for t, c in zip(t6, (colors[2], colors[4]), strict=False):
        plot_series(ax, [t["memory_mb"] * 0.97 if t["partition_mb"] == 10.0 else t["memory_mb"] * 1.03],
                    [t["usd_per_gb"]], "published", f"team6 {t['partition_mb']:g} MB (runtimes; 10,240 MB assumed) "
                    "[published]", c, markersize=7)
    target = rec["targets"]["usd_per_gb_target"]
    ax.axhline(target, color="0.5", linewidth=0.8, linestyle="--")
    ax.text(x[0], target * 1.12, f"target {target:g} $/GB", fontsize=8, color="0.35")
    ax.set_yscale("log")
    ys = ([m["usd_per_gb"] for m in mem] + [m.get("usd_per_gb_high", m["usd_per_gb"]) for m in mem]
          + [cai["usd_per_gb"]] + [t["usd_per_gb"] for t in t6] + [target])
    ax.set_ylim(min(ys) / 1.6, max(ys) * 1.5)
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02,
                                                               0.05, 0.1, 0.2, 0.5]))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel="configured Lambda memory (MB)", ylabel="billed Lambda cost ($ per GB of samples)")
    # the legend says which series are projected and which published: no extra tag beside this title
    ax.set_title(f"Lambda $/GB, {part:g} MB partitions (x86_64; arm64 not measured); projected:\n"
                 + "\n".join(claims), fontsize=8)


def _projection_wall_panel(bx: plt.Axes, rec: dict[str, Any], colors: list[str]) -> None:
    """12.6 GB wall clock bars: one partition per invocation, the fastest grid configuration, the published runs."""
    pub = rec["published"]
    best_mem = rec["best_memory_mb"]
    walls = [w for w in rec["wall_clock_12_6gb"] if w["memory_mb"] == best_mem]
    pubw = {w["partition_mb"]: w for w in pub["wall_12_6gb"]}
    bars: list[tuple[str, float, str, list[float]]] = [  # (label, height, kind, published runs)
        (f"projected\n{w['partition_mb']:g} MB\n({w['partitions']} items)", w["wall_s"], "projection", [])
        for w in walls]
    for x in rec.get("wall_clock_12_6gb_fastest") or []:
        f = x["fastest"]
        bars.append((f"fastest\n{f['partition_mb']:g} MB\n{f['memory_mb']:.0f} MB\n"
                     f"{f['per_invocation']} per inv.\n{f['items']} items", f["wall_s"], "fastest", []))
    for mb in sorted({w["partition_mb"] for w in walls} | {25.0}, reverse=True):
        if mb in pubw:
            runs = pubw[mb]["runs_s"]
            bars.append((f"published\n{mb:g} MB\n(median of {len(runs)})", pubw[mb]["median_s"], "published", runs))
    labels = [label for label, *_ in bars]
    pos = np.arange(len(bars))
    tops = [max([h, *runs]) for _, h, _, runs in bars]
    runs_label: str | None = "published runs (12.6 GB) [published]"  # on the first published bar only
    for i, (_, h, k, runs) in enumerate(bars):
        if runs:
            bx.plot([pos[i]] * len(runs), runs, "s", markerfacecolor="none", color=colors[3], markersize=5,
                    label=runs_label)
            runs_label = None
        face = {"projection": colors[0], "fastest": colors[1]}.get(k, "white")
        bx.bar(pos[i], h, width=0.6, color=face, edgecolor=colors[3] if k == "published" else face,
               hatch="//" if k == "published" else "", linewidth=1.2)
        bx.text(pos[i], tops[i] + 1.5, f"{h:.1f} s", ha="center", va="bottom", fontsize=8)
    wt = rec["targets"]["wall_target_s"]
    bx.axhline(wt, color="0.5", linewidth=0.8, linestyle="--")
    bx.set_xlim(-0.5, pos[-1] + 1.05)
    bx.text(pos[-1] + 1.0, wt + 1.0, f"target {wt:g} s", fontsize=8, color="0.35", ha="right")
    bx.set_xticks(pos, labels, fontsize=7 if len(labels) > 4 else 8)
    bx.set(ylim=(0, max(tops) * 1.3), ylabel="end-to-end wall clock (s)")
    bx.set_xlabel("12.6 GB run [partition size, Lambda memory, partitions per invocation]", fontsize=8)
    bx.set_title(f"12.6 GB end to end, concurrency {rec['inputs']['orchestration']['account_concurrency']}: "
                 f"1 partition/inv. at {best_mem:.0f} MB,\nand the fastest grid configuration "
                 "(projection: simulated schedule)")
