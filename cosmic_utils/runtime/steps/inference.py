"""Inference step (lambda/inference/handler.py): run the cached, gated ONNX engine over one Map
item's partitions, write predictions and one record per partition (docs/pipeline.md)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.runtime import units
from cosmic_utils.runtime.artifact import ArtifactError, ModelArtifact, parse_meta
from cosmic_utils.runtime.gating import create_engine_with_fallback, engine_fields
from cosmic_utils.runtime.items import RunLayout
from cosmic_utils.runtime.memory import peak_rss_mb
from cosmic_utils.runtime.metrics import OUTLIER_THRESHOLDS
from cosmic_utils.runtime.onnx_engine import create_onnx_engine
from cosmic_utils.runtime.partition import PartitionError, read_partition
from cosmic_utils.runtime.request import RunRequest, parse_request
from cosmic_utils.runtime.steps.common import (
    HIST_BIN,
    HIST_LIMIT,
    DataError,
    ModelError,
    _infra,
    _record_base,
)
from cosmic_utils.runtime.storage import MissingObjectError, NotRegularFileError, StorageError, open_storage

log = logging.getLogger(__name__)

_ENGINES: dict[tuple[str, str, str, int | None], Any] = {}
_INVOCATIONS = 0
#: Model identity per location: (cheap fingerprint, sha256 of artifact.json). See :func:`model_identity`.
_MODEL_IDS: dict[str, tuple[Any, str]] = {}


def _local_fingerprint(folder: Path) -> tuple[Any, ...]:
    """inode, size and mtime of every regular file of an artifact folder (changed by any copy or rename)."""
    with os.scandir(folder) as it:
        stats = sorted((e.name, e.stat()) for e in it if e.is_file())
    return tuple((name, st.st_ino, st.st_size, st.st_mtime_ns) for name, st in stats)


def model_identity(model: str) -> tuple[str, Any]:
    """``(sha256 of artifact.json, fingerprint)``; re-hashed only when the fingerprint (S3 ETag, else
    the folder's file stats) changed."""
    s3 = model.startswith("s3://")
    if s3:
        store = open_storage(model)
        head = store.client.head_object(Bucket=store.bucket, Key=store._full("artifact.json"))
        fingerprint: Any = str(head.get("ETag") or "")
    else:
        fingerprint = _local_fingerprint(Path(model))
    cached = _MODEL_IDS.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1], fingerprint
    raw = open_storage(model).read_bytes("artifact.json") if s3 else (Path(model) / "artifact.json").read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    _MODEL_IDS[model] = (fingerprint, sha)
    return sha, fingerprint


