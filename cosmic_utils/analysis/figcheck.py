"""Mechanical quality checks of a drawn matplotlib figure (what a reviewer would otherwise eyeball).

:func:`problems` reports text or legends overlapping each other, tick labels or data points,
overlapping tick labels, bars on a log axis and axis labels without a unit; the list of checks
and why they exist: docs/figures.md ("Quality checks").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import Collection
from matplotlib.container import BarContainer
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

UNIT = re.compile(r"[(\[][^)\]]+[)\]]")
#: Pixels two boxes may share before they count as overlapping (anti-aliasing, rounding).
TOLERANCE_PX = 1.0


def _box(artist: Text | Legend, renderer) -> Bbox | None:
    if not artist.get_visible():
        return None
    if isinstance(artist, Text) and not artist.get_text().strip():
        return None
    bb = artist.get_window_extent(renderer)
    if isinstance(artist, Text) and artist.get_bbox_patch() is not None:
        bb = Bbox.union([bb, artist.get_bbox_patch().get_window_extent(renderer)])
    if bb.width <= 0 or bb.height <= 0:
        return None
    return bb.expanded(1.0, 1.0).padded(-TOLERANCE_PX)


def _overlap(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _name(artist: Text | Legend) -> str:
    return "legend" if isinstance(artist, Legend) else f"text {artist.get_text()[:40]!r}"


def _tick_labels(ax: plt.Axes) -> list[list[Text]]:
    out = []
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(axis.get_view_interval())
        ticks = [t for t in [*axis.get_major_ticks(), *axis.get_minor_ticks()]
                 if lo - 1e-9 * abs(hi - lo) <= t.get_loc() <= hi + 1e-9 * abs(hi - lo)]
        labels = [lab for t in ticks for lab in (t.label1, t.label2)
                  if lab.get_visible() and lab.get_text().strip()]
        out.append(labels)
    return out


def data_points(ax: plt.Axes, renderer) -> np.ndarray:
    """Display coordinates of every plotted data point of ``ax`` (lines' vertices, collections' offsets)
    inside the axes box (clipped ones are not drawn)."""
    chunks = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = np.column_stack([np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)])
        if len(xy):
            chunks.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        if not coll.get_visible() or not isinstance(coll, Collection):
            continue
        offs = np.asarray(coll.get_offsets(), dtype=float)
        if offs.size and len(offs) and not (len(offs) == 1 and np.allclose(offs, 0)):
            chunks.append(coll.get_offset_transform().transform(offs))
        else:  # error bars etc.: the ends of each segment
            for path in coll.get_paths():
                v = np.asarray(path.vertices, dtype=float)
                if len(v):
                    chunks.append(coll.get_transform().transform(v))
    if not chunks:
        return np.empty((0, 2))
    pts = np.concatenate(chunks)
    bb = ax.get_window_extent(renderer)
    inside = (pts[:, 0] >= bb.x0) & (pts[:, 0] <= bb.x1) & (pts[:, 1] >= bb.y0) & (pts[:, 1] <= bb.y1)
    return pts[inside & np.isfinite(pts).all(axis=1)]


def _has_data(ax: plt.Axes) -> bool:
    return bool(ax.get_lines() or ax.collections or ax.patches or ax.images or ax.containers)


def problems(fig: plt.Figure) -> list[str]:
    """Every quality problem of ``fig`` as a sentence (empty list: the figure passes)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found: list[str] = []
    # fig.texts holds the suptitle too
    own: list[Text | Legend] = [*fig.texts, *fig.legends]
    for ax in fig.axes:
        own += [*ax.texts, ax.title, ax._left_title, ax._right_title,  # noqa: SLF001
                ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend() is not None:
            own.append(ax.get_legend())
        # tick labels of one axis must not overlap each other
        for labels in _tick_labels(ax):
            bbs = [(t, t.get_window_extent(renderer).padded(-TOLERANCE_PX)) for t in labels]
            for (a, abb), (b, bbb) in itertools.combinations(bbs, 2):
                if _overlap(abb, bbb):
                    found.append(f"tick labels {a.get_text()!r} and {b.get_text()!r} overlap"
                                 f" ({ax.get_title() or 'untitled panel'})")
        # no bars on a log axis
        for cont in ax.containers:
            if isinstance(cont, BarContainer) and len(cont.patches):
                scale = ax.get_xscale() if cont.orientation == "horizontal" else ax.get_yscale()
                if scale == "log":
                    found.append(f"bar chart on a log axis ({ax.get_title() or 'untitled panel'})")
        # every axis with data names its unit
        if _has_data(ax) and ax.axison:
            for axis, which, ticks in zip((ax.xaxis, ax.yaxis), "xy", _tick_labels(ax), strict=True):
                label = axis.label.get_text()
                if ticks and not UNIT.search(label):
                    found.append(f"{which} axis label {label!r} has no unit in () or [] "
                                 f"({ax.get_title() or 'untitled panel'})")
    # text/legend boxes: against each other, and against every plotted point
    tick_boxes = [(t, t.get_window_extent(renderer).padded(-TOLERANCE_PX))
                  for ax in fig.axes for labels in _tick_labels(ax) for t in labels]
    points = {id(ax): (ax, data_points(ax, renderer)) for ax in fig.axes}
    boxes = [(art, bb) for art in own if (bb := _box(art, renderer)) is not None]
    for i, (a, abb) in enumerate(boxes):
        for b, bbb in boxes[i + 1:]:
            if _overlap(abb, bbb):
                found.append(f"{_name(a)} overlaps {_name(b)}")
        for t, tbb in tick_boxes:
            if _overlap(abb, tbb):
                found.append(f"{_name(a)} overlaps tick label {t.get_text()!r}")
        for ax, pts in points.values():
            if not len(pts):
                continue
            inside = ((pts[:, 0] > abb.x0) & (pts[:, 0] < abb.x1) & (pts[:, 1] > abb.y0) & (pts[:, 1] < abb.y1))
            if inside.any():
                found.append(f"{_name(a)} covers {int(inside.sum())} data point(s) "
                             f"({ax.get_title() or 'untitled panel'})")
    return found


def assert_clean(figs: Iterable[tuple[str, plt.Figure]]) -> None:
    """Raise AssertionError listing the problems of every figure that has any."""
    bad = {name: p for name, fig in figs if (p := problems(fig))}
    if bad:
        raise AssertionError("\n".join(f"{n}: {m}" for n, ps in bad.items() for m in ps))

