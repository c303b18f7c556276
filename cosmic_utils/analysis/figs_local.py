"""Figures of what this repository measured on its own machine, and the device comparison.

The local backend's sweeps describe this machine, not Lambda (every "Lambda" shares its cores),
so they never share axes with a Lambda series; a comparison states its pairing (precision, data
size) on the figure. Reasoning: docs/figures.md ("The local backend is not Lambda").
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import figdata
from cosmic_utils.analysis.figstyle import (
    STYLES,
    color,
    figure_legend,
    log_x,
    note,
    plain_log,
    plot_range,
    series_label,
)
from cosmic_utils.runtime.metrics import sigma_nmad

#: Panels of the local backend figure: (sweep, swept column, x label, metric, y label). The metric
#: names and their one definition are :data:`cosmic_utils.analysis.sweep_points.METRICS`, the same
#: the report's tables use (a test checks figure data and table agree).
LOCAL_SWEEPS: tuple[tuple[str, str, str, str, str], ...] = (
    ("batch_size", "batch_size", "batch size (samples)", "worker_gb_s",
     "throughput per worker (GB/s):\ndata / mean partition duration"),
    ("partition_size", "partition_mb", "partition size (MB)", "efficiency",
     "GB/s per USD (study's formula):\nper-worker throughput / Lambda USD"),
    ("data_size", "data_gb", "data size (GB)", "e2e_gb_s", "throughput, end to end (GB/s):\ndata / wall clock"),
    ("lambda_memory", "memory_mb", "configured memory (MB)", "mean_duration_s", "mean duration per partition (s)"),
)


def fig_local_backend_sweeps(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """The local backend's four sweeps (median and min-max over repeats), one series per machine and
    origin: scratch runs (``--include-runs``) are their own series, never merged into a shipped point."""
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 7.8), layout="constrained")
    pts_all = recs.get("sweep_points", pd.DataFrame())
    local = pts_all[pts_all["backend"].astype(str) == "local"] if not pts_all.empty else pts_all
    sub = {**recs, "sweep_points": local}
    shipped = local[local["origin"] == "shipped"] if not local.empty else local
    machines = sorted(set(shipped["cpu"])) if not shipped.empty else []
    machine = "; ".join(machines) if machines else "machine not named in these records"
    for ax, (sweep, param, xlab, metric, ylab) in zip(axes.ravel(), LOCAL_SWEEPS, strict=True):
        ax.set(xlabel=xlab, ylabel=ylab)
        series = figdata.sweep_series(sub, sweep)
        if not series:
            note(ax, f"not measured yet (run: cosmic sweep sweeps/{sweep}.yaml)")
            ax.set(xticks=[], yticks=[], title=f"{sweep.replace('_', ' ')} sweep")
            continue
        xs: set[float] = set()
        gbs: list[float] = []
        ymax = 0.0
        for k, (origin, cpu) in enumerate(series):
            pts = figdata.sweep_points(sub, sweep, param, [metric, "data_gb"], origin=origin, cpu=cpu)
            if pts.empty:
                continue
            pick = local[(local["sweep"] == sweep) & (local["origin"] == origin) & (local["cpu"] == cpu)]
            untrained = bool((pick["trained"].astype(str).str.lower() == "false").any()) if "trained" in pick else False
            what = f"local backend sweep {sweep.replace('_', ' ')}, {figdata.spread_text(pts)}"
            if origin != "shipped":
                what = "scratch run (runs/, not shipped): " + what + (", UNTRAINED model" if untrained else "")
            plot_range(ax, pts[param], pts[f"{metric}_med"], pts[f"{metric}_min"], pts[f"{metric}_max"], "measured",
                       series_label("measured", what, cpu), color(k))
            xs |= set(pts[param])
            gbs += list(pts["data_gb_med"].dropna())
            ymax = max(ymax, float(pts[f"{metric}_max"].max()))
        what = f"{sweep.replace('_', ' ')} sweep"
        if sweep != "data_size" and gbs:
            what += f" ({min(gbs):.2g} GB)" if np.isclose(min(gbs), max(gbs), rtol=0.05) else \
                f" ({min(gbs):.2g}-{max(gbs):.2g} GB)"
        ax.set_title(what)
        if param == "batch_size":
            log_x(ax, sorted(int(v) for v in xs), base=2)
        elif param in ("partition_mb", "data_gb"):
            log_x(ax, sorted(xs))
        else:  # memory: the local backend does not give a function more CPU with more memory
            ax.set(ylim=(0, ymax * 1.15), title=what + ": flat, no CPU share per memory locally")
    fig.suptitle(f"Local backend [measured: {machine}]: every Lambda shares this machine's cores\n"
                 "(this machine's behaviour, not Lambda's; Lambda series are in the lambda_* figures)", fontsize=10)
    figure_legend(fig, ncols=1)
    return fig


def _local_cpu(recs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The local CPU engine runs, with the columns the figures group by present (unknown: 'not recorded')."""
    local = recs.get("local", pd.DataFrame())
    cpu = local[local["kind"].astype(str) == "local_cpu"] if not local.empty and "kind" in local.columns else local
    if cpu.empty:
        return cpu
    cpu = cpu.copy()
    for col in ("engine", "precision"):
        if col not in cpu.columns:
            cpu[col] = "not recorded"
        cpu[col] = cpu[col].fillna("not recorded").astype(str)
    if "data_gb" not in cpu.columns and "samples" in cpu.columns:
        cpu["data_gb"] = cpu["samples"].astype(float) * config.SAMPLE_BYTES / config.GB
    return cpu


