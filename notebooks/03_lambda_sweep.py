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
# # 03 Lambda sweep point: one pipeline run (Step Functions + Lambda) at one configuration
#
# One combination of a sweep (`cosmic sweep sweeps/*.yaml` runs this notebook once per grid point
# with papermill): prepare the dataset (cached), make sure a model artifact exists, run the state
# machine on the chosen backend, and leave `records.csv`, `summary.json` and `request.json` in
# `output_dir`. On `backend="local"` the same ASL runs in moto's interpreter and the handlers run in
# child processes on this machine (docs/pipeline.md), so its timings describe this machine, not
# Lambda; `backend="aws"` runs in your account (deploy first: `cosmic deploy`).
# Throughput is labelled: end-to-end (data / execution wall clock) or published per-worker.

# %% tags=["parameters"]
backend: str = "local"  # help: "local" (embedded moto, default) or "aws" (your account; needs results)
batch_size: int = 64  # help: samples per engine call inside each Lambda
partition_mb: float = 0.5  # help: partition size in published MB (2**20 bytes; 25 to 1,278 samples)
data_gb: float = 0.002  # help: dataset size in GB (1e9 bytes, label not counted)
memory_mb: int = 2048  # help: configured memory of the Inference function (records and cost)
engine: str = "onnx"  # help: inference engine inside Lambda ("onnx" or "onnx-int8")
max_concurrency: int = 2  # help: Distributed Map MaxConcurrency
world_size: int = 0  # help: spread partitions over this many invocations (0: one partition per invocation)
output_dir: str = ""  # help: run folder (empty: runs/lambda_sweep/<parameters slug>)
model_dir: str = ""  # help: model artifact folder or s3:// (empty: the project's default model)
results: str = ""  # help: s3://bucket/prefix for items/records (required for aws; empty: a moto bucket locally)
data_location: str = ""  # help: dataset folder or s3:// (empty: prepare under data/generated)
seed: int = 0  # help: dataset seed
data_upload: str = ""  # help: aws: s3://bucket/prefix where a local dataset is uploaded (once per size, partition size, seed)
model_upload: str = ""  # help: aws: s3://bucket/prefix where a local model artifact is uploaded (under its sha256)
max_usd: float = 0.0  # help: refuse the run when its projected cost is above this many USD (0: no budget)

# %%
import json
import logging
import re
from pathlib import Path

import pandas as pd

from cosmic_utils import config
from cosmic_utils.analysis.projection import check_budget, project_run
from cosmic_utils.cloud import runner
from cosmic_utils.cloud.local import LOCAL_RESULTS_URI
from cosmic_utils.commands.run import print_summary
from cosmic_utils.jobs.sweep_point import RECORD_VIEW, check_point, point_overview, point_slug, stage_inputs
from cosmic_utils.runtime.request import parse_request

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
if backend == "aws" and not results.startswith("s3://"):  # never a bucket invented in the user's account
    raise ValueError(f"backend aws: parameter results={results!r} must be s3://bucket/prefix (your results bucket)")
slug = point_slug(backend, batch_size, partition_mb, data_gb, memory_mb, engine, max_concurrency, world_size)
run_dir = Path(output_dir) if output_dir else config.RUNS_DIR / "lambda_sweep" / slug
run_dir.mkdir(parents=True, exist_ok=True)
print("run folder:", run_dir)

# %% [markdown]
# ## Data (prepared once per size and seed, then reused) and the model artifact
#
# No trained model yet (`make demo` trains one): an untrained artifact of the same network gives
# valid timings and costs, but its accuracy is meaningless, and is labelled so. On `aws`, local data
# and model are uploaded once (Lambda reads S3).

# %%
data, model = stage_inputs(backend, data_gb, partition_mb, seed, data_location=data_location, model_dir=model_dir,
                           data_upload=data_upload, model_upload=model_upload)
print("data:", data, "| model:", model)

# %% [markdown]
# ## Projected cost and wall clock (before anything starts; `max_usd` refuses a run above it)

# %%
request = parse_request({
    "run_id": re.sub(r"[^A-Za-z0-9._-]", "-", run_dir.name)[:64].lstrip("-._") or "sweep",
    "data": data, "model": model,
    "results": results or LOCAL_RESULTS_URI,
    "batch_size": batch_size, "engine": engine, "max_concurrency": max_concurrency,
    "memory_mb": memory_mb, "world_size": world_size or None, "overwrite": True,
    "tags": {"partition_mb": f"{partition_mb:g}", "data_gb": f"{data_gb:g}", "notebook": "03_lambda_sweep"},
})
projection = project_run(request)
print(projection.one_line())
check_budget(projection, max_usd or None)

# %% [markdown]
# ## Run the state machine

# %%
result = runner.run_pipeline(request, backend=backend, run_dir=run_dir, progress=False)
print_summary(result.summary)

# %% [markdown]
# ## Did every partition succeed?
#
# A sweep point with a failed partition is a failed point: its throughput and cost would describe
# part of the data as if it were all of it (`sweep.run_failures` reads the same summary).

# %%
print(check_point(result.status, result.summary, run_dir.name))

# %% [markdown]
# ## Per-partition records (one row per partition) and the run's figures

# %%
pd.read_csv(run_dir / "records.csv")[list(RECORD_VIEW)]

# %%
point_overview(json.loads((run_dir / "summary.json").read_text()))
