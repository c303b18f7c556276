# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# # 02 GPU baseline: the same model on CUDA (fp32, bf16 and fp16 autocast, large batches)
#
# The GPU counterpart of notebook 01: rendered galaxies from `.cpart` partitions stream through
# the `torch-cuda` engines (`cosmic_utils/inference/cuda_engine.py`: the artifact's
# preprocessing and the network on the device, batches staged in pinned host memory and
# uploaded on a side stream while the previous batch computes; bf16 / fp16 under autocast).
# One record per (engine, batch size) goes to `runs/local/<run-id>/records.csv` with
# `kind = local_gpu` and the device name, through the same `run_local` as notebook 01.
#
# **Without a CUDA device this notebook says so and writes no record** (papermill still
# succeeds), so no GPU row exists in the records of a CPU-only machine.
# `scripts/gpu_baseline.sh` runs it at the report parameters together with `cosmic bench`.

# %% tags=["parameters"]
batch_sizes: list = [256, 1024]  # help: batch sizes (report: 256, 1024, 4096, 16384)
data_gb: float = 0.1  # help: dataset size in GB (1e9 bytes; at least 4 full batches of the largest; report: 1.0)
engines: list = ["torch-cuda", "torch-cuda-bf16", "torch-cuda-fp16"]  # help: CUDA engines to run
repeats: int = 2  # help: passes per point; the fastest counts
model_dir: str = ""  # help: model artifact folder (empty: models/default, written by notebook 00)
allow_untrained: bool = False  # help: without a trained model, use an UNTRAINED stand-in (speeds only, labelled)
output_dir: str = ""  # help: folder for records.csv (empty: runs/local/<run-id>)
partition_mb: float = 25.0  # help: partition size of the dataset (2**20-byte MB)
seed: int = 0  # help: seed of the rendered dataset

# %%
import logging
from operator import itemgetter
from pathlib import Path

import pandas as pd

from cosmic_utils import config
from cosmic_utils.data.dataset import ensure_dataset
from cosmic_utils.inference.engines import cuda_available
from cosmic_utils.inference.measure import new_run_id, write_records
from cosmic_utils.inference.streaming import run_local
from cosmic_utils.model.artifacts import find_model

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("cosmic_utils").setLevel(logging.INFO)
HAS_GPU = cuda_available()
print("CUDA device present" if HAS_GPU else
      "No CUDA device on this machine (torch.cuda.is_available() is False): the GPU baseline is skipped "
      "and no local_gpu record is written. Run this notebook on a GPU machine (scripts/gpu_baseline.sh).")

# %% [markdown]
# ## Model and data
# Notebook 00's trained model (an UNTRAINED stand-in only with `allow_untrained=True`); the
# rendered dataset of `data_gb` GB is made once and reused.

# %%
if HAS_GPU:
    run_id = new_run_id("gpu")
    out = Path(output_dir) if output_dir else config.RUNS_DIR / "local" / run_id
    model, trained = find_model(model_dir or None, with_onnx=False, allow_untrained=allow_untrained)
    data = ensure_dataset(data_gb, partition_mb, seed)
    print(f"run {run_id} -> {out}\nmodel {model} ({'trained' if trained else 'UNTRAINED stand-in: speeds only'})")

# %% [markdown]
# ## Engines x batch sizes
# Each point runs `repeats` times (engine created and data streamed each time; the model load
# is recorded separately as `model_load_s`); the fastest pass is kept.

# %%
if HAS_GPU:
    rows = [min((run_local(e, data, batch_size=bs, model_dir=model, run_id=run_id, write=False,
                           extra={"trained_model": trained}) for _ in range(max(1, repeats))), key=itemgetter("wall_s"))
            for bs in batch_sizes for e in engines]
    print(f"{len(rows)} records -> {write_records(rows, run_dir=out)}")
    table = pd.DataFrame(rows)[["engine", "batch_size", "samples_per_s", "gb_per_s", "batch_p50_ms", "device"]]
    print(table.round(3).to_string(index=False))