def fig_local_batch_size(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """This machine's engines against batch size (local CPU records), the study's laptop beside them."""
    fig, ax = plt.subplots(figsize=(8.5, 6.2), layout="constrained")
    cpu = _local_cpu(recs)
    sizes = [32, 64, 128, 256, 512]
    if not cpu.empty and "threads" in cpu.columns:
        # one thread count (the largest: the one measured at every batch size); one run, the newest
        cpu = cpu[cpu["threads"] == cpu["threads"].max()]
        if "run_id" in cpu.columns and "timestamp" in cpu.columns:
            cpu = cpu[cpu["run_id"] == cpu.sort_values("timestamp")["run_id"].iloc[-1]]
    if cpu.empty or not {"batch_size", "gb_per_s", "engine"} <= set(cpu.columns):
        note(ax, "not measured yet (run: cosmic bench / make bench)")
    else:
        machine = figdata.machine_of(cpu)
        threads = sorted(set(cpu["threads"].dropna().astype(int))) if "threads" in cpu.columns else []
        where = "local CPU" + (f", {'/'.join(map(str, threads))} threads" if threads else "")
        failed = _failed_checks(recs)
        for i, ((engine, prec), df) in enumerate(cpu.groupby(["engine", "precision"])):
            g = df.groupby("batch_size")["gb_per_s"].agg(["median", "min", "max", "count"]).sort_index()
            n = f"n={int(g['count'].min())}" + ("" if g["count"].nunique() == 1 else f"-{int(g['count'].max())}")
            bad = ", FAILED its accuracy check" if engine in failed else ""
            plot_range(ax, g.index, g["median"], g["min"], g["max"], "measured",
                       series_label("measured", f"{engine} ({prec}{bad}), {n}", where), color(i))
        sizes = sorted(int(b) for b in cpu["batch_size"].unique())
        ax.set_title(f"Local computer [measured: {machine}]: throughput vs batch size\n"
                     f"{_samples_text(cpu)} per point; the study's laptop beside it", fontsize=9.5)
    dev = recs.get("published_team6_devices", pd.DataFrame())
    if not dev.empty:
        lap = dev[dev["device"] == "laptop"]
        if not lap.empty:
            r = lap.iloc[0]
            ax.plot([r["batch_size"]], [figdata.gbit_to_gb(r["throughput"])], "s", mfc="white", color="0.2", ms=8,
                    label=series_label("published", f"the study's laptop, {r['data_gb']:g} GB "
                                       f"({r['throughput']:g} Gbit/s in its table)", "team6"))
    log_x(ax, sizes, base=2)
    plain_log(ax, "y")
    ax.set(xlabel="batch size (samples)", ylabel="throughput (GB/s)")
    figure_legend(fig, ncols=2)
    return fig


def _samples_text(cpu: pd.DataFrame) -> str:
    """"512 samples (1,024 at batch 512) = 0.011 GB": the data behind each point, from the records."""
    if "samples" not in cpu.columns:
        return "data size not recorded"
    per = cpu.groupby("batch_size")["samples"].max().astype(int)
    common = int(per.mode().iloc[0])
    other = [f"{s:,} at batch {b}" for b, s in per.items() if s != common]
    return (f"{common:,} samples ({common * config.SAMPLE_BYTES / config.GB:.2g} GB)"
            + (f" ({'; '.join(other)})" if other else ""))


def _size_of(row: pd.Series) -> str:
    """'512 samples (0.011 GB)' of one engine run, or what of it is recorded."""
    samples, gb = row.get("samples"), row.get("data_gb")
    if pd.notna(samples) and pd.notna(gb):
        return f"{int(samples):,} samples ({float(gb):.2g} GB)"
    return f"{float(gb):.2g} GB" if pd.notna(gb) else "data size not recorded"


def _failed_checks(recs: dict[str, pd.DataFrame]) -> set[str]:
    """Engines whose accuracy check failed in the bench records (their speed is not a usable result)."""
    bench = recs.get("bench", pd.DataFrame())
    if bench.empty or not {"engine", "check_passed"} <= set(bench.columns):
        return set()
    return set(bench.loc[bench["check_passed"].astype(str) == "False", "engine"].astype(str))


def fig_local_data_size(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Streamed local data-size study: throughput and peak memory per size, the study's laptop beside it."""
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    pts = figdata.local_data_size(recs)
    raw = recs.get("local_data_size", pd.DataFrame())
    if pts.empty:
        for ax in (ax_t, ax_m):
            note(ax, "not measured yet\n(the streamed local data-size study writes data/records/local_data_size.csv)")
    else:
        machine = figdata.machine_of(raw)
        eng = ", ".join(sorted({f"{e} {p}" for e, p in zip(raw.get("engine", ["?"]), raw.get("precision", ["?"]),
                                                            strict=False)}))
        lab = series_label("measured", f"this repo, streamed, {eng}, {figdata.spread_text(pts)}", machine)
        plot_range(ax_t, pts["data_gb"], pts["gb_per_s_med"], pts["gb_per_s_min"], pts["gb_per_s_max"], "measured",
                   lab, color(0))
        plot_range(ax_m, pts["data_gb"], pts["peak_rss_mb_med"], pts["peak_rss_mb_min"], pts["peak_rss_mb_max"],
                   "measured", lab, color(0))
    claims = figdata.published_claims(recs)
    lap = claims.get("laptop_throughput")
    if lap is not None:
        v = float(lap["value"])
        gbs = v if str(lap["unit"]) == "GB/s" else figdata.gbit_to_gb(v)
        ax_t.plot([lap["data_gb_from"], lap["data_gb_to"]], [gbs, gbs], "s--", mfc="white", color=color(1),
                  label=series_label("published", f"the study's laptop, {lap['data_gb_from']:g}-{lap['data_gb_to']:g} GB "
                                     f"(~{v:g} {lap['unit']}, labelled GB/s by the study)", "team6"))
    oom = claims.get("laptop_out_of_memory")
    if oom is not None:
        for ax in (ax_t, ax_m):
            ax.axvline(float(oom["data_gb_from"]), color=color(3), ls="--", lw=1.2, zorder=1,
                       label=series_label("published", f"the study's laptop: out of memory at "
                                          f"{float(oom['data_gb_from']):g} GB", "team6"))
    right = max([float(pts["data_gb"].max()) if not pts.empty else 0.0,
                 *(float(c["data_gb_to"]) for c in (lap, oom) if c is not None)], default=8.0)
    for ax, ylab, title in ((ax_t, "throughput (GB/s)", "Throughput vs data size"),
                            (ax_m, "peak resident memory (MB)", "Peak memory vs data size")):
        ax.set(xlabel="data size (GB)", ylabel=ylab, title=title, xlim=(0, right + 1))
    if pts.empty:
        ax_t.set_ylim(bottom=0)
    else:
        plain_log(ax_t, "y")
        ax_m.set_ylim(0, float(pts["peak_rss_mb_max"].max()) * 1.15)  # from 0: flat memory must look flat
    note_text = ""
    if not raw.empty and "data_note" in raw.columns and raw["data_note"].astype(str).str.contains("page cache").any():
        note_text = " (a 1 GB rendered base tiled to each size; reads come from the page cache)"
    fig.suptitle("Local computer: data size, streamed in batches" + note_text)
    figure_legend(fig, ncols=1)
    return fig


def fig_local_gpu_lambda(recs: dict[str, pd.DataFrame], fitted: tuple | None = None) -> plt.Figure:
    """Local CPU vs GPU vs Lambda in GB/s (dot plot, log axis), each row saying what it pairs."""
    fig, ax = plt.subplots(figsize=(10, 5.6), layout="constrained")
    rows: list[tuple[str, float, str]] = []  # (row label, GB/s, kind)
    dev = recs.get("published_team6_devices", pd.DataFrame())
    for _, r in dev.iterrows():
        gbit = "Gbit/s" in str(r.get("note", ""))
        v = figdata.gbit_to_gb(r["throughput"]) if gbit else float(r["throughput"])
        name = {"aws_lambda": "Lambda (data / mean runtime of ONE of its parallel Lambdas)", "laptop": "laptop",
                "rivanna_gpu": "Rivanna GPU"}.get(str(r["device"]), str(r["device"]))
        conv = f", {r['throughput']:g} Gbit/s in the table" if gbit else ""
        rows.append((f"study: {name}\n{r['data_gb']:g} GB, batch {r['batch_size']:g}, fp32{conv}", v, "published"))
    cpu = _local_cpu(recs)
    failed = _failed_checks(recs)
    if not cpu.empty and "gb_per_s" in cpu.columns:
        machine = figdata.machine_of(cpu)
        cpu = cpu[~cpu["engine"].astype(str).isin(failed)]  # a speed without accuracy is no result
        for prec in ("fp32", *sorted(set(cpu["precision"].astype(str)) - {"fp32"})):
            df = cpu[cpu["precision"].astype(str) == prec]
            if df.empty:
                continue
            best = df.loc[df["gb_per_s"].astype(float).idxmax()]
            rows.append((f"this repo, local CPU: {best['engine']} {prec}, batch {int(best['batch_size'])}\n"
                         f"{_size_of(best)}, {machine}",
                         float(best["gb_per_s"]), "measured"))
    streamed = figdata.local_data_size(recs)
    if not streamed.empty and not dev.empty:  # the same data size as the study's row, when measured
        target = float(dev["data_gb"].astype(float).iloc[0])
        row = streamed.loc[(streamed["data_gb"] - target).abs().idxmin()]
        raw = recs["local_data_size"]
        eng = " ".join(str(raw[c].iloc[0]) for c in ("engine", "precision") if c in raw.columns)
        rows.append((f"this repo, local CPU streamed: {eng}, {row['data_gb']:g} GB, median of n={int(row['n'])}\n"
                     f"{figdata.machine_of(raw)}", float(row["gb_per_s_med"]), "measured"))
    gpu = recs.get("gpu", pd.DataFrame())
    if gpu.empty or "gb_per_s" not in gpu.columns:
        rows.append(("this repo, GPU:\nno GPU measured", float("nan"), "measured"))
    else:
        best = gpu.loc[gpu["gb_per_s"].astype(float).idxmax()]
        rows.append((f"this repo, GPU: {best['engine']} {best.get('precision', '')}, batch {int(best['batch_size'])}\n"
                     f"{best.get('device', '')}", float(best["gb_per_s"]), "measured"))
    aws = recs.get("aws", pd.DataFrame())
    table = pd.DataFrame()
    if not aws.empty:
        from cosmic_utils.analysis.records import runs_table

        table = runs_table(aws, recs.get("pipeline_summary"))
        table = table[table["throughput_e2e_gb_s"].notna()] if not table.empty else table
    lam = dev[dev["device"].astype(str) == "aws_lambda"] if not dev.empty else dev
    if not lam.empty:  # the study's Lambda row, answered with the same definition and data size
        t6 = recs.get("published_team6", pd.DataFrame())
        gb = float(lam["data_gb"].iloc[0])
        match = t6[(t6["section"].astype(str).str.startswith("data_size")) & (t6["data_gb"].round() == round(gb))
                   & np.isclose(t6["throughput_gb_s"], float(lam["throughput"].iloc[0]))] if not t6.empty else t6
        mb = float(match["partition_mb"].iloc[0]) if not match.empty else 25.0
        proj, rate = figdata.projected_grid(recs, [gb], [mb], fitted)
        if not proj.empty and rate is not None:
            rows.append((f"this repo, Lambda projected (same definition): {gb:g} GB, {mb:g} MB partitions\n"
                         f"{rate.engine} {rate.precision} b{rate.batch_size} measured here + simulator",
                         float(proj["throughput_gb_s"].iloc[0]), "projected"))
    if table.empty:
        rows.append(("this repo, Lambda:\nno AWS run recorded", float("nan"), "measured"))
    else:
        best = table.loc[table["throughput_e2e_gb_s"].idxmax()]
        rows.append((f"this repo, AWS Lambda: end to end (data / wall clock)\n{best['data_gb']:.2g} GB, "
                     f"{int(best['partitions'])} partitions", float(best["throughput_e2e_gb_s"]), "measured"))
    ys = np.arange(len(rows))[::-1]
    where = {"published": "team6", "measured": "this repo, machine named in each row",
             "projected": "simulator + this repo's measured engine"}
    for i, kind in enumerate(("published", "measured", "projected")):
        sel = [j for j, r in enumerate(rows) if r[2] == kind and np.isfinite(r[1])]
        if sel:
            ax.plot([rows[j][1] for j in sel], ys[sel], STYLES[kind]["marker"], ms=9, ls="none",
                    mfc="white" if kind == "published" else color(i), color=color(i),
                    label=series_label(kind, "throughput", where[kind]))
    ax.set_yticks(ys, [f"{r[0]}\n= {r[1]:.3g} GB/s" if np.isfinite(r[1]) else r[0] for r in rows], fontsize=7.5)
    ax.set_xscale("log")
    vals = [r[1] for r in rows if np.isfinite(r[1])]
    if vals:
        ax.set_xlim(min(vals) / 1.6, max(vals) * 1.6)
    plain_log(ax, "x")
    ax.set(xlabel="throughput (GB/s)", ylabel="device (row)", ylim=(-0.7, len(rows) - 0.3))
    ax.set_title("Local CPU vs GPU vs Lambda: fp32 unless a row says otherwise; each row states its data size"
                 + (f"\n(engines that failed their accuracy check left out: {', '.join(sorted(failed))})"
                    if failed else ""), fontsize=9)
    figure_legend(fig, ncols=2)
    return fig


def _galaxy_count(pred: pd.DataFrame) -> str:
    """How many galaxies the predictions come from: the validation catalog, if every z_spec is in it."""
    distinct = int(pred["z_spec"].round(6).nunique())
    try:
        from cosmic_utils.data.catalog import valid_catalog

        cat = valid_catalog()
    except Exception:  # noqa: BLE001 - the catalog is optional here: fall back to distinct redshifts
        return f"{distinct:,} distinct z_spec"
    zs = cat.iloc[:, 0].astype(float).round(6) if "zs" not in cat.columns else cat["zs"].astype(float).round(6)
    if pred["z_spec"].round(6).isin(set(zs)).all():
        return f"{len(cat):,} galaxies of the validation catalog (resampled; {distinct:,} distinct z_spec)"
    return f"{distinct:,} distinct z_spec"


def fig_redshift(recs: dict[str, pd.DataFrame]) -> plt.Figure:
    """Predicted vs spectroscopic redshift from the newest predictions file, counts from the data."""
    fig, ax = plt.subplots(figsize=(6.2, 6.6), layout="constrained")
    pred = recs.get("predictions", pd.DataFrame())
    if pred.empty:
        note(ax, "no measured records yet (run: cosmic predict / make demo)")
        ax.set(xticks=[], yticks=[], title="z_pred vs z_spec")
    else:
        zs, zp = pred["z_spec"].astype(float), pred["z_pred"].astype(float)
        if len(pred) > 2000:
            hb = ax.hexbin(zs, zp, gridsize=60, mincnt=1, bins="log", cmap="viridis")
            cb = fig.colorbar(hb, ax=ax, shrink=0.78, label="predictions per hexagon (count, log scale)")
            cb.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            ax.plot(zs, zp, "o", ms=3, alpha=0.5, color=color(0))
        hi = float(max(zs.max(), zp.max()))
        ax.plot([0, hi], [0, hi], "k-", lw=0.8)
        nmad = sigma_nmad((zp - zs) / (1 + zs))
        ax.set_aspect("equal", adjustable="box")
        src = Path(str(pred["source_file"].iloc[0])).stem if "source_file" in pred.columns else "predictions"
        fig.suptitle(f"z_pred vs z_spec [measured: {src}]\n{len(pred):,} predictions of {_galaxy_count(pred)}\n"
                     f"sigma_NMAD = {nmad:.4f}; black line: z_pred = z_spec", fontsize=8.5)
    ax.set(xlabel="spectroscopic redshift z_spec (unitless)", ylabel="predicted redshift z_pred (unitless)")
    return fig


def fig_cutouts(cutouts: np.ndarray, bands: tuple[str, ...] = ("u", "g", "r", "i", "z"),
                stretch: float = 0.1) -> plt.Figure:
    """Rendered cutouts ``[N, 5, 32, 32]``, one row per galaxy, one column per band (asinh stretch)."""
    n = len(cutouts)
    fig, axes = plt.subplots(n, len(bands), figsize=(8, 1.7 * n), squeeze=False)
    for i in range(n):
        for b, band in enumerate(bands):
            axes[i, b].imshow(np.arcsinh(cutouts[i, b] / stretch), cmap="gray", origin="lower")
            axes[i, b].set(xticks=[], yticks=[])
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
