"""One look for every figure of the report: palette, series styles, series names, legends, saving.

A value looks the same in every figure by its kind (:data:`STYLES`: measured, published,
projected, simulated), every legend entry says where its number comes from (:func:`series_label`,
the only way figures name a series) and legends sit below the panels, never over data
(:func:`figure_legend`). Reasoning: docs/figures.md ("Decisions").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import seaborn as sns

from cosmic_utils import config

#: Okabe-Ito colour-blind-safe palette (the order used for series of one figure).
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
                              "#000000")
#: Line and marker style of each kind of value: measured (this repository's runs), published (the
#: team6 study, Cosmic AI), projected (measured compute through the simulator), simulated.
STYLES: dict[str, dict[str, Any]] = {
    "measured": {"marker": "o", "linestyle": "-"},
    "published": {"marker": "s", "linestyle": "--", "markerfacecolor": "white"},
    "projected": {"marker": "^", "linestyle": "-."},
    "simulated": {"marker": ".", "linestyle": ":"},
}
KINDS: tuple[str, ...] = tuple(STYLES)
#: Named sources of published numbers (the words used in legends).
SOURCES: dict[str, str] = {"team6": "team6 study", "cai": "Cosmic AI"}


def color(i: int) -> str:
    """The ``i``-th colour of the palette (wraps around)."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def set_style() -> None:
    """The report's style: seaborn whitegrid, paper context, the Okabe-Ito palette."""
    sns.set_theme(style="whitegrid", context="paper", palette=list(OKABE_ITO), font_scale=1.05)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "legend.fontsize": 8, "axes.titlesize": 10, "figure.titlesize": 11,
                         "axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO))})


def series_label(kind: str, what: str, where: str = "") -> str:
    """``what [kind: where]``, ``where`` the machine, the source ("team6", "cai" spelled out) or basis."""
    if kind not in STYLES:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    where = SOURCES.get(where, where)
    return f"{what} [{kind}: {where}]" if where else f"{what} [{kind}]"


def plot_series(ax: plt.Axes, x: Any, y: Any, kind: str, label: str, c: Any = None, **kw: Any) -> Any:
    """One series in the style of its kind; ``label`` should come from :func:`series_label`."""
    style = {**STYLES[kind], **kw}
    line, = ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), color=c, label=label, **style)
    return line


def plot_range(ax: plt.Axes, x: Any, med: Any, lo: Any, hi: Any, kind: str, label: str, c: Any = None) -> None:
    """Median line with a min-max error bar per point (repeats of one measurement)."""
    x, med = np.asarray(x, dtype=float), np.asarray(med, dtype=float)
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    line = plot_series(ax, x, med, kind, label, c)
    if np.any(hi > lo):
        ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="none", ecolor=line.get_color(), capsize=3, lw=1)


def plain_log(ax: plt.Axes, axis: str = "both") -> None:
    """Log scale with plain numbers (20, 50, 100) instead of 2x10^1 on ``axis``; call it after plotting.

    An axis whose data span less than a factor of 5 goes back to linear: on a log scale it would
    show one or two labelled ticks and tell the reader less than a linear one."""
    axes = (ax.xaxis, ax.yaxis) if axis == "both" else ((ax.xaxis,) if axis == "x" else (ax.yaxis,))
    for a in axes:
        set_scale = ax.set_xscale if a is ax.xaxis else ax.set_yscale
        set_scale("log")
        lo, hi = sorted(ax.get_xlim() if a is ax.xaxis else ax.get_ylim())
        if lo > 0 and hi / lo < 5:
            set_scale("linear")
            continue
        a.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        a.set_minor_formatter(matplotlib.ticker.NullFormatter())


def log_x(ax: plt.Axes, ticks: Any, base: int = 10) -> None:
    """Log x axis (base 2 for batch sizes) with exactly ``ticks`` as plain numbers (at most 3 decimals)."""
    ax.set_xscale("log", base=base)
    ax.set_xticks([float(t) for t in ticks], [f"{round(t, 3):g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def figure_legend(fig: plt.Figure, ncols: int = 2, axes: Any = None) -> None:
    """One legend for the whole figure, below the panels (never over data); duplicates merged."""
    seen: dict[str, Any] = {}
    for ax in axes if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
    if seen:
        if fig.get_layout_engine() is None:  # "outside" placement needs the constrained layout
            fig.set_layout_engine("constrained")
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=ncols, frameon=True)


def note(ax: plt.Axes, text: str) -> None:
    """A boxed note in the middle of an EMPTY panel (e.g. "not measured yet (run: ...)")."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.25",
            wrap=True, bbox={"facecolor": "0.96", "edgecolor": "0.7", "boxstyle": "round"})


#: Metadata of each format: every time- or version-dependent key removed (None), so ``make figures``
#: on an unchanged checkout writes the same bytes.
SAVE_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def save(fig: plt.Figure, name: str, out_dir: Path | None = None,
         formats: tuple[str, ...] = ("png", "pdf"), close: bool = True) -> list[Path]:
    """Write ``name``.png and .pdf (default: into figures/) byte-reproducibly; ``close=False`` keeps it open."""
    out = Path(out_dir or config.FIGURES_DIR)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for fmt in formats]
    for p, fmt in zip(paths, formats, strict=True):
        with matplotlib.rc_context({"svg.hashsalt": "cosmic-figures", "pdf.compression": 6}):
            fig.savefig(p, format=fmt, metadata=SAVE_METADATA.get(fmt))
    if close:
        plt.close(fig)
    return paths
