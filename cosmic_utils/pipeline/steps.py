"""Init / Inference / Summarize: the logic behind the three Lambda handlers.

The handlers in ``lambda/*/handler.py`` only parse the event and call :func:`init_step`,
:func:`inference_step` and :func:`summarize_step`. The same functions run on AWS and on the
local backend (in child processes that moto's Lambda invocation is routed to), so both
backends share every line that decides what a run did.

Failure policy (so correctness never depends on Map failure semantics, which differ between
AWS and moto):

* a DATA problem of one partition (corrupt file, NaN, checksum or count mismatch, missing
  object) becomes a *failure record* written by the Inference handler, which then returns
  normally: the Map goes on and the run completes;
* an INFRASTRUCTURE problem (storage unreachable, access denied, model cannot load) raises
  :class:`InfrastructureError`, which the state machine retries with backoff;
* Summarize derives succeeded / failed from the partition list written by Init and the
  records it finds: a partition without a record failed with "no record (handler crashed or
  timed out)". Hence summary.json is identical in meaning on both backends.

Nothing here imports torch; numpy and the ONNX engine are imported lazily by Inference only.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import resource
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cosmic_utils import config
from cosmic_utils.pipeline.items import RunLayout, build_items, partition_id_for
from cosmic_utils.pipeline.request import RunRequest, parse_request

log = logging.getLogger(__name__)

#: Written by the aws/local deploy code into every function's environment.
BACKEND_ENV = "COSMIC_BACKEND"
#: Summary format version (bump when keys change meaning).
SUMMARY_VERSION = 1
#: Bin width of the dz/(1+z) histogram that records carry, so Summarize can compute the
#: median-based sigma_NMAD of the whole run from bounded, mergeable per-partition state.
HIST_BIN = 1e-4
HIST_LIMIT = 0.5
#: Outlier thresholds on |dz| = |z_pred - z_spec| / (1 + z_spec), as in cosmic_utils.metrics.
OUTLIER_CUTS = (0.05, 0.15)
NO_RECORD = "no record (handler crashed or timed out)"


class InfrastructureError(RuntimeError):
    """Storage or model infrastructure failed; raised so the state machine's Retry applies.

    On Lambda the error name the state machine sees is the class name, ``InfrastructureError``.
    """


class DataError(ValueError):
    """One partition's data is unusable (becomes a failure record, never a retry)."""


