# ---
# jupyter:
#   jupytext:
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
# # 03 Lambda sweep point: one pipeline run (Step Functions + Lambda) at one configuration
#
# One combination of a sweep (`cosmic sweep sweeps/*.yaml` runs this notebook once per grid point
# with papermill): prepare the dataset (cached), find the model, run the state machine, leave
# `records.csv`, `summary.json`, `request.json` in `output_dir`. On `backend="local"` the ASL
# runs in moto and the handlers in child processes on this machine (docs/pipeline.md): timings
# describe this machine, not Lambda; `backend="aws"` runs in your account (`cosmic deploy` first).

# %% tags=["parameters"]
backend: str = "local"  # help: "local" (embedded moto, default) or "aws" (your account; needs results)
batch_size: int = 32  # help: samples per engine call inside each Lambda (at least 2 full batches per partition)
partition_mb: float = 2.0  # help: partition size in published MB (2**20 bytes; 102 samples at 2 MB, 1,278 at 25 MB)
data_gb: float = 0.01  # help: dataset size in GB (1e9 bytes, label not counted; notebook 00's dataset)
memory_mb: int = 2048  # help: configured memory of the Inference function (records and cost)
engine: str = "onnx"  # help: inference engine inside Lambda ("onnx" or "onnx-int8")
max_concurrency: int = 2  # help: Distributed Map MaxConcurrency
world_size: int = 0  # help: spread partitions over this many invocations (0: one partition per invocation)
output_dir: str = ""  # help: run folder (empty: runs/lambda_sweep/<parameters slug>)
model_dir: str = ""  # help: model artifact folder or s3:// (empty: models/default, written by notebook 00)
allow_untrained: bool = False  # help: without a trained model, use an UNTRAINED stand-in (speeds only, labelled)
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
from cosmic_utils.cloud.summary_view import print_summary
from cosmic_utils.inference.measure import check_batches
from cosmic_utils.jobs.sweep_point import RECORD_VIEW, check_point, point_overview, point_slug, stage_inputs
from cosmic_utils.provenance import describe_model
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
# The model is notebook 00's `models/default`; without it the notebook stops and says so
# (`allow_untrained=True`: an UNTRAINED stand-in, labelled so everywhere). On `aws`, local data
# and model are uploaded once (Lambda reads S3).

# %%
check_batches(config.samples_per_partition(partition_mb), [batch_size], min_batches=2, what="one partition")
data, model = stage_inputs(backend, data_gb, partition_mb, seed, data_location=data_location, model_dir=model_dir,
                           data_upload=data_upload, model_upload=model_upload, allow_untrained=allow_untrained)
print("data:", data, "\nmodel:", describe_model(model) if not model.startswith("s3://") else model)

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
# ## Did every partition succeed? (a failed partition fails the point)

# %%
print(check_point(result.status, result.summary, run_dir.name))

# %% [markdown]
# ## Per-partition records and the headline numbers (throughput end to end and per worker)

# %%
pd.read_csv(run_dir / "records.csv")[list(RECORD_VIEW)]

# %%
point_overview(json.loads((run_dir / "summary.json").read_text()))
