"""Figures and tables read sweep points through one reader, with one definition per metric."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cosmic_utils import config
from cosmic_utils.analysis import figdata, figs_local, records, report


@pytest.fixture(scope="module")
def shipped() -> dict:
    return records.load_all_records()


@pytest.mark.parametrize("panel", figs_local.LOCAL_SWEEPS, ids=[p[0] for p in figs_local.LOCAL_SWEEPS])
def test_figure_data_equals_report_table(shipped: dict, panel: tuple) -> None:
    sweep, param, _, metric, _ = panel
    fig = figdata.sweep_points(shipped, sweep, param, [metric]).set_index(param)
    table = report.median_by(report.sweep_points(report.Sources(), sweep, param), param, metric)
    if sweep == "data_size":  # the table groups the data-size sweep by the measured GB, the figure by the requested
        table.index = [min(fig.index, key=lambda x, v=v: abs(x - v)) for v in table.index]
    assert len(fig) == len(table) > 0
    np.testing.assert_allclose(fig[f"{metric}_med"].to_numpy(), table.loc[fig.index, "median"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(fig["n"].to_numpy(), table.loc[fig.index, "n"].to_numpy())


def test_partition_efficiency_falls_in_figure_and_table(shipped: dict) -> None:
    pts = figdata.sweep_points(shipped, "partition_size", "partition_mb", ["efficiency"])
    assert pts["efficiency_med"].is_monotonic_decreasing


def _scratch_copy(runs: Path, sweep: str, slug: str) -> None:
    src = config.RECORDS_DIR / "sweeps" / sweep / slug
    dst = runs / "sweeps" / sweep / slug
    shutil.copytree(src, dst)
    summ = json.loads((dst / "summary.json").read_text())
    summ["timing"]["sum_duration_s"] *= 10  # a slow scratch run: must not move the shipped point
    summ["model_info"] = {"model_trained": False}
    (dst / "summary.json").write_text(json.dumps(summ))


def test_scratch_runs_are_read_only_when_asked_and_never_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                shipped: dict) -> None:
    runs = tmp_path / "runs"
    _scratch_copy(runs, "batch_size", "batch_size-32")
    monkeypatch.setattr(config, "RUNS_DIR", runs)
    monkeypatch.setattr(config, "SWEEP_RUNS_DIR", runs / "sweeps")
    default = records.load_all_records()
    assert set(default["sweep_points"]["origin"]) == {"shipped"}
    both = records.load_all_records(include_runs=True)
    assert set(both["sweep_points"]["origin"]) == {"shipped", "scratch"}
    before = figdata.sweep_points(shipped, "batch_size", "batch_size", ["worker_gb_s"])
    after = figdata.sweep_points(both, "batch_size", "batch_size", ["worker_gb_s"])
    assert before.equals(after)
    scratch = figdata.sweep_points(both, "batch_size", "batch_size", ["worker_gb_s"], origin="scratch")
    assert scratch["batch_size"].tolist() == [32.0] and int(scratch["n"].iloc[0]) == 1
    assert ("scratch", scratch_cpu := both["sweep_points"].query("origin == 'scratch'")["cpu"].iloc[0]) in \
        figdata.sweep_series(both, "batch_size") and scratch_cpu