def _model_dir(model: str, sha256: str | None = None) -> Path:
    """A local folder holding the artifact (an S3 one downloaded to /tmp once per artifact.json sha256)."""
    if not model.startswith("s3://"):
        return Path(model)
    tag = hashlib.sha256(f"{model}\n{sha256 or ''}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"cosmic-model-{tag}"
    done = target / ".complete"
    if done.exists():
        return target
    store = open_storage(model)
    target.mkdir(parents=True, exist_ok=True)
    meta = parse_meta(store.read_text("artifact.json"), model)
    (target / "artifact.json").write_text(json.dumps(meta))
    files = meta.get("files") or {}
    main = str((files.get("onnx") or {}).get("path") or "model.onnx")
    optional = sorted({str(v.get("path")) for v in files.values() if isinstance(v, Mapping) and v.get("path")
                       and str(v.get("path")).endswith((".onnx", ".npz"))} - {main})
    store.download_file(main, target / main)  # model.pt stays on S3: Lambda runs ONNX only
    for name in optional:  # the int8 graph and the gate's calibration.npz, where uploaded
        try:
            store.download_file(name, target / name)
        except MissingObjectError:  # verify_model refuses an engine that needs it
            log.info("model %s: optional file %s not uploaded; engines that need it are refused", model, name)
    done.write_text("ok")
    return target


def verify_model(folder: Path, engine: str, location: str | None = None) -> None:
    """Check the sha256 of the files the engine runs (never ``model.pt``), else :class:`ModelError`."""
    try:
        art = ModelArtifact.load(folder, verify=False)
        extra = ["onnx_int8", "calibration"] if engine == "onnx-int8" else []
        art.verify(["onnx"] + [role for role in extra if role in art.files])
    except ArtifactError as exc:
        where = f" ({location})" if location and location != str(folder) else ""
        raise ModelError(f"{exc}{where}") from exc


def get_engine(request: RunRequest) -> tuple[Any, float, bool]:
    """``(engine, load_seconds, loaded_now)``: created and gated once per warm container and model
    identity; a refused reduced engine falls back to fp32."""
    t0 = time.perf_counter()
    try:
        sha, _ = model_identity(request.model)
    except FileNotFoundError as exc:  # no artifact.json there: verify_model names the problem
        if not request.model.startswith("s3://"):
            verify_model(Path(request.model), request.engine, request.model)
        raise _infra(f"reading model {request.model}", exc) from exc
    except Exception as exc:  # S3 unreachable / object missing: as a failed download always was
        raise _infra(f"downloading model {request.model} (HeadObject artifact.json)", exc) from exc
    key = (request.model, sha, request.engine, request.threads)
    if key in _ENGINES:
        return _ENGINES[key], 0.0, False
    try:
        folder = _model_dir(request.model, sha)
    except Exception as exc:
        raise _infra(f"downloading model {request.model}", exc) from exc
    verify_model(folder, request.engine, request.model)
    try:
        engine = create_engine_with_fallback(request.engine, folder, threads=request.threads, create=create_onnx_engine)
    except Exception as exc:
        raise _infra(f"loading model {request.model} with engine {request.engine}", exc) from exc
    engine.model_sha256 = sha
    _ENGINES.clear()  # one model per container: a new request model (or a replaced one) replaces the old
    _ENGINES[key] = engine
    return engine, time.perf_counter() - t0, True


def accuracy_sums(z_pred: Any, z_true: Any) -> dict[str, Any]:
    """Mergeable accuracy state of the labelled rows: sums, outlier counts, a sparse dz histogram."""
    zp, zt = np.asarray(z_pred, dtype=np.float64), np.asarray(z_true, dtype=np.float64)
    ok = np.isfinite(zt) & np.isfinite(zp)
    zp, zt = zp[ok], zt[ok]
    if zp.size == 0:
        return {"n": 0}
    dz = zp - zt
    x = dz / (1.0 + zt)
    bins = np.rint(np.clip(x, -HIST_LIMIT, HIST_LIMIT) / HIST_BIN).astype(np.int64)
    idx, counts = np.unique(bins, return_counts=True)
    return {
        "n": int(zp.size), "sum_dz": float(dz.sum()), "sum_abs_dz": float(np.abs(dz).sum()),
        "sum_dz2": float((dz * dz).sum()), "sum_z": float(zt.sum()), "sum_z2": float((zt * zt).sum()),
        "sum_x": float(x.sum()), "outliers_005": int((np.abs(x) > OUTLIER_THRESHOLDS[0]).sum()),
        "outliers_015": int((np.abs(x) > OUTLIER_THRESHOLDS[1]).sum()),
        "hist": {str(int(i)): int(c) for i, c in zip(idx, counts, strict=True)},
    }


def _predictions_bytes(partition_id: str, z_pred: Any, z_true: Any, fmt: str) -> bytes:
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, z_pred=np.asarray(z_pred, np.float32), z_true=np.asarray(z_true, np.float32))
        return buf.getvalue()
    lines = ["partition_id,row,z_pred,z_true"]
    lines.extend(
        f"{partition_id},{i},{p:.6f},{'' if not math.isfinite(t) else f'{t:.6f}'}"
        for i, (p, t) in enumerate(zip(np.asarray(z_pred).tolist(), np.asarray(z_true).tolist(), strict=True))
    )
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Fetched:
    """One partition read and decoded, or the error to raise on its own turn (not the current one's)."""

    entry: Mapping[str, Any]
    started: float  #: ``time.perf_counter()`` when its download began (the record's clock starts here)
    part: Any = None
    file_bytes: int = 0
    download_s: float = 0.0
    decode_s: float = 0.0
    error: BaseException | None = None
    prefetched: bool = False


