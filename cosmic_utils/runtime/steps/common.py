"""What the three steps share: failure classes, constants, small helpers; standard library only, so
every Lambda can import it. Data problems become failure records, infrastructure problems raise
:class:`InfrastructureError` (retried): docs/pipeline.md "Failure policy".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from cosmic_utils.runtime.cpu import cpu_probe
from cosmic_utils.runtime.request import RunRequest

log = logging.getLogger(__name__)

#: Written by the aws/local deploy code into every function's environment.
BACKEND_ENV = "COSMIC_BACKEND"
#: Summary format version (bump when keys change meaning).
SUMMARY_VERSION = 1
#: Bin width of the dz/(1+z) histogram that records carry, so Summarize can compute the
#: median-based sigma_NMAD of the whole run from bounded, mergeable per-partition state.
HIST_BIN = 1e-4
HIST_LIMIT = 0.5
NO_RECORD = "no record (handler crashed or timed out)"


class InfrastructureError(RuntimeError):
    """Storage or model infrastructure failed: raised for the state machine's Retry (it sees the class)."""


class DataError(ValueError):
    """One partition's data is unusable (becomes a failure record, never a retry)."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _infra(what: str, exc: BaseException) -> InfrastructureError:
    return InfrastructureError(f"{what}: {type(exc).__name__}: {exc}")


def _context_memory(context: Any, default: int) -> int:
    try:
        return int(getattr(context, "memory_limit_in_mb", default) or default)
    except (TypeError, ValueError):
        return default


class RunExistsError(DataError, FileExistsError):
    """The run id already holds results and the request is no overwrite or redrive: a data error for
    Init (no retry), a ``FileExistsError`` for the runner."""


class ModelError(DataError):
    """The model artifact is missing, corrupt or of an unsupported version (not transient: no retry)."""


def _record_base(request: RunRequest, entry: Mapping[str, Any], worker_id: int, context: Any,
                 cold: bool) -> dict[str, Any]:
    """The fields every partition record starts with, set to their not-yet-run values."""
    probe = cpu_probe()  # a Lambda's CPU is not chosen by the user: every record says which it got
    return {
        "run_id": request.run_id, "partition_id": entry["partition_id"], "key": entry["key"],
        "status": "ok", "error": "", "samples": 0, "data_bytes": 0, "file_bytes": 0,
        "download_s": 0.0, "load_s": 0.0, "inference_s": 0.0, "upload_s": 0.0, "duration_s": 0.0,
        "billed_duration_ms": None, "peak_rss_mb": 0.0,
        "memory_mb": _context_memory(context, request.memory_mb), "cold_start": cold,
        "engine": request.engine, "engine_requested": request.engine, "engine_fallback_reason": "",
        "cpu_model": probe["cpu_model"], "isa": probe["isa"], "cpu_type": probe["cpu_type"],
        "batch_size": request.batch_size, "backend": os.environ.get(BACKEND_ENV, "aws"),
        "worker_id": worker_id, "request_id": str(getattr(context, "aws_request_id", "") or ""),
        "model_load_s": 0.0, "started_at": _now_iso(),
    }
