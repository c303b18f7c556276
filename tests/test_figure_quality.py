"""Every report figure passes the mechanical quality checks (cosmic_utils.analysis.figcheck).

Drawn from the shipped records (what `make figures` commits), from synthetic records that hold
what the shipped ones lack today (sweep repeats, aws-backend sweeps, a GPU run, the streamed
local data-size study) and from nothing at all. A deliberately bad figure proves the checker
fails when it should. Legend naming: every plotted series says what kind of number it is.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cosmic_utils.analysis import figcheck, plots, records  # noqa: E402
from cosmic_utils.analysis.figstyle import KINDS, series_label  # noqa: E402

#: The stems docs/report.md embeds (the report helper relies on these names).
STEMS = {"lambda_batch_size", "lambda_partition_size", "lambda_data_size", "local_backend_sweeps",
         "local_batch_size", "local_data_size", "local_gpu_lambda", "memory_cost_duration", "scale_simulation",
         "simulator_validation", "redshift_pred_vs_spec"}


def _shipped(tmp_path: Path) -> dict[str, pd.DataFrame]:
    return records.load_all_records(runs_dir=tmp_path / "no-runs")


def _sweep_rows(sweep: str, param: str, values: list[float], backend: str, repeats: int) -> tuple[list, list, list]:
    recs, summ, points = [], [], []
    rng = np.random.default_rng(0)
    for v in values:
        for r in range(repeats):
            slug = f"{backend}_{param}-{v:g}_repeat-{r}"
            tags = {"sweep": sweep, "slug": slug, "point_status": "done", f"param_{param}": v, "param_repeat": r}
            for p in range(2):
                recs.append({**tags, "partition_id": f"p{p}", "status": "ok", "samples": 1278,
                             "data_bytes": 1278 * 20520, "inference_s": 3.0, "duration_s": 3.5 + rng.random(),
                             "billed_duration_ms": 4000, "memory_mb": v if param == "memory_mb" else 3008,
                             "batch_size": v if param == "batch_size" else 256, "backend": backend,
                             "engine": "onnx"})
            wall = 10.0 + rng.random()
            summ.append({**tags, "wall_s": wall, "provenance.cpu_model": "Synthetic CPU 9000"})
            gb, mean_s = 2 * 1278 * 20520 / 1e9, 3.5 + rng.random()
            lam = 2 * 4.0 * (v if param == "memory_mb" else 3008) / 1024 * 1.66667e-5
            points.append({"sweep": sweep, "slug": slug, "origin": "shipped", f"param_{param}": v, "repeat": r,
                           "backend": backend, "cpu": "Synthetic CPU 9000", "trained": True, "data_gb": gb,
                           "wall_s": wall, "e2e_gb_s": gb / wall, "worker_gb_s": gb / mean_s,
                           "mean_duration_s": mean_s, "lambda_usd": lam, "total_usd": lam * 1.5,
                           "efficiency": gb / mean_s / lam, "memory_mb": v if param == "memory_mb" else 3008})
    return recs, summ, points


def _synthetic(tmp_path: Path) -> dict[str, pd.DataFrame]:
    recs = _shipped(tmp_path)
    rows, summ, points = [], [], []
    for sweep, param, values in (("batch_size", "batch_size", [32, 64, 128, 256, 512]),
                                 ("partition_size", "partition_mb", [10, 25, 50, 75, 100]),
                                 ("data_size", "data_gb", [0.05, 0.1, 0.2]),
                                 ("lambda_memory", "memory_mb", [1769, 3008, 10240])):
        for backend, reps in (("local", 3), ("aws", 1)):
            r, s, pts = _sweep_rows(sweep, param, values, backend, reps)
            rows += r
            summ += s
            points += pts
    recs["sweeps"], recs["sweep_summary"] = pd.DataFrame(rows), pd.DataFrame(summ)
    recs["sweep_points"] = pd.DataFrame(points)  # what records.load_sweep_points reads from the point folders
    recs["local_data_size"] = pd.DataFrame([
        {"data_gb": gb, "samples": int(gb * 1e9 / 20520), "wall_s": gb / 0.02 * (1 + 0.02 * r),
         "samples_per_s": 900.0, "gb_per_s": 0.02 / (1 + 0.02 * r), "peak_rss_mb": 600 + 3 * r, "engine": "onnx",
         "precision": "fp32", "threads": 2, "batch_size": 256, "cpu_model": "Synthetic CPU 9000", "backend": "local",
         "kind": "measured", "repeat": r}
        for gb in (1, 2, 4, 6, 8, 10) for r in range(3)])
    recs["gpu"] = pd.DataFrame([{"kind": "local_gpu", "engine": "torch-cuda", "precision": "fp32", "batch_size": 512,
                                 "gb_per_s": 0.2, "samples_per_s": 10000.0, "device": "Synthetic GPU"}])
    return recs


def _draw(recs: dict[str, pd.DataFrame]) -> dict[str, plt.Figure]:
    figs = plots.draw_all_figures(recs)
    return figs


def _check(figs: dict[str, plt.Figure]) -> None:
    try:
        figcheck.assert_clean(figs.items())
        for name, fig in figs.items():
            for ax in fig.axes:
                for line in ax.get_lines():
                    lab = str(line.get_label())
                    if lab.startswith("_") or not len(line.get_xdata()):
                        continue
                    assert any(f"[{k}" in lab for k in KINDS) or "reference line" in lab, \
                        f"{name}: series {lab!r} does not say measured/published/projected/simulated"
    finally:
        for fig in figs.values():
            plt.close(fig)


def test_shipped_records_figures_pass(tmp_path: Path) -> None:
    recs = _shipped(tmp_path)
    figs = _draw(recs)
    assert STEMS <= set(figs), STEMS - set(figs)
    title = figs["redshift_pred_vs_spec"]._suptitle.get_text()  # noqa: SLF001
    assert f"{len(recs['predictions']):,} predictions of " in title, title  # counted from the data, not typed
    _check(figs)


def test_synthetic_records_figures_pass(tmp_path: Path) -> None:
    recs = _synthetic(tmp_path)
    figs = _draw(recs)
    labels = {n: [t.get_text() for leg in f.legends for t in leg.get_texts()] for n, f in figs.items()}
    assert any("aws backend" in t for t in labels["lambda_batch_size"]), labels["lambda_batch_size"]
    assert any("n=3" in t and "Synthetic CPU 9000" in t for t in labels["local_backend_sweeps"])
    assert any("n=3" in t for t in labels["local_data_size"])
    assert "Synthetic CPU 9000" in figs["local_backend_sweeps"]._suptitle.get_text()  # noqa: SLF001
    _check(figs)


def test_figures_from_nothing_pass(tmp_path: Path) -> None:
    empty = records.load_all_records(runs_dir=tmp_path / "n", records_dir=tmp_path / "n", reference_dir=tmp_path / "n")
    figs = _draw(empty)
    texts = [t.get_text() for t in figs["local_data_size"].axes[0].texts]
    assert any("not measured yet" in t for t in texts)
    _check(figs)


def test_checker_flags_a_bad_figure() -> None:
    """Each defect the checker exists for, drawn on purpose, is reported."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(9, 3))
    x = np.linspace(1, 10, 50)
    ax1.plot(x, x, "o", label="a series with a long name that covers data")
    ax1.legend(loc="center")  # over the points
    ax1.text(5, 5, "a tag over the data")
    ax1.set_xlabel("time")  # no unit
    ax1.set_ylabel("y (s)")
    ax2.bar([1, 2, 3], [10, 100, 1000])
    ax2.set_yscale("log")
    ax2.set_xlabel("item (count)")
    ax2.set_ylabel("value (USD)")
    ax3.plot(range(20), range(20))
    ax3.set_xticks(range(20), [f"long tick label {i}" for i in range(20)])
    ax3.set_xlabel("x (s)")
    ax3.set_ylabel("y (s)")
    found = figcheck.problems(fig)
    plt.close(fig)
    text = "\n".join(found)
    assert "legend covers" in text
    assert "text 'a tag over the data' covers" in text
    assert "no unit" in text and "'time'" in text
    assert "bar chart on a log axis" in text
    assert "tick labels 'long tick label" in text and "overlap" in text
    assert "text 'a tag over the data' overlaps legend" in text or "legend overlaps text 'a tag" in text


def test_checker_passes_a_clean_figure() -> None:
    fig, ax = plt.subplots(layout="constrained")
    ax.plot([1, 2, 3], [1, 4, 9], "o-", label=series_label("measured", "x", "here"))
    ax.set_xlabel("size (GB)")
    ax.set_ylabel("time (s)")
    fig.legend(loc="outside lower center")
    assert figcheck.problems(fig) == []
    plt.close(fig)


def test_series_label_names_its_kind() -> None:
    assert series_label("published", "1 Lambda", "team6") == "1 Lambda [published: team6 study]"
    with pytest.raises(ValueError, match="unknown kind"):
        series_label("guessed", "x")
