"""Figure ``lambda_engine_projection``: the Lambda engine's projected $/GB per memory size beside the
published runs, and the projected 12.6 GB wall clock beside the published one.

Drawn from the shipped record ``data/records/lambda_projection.json`` (written by ``cosmic simulate
--project --json``), so it redraws without re-running anything; skipped (None) when the record
does not exist. Kept out of :mod:`cosmic_utils.analysis.plots` (one concern per module); it uses
that module's style (``set_style``, ``plot_series``, ``tag``), handed over by
:func:`figure_drawer` when ``plots`` registers the figure in its FIGURES (so this module does not
import ``plots`` and the two do not form an import cycle).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np


class _Style(Protocol):
    """The shared style helpers of :mod:`cosmic_utils.analysis.plots`."""

    set_style: Callable[[], None]
    plot_series: Callable[..., None]
    tag: Callable[[plt.Axes, str], None]


class _Kit:
    def __init__(self, set_style: Callable[[], None], plot_series: Callable[..., None],
                 tag: Callable[[plt.Axes, str], None]) -> None:
        self.set_style, self.plot_series, self.tag = set_style, plot_series, tag


def figure_drawer(set_style: Callable[[], None], plot_series: Callable[..., None],
                  tag: Callable[[plt.Axes, str], None]) -> Callable[..., plt.Figure | None]:
    """The figure function ``plots.FIGURES`` calls (``func(recs)``), drawing with the given style helpers."""
    kit = _Kit(set_style, plot_series, tag)

    def fig_lambda_engine_projection(recs: Any = None, record: dict[str, Any] | None = None) -> plt.Figure | None:
        return draw(kit, record)

    return fig_lambda_engine_projection


def draw(plots: _Style, record: dict[str, Any] | None = None) -> plt.Figure | None:
    """Left: billed $/GB vs configured memory (log y, points and lines only); right: 12.6 GB wall clock bars (linear):
    one partition per invocation at the best-cost memory, the fastest configuration of the grid search
    (memory x partitions per invocation, labelled with it) and the published runs.

    ``record``: the projection record (default: the shipped one); None when there is none.
    """
    from cosmic_utils.analysis import projection

    rec = record if record is not None else projection.load()
    if not rec:
        return None
    plots.set_style()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14.0, 5.0), gridspec_kw={"width_ratios": [1.0, 1.25]})

    from cosmic_utils.analysis import lambda_model

    mem = rec["memory"]
    x = [m["memory_mb"] for m in mem]
    machine = mem[0].get("machine") or rec["label"]
    plots.plot_series(ax, x, [m["usd_per_gb"] for m in mem], "projection", f"this engine ({rec['label']})",
                      color=colors[0])
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
        plots.plot_series(ax, [m["memory_mb"] for m in t], [m["usd_per_gb"] for m in t], "projection",
                          f"{c['engine']} on {c['machine']} ({c['bench_path']}, 1 thread)", color=col)
    claims = lambda_model.claims_of(rec.get("by_cpu") or [], part)
    pub = rec["published"]
    cai = pub["cosmic_ai"]
    plots.plot_series(ax, [cai["memory_mb"]], [cai["usd_per_gb"]], "published",
                      "Cosmic AI, 75 MB (REPORT lines, billed)", color=colors[3], markersize=8)
    t6 = [t for t in pub["team6"] if t["partition_mb"] in (10.0, 25.0)]
    for t, c in zip(t6, (colors[2], colors[4]), strict=False):
        plots.plot_series(ax, [t["memory_mb"] * 0.97 if t["partition_mb"] == 10.0 else t["memory_mb"] * 1.03],
                          [t["usd_per_gb"]], "published",
                          f"team6 {t['partition_mb']:g} MB (runtimes; 10,240 MB assumed)", color=c, markersize=7)
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
    ax.set_xlabel("configured Lambda memory (MB)")
    ax.set_ylabel("billed Lambda cost ($ per GB of samples)")
    # the legend says which series are projected and which published: no extra tag beside this title
    ax.set_title(f"Lambda $/GB, {part:g} MB partitions (x86_64; arm64 not measured); projected:\n"
                 + "\n".join(claims), fontsize=8)

    best_mem = rec["best_memory_mb"]
    walls = [w for w in rec["wall_clock_12_6gb"] if w["memory_mb"] == best_mem]
    pubw = {w["partition_mb"]: w for w in pub["wall_12_6gb"]}
    labels, heights, kinds = [], [], []
    for w in walls:
        labels.append(f"projected\n{w['partition_mb']:g} MB\n({w['partitions']} items)")
        heights.append(w["wall_s"])
        kinds.append("projection")
    for x in rec.get("wall_clock_12_6gb_fastest") or []:
        f = x["fastest"]
        labels.append(f"fastest\n{f['partition_mb']:g} MB\n{f['memory_mb']:.0f} MB\n"
                      f"{f['per_invocation']} per inv.\n{f['items']} items")
        heights.append(f["wall_s"])
        kinds.append("fastest")
    for mb in sorted({w["partition_mb"] for w in walls} | {25.0}, reverse=True):
        if mb in pubw:
            labels.append(f"published\n{mb:g} MB\n(median of {len(pubw[mb]['runs_s'])})")
            heights.append(pubw[mb]["median_s"])
            kinds.append("published")
    pos = np.arange(len(labels))
    tops = list(heights)
    for i, mb in enumerate(labels):
        if kinds[i] == "published":
            runs = next(pubw[m]["runs_s"] for m in pubw if f"\n{m:g} MB\n" in mb)
            bx.plot([pos[i]] * len(runs), runs, "s", markerfacecolor="none", color=colors[3], markersize=5,
                    label="published runs (12.6 GB) [published]" if i == kinds.index("published") else None)
            tops[i] = max(tops[i], *runs)
    for i, (h, k) in enumerate(zip(heights, kinds, strict=True)):
        face = {"projection": colors[0], "fastest": colors[1]}.get(k, "white")
        bx.bar(pos[i], h, width=0.6, color=face, edgecolor=colors[3] if k == "published" else face,
               hatch="//" if k == "published" else "", linewidth=1.2)
        bx.text(pos[i], tops[i] + 1.5, f"{h:.1f} s", ha="center", va="bottom", fontsize=8)
    wt = rec["targets"]["wall_target_s"]
    bx.axhline(wt, color="0.5", linewidth=0.8, linestyle="--")
    bx.set_xlim(-0.5, pos[-1] + 1.05)
    bx.text(pos[-1] + 1.0, wt + 1.0, f"target {wt:g} s", fontsize=8, color="0.35", ha="right")
    bx.set_xticks(pos, labels, fontsize=7 if len(labels) > 4 else 8)
    bx.set_ylim(0, max(tops) * 1.3)
    bx.set_ylabel("end-to-end wall clock (s)")
    bx.set_xlabel("12.6 GB run [partition size, Lambda memory, partitions per invocation]", fontsize=8)
    bx.set_title(f"12.6 GB end to end, concurrency {rec['inputs']['orchestration']['account_concurrency']}: "
                 f"1 partition/inv. at {best_mem:.0f} MB,\nand the fastest grid configuration "
                 "(projection: simulated schedule)")
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=True, fontsize=8)
    fig.tight_layout()
    return fig