def fetch_partition(request: RunRequest, entry: Mapping[str, Any], data: Any, prefetched: bool = False) -> Fetched:
    """Download one partition into one buffer and decode it; any error is kept in ``error``."""
    out = Fetched(entry=entry, started=time.perf_counter(), prefetched=prefetched)
    expected = {k: entry.get(k) for k in ("samples", "bytes", "sha256") if entry.get(k) is not None} or None
    try:
        t0 = time.perf_counter()
        try:
            blob = data.read_buffer(entry["key"])
        except NotRegularFileError as exc:  # a FIFO / device / directory: never read, that partition fails
            raise DataError(f"partition {entry['key']}: {exc}") from exc
        except MissingObjectError as exc:
            raise DataError(f"partition {entry['key']}: missing from {request.data} ({exc})") from exc
        except StorageError as exc:
            raise _infra(f"reading partition {entry['key']}", exc) from exc
        out.download_s = time.perf_counter() - t0
        out.file_bytes = len(blob)
        t0 = time.perf_counter()
        try:
            out.part = read_partition(blob, name=entry["key"], expected=expected)
        except PartitionError as exc:
            raise DataError(str(exc)) from exc
        out.decode_s = time.perf_counter() - t0
    except BaseException as exc:  # noqa: BLE001  kept for the partition's own turn (see docstring)
        out.error = exc
    return out


def process_partition(request: RunRequest, entry: Mapping[str, Any], worker_id: int, context: Any, cold: bool,
                      results: Any, execution: Mapping[str, Any] | None, fetched: Fetched,
                      fetch_wait_s: float) -> dict[str, Any]:
    """Run one fetched partition, write its predictions and record (returned); infrastructure problems
    raise InfrastructureError. ``execution``: Init's ``{"id", "attempt"}``."""
    layout = RunLayout(request.run_id)
    rec = _record_base(request, entry, worker_id, context, cold)
    execution = execution or {}
    rec.update(execution_id=execution.get("id"), attempt=execution.get("attempt"), model_sha256=None)
    t_start = fetched.started
    rec.update(download_s=fetched.download_s, decode_s=fetched.decode_s, load_s=fetched.decode_s,
               preprocess_s=0.0, fetch_wait_s=fetch_wait_s, prefetched=fetched.prefetched,
               file_bytes=fetched.file_bytes)
    try:
        if fetched.error is not None:
            raise fetched.error
        part = fetched.part
        engine, model_load_s, _ = get_engine(request)  # ModelError (a DataError) -> failure record
        rec["model_load_s"] = model_load_s
        rec["model_sha256"] = getattr(engine, "model_sha256", None)
        rec.update(engine_fields(engine, request.engine))
        t0 = time.perf_counter()
        preds = []
        try:
            for start in range(0, part.samples, request.batch_size):
                stop = min(start + request.batch_size, part.samples)
                preds.append(np.asarray(engine.predict(part.image[start:stop], part.magnitude[start:stop]),
                                        dtype=np.float32).reshape(-1))
        except MemoryError:
            raise
        except Exception as exc:  # the engine refused this partition's arrays: record why
            raise DataError(f"partition {entry['key']}: inference failed: {type(exc).__name__}: {exc}") from exc
        z_pred = np.concatenate(preds) if preds else np.zeros(0, np.float32)
        rec["inference_s"] = time.perf_counter() - t0
        if z_pred.shape[0] != part.samples:
            raise DataError(f"partition {entry['key']}: engine returned {z_pred.shape[0]} predictions "
                            f"for {part.samples} samples")
        bad = int((~np.isfinite(z_pred)).sum())
        if bad:
            rows = np.flatnonzero(~np.isfinite(z_pred))[:5].tolist()
            rec["nonfinite_predictions"] = bad
            raise DataError(f"partition {entry['key']}: {bad} of {part.samples} predictions are not finite "
                            f"(NaN/inf), rows {rows}{' ...' if bad > 5 else ''}; predictions not written")
        rec["samples"] = part.samples
        rec["data_bytes"] = part.samples * units.SAMPLE_BYTES
        rec["accuracy"] = accuracy_sums(z_pred, part.redshift)
        t0 = time.perf_counter()
        body = _predictions_bytes(entry["partition_id"], z_pred, part.redshift, request.predictions_format)
        predictions_key = layout.predictions(entry["partition_id"], request.predictions_format)
        try:
            results.write_bytes(predictions_key, body)
        except Exception as exc:
            err = _infra(f"writing predictions of {entry['key']}", exc)
            # best effort: a failure record with the reason (a retry that succeeds overwrites it)
            rec.update(status="failed", error=str(err), samples=0, data_bytes=0,
                       duration_s=time.perf_counter() - t_start, peak_rss_mb=peak_rss_mb())
            rec.pop("accuracy", None)
            try:
                results.write_text(layout.record(entry["partition_id"]), json.dumps(rec))
            except Exception:  # the results store is down: "no record" will say so
                pass
            raise err from exc
        # what "ok" points to: a partition counts only when the file found matches
        rec.update(upload_s=time.perf_counter() - t0, predictions_file=predictions_key.rsplit("/", 1)[-1],
                   predictions_bytes=len(body), predictions_sha256=hashlib.sha256(body).hexdigest())
    except DataError as exc:
        rec.update(status="failed", error=str(exc), samples=0, data_bytes=0)
        rec.pop("accuracy", None)
        log.warning("partition %s failed: %s", entry["key"], exc)
    rec["duration_s"] = time.perf_counter() - t_start
    rec["peak_rss_mb"] = peak_rss_mb()
    try:
        results.write_text(layout.record(entry["partition_id"]), json.dumps(rec))
    except Exception as exc:
        raise _infra(f"writing the record of {entry['key']}", exc) from exc
    return rec


