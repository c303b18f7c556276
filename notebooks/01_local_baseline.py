# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 Local baseline: engines x batch size x data size on this CPU
#
# Streams rendered SDSS galaxies (`.cpart` partitions) through each inference engine and writes
# one run record per (engine, batch size, data size) to `runs/local/<run-id>/records.csv`
# (columns in docs/architecture.md). The published loop (`torch.load` of a `.pt` TensorDataset +
# `DataLoader` + eager fp32 model) runs on the same data as the in-run baseline.
#
# Two sweeps: batch size (on a `batch_sweep_gb` dataset) and data size (`data_gb_min` up to
# `data_gb_max`, batch 256). Defaults are the smallest that mean something (every batch size runs
# at least 4 full batches; about a minute on 2 cores); for the report use e.g.
# `papermill ... -p batch_sweep_gb 0.1 -p data_gb_max 1.0 -p batch_sizes "[32,64,128,256,512]"`.
# The model is notebook 00's `models/default`; without it the notebook stops and says so, unless
# `allow_untrained=True` asks for an UNTRAINED stand-in (speeds only, labelled in every record).
# Throughput here is end to end for the stream (reading partitions included, model load excluded
# and recorded separately as `model_load_s`).

# %% tags=["parameters"]
batch_sizes: list = [32, 256]  # help: batch sizes of the batch-size sweep
batch_sweep_gb: float = 0.022  # help: dataset size (GB, 1e9 bytes) of the batch-size sweep (report: 0.1)
data_gb_min: float = 0.022  # help: smallest dataset of the data-size sweep (GB; report: 0.1)
data_gb_max: float = 0.044  # help: largest dataset of the data-size sweep (GB; report: 1.0 or more)
data_sweep_batch_size: int = 256  # help: batch size of the data-size sweep
engines: list = ["torch", "onnx"]  # help: engines to run (see cosmic_utils.inference.ENGINE_NAMES)
include_published_loop: bool = True  # help: also run the published torch.load + DataLoader loop
partition_mb: float = 25.0  # help: partition size in 2**20-byte MB (25 MB to 1,278 samples)
threads: int = 0  # help: engine intra-op threads (0: all CPUs)
model_dir: str = ""  # help: model artifact folder (empty: models/default, written by notebook 00)
allow_untrained: bool = False  # help: without a trained model, use an UNTRAINED stand-in (speeds only, labelled)
output_dir: str = ""  # help: folder for records.csv and figures/ (empty: runs/local/<run-id>)
seed: int = 0  # help: seed of the rendered datasets

# %%
import logging
from pathlib import Path

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis import figs_local
from cosmic_utils.data.dataset import ensure_dataset
from cosmic_utils.inference.measure import check_batches, machine_info, new_run_id, write_records
from cosmic_utils.inference.published_loop import published_batch_sweep
from cosmic_utils.inference.streaming import run_local
from cosmic_utils.model.artifacts import find_model
from cosmic_utils.provenance import describe_model

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("cosmic_utils").setLevel(logging.INFO)
run_id = new_run_id("local")
out = Path(output_dir) if output_dir else config.RUNS_DIR / "local" / run_id
out.mkdir(parents=True, exist_ok=True)
n_threads = threads or None
check_batches(config.samples_for_gb(min(batch_sweep_gb, data_gb_min)), [*batch_sizes, data_sweep_batch_size])
model, trained = find_model(model_dir or None, with_onnx=any(e.startswith("onnx") for e in engines),
                            allow_untrained=allow_untrained)
print(f"run {run_id} -> {out}\nmodel {describe_model(model)}")
pd.Series(machine_info()).to_frame("this machine")

# %% [markdown]
# ## Batch-size sweep (every engine, plus the published loop on the same data)

# %%
sweep_data = ensure_dataset(batch_sweep_gb, partition_mb, seed)
rows = [run_local(engine, sweep_data, batch_size=bs, model_dir=model, threads=n_threads, run_id=run_id, write=False,
                  extra={"sweep": "batch_size", "sweep_gb": batch_sweep_gb, "trained_model": trained})
        for bs in batch_sizes for engine in engines]
if include_published_loop:
    rows += published_batch_sweep(model, sweep_data, batch_sizes, out, run_id, threads=n_threads,
                                  extra={"sweep": "batch_size", "sweep_gb": batch_sweep_gb, "trained_model": trained})
batch_df = pd.DataFrame(rows)
batch_df.pivot_table(index="batch_size", columns="engine", values="samples_per_s").round(1)

# %% [markdown]
# ## Data-size sweep (batch `data_sweep_batch_size`)

# %%
sizes = [data_gb_min * 2**k for k in range(64) if data_gb_min * 2**k < data_gb_max] + [max(data_gb_min, data_gb_max)]
size_rows = [run_local(engine, ensure_dataset(gb, partition_mb, seed), batch_size=data_sweep_batch_size,
                       model_dir=model, threads=n_threads, run_id=run_id, write=False,
                       extra={"sweep": "data_size", "sweep_gb": gb, "trained_model": trained})
             for gb in sizes for engine in engines]
size_df = pd.DataFrame(size_rows)
size_df[["engine", "data_gb", "samples", "wall_s", "samples_per_s", "gb_per_s", "first_batch_s", "peak_rss_mb"]].round(4)

# %%
records_path = write_records(rows + size_rows, run_dir=out)
print(f"{len(rows) + len(size_rows)} records -> {records_path}")

# %%
fig = figs_local.fig_local_baseline(batch_df, size_df, batch_sweep_gb)
(out / "figures").mkdir(exist_ok=True)
fig.savefig(out / "figures" / "local_baseline.png", dpi=120)
fig
