# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 Analysis: cost, scale simulation and every figure
#
# Lists every run (runs/) and shipped record (data/records/) in one table, costs the runs the way
# AWS bills them, validates the scale simulator against the published Step Functions runs, and
# draws every figure into `runs/analysis-<time>/figures/` (never over the tracked `figures/`:
# `cosmic figures` writes those, from the shipped records). Nothing is re-run. The figures come
# from the shipped records; `include_runs=True` adds the scratch runs as their own labelled series.

# %% tags=["parameters"]
output_dir: str = ""  # help: where figures go (empty: runs/analysis-<time>/figures)
include_runs: bool = False  # help: also draw the scratch runs in runs/ (their own labelled series)
memory_mb: int = 3008  # help: configured Lambda memory used to cost pipeline records that lack one
assumed_published_memory_mb: int = 10240  # help: configured memory ASSUMED for the seed project's runs
sim_seed: int = 0  # help: seed of the scale simulator
refit_simulator: bool = False  # help: refit the simulator on the published runs (~10 s) instead of loading the stored fit

# %%
import logging
from pathlib import Path

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import cost, plots, records, runs_index, simulate
from cosmic_utils.inference.measure import new_run_id

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
recs = records.load_all_records(include_runs=include_runs)
out = Path(output_dir) if output_dir else config.RUNS_DIR / new_run_id("analysis") / "figures"

# %% [markdown]
# ## Every run and record (`cosmic runs` prints the same table; filter it with pandas)
# `origin`: scratch (runs/) or shipped (data/records/); `admission`: what `cosmic records ship`
# would decide for a scratch run (the first rule it fails), or how a shipped record was admitted.

# %%
runs_df = runs_index.runs_table()
runs_df.drop(columns=["path"])

# %%
runs_df.groupby(["origin", "kind", "trained", "admission"]).size().to_frame("runs")

# %% [markdown]
# ## The seed project's table: published formulas vs what AWS would bill

# %%
t6 = recs["published_team6"]
repro = pd.DataFrame(cost.reproduce_published_table(t6.to_dict("records"), assumed_published_memory_mb))
repro[["section", "partition_mb", "lambdas", "cost_usd", "published_cost_usd", "billed_total_usd",
       "perf_efficiency_gb_s_per_usd", "billed_perf_efficiency_gb_s_per_usd"]]

# %% [markdown]
# ## Our runs, costed by configured memory x billed duration

# %%
runs = records.runs_table(recs["pipeline"], recs["pipeline_summary"], memory_mb=memory_mb)
runs if not runs.empty else "no pipeline records yet (run: cosmic run / make demo)"

# %% [markdown]
# ## Scale simulator against the published Step Functions runs (fit on a subset, held-out rows reported)

# %%
if refit_simulator:
    table, summary = simulate.validate(seed=sim_seed)
    val = pd.DataFrame(table)
else:
    val = recs["simulator_validation"]
    if val.empty:
        val = pd.DataFrame(simulate.validate(seed=sim_seed)[0])
val.groupby(["split", "source", "partition_mb"])["error_rel"].agg(
    median_abs=lambda e: e.abs().median(), rows="count")

# %%
print(f"median |error|: all {val['error_rel'].abs().median():.1%}, "
      f"held-out {val.loc[val['split'] == 'held_out', 'error_rel'].abs().median():.1%}")

# %% [markdown]
# ## Figures

# %%
figures = plots.draw_all_figures(recs)
written = plots.save_figures(figures, out_dir=out, close=False)
print("\n".join(str(p) for p in written if p.suffix == ".png"))

# %% [markdown]
# Every figure, inline (the same files as above; `cosmic figures` writes them without a notebook).

# %%
from IPython.display import Image, display

for png in (p for p in written if p.suffix == ".png"):
    display(Image(filename=str(png)))  # the saved file: shows under any backend (make sets MPLBACKEND=Agg)