def inference_step(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """One Map item ``{"item": {"worker_id", "partitions"}, "request"}``; returns ``{ok, failed}`` only."""
    global _INVOCATIONS
    cold = _INVOCATIONS == 0
    _INVOCATIONS += 1
    request = parse_request(event["request"])
    item = event["item"]
    entries = item.get("partitions") or []
    if not entries:
        raise DataError("Map item has no partitions")
    # ties the request id to its partitions: `cosmic logs` finds a crashed partition's error by it
    log.info("cosmic partitions: %s run %s", ",".join(str(e.get("partition_id")) for e in entries), request.run_id)
    data = open_storage(request.data)
    results = open_storage(request.results)
    ok = failed = 0
    # the next partition is fetched on one thread while the current one runs (docs/pipeline.md "Prefetch")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cosmic-prefetch")
    pending: Future[Fetched] | None = None
    try:
        for i, entry in enumerate(entries):
            t0 = time.perf_counter()
            current = fetch_partition(request, entry, data) if pending is None else pending.result()
            wait_s = 0.0 if pending is None else time.perf_counter() - t0
            pending = None
            if i + 1 < len(entries):
                pending = pool.submit(fetch_partition, request, entries[i + 1], data, True)
            rec = process_partition(request, entry, int(item.get("worker_id", 0)), context,
                                    cold and i == 0, results, execution=event.get("execution"),
                                    fetched=current, fetch_wait_s=wait_s)
            del current  # its arrays go before the next partition is taken: two partitions at most
            ok += rec["status"] == "ok"
            failed += rec["status"] != "ok"
    finally:  # a fetch not taken is dropped: the state machine retries its partition
        pool.shutdown(wait=True, cancel_futures=True)
    return {"ok": ok, "failed": failed}