# ------------------------------------------------------------------ small helpers
def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (2**20 bytes).

    ``VmHWM`` from /proc/self/status where available: ``ru_maxrss`` would include the parent's peak
    when this process was started by fork + exec (the local backend's handler processes).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _storage(uri: str) -> Any:
    from cosmic_utils.storage import open_storage

    return open_storage(uri)


def _infra(what: str, exc: BaseException) -> InfrastructureError:
    return InfrastructureError(f"{what}: {type(exc).__name__}: {exc}")


def _context_memory(context: Any, default: int) -> int:
    try:
        return int(getattr(context, "memory_limit_in_mb", default) or default)
    except (TypeError, ValueError):
        return default


# ------------------------------------------------------------------ Init
def list_partitions(request: RunRequest, data: Any | None = None) -> list[dict[str, Any]]:
    """The partitions a run covers, as entries ``{partition_id, key, samples, bytes, sha256}``.

    Lists the data location with pagination (never stops at 1,000 keys) and, when the dataset
    has a ``manifest.json``, takes sizes and checksums from it: a manifest entry whose file is
    missing stays in the list (its worker writes a failure record), a file the manifest does not
    know is included without expectations. ``request.partitions`` selects keys explicitly;
    ``partition_limit`` keeps the first N in key order.
    """
    from cosmic_utils.manifest import MANIFEST_NAME, Manifest, ManifestError
    from cosmic_utils.storage import StorageError

    storage = data if data is not None else _storage(request.data)
    try:
        every = storage.list_keys()
        listed = [k for k in every if k.endswith(".cpart")]
        has_manifest = MANIFEST_NAME in every
    except StorageError as exc:
        raise _infra(f"listing {request.data}", exc) from exc
    expected: dict[str, dict[str, Any]] = {}
    if has_manifest:
        try:
            manifest = Manifest.read(storage)
        except ManifestError as exc:
            raise DataError(f"dataset {request.data}: {exc}") from exc
        for e in manifest.entries:
            expected[e.key] = {"samples": e.samples, "bytes": e.bytes, "sha256": e.sha256}
    keys = sorted(set(listed) | set(expected))
    if request.partitions is not None:
        unknown = sorted(set(request.partitions) - set(keys))
        if unknown:
            raise DataError(
                f"request names partitions that {request.data} does not hold: {unknown[:5]}"
                + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
        wanted = set(request.partitions)
        keys = [k for k in keys if k in wanted]
    if request.partition_limit is not None:
        keys = keys[: request.partition_limit]
    if not keys:
        raise DataError(f"no .cpart partitions found under {request.data}")
    by_id: dict[str, str] = {}
    out = []
    for key in keys:
        pid = partition_id_for(key)
        if pid in by_id:  # e.g. a/b.cpart and a__b.cpart: their records would overwrite each other
            raise DataError(f"dataset {request.data}: partitions {by_id[pid]!r} and {key!r} both have the "
                            f"partition id {pid!r}; rename one so every partition keeps its own record")
        by_id[pid] = key
        entry: dict[str, Any] = {"partition_id": pid, "key": key}
        entry.update(expected.get(key, {"samples": None, "bytes": None, "sha256": None}))
        out.append(entry)
    return out


class RunExistsError(DataError):
    """The run id already has results and the request is neither an overwrite nor a redrive."""


def check_run_id_free(request: RunRequest, results: Any) -> None:
    """Refuse a fresh run whose run id already has records or a summary under the results location.

    A redrive (``request.redrive``) re-runs listed partitions of that run on purpose and an
    ``overwrite`` replaces it; anything else would silently mix two runs' outputs.
    """
    if request.overwrite or request.redrive:
        return
    layout = RunLayout(request.run_id)
    try:
        taken = results.exists(layout.summary) or bool(results.list_keys(layout.records_prefix))
    except Exception as exc:
        raise _infra(f"checking run id {request.run_id} under {request.results}", exc) from exc
    if taken:
        raise RunExistsError(
            f"run id {request.run_id!r} already has results under {results.uri(layout.root)}: choose another "
            "run id, redrive it (cosmic run --redrive) or set overwrite (cosmic run --overwrite)")


def init_step(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Validate the request, list partitions, write the item list; return a small state.

    The event is the run request itself (the execution input). The output (well under the
    256 KiB state limit) carries the validated request and where the items are, for the Map's
    ItemReader (``items.bucket`` / ``items.key`` when results are on S3).
    """
    from cosmic_utils.pipeline.request import allow_list_from_env, check_allowed

    request = parse_request(event.get("request", event) if isinstance(event, Mapping) else event)
    check_allowed(request, *allow_list_from_env(os.environ))
    layout = RunLayout(request.run_id)
    results = _storage(request.results)
    check_run_id_free(request, results)
    entries = list_partitions(request)
    items = build_items(entries, request.world_size)
    try:
        # A redrive (explicit partitions) keeps the run's full partition list, so Summarize still
        # accounts for every partition of the run, not only the re-run ones.
        if request.partitions is None or not results.exists(layout.partitions):
            results.write_text(layout.partitions, json.dumps(
                [dict(e, worker_id=item["worker_id"]) for item in items for e in item["partitions"]]))
        results.write_text(layout.items, json.dumps(items))
    except Exception as exc:
        raise _infra(f"writing the item list to {request.results}", exc) from exc
    where: dict[str, Any] = {"uri": results.uri(layout.items)}
    if request.results.startswith("s3://"):
        from cosmic_utils.storage import parse_s3_uri

        bucket, key = parse_s3_uri(results.uri(layout.items))
        where.update(bucket=bucket, key=key)
    log.info("run %s: %d partitions in %d items", request.run_id, len(entries), len(items))
    # The explicit partition list (a redrive) is in items.json now; dropping it keeps the state,
    # and every Map child's input, small.
    state_request = request.model_copy(update={"partitions": None, "redrive": False}).model_dump(mode="json")
    return {
        "request": state_request,
        "items": where,
        "partitions": len(entries),
        "workers": len(items),
    }


# ------------------------------------------------------------------ Inference
_ENGINES: dict[tuple[str, str, int | None], Any] = {}
_INVOCATIONS = 0


def _model_dir(model: str) -> Path:
    """A local folder holding the artifact; S3 artifacts are downloaded once to /tmp."""
    if not model.startswith("s3://"):
        return Path(model)
    import hashlib
    import tempfile

    target = Path(tempfile.gettempdir()) / f"cosmic-model-{hashlib.sha256(model.encode()).hexdigest()[:16]}"
    done = target / ".complete"
    if done.exists():
        return target
    store = _storage(model)
    target.mkdir(parents=True, exist_ok=True)
    meta = json.loads(store.read_text("artifact.json"))
    (target / "artifact.json").write_text(json.dumps(meta))
    files = {str(v.get("path")) for v in (meta.get("files") or {}).values() if isinstance(v, Mapping) and v.get("path")}
    onnx = [f for f in files if f.endswith((".onnx", ".npz"))] or ["model.onnx"]
    for name in onnx:  # model.pt stays on S3: Lambda runs ONNX only (+ the gate's calibration.npz)
        store.download_file(name, target / name)
    done.write_text("ok")
    return target


class ModelError(DataError):
    """The model artifact is missing, corrupt or of an unsupported version (not transient: no retry)."""


def verify_model(folder: Path, engine: str, location: str | None = None) -> None:
    """Check the artifact with :meth:`cosmic_utils.artifact.ModelArtifact.load` before any engine uses it.

    ``artifact.json`` must exist and have a supported ``format_version``; the ONNX graph the engine
    runs must exist and match its sha256 (``model.pt`` is not checked: Lambda never downloads it).
    Raises :class:`ModelError`, which the Inference step records as the failure of every partition
    of the item, so a bad model shows up as a failed list with the reason rather than as retries.
    """
    from cosmic_utils.artifact import ArtifactError, ModelArtifact

    try:
        art = ModelArtifact.load(folder, verify=False)
        roles = ["onnx"] + (["onnx_int8"] if engine == "onnx-int8" and "onnx_int8" in art.files else [])
        roles += ["calibration"] if engine == "onnx-int8" and "calibration" in art.files else []
        art.verify(roles)
    except ArtifactError as exc:
        where = f" ({location})" if location and location != str(folder) else ""
        raise ModelError(f"{exc}{where}") from exc


def get_engine(request: RunRequest) -> tuple[Any, float, bool]:
    """The engine for this request, created once per warm container (module-level cache).

    Returns ``(engine, load_seconds, loaded_now)``. A reduced-precision engine first passes its
    calibration check on this CPU (cold start only; :mod:`cosmic_utils.inference.gating`), else
    the fp32 engine serves and says why (``engine.fallback_reason``, copied into every record).
    """
    key = (request.model, request.engine, request.threads)
    if key in _ENGINES:
        return _ENGINES[key], 0.0, False
    t0 = time.perf_counter()
    try:
        folder = _model_dir(request.model)
    except Exception as exc:
        raise _infra(f"downloading model {request.model}", exc) from exc
    verify_model(folder, request.engine, request.model)
    try:
        from cosmic_utils.inference.gating import create_engine_with_fallback

        engine = create_engine_with_fallback(request.engine, folder, threads=request.threads)
    except Exception as exc:
        raise _infra(f"loading model {request.model} with engine {request.engine}", exc) from exc
    _ENGINES.clear()  # one model per container: a new request model replaces the old one
    _ENGINES[key] = engine
    return engine, time.perf_counter() - t0, True


def accuracy_sums(z_pred: Any, z_true: Any) -> dict[str, Any]:
    """Mergeable accuracy state of one partition (only rows with a finite label count).

    Sums of the error z_pred - z_true, its absolute value and square, z, z^2, dz = error/(1+z), the
    outlier counts of |dz| and a sparse histogram of dz in bins of ``HIST_BIN`` (clipped at +-``HIST_LIMIT``), from which Summarize gets the
    run's median and sigma_NMAD to within one bin without holding every prediction.
    """
    import numpy as np

    zp = np.asarray(z_pred, dtype=np.float64)
    zt = np.asarray(z_true, dtype=np.float64)
    ok = np.isfinite(zt) & np.isfinite(zp)
    zp, zt = zp[ok], zt[ok]
    n = int(zp.size)
    if n == 0:
        return {"n": 0}
    dz = zp - zt
    x = dz / (1.0 + zt)
    bins = np.rint(np.clip(x, -HIST_LIMIT, HIST_LIMIT) / HIST_BIN).astype(np.int64)
    idx, counts = np.unique(bins, return_counts=True)
    return {
        "n": n,
        "sum_dz": float(dz.sum()),
        "sum_abs_dz": float(np.abs(dz).sum()),
        "sum_dz2": float((dz * dz).sum()),
        "sum_z": float(zt.sum()),
        "sum_z2": float((zt * zt).sum()),
        "sum_x": float(x.sum()),
        "outliers_005": int((np.abs(x) > OUTLIER_CUTS[0]).sum()),
        "outliers_015": int((np.abs(x) > OUTLIER_CUTS[1]).sum()),
        "hist": {str(int(i)): int(c) for i, c in zip(idx, counts, strict=True)},
    }


def _predictions_bytes(partition_id: str, z_pred: Any, z_true: Any, fmt: str) -> bytes:
    import numpy as np

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


def _record_base(request: RunRequest, entry: Mapping[str, Any], worker_id: int, context: Any,
                 cold: bool) -> dict[str, Any]:
    return {
        "run_id": request.run_id,
        "partition_id": entry["partition_id"],
        "key": entry["key"],
        "status": "ok",
        "error": "",
        "samples": 0,
        "data_bytes": 0,
        "file_bytes": 0,
        "download_s": 0.0,
        "load_s": 0.0,
        "inference_s": 0.0,
        "upload_s": 0.0,
        "duration_s": 0.0,
        "billed_duration_ms": None,
        "peak_rss_mb": 0.0,
        "memory_mb": _context_memory(context, request.memory_mb),
        "cold_start": cold,
        "engine": request.engine,
        "engine_requested": request.engine,
        "engine_fallback_reason": "",
        **_cpu_fields(),
        "batch_size": request.batch_size,
        "backend": os.environ.get(BACKEND_ENV, "aws"),
        "worker_id": worker_id,
        "request_id": str(getattr(context, "aws_request_id", "") or ""),
        "model_load_s": 0.0,
        "started_at": _now_iso(),
    }


def _cpu_fields() -> dict[str, str]:
    """The CPU a record ran on: a Lambda's CPU is not chosen by the user (cosmic_utils.cpu)."""
    from cosmic_utils.cpu import cpu_probe

    probe = cpu_probe()
    return {"cpu_model": probe["cpu_model"], "isa": probe["isa"], "cpu_type": probe["cpu_type"]}


def process_partition(request: RunRequest, entry: Mapping[str, Any], worker_id: int, context: Any,
                      cold: bool, data: Any, results: Any) -> dict[str, Any]:
    """Run one partition end to end and write its predictions and record. Returns the record.

    Data problems end in a failure record; infrastructure problems raise InfrastructureError.
    """
    from cosmic_utils.partition import PartitionError, read_partition
    from cosmic_utils.storage import MissingObjectError, StorageError

    layout = RunLayout(request.run_id)
    rec = _record_base(request, entry, worker_id, context, cold)
    t_start = time.perf_counter()
    expected = {k: entry.get(k) for k in ("samples", "bytes", "sha256") if entry.get(k) is not None} or None
    try:
        t0 = time.perf_counter()
        try:
            blob = data.read_bytes(entry["key"])
        except MissingObjectError as exc:
            raise DataError(f"partition {entry['key']}: missing from {request.data} ({exc})") from exc
        except StorageError as exc:
            raise _infra(f"reading partition {entry['key']}", exc) from exc
        rec["download_s"] = time.perf_counter() - t0
        rec["file_bytes"] = len(blob)
        t0 = time.perf_counter()
        try:
            part = read_partition(blob, name=entry["key"], expected=expected)
        except PartitionError as exc:
            raise DataError(str(exc)) from exc
        rec["load_s"] = time.perf_counter() - t0
        engine, model_load_s, _ = get_engine(request)  # ModelError (a DataError) -> failure record
        rec["model_load_s"] = model_load_s
        from cosmic_utils.inference.gating import engine_fields

        rec.update(engine_fields(engine, request.engine))
        import numpy as np

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
        rec["data_bytes"] = part.samples * config.SAMPLE_BYTES
        rec["accuracy"] = accuracy_sums(z_pred, part.redshift)
        t0 = time.perf_counter()
        body = _predictions_bytes(entry["partition_id"], z_pred, part.redshift, request.predictions_format)
        try:
            results.write_bytes(layout.predictions(entry["partition_id"], request.predictions_format), body)
        except Exception as exc:
            err = _infra(f"writing predictions of {entry['key']}", exc)
            # Best effort: leave a failure record with the reason. A retry that succeeds overwrites it;
            # if every retry fails, the failed list says why instead of "no record".
            rec.update(status="failed", error=str(err), samples=0, data_bytes=0,
                       duration_s=time.perf_counter() - t_start, peak_rss_mb=peak_rss_mb())
            rec.pop("accuracy", None)
            try:
                results.write_text(layout.record(entry["partition_id"]), json.dumps(rec))
            except Exception:  # the results store is down: "no record" will say so
                pass
            raise err from exc
        rec["upload_s"] = time.perf_counter() - t0
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
    """One Map item: ``{"item": {"worker_id", "partitions": [...]}, "request": {...}}``.

    Returns a tiny summary (the Map collects every child's output, so it must stay small).
    """
    global _INVOCATIONS
    cold = _INVOCATIONS == 0
    _INVOCATIONS += 1
    request = parse_request(event["request"])
    item = event["item"]
    entries = item.get("partitions") or []
    if not entries:
        raise DataError("Map item has no partitions")
    data = _storage(request.data)
    results = _storage(request.results)
    ok = failed = 0
    for i, entry in enumerate(entries):
        rec = process_partition(request, entry, int(item.get("worker_id", 0)), context,
                                cold and i == 0, data, results)
        ok += rec["status"] == "ok"
        failed += rec["status"] != "ok"
    return {"ok": ok, "failed": failed}


# ------------------------------------------------------------------ Summarize
def _hist_quantile(hist: Mapping[int, int], q: float) -> float:
    total = sum(hist.values())
    if total == 0:
        return float("nan")
    target = q * total
    run = 0
    for b in sorted(hist):
        run += hist[b]
        if run >= target:
            return b * HIST_BIN
    return max(hist) * HIST_BIN


class RunAggregate:
    """Streaming aggregation of records: constant memory per record, bounded state.

    Holds counters, per-worker sums (one small tuple per worker), the failed partitions with
    their reasons, and a merged histogram with at most 2*HIST_LIMIT/HIST_BIN+1 bins.
    """

    def __init__(self, expected: Iterable[Mapping[str, Any]]) -> None:
        self.expected: dict[str, Mapping[str, Any]] = {e["partition_id"]: e for e in expected}
        self.seen: set[str] = set()
        self.stale = 0
        self.ok = 0
        self.samples = 0
        self.data_bytes = 0
        self.failed: list[dict[str, Any]] = []
        self.billed_ms: list[int] = []
        self.billed_source = {"report": 0, "estimated": 0}
        self.gb_seconds = 0.0
        self.cold = 0
        # per invocation: data bytes, inference seconds, handler seconds
        self.workers: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.sum_inference_s = 0.0
        self.sum_duration_s = 0.0
        self.max_peak_rss_mb = 0.0
        self.memory_mb: set[int] = set()
        self.acc = {k: 0.0 for k in ("n", "sum_dz", "sum_abs_dz", "sum_dz2", "sum_z", "sum_z2", "sum_x",
                                     "outliers_005", "outliers_015")}
        self.hist: dict[int, int] = defaultdict(int)
        self.engines: dict[str, int] = defaultdict(int)  # engine used -> records
        self.fallbacks: set[str] = set()

    def add(self, rec: Mapping[str, Any]) -> None:
        pid = str(rec.get("partition_id"))
        if pid not in self.expected or pid in self.seen:
            self.stale += 1
            return
        self.seen.add(pid)
        memory = int(rec.get("memory_mb") or 0)
        self.memory_mb.add(memory)
        billed = rec.get("billed_duration_ms")
        if billed is None or (isinstance(billed, float) and math.isnan(billed)):
            billed = math.ceil(float(rec.get("duration_s") or 0.0) * 1000.0)
            self.billed_source["estimated"] += 1
        else:
            billed = int(math.ceil(float(billed)))
            self.billed_source["report"] += 1
        self.billed_ms.append(billed)
        self.gb_seconds += memory / 1024.0 * billed / 1000.0
        self.cold += bool(rec.get("cold_start"))
        self.max_peak_rss_mb = max(self.max_peak_rss_mb, float(rec.get("peak_rss_mb") or 0.0))
        self.engines[str(rec.get("engine"))] += 1
        if rec.get("engine_fallback_reason"):
            self.fallbacks.add(str(rec["engine_fallback_reason"]))
        if rec.get("status") != "ok":
            self.failed.append({"partition_id": pid, "key": rec.get("key"), "error": rec.get("error") or "failed"})
            return
        self.ok += 1
        nbytes = int(rec.get("data_bytes") or 0)
        self.samples += int(rec.get("samples") or 0)
        self.data_bytes += nbytes
        inf_s = float(rec.get("inference_s") or 0.0)
        dur_s = float(rec.get("duration_s") or 0.0)
        # A worker is one invocation (its request id): with world_size it covers several
        # partitions; a redrive's worker ids restart at 0 but its request ids are new.
        w = self.workers[rec.get("request_id") or f"worker-{rec.get('worker_id')}"]
        w[0] += nbytes
        w[1] += inf_s
        w[2] += dur_s
        self.sum_inference_s += inf_s
        self.sum_duration_s += dur_s
        acc = rec.get("accuracy") or {}
        if acc.get("n"):
            for k in self.acc:
                self.acc[k] += float(acc.get(k, 0.0))
            for b, c in (acc.get("hist") or {}).items():
                self.hist[int(b)] += int(c)

    def accuracy(self) -> dict[str, Any]:
        n = self.acc["n"]
        if not n:
            return {"labelled_samples": 0}
        a = self.acc
        sst = a["sum_z2"] - a["sum_z"] ** 2 / n
        med = _hist_quantile(self.hist, 0.5)
        dev: dict[int, int] = defaultdict(int)
        mb = round(med / HIST_BIN)
        for b, c in self.hist.items():
            dev[abs(b - mb)] += c
        mad = _hist_quantile(dev, 0.5)
        return {  # the keys and definitions of cosmic_utils.metrics.redshift_metrics
            "labelled_samples": int(n),
            "sigma_nmad": 1.4826 * mad,
            "outlier_005": a["outliers_005"] / n,
            "outlier_015": a["outliers_015"] / n,
            "bias": a["sum_x"] / n,
            "mae": a["sum_abs_dz"] / n,
            "mse": a["sum_dz2"] / n,
            "r2": 1.0 - a["sum_dz2"] / sst if sst > 0 else float("nan"),
            "median_dz": med,
            "mean_error": a["sum_dz"] / n,
            "note": "dz = (z_pred - z_spec)/(1 + z_spec); sigma_NMAD and median from a histogram of dz "
                    f"in {HIST_BIN:g} bins (exact to one bin)",
        }

    def missing(self) -> list[dict[str, Any]]:
        return [{"partition_id": pid, "key": e.get("key"), "error": NO_RECORD}
                for pid, e in self.expected.items() if pid not in self.seen]


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def summarize_records(
    records: Iterable[Mapping[str, Any]],
    expected: Iterable[Mapping[str, Any]],
    request: RunRequest,
    wall_s: float | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The run summary from records (streamed) and the partition list Init wrote.

    Pure function: Summarize calls it inside the state machine and the runner calls it again
    after attaching billed durations from CloudWatch REPORT lines or merging a redrive.
    """
    agg = RunAggregate(expected)
    for rec in records:
        agg.add(rec)
    failed = agg.failed + agg.missing()
    data_gb = agg.data_bytes / config.GB
    per_worker = sum(b / i for b, i, _ in agg.workers.values() if i > 0)
    per_worker_handler = sum(b / d for b, _, d in agg.workers.values() if d > 0)
    memory = sorted(agg.memory_mb) or [request.memory_mb]
    summary: dict[str, Any] = {
        "summary_version": SUMMARY_VERSION,
        "run_id": request.run_id,
        "backend": os.environ.get(BACKEND_ENV, "aws"),
        "created": _now_iso(),
        "request": request.model_dump(mode="json"),
        "partitions": len(agg.expected),
        "partitions_ok": agg.ok,
        "partitions_failed": len(failed),
        "failed": sorted(failed, key=lambda f: str(f["partition_id"])),
        "stale_records_ignored": agg.stale,
        "workers": len(agg.workers),
        "samples": agg.samples,
        "data_bytes": agg.data_bytes,
        "data_gb": data_gb,
        "wall_s": wall_s,
        "throughput": {
            "end_to_end_gb_s": data_gb / wall_s if wall_s and wall_s > 0 else None,
            "end_to_end_note": "data of succeeded partitions / wall clock of the whole execution",
            "per_worker_gb_s": per_worker / config.GB,
            "per_worker_note": "published figure: sum over workers of worker data / its own inference time",
            "per_worker_handler_gb_s": per_worker_handler / config.GB,
            "per_worker_handler_note": "sum over workers of worker data / its handler time (download+load+infer+upload)",
        },
        "timing": {
            "sum_inference_s": agg.sum_inference_s,
            "sum_duration_s": agg.sum_duration_s,
            "cold_starts": agg.cold,
            "max_peak_rss_mb": agg.max_peak_rss_mb,
        },
        "billing": {
            "memory_mb_configured": memory[-1] if len(memory) == 1 else memory,
            "invocation_records": len(agg.billed_ms),
            "billed_ms_total": sum(agg.billed_ms),
            "gb_seconds": agg.gb_seconds,
            "billed_source": agg.billed_source,
            "note": "configured memory x billed duration; 'estimated' = handler duration rounded up to 1 ms",
        },
        "accuracy": agg.accuracy(),
        "engine": {"requested": request.engine, "used": dict(agg.engines),
                   "fallback_reasons": sorted(agg.fallbacks)},
    }
    try:
        from cosmic_utils import cost

        lam = cost.lambda_cost(agg.billed_ms, memory[-1], already_billed=True)
        items = len(agg.expected) if request.world_size is None else min(request.world_size, len(agg.expected))
        sfn = cost.stepfunctions_cost(items)
        s3 = cost.s3_cost(**cost.pipeline_s3_requests(items, agg.cold))
        total = lam.total_usd + sfn + s3
        summary["cost"] = {
            "lambda_usd": lam.total_usd, "stepfunctions_usd": sfn, "s3_usd": s3, "total_usd": total,
            "usd_per_gb": total / data_gb if data_gb > 0 else None,
        }
    except Exception as exc:  # the price table is optional inside Lambda; the summary is not
        summary["cost"] = {"error": f"cost model unavailable: {exc}"}
    if extra:
        summary.update(extra)
    return _nan_to_none(summary)


def iter_records(results: Any, run_id: str) -> Iterable[dict[str, Any]]:
    """Every record JSON of a run, read one at a time (the listing is paginated)."""
    layout = RunLayout(run_id)
    for key in results.list_keys(layout.records_prefix):
        if key.endswith(".json"):
            yield json.loads(results.read_text(key))


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def summarize_step(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Gather every record, write summary.json, return a small result.

    Event: ``{"state": <Init output (+ map_error)>, "execution": {"id", "start_time"}}``; a bare
    request (or ``{"request": ...}``) also works for manual use.
    """
    state = event.get("state", event)
    request = parse_request(state.get("request", state))
    layout = RunLayout(request.run_id)
    results = _storage(request.results)
    try:
        expected = json.loads(results.read_text(layout.partitions))
    except Exception as exc:
        raise _infra(f"reading the partition list of run {request.run_id}", exc) from exc
    execution = event.get("execution") or {}
    started = _parse_time(execution.get("start_time"))
    wall_s = (datetime.now(timezone.utc) - started).total_seconds() if started else None
    extra: dict[str, Any] = {"execution_id": execution.get("id")}
    if state.get("map_error"):
        extra["map_error"] = state["map_error"]
    try:
        summary = summarize_records(iter_records(results, request.run_id), expected, request, wall_s, extra)
        results.write_text(layout.summary, json.dumps(summary, indent=2))
    except InfrastructureError:
        raise
    except Exception as exc:
        from cosmic_utils.storage import StorageError

        if isinstance(exc, StorageError):
            raise _infra(f"summarising run {request.run_id}", exc) from exc
        raise
    return {
        "summary": results.uri(layout.summary),
        "partitions": summary["partitions"],
        "partitions_ok": summary["partitions_ok"],
        "partitions_failed": summary["partitions_failed"],
    }
