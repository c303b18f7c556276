"""Init step (lambda/init/handler.py): validate the request, list the partitions, refuse a used run
id, write the Map items. No numpy, no onnxruntime (Init's zip has neither)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from cosmic_utils.runtime.items import RunLayout, build_items, partition_id_for
from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest, ManifestError
from cosmic_utils.runtime.request import RunRequest, allow_list_from_env, check_allowed, parse_request
from cosmic_utils.runtime.steps.common import DataError, RunExistsError, _infra, _record_base
from cosmic_utils.runtime.storage import (
    InvalidKeyError,
    StorageError,
    open_storage,
    parse_s3_uri,
    validate_key,
)

log = logging.getLogger(__name__)


def list_partitions(request: RunRequest, data: Any | None = None) -> list[dict[str, Any]]:
    """The run's partitions ``{partition_id, key, samples, bytes, sha256}`` (+ ``invalid_key``); policy:
    docs/pipeline.md "Manifest keys and files not in the manifest"."""
    storage = data if data is not None else open_storage(request.data)
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
        expected = {e.key: {"samples": e.samples, "bytes": e.bytes, "sha256": e.sha256}
                    for e in manifest.entries}
    keys = sorted(set(expected) if has_manifest else set(listed))
    if request.partitions is not None:
        unknown = sorted(set(request.partitions) - set(keys))
        if unknown:
            raise DataError(
                f"request names partitions that {request.data} does not hold: {unknown[:5]}"
                + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
        keys = sorted(set(keys) & set(request.partitions))
    if request.partition_limit is not None:
        keys = keys[: request.partition_limit]
    if not keys:
        if has_manifest and not expected and listed:
            raise DataError(f"dataset {request.data}: its manifest lists no partitions, while the folder holds "
                            f"{len(listed)} .cpart file(s) it does not list (e.g. {listed[0]}); only listed "
                            "partitions run: rebuild the manifest (cosmic data prepare) or remove it")
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
    """A file-name-safe partition id for a refused manifest key (``../x``, ``/abs``, ``""``), from its digest."""
    return "invalid-key-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def unlisted_partitions(request: RunRequest, data: Any | None = None) -> list[str]:
    """``.cpart`` files that the data location's manifest does not list (none without a manifest)."""
    storage = data if data is not None else open_storage(request.data)
    every = storage.list_keys()
    if MANIFEST_NAME not in every:
        return []
    known = {e.key for e in Manifest.read(storage).entries}
    return sorted(k for k in every if k.endswith(".cpart") and k not in known)


def check_run_id_free(request: RunRequest, results: Any) -> None:
    """Refuse a fresh run (no redrive, no ``overwrite``) whose run id already has results."""
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
    """Write the item list; return a small state (under 256 KiB) for the Map's ItemReader."""
    request = parse_request(event.get("request", event) if isinstance(event, Mapping) else event)
    check_allowed(request, *allow_list_from_env(os.environ))
    layout = RunLayout(request.run_id)
    results = open_storage(request.results)
    check_run_id_free(request, results)
    execution = _register_execution(request, results, event.get("execution") if isinstance(event, Mapping) else None)
    data = open_storage(request.data)
    entries = list_partitions(request, data)
    try:
        unlisted = unlisted_partitions(request, data)
    except Exception:  # the listing worked a moment ago; the count is informative only
        unlisted = []
    bad = [e for e in entries if e.get("invalid_key")]
    good = [e for e in entries if not e.get("invalid_key")]
    items = build_items(good, request.world_size)
    try:
        # a redrive keeps the run's full partition list, so Summarize accounts for every partition
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
        bucket, key = parse_s3_uri(results.uri(layout.items))
        where.update(bucket=bucket, key=key)
    log.info("run %s: %d partitions in %d items", request.run_id, len(entries), len(items))
    # a redrive's partition list is in items.json now: dropping it keeps every Map child's input small
    state_request = request.model_copy(update={"partitions": None, "redrive": False}).model_dump(mode="json")
    return {"request": state_request, "items": where, "execution": execution, "partitions": len(entries),
            "invalid_keys": len(bad), "unlisted": len(unlisted), "unlisted_keys": unlisted[:20],
            "workers": len(items)}


def _register_execution(request: RunRequest, results: Any, execution: Any) -> dict[str, Any]:
    """Record this execution in ``executions.json``; returns ``{"id", "attempt"}`` (docs/pipeline.md
    "Run and model identity")."""
    layout = RunLayout(request.run_id)
    exec_id = str(execution["id"]) if isinstance(execution, Mapping) and execution.get("id") else None
    try:
        chain: list[str] = []
        if request.redrive and results.exists(layout.executions):
            chain = execution_chain(results, request.run_id) or []
        elif request.overwrite:
            for prefix in (layout.records_prefix, layout.predictions_prefix):
                for key in results.list_keys(prefix):
                    results.delete(key)
            if results.exists(layout.summary):
                results.delete(layout.summary)
        if exec_id is not None:
            if exec_id not in chain:
                chain.append(exec_id)
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
