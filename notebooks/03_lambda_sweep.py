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
#
# Throughput is reported two ways, labelled: end-to-end (data / wall clock of the execution) and
# the published per-worker figure (sum over invocations of their data / their own inference time).

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
from cosmic_utils.cloud import runner
from cosmic_utils.commands.run import print_summary
from cosmic_utils.data import dataset
from cosmic_utils.runtime.request import parse_request

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
slug = re.sub(r"[^A-Za-z0-9._-]", "-",
              f"{backend}-b{batch_size}-p{partition_mb:g}-d{data_gb:g}-m{memory_mb}-{engine}-c{max_concurrency}"
              f"-w{world_size}")
if backend == "aws" and not results.startswith("s3://"):  # never a bucket invented in the user's account
    raise ValueError(f"backend aws: parameter results={results!r} must be s3://bucket/prefix (your results bucket)")
run_dir = Path(output_dir) if output_dir else config.RUNS_DIR / "lambda_sweep" / slug
run_dir.mkdir(parents=True, exist_ok=True)
print("run folder:", run_dir)

# %% [markdown]
# ## Data (prepared once per size and seed, then reused) and the model artifact

# %%
if data_location:
    data = data_location
else:
    data_path = dataset.default_dataset_dir(data_gb, partition_mb, seed=seed)
    if not dataset.is_dataset(data_path):
        dataset.prepare_dataset(data_path, data_gb, partition_mb, seed=seed, progress=False)
    data = str(data_path)
model = model_dir or str(config.DEFAULT_MODEL_DIR)
if not model.startswith("s3://") and not (Path(model) / "artifact.json").exists():
    # No trained model yet (`make demo` trains one): an untrained artifact of the same network and
    # ONNX graph gives valid timings and costs, but its accuracy is meaningless, and is labelled so.
    from cosmic_utils.model.artifacts import create_untrained_artifact

    logging.warning("no model artifact at %s: using an UNTRAINED one (timings valid, accuracy meaningless)", model)
    model = str(config.MODELS_DIR / "untrained")
    if not (Path(model) / "artifact.json").exists():
        create_untrained_artifact(model, seed=0)
if backend == "aws" and not data.startswith("s3://"):  # Lambda reads S3: upload once, reused by later points
    from cosmic_utils.cloud.upload import upload_dataset

    if not data_upload.startswith("s3://"):
        raise ValueError(f"backend aws: data {data!r} is local; set data_upload=s3://bucket/prefix or data_location=s3://")
    data = upload_dataset(data, f"{data_upload.rstrip('/')}/{Path(data).name}").uri
if backend == "aws" and not model.startswith("s3://"):
    from cosmic_utils.cloud.upload import upload_model

    if not model_upload.startswith("s3://"):
        raise ValueError(f"backend aws: model {model!r} is local; set model_upload=s3://bucket/prefix or model_dir=s3://")
    model = upload_model(model, model_upload).uri
print("data:", data, "| model:", model)

# %% [markdown]
# ## Projected cost and wall clock (before anything starts; `max_usd` refuses a run above it)

# %%
from cosmic_utils.analysis.projection import check_budget, project_run
from cosmic_utils.cloud.local import LOCAL_RESULTS_URI

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
# part of the data as if it were all of it. Each failed partition is listed with its reason, and
# the notebook stops here with an error, so papermill, `cosmic sweep` (exit status 3) and the
# figures (which leave failed points out) all see it; `sweep.run_failures` reads the same summary.

# %%
failed = result.summary.get("failed") or []
for item in failed:
    print(f"FAILED {item['partition_id']}: {item['error']}")
if failed or result.status != "SUCCEEDED":
    raise RuntimeError(f"sweep point {run_dir.name}: execution {result.status}, {len(failed)} of "
                       f"{result.summary.get('partitions')} partitions failed (listed above)")
print(f"sweep point ok: {result.summary['partitions_ok']} of {result.summary['partitions']} partitions")

# %% [markdown]
# ## Per-partition records (one row per partition)

# %%
records = pd.read_csv(run_dir / "records.csv")
records[["partition_id", "status", "samples", "download_s", "load_s", "inference_s", "upload_s", "duration_s",
         "billed_duration_ms", "peak_rss_mb", "cold_start", "worker_id"]]

# %%
summary = json.loads((run_dir / "summary.json").read_text())
pd.Series({
    "partitions ok / all": f"{summary['partitions_ok']} / {summary['partitions']}",
    "end-to-end GB/s (data / execution wall clock)": summary["throughput"]["end_to_end_gb_s"],
    "per-worker GB/s (published: sum of data / own inference time)": summary["throughput"]["per_worker_gb_s"],
    "billed GB-s (configured memory x billed duration)": summary["billing"]["gb_seconds"],
    "cost USD (Lambda + Step Functions + S3)": (summary.get("cost") or {}).get("total_usd"),
    "sigma_NMAD": summary["accuracy"].get("sigma_nmad"),
})
