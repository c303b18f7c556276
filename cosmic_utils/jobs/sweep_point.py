"""One point of a Lambda sweep (notebook 03, run per grid point by ``cosmic sweep``): its inputs
staged where the backend reads them, and the verdict on its result.

Kept out of the notebook so every caller stages alike: the dataset prepared once per size,
partition size and seed, the model :func:`cosmic_utils.model.artifacts.find_model` finds, and on
``aws`` local inputs uploaded once (content-addressed), since Lambda reads S3.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils.cloud.upload import upload_dataset, upload_model
from cosmic_utils.data.dataset import ensure_dataset
from cosmic_utils.model.artifacts import find_model
from cosmic_utils.provenance import untrained_label

#: The columns of records.csv a sweep point shows.
RECORD_VIEW: tuple[str, ...] = ("partition_id", "status", "samples", "download_s", "load_s", "inference_s", "upload_s",
                                "duration_s", "billed_duration_ms", "peak_rss_mb", "cold_start", "worker_id")


def point_overview(summary: dict[str, Any]) -> pd.Series:
    """The headline numbers of a run's summary.json, labelled (throughput both ways, billing, cost, accuracy)."""
    return pd.Series({
        "partitions ok / all": f"{summary['partitions_ok']} / {summary['partitions']}",
        "end-to-end GB/s (data / execution wall clock)": summary["throughput"]["end_to_end_gb_s"],
        "per-worker GB/s (published: sum of data / own inference time)": summary["throughput"]["per_worker_gb_s"],
        "billed GB-s (configured memory x billed duration)": summary["billing"]["gb_seconds"],
        "cost USD (Lambda + Step Functions + S3)": (summary.get("cost") or {}).get("total_usd"),
        untrained_label(summary.get("model_info") or {}) + "sigma_NMAD": (summary.get("accuracy") or {}).get("sigma_nmad"),
    })


def point_slug(backend: str, batch_size: int, partition_mb: float, data_gb: float, memory_mb: int, engine: str,
               max_concurrency: int, world_size: int) -> str:
    """The run-folder name of a sweep point (its parameters, filesystem-safe)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{backend}-b{batch_size}-p{partition_mb:g}-d{data_gb:g}-m{memory_mb}-"
                                          f"{engine}-c{max_concurrency}-w{world_size}")


def stage_inputs(backend: str, data_gb: float, partition_mb: float, seed: int = 0, data_location: str = "",
                 model_dir: str = "", data_upload: str = "", model_upload: str = "",
                 allow_untrained: bool = False) -> tuple[str, str]:
    """``(data, model)`` of one point: the given ones, else the prepared dataset and found model; on aws a
    local one is uploaded to ``data_upload`` / ``model_upload`` (ValueError when missing). No trained model
    stops the point, unless ``allow_untrained`` makes an UNTRAINED stand-in (recorded as such)."""
    data = data_location or str(ensure_dataset(data_gb, partition_mb, seed))
    model = model_dir if model_dir.startswith("s3://") else str(find_model(model_dir or None, allow_untrained=allow_untrained)[0])
    if backend == "aws" and not data.startswith("s3://"):
        if not data_upload.startswith("s3://"):
            raise ValueError(f"backend aws: data {data!r} is local; set data_upload=s3://bucket/prefix or "
                             f"data_location=s3://")
        data = upload_dataset(data, f"{data_upload.rstrip('/')}/{Path(data).name}").uri
    if backend == "aws" and not model.startswith("s3://"):
        if not model_upload.startswith("s3://"):
            raise ValueError(f"backend aws: model {model!r} is local; set model_upload=s3://bucket/prefix or "
                             f"model_dir=s3://")
        model = upload_model(model, model_upload).uri
    return data, model


def check_point(status: str, summary: dict[str, Any], name: str) -> str:
    """The one-line verdict of a good point; a failed partition prints its reason and fails the point with
    a ``RuntimeError`` that stops the notebook (papermill, ``cosmic sweep`` exit 3 and the figures see it)."""
    failed = summary.get("failed") or []
    for item in failed:
        print(f"FAILED {item['partition_id']}: {item['error']}")
    if failed or status != "SUCCEEDED":
        raise RuntimeError(f"sweep point {name}: execution {status}, {len(failed)} of "
                           f"{summary.get('partitions')} partitions failed (listed above)")
    return f"sweep point ok: {summary['partitions_ok']} of {summary['partitions']} partitions"
