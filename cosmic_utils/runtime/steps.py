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
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cosmic_utils.runtime import prices, units
from cosmic_utils.runtime.artifact import parse_meta
from cosmic_utils.runtime.gating import create_engine_with_fallback
from cosmic_utils.runtime.items import RunLayout, build_items, partition_id_for
from cosmic_utils.runtime.memory import peak_rss_mb
from cosmic_utils.runtime.metrics import NMAD_FACTOR
from cosmic_utils.runtime.onnx_engine import create_onnx_engine
from cosmic_utils.runtime.request import RunRequest, parse_request

log = logging.getLogger(__name__)

#: Written by the aws/local deploy code into every function's environment.
BACKEND_ENV = "COSMIC_BACKEND"
#: Summary format version (bump when keys change meaning).
SUMMARY_VERSION = 1
#: Bin width of the dz/(1+z) histogram that records carry, so Summarize can compute the
#: median-based sigma_NMAD of the whole run from bounded, mergeable per-partition state.
HIST_BIN = 1e-4
HIST_LIMIT = 0.5
#: Outlier thresholds on |dz| = |z_pred - z_spec| / (1 + z_spec), as in cosmic_utils.runtime.metrics.
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


def _storage(uri: str) -> Any:
    from cosmic_utils.runtime.storage import open_storage

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
    missing stays in the list (its worker writes a failure record). With a manifest, a ``.cpart``
    file the manifest does not list is *unlisted*: never processed, counted in
    :func:`unlisted_partitions` (docs/pipeline.md "Files not in the manifest"); without a manifest
    every listed file is a partition. A manifest key that is not a safe relative key (``../x``,
    absolute, backslash, empty) stays in the list with an ``invalid_key`` reason: Init writes its
    failure record instead of sending it to a worker. ``request.partitions`` selects keys
    explicitly; ``partition_limit`` keeps the first N in key order.
    """
    from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest, ManifestError
    from cosmic_utils.runtime.storage import InvalidKeyError, StorageError, validate_key

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
    keys = sorted(set(expected) if has_manifest else set(listed))
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
        try:
            validate_key(key)
            invalid = None
        except InvalidKeyError as exc:
            invalid = str(exc)
        pid = partition_id_for(key) if invalid is None else invalid_partition_id(key)
        if pid in by_id:  # e.g. a/b.cpart and a__b.cpart: their records would overwrite each other
            raise DataError(f"dataset {request.data}: partitions {by_id[pid]!r} and {key!r} both have the "
                            f"partition id {pid!r}; rename one so every partition keeps its own record")
        by_id[pid] = key
        entry: dict[str, Any] = {"partition_id": pid, "key": key}
        entry.update(expected.get(key, {"samples": None, "bytes": None, "sha256": None}))
        if invalid is not None:
            entry["invalid_key"] = invalid
        out.append(entry)
    return out


def invalid_partition_id(key: str) -> str:
    """A file-name-safe partition id for a manifest key that is refused (``../x``, ``/abs``, ``""``):
    the key itself cannot name a record file, so the id is derived from its digest."""
    import hashlib

    return "invalid-key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def unlisted_partitions(request: RunRequest, data: Any | None = None) -> list[str]:
    """``.cpart`` files under the data location that its manifest does not list (never processed).

    Empty when the dataset has no manifest (then every file is a partition)."""
    from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest

    storage = data if data is not None else _storage(request.data)
    every = storage.list_keys()
    if MANIFEST_NAME not in every:
        return []
    known = {e.key for e in Manifest.read(storage).entries}
    return sorted(k for k in every if k.endswith(".cpart") and k not in known)


class RunExistsError(DataError, FileExistsError):
    """The run id (or the local run folder) already holds results and the request is neither an
    overwrite nor a redrive; the message says how to proceed. One class for Init (inside Lambda: a
    data error, never retried) and the workstation runner (a ``FileExistsError``)."""


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
    from cosmic_utils.runtime.request import allow_list_from_env, check_allowed

    request = parse_request(event.get("request", event) if isinstance(event, Mapping) else event)
    check_allowed(request, *allow_list_from_env(os.environ))
    layout = RunLayout(request.run_id)
    results = _storage(request.results)
    check_run_id_free(request, results)
    execution = _register_execution(request, results, event.get("execution") if isinstance(event, Mapping) else None)
    data = _storage(request.data)
    entries = list_partitions(request, data)
    try:
        unlisted = unlisted_partitions(request, data)
    except Exception:  # the listing worked a moment ago; the count is informative only
        unlisted = []
    bad = [e for e in entries if e.get("invalid_key")]
    good = [e for e in entries if not e.get("invalid_key")]
    items = build_items(good, request.world_size)
    try:
        # A redrive (explicit partitions) keeps the run's full partition list, so Summarize still
        # accounts for every partition of the run, not only the re-run ones.
        if request.partitions is None or not results.exists(layout.partitions):
            results.write_text(layout.partitions, json.dumps(
                [dict(e, worker_id=item["worker_id"]) for item in items for e in item["partitions"]]
                + [dict(e, worker_id=None) for e in bad]))
        results.write_text(layout.items, json.dumps(items))
        for e in bad:  # a refused key is a data problem of that partition: its failure record, no retry
            rec = _record_base(request, e, -1, context, False)
            rec.update(status="failed", error=f"partition key {e['key']!r} refused: {e['invalid_key']}",
                       execution_id=execution["id"], attempt=execution["attempt"])
            results.write_text(layout.record(e["partition_id"]), json.dumps(rec))
    except Exception as exc:
        raise _infra(f"writing the item list to {request.results}", exc) from exc
    where: dict[str, Any] = {"uri": results.uri(layout.items)}
    if request.results.startswith("s3://"):
        from cosmic_utils.runtime.storage import parse_s3_uri

        bucket, key = parse_s3_uri(results.uri(layout.items))
        where.update(bucket=bucket, key=key)
    log.info("run %s: %d partitions in %d items", request.run_id, len(entries), len(items))
    # The explicit partition list (a redrive) is in items.json now; dropping it keeps the state,
    # and every Map child's input, small.
    state_request = request.model_copy(update={"partitions": None, "redrive": False}).model_dump(mode="json")
    return {
        "request": state_request,
        "items": where,
        "execution": execution,
        "partitions": len(entries),
        "invalid_keys": len(bad),
        "unlisted": len(unlisted),
        "unlisted_keys": unlisted[:20],
        "workers": len(items),
    }


def _register_execution(request: RunRequest, results: Any, execution: Any) -> dict[str, Any]:
    """Record this execution in the run's chain (``executions.json``); returns ``{"id", "attempt"}``.

    A fresh run (or an overwrite) starts a new chain and deletes the records and predictions an
    earlier execution left under the run id; a redrive appends to the chain. Summarize counts only
    records whose ``execution_id`` is in the chain, so an overwrite can never count the earlier
    run's records, whatever the request says. ``attempt`` is the position in the chain (1 = first
    execution, 2 = first redrive ...). Without an execution id (a handler called by hand) the id
    is ``None`` and Summarize does not filter.
    """
    layout = RunLayout(request.run_id)
    exec_id = None
    if isinstance(execution, Mapping) and execution.get("id"):
        exec_id = str(execution["id"])
    try:
        chain: list[str] = []
        if request.redrive and results.exists(layout.executions):
            chain = [str(x) for x in json.loads(results.read_text(layout.executions)).get("executions", [])]
        elif request.overwrite:
            for prefix in (layout.records_prefix, layout.predictions_prefix):
                for key in results.list_keys(prefix):
                    results.delete(key)
            if results.exists(layout.summary):
                results.delete(layout.summary)
        if exec_id is not None and exec_id not in chain:
            chain.append(exec_id)
        if exec_id is not None:
            results.write_text(layout.executions, json.dumps({"run_id": request.run_id, "executions": chain}))
    except Exception as exc:
        raise _infra(f"recording execution {exec_id} of run {request.run_id} under {request.results}", exc) from exc
    attempt = chain.index(exec_id) + 1 if exec_id in chain else 1
    return {"id": exec_id, "attempt": attempt}


def execution_chain(results: Any, run_id: str) -> list[str] | None:
    """The execution ids whose records belong to run ``run_id`` (None: no chain recorded)."""
    layout = RunLayout(run_id)
    if not results.exists(layout.executions):
        return None
    return [str(x) for x in json.loads(results.read_text(layout.executions)).get("executions", [])]


# ------------------------------------------------------------------ Inference
_ENGINES: dict[tuple[str, str, str, int | None], Any] = {}
_INVOCATIONS = 0
#: Model identity per location: (cheap fingerprint, sha256 of artifact.json). See :func:`model_identity`.
_MODEL_IDS: dict[str, tuple[Any, str]] = {}


def _local_fingerprint(folder: Path) -> tuple[Any, ...]:
    """inode, size and mtime of every regular file of an artifact folder: any replacement of
    artifact.json or a model file changes it (a copy over the same name changes mtime/size, a
    rename-into-place changes the inode)."""
    out = []
    with os.scandir(folder) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if entry.is_file():
                st = entry.stat()
                out.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def model_identity(model: str) -> tuple[str, Any]:
    """``(sha256, fingerprint)`` of the artifact at ``model``, re-checked cheaply on every call.

    The identity is the sha256 of ``artifact.json``, which pins the sha256 of every model file
    (checked by :func:`verify_model` whenever the engine is (re)loaded). The cheap check: on S3 the
    ETag of ``artifact.json`` (one HeadObject); locally inode + size + mtime of the folder's files.
    Only when the fingerprint changed is ``artifact.json`` read and hashed again, so a model
    replaced at the same location is noticed at the next partition, even in a warm worker.
    """
    import hashlib

    if model.startswith("s3://"):
        store = _storage(model)
        head = store.client.head_object(Bucket=store.bucket, Key=store._full("artifact.json"))
        fingerprint: Any = str(head.get("ETag") or "")
    else:
        fingerprint = _local_fingerprint(Path(model))
    cached = _MODEL_IDS.get(model)
    if cached is not None and cached[0] == fingerprint:
        return cached[1], fingerprint
    if model.startswith("s3://"):
        raw = _storage(model).read_bytes("artifact.json")
    else:
        raw = (Path(model) / "artifact.json").read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    _MODEL_IDS[model] = (fingerprint, sha)
    return sha, fingerprint


def model_sha256_of(request: RunRequest) -> str | None:
    """The sha256 of the model the cached engine for ``request`` was loaded from (None if unknown)."""
    for (model, sha, engine, threads) in _ENGINES:
        if (model, engine, threads) == (request.model, request.engine, request.threads):
            return sha
    return None


def _model_dir(model: str, sha256: str | None = None) -> Path:
    """A local folder holding the artifact; S3 artifacts are downloaded once to /tmp, per artifact
    identity (``sha256`` of artifact.json), so a replaced model is downloaded again."""
    if not model.startswith("s3://"):
        return Path(model)
    import hashlib
    import tempfile

    tag = hashlib.sha256(f"{model}\n{sha256 or ''}".encode()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"cosmic-model-{tag}"
    done = target / ".complete"
    if done.exists():
        return target
    store = _storage(model)
    target.mkdir(parents=True, exist_ok=True)
    meta = parse_meta(store.read_text("artifact.json"), model)
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
    """Check the artifact with :meth:`cosmic_utils.runtime.artifact.ModelArtifact.load` before any engine uses it.

    ``artifact.json`` must exist and have a supported ``format_version``; the ONNX graph the engine
    runs must exist and match its sha256 (``model.pt`` is not checked: Lambda never downloads it).
    Raises :class:`ModelError`, which the Inference step records as the failure of every partition
    of the item, so a bad model shows up as a failed list with the reason rather than as retries.
    """
    from cosmic_utils.runtime.artifact import ArtifactError, ModelArtifact

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
    calibration check on this CPU (cold start only; :mod:`cosmic_utils.runtime.gating`), else
    the fp32 engine serves and says why (``engine.fallback_reason``, copied into every record).
    """
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
    _ENGINES.clear()  # one model per container: a new request model (or a replaced one) replaces the old
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
    """The CPU a record ran on: a Lambda's CPU is not chosen by the user (cosmic_utils.runtime.cpu)."""
    from cosmic_utils.runtime.cpu import cpu_probe

    probe = cpu_probe()
    return {"cpu_model": probe["cpu_model"], "isa": probe["isa"], "cpu_type": probe["cpu_type"]}


def process_partition(request: RunRequest, entry: Mapping[str, Any], worker_id: int, context: Any,
                      cold: bool, data: Any, results: Any,
                      execution: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one partition end to end and write its predictions and record. Returns the record.

    Data problems end in a failure record; infrastructure problems raise InfrastructureError.
    ``execution`` (``{"id", "attempt"}`` from Init) is stamped on the record: Summarize counts
    only records of the run's execution chain.
    """
    from cosmic_utils.runtime.partition import PartitionError, read_partition
    from cosmic_utils.runtime.storage import MissingObjectError, NotRegularFileError, StorageError

    layout = RunLayout(request.run_id)
    rec = _record_base(request, entry, worker_id, context, cold)
    rec["execution_id"] = (execution or {}).get("id")
    rec["attempt"] = (execution or {}).get("attempt")
    rec["model_sha256"] = None
    t_start = time.perf_counter()
    expected = {k: entry.get(k) for k in ("samples", "bytes", "sha256") if entry.get(k) is not None} or None
    try:
        t0 = time.perf_counter()
        try:
            blob = data.read_bytes(entry["key"])
        except NotRegularFileError as exc:  # a FIFO / device / directory: never read, that partition fails
            raise DataError(f"partition {entry['key']}: {exc}") from exc
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
        rec["model_sha256"] = model_sha256_of(request)
        from cosmic_utils.runtime.gating import engine_fields

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
        rec["data_bytes"] = part.samples * units.SAMPLE_BYTES
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
    # Ties this invocation's request id to its partitions in CloudWatch: `cosmic logs` finds the error
    # of a partition that crashed or timed out (and so left no record) through this line.
    log.info("cosmic partitions: %s run %s", ",".join(str(e.get("partition_id")) for e in entries), request.run_id)
    data = _storage(request.data)
    results = _storage(request.results)
    ok = failed = 0
    for i, entry in enumerate(entries):
        rec = process_partition(request, entry, int(item.get("worker_id", 0)), context,
                                cold and i == 0, data, results, execution=event.get("execution"))
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

    def __init__(self, expected: Iterable[Mapping[str, Any]], executions: Iterable[str] | None = None) -> None:
        self.expected: dict[str, Mapping[str, Any]] = {e["partition_id"]: e for e in expected}
        #: The run's execution chain; a record of any other execution is not counted (None: no filter).
        self.executions: set[str] | None = None if executions is None else {str(x) for x in executions}
        self.other_execution = 0
        #: ok partitions per model_sha256 (a handful of models at most: bounded).
        self.models: dict[str, int] = defaultdict(int)
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
        if self.executions is not None and str(rec.get("execution_id")) not in self.executions:
            self.other_execution += 1  # e.g. the earlier run's record under an overwritten run id
            return
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
        self.models[str(rec.get("model_sha256") or "unknown")] += 1
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
        return {  # the keys and definitions of cosmic_utils.runtime.metrics.redshift_metrics
            "labelled_samples": int(n),
            "sigma_nmad": NMAD_FACTOR * mad,
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
    executions: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The run summary from records (streamed) and the partition list Init wrote.

    Pure function: Summarize calls it inside the state machine and the runner calls it again
    after attaching billed durations from CloudWatch REPORT lines or merging a redrive.
    ``executions`` (the run's execution chain) limits what counts to records of those executions.
    """
    agg = RunAggregate(expected, executions)
    for rec in records:
        agg.add(rec)
    failed = agg.failed + agg.missing()
    data_gb = agg.data_bytes / units.GB
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
        "execution_chain": sorted(agg.executions) if agg.executions is not None else None,
        "records_of_other_executions_ignored": agg.other_execution,
        "model_sha256": next(iter(agg.models)) if len(agg.models) == 1 else None,
        "models": [{"model_sha256": m, "partitions_ok": n} for m, n in sorted(agg.models.items())],
        "workers": len(agg.workers),
        "samples": agg.samples,
        "data_bytes": agg.data_bytes,
        "data_gb": data_gb,
        "wall_s": wall_s,
        "throughput": {
            "end_to_end_gb_s": data_gb / wall_s if wall_s and wall_s > 0 else None,
            "end_to_end_note": "data of succeeded partitions / wall clock of the whole execution",
            "per_worker_gb_s": per_worker / units.GB,
            "per_worker_note": "published figure: sum over workers of worker data / its own inference time",
            "per_worker_handler_gb_s": per_worker_handler / units.GB,
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
        lam = prices.lambda_cost(agg.billed_ms, memory[-1], already_billed=True)
        items = len(agg.expected) if request.world_size is None else min(request.world_size, len(agg.expected))
        sfn = prices.stepfunctions_cost(items)
        s3 = prices.s3_cost(**prices.pipeline_s3_requests(items, agg.cold))
        total = lam.total_usd + sfn + s3
        summary["cost"] = {
            "lambda_usd": lam.total_usd, "stepfunctions_usd": sfn, "s3_usd": s3, "total_usd": total,
            "usd_per_gb": total / data_gb if data_gb > 0 else None,
        }
    except Exception as exc:  # the price table is optional inside Lambda; the summary is not
        summary["cost"] = {"error": f"cost model unavailable: {exc}"}
    if len(agg.models) > 1:
        summary["models_note"] = (f"the ok partitions of this run were produced by {len(agg.models)} different "
                                  "models (a model was replaced during the run or between a run and its redrive); "
                                  "each record's model_sha256 says which")
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
    if state.get("unlisted"):
        extra["unlisted"] = state["unlisted"]
        extra["unlisted_keys"] = state.get("unlisted_keys", [])
    try:
        chain = execution_chain(results, request.run_id)
        if chain is not None and execution.get("id") and str(execution["id"]) not in chain:
            chain = [str(execution["id"])]  # superseded by a later overwrite: count only our own records
        summary = summarize_records(iter_records(results, request.run_id), expected, request, wall_s, extra,
                                    executions=chain)
        results.write_text(layout.summary, json.dumps(summary, indent=2))
    except InfrastructureError:
        raise
    except Exception as exc:
        from cosmic_utils.runtime.storage import StorageError

        if isinstance(exc, StorageError):
            raise _infra(f"summarising run {request.run_id}", exc) from exc
        raise
    return {
        "summary": results.uri(layout.summary),
        "partitions": summary["partitions"],
        "partitions_ok": summary["partitions_ok"],
        "partitions_failed": summary["partitions_failed"],
    }
