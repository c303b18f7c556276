"""Reliability harness: bad input, injected faults and load, each actually run, nothing lost.

``cosmic reliability`` (and tests/test_reliability.py) run every scenario of :data:`SCENARIOS` on
ONE shared local backend, then account each partition the harness wrote, independently of the
summary, as ok, failed (with a reason) or lost. Faults come from the backend, never the request.
Reasoning: docs/reliability.md#how-a-scenario-is-run-and-judged-cosmic_utilsjobsreliability
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import resource
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.cloud import aws, runner
from cosmic_utils.cloud.cloudwatch import parse_report_line
from cosmic_utils.cloud.local import LocalStack
from cosmic_utils.cloud.lock import LOCK_NAME, RunLockedError
from cosmic_utils.data import catalog
from cosmic_utils.jobs import reliability_exits
from cosmic_utils.jobs.fault_kit import (  # noqa: F401  re-exported: tests import them from here
    COLUMNS,
    LOCAL_RESULTS,
    Outcome,
    _short,
    account,
    make_dataset,
    partition_bytes,
    write_tiny_artifact,
)
from cosmic_utils.provenance import portable, portable_text, provenance
from cosmic_utils.runtime.artifact import read_meta
from cosmic_utils.runtime.items import partition_id_for
from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import partition_name
from cosmic_utils.runtime.request import RequestError, parse_request
from cosmic_utils.runtime.steps.init import invalid_partition_id
from cosmic_utils.runtime.storage import open_storage

log = logging.getLogger(__name__)
IDS = ["part-00000", "part-00001", "part-00002"]  # the shared "good" dataset's partitions


class Harness:
    """One local backend (moto server + hook) shared by every scenario, and their inputs."""

    def __init__(self, workdir: Path, concurrency: int = 4) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stack = LocalStack(concurrency=concurrency, workdir=self.workdir / "local")
        self.model = write_tiny_artifact(self.workdir / "models" / "tiny")
        self._n = 0

    def __enter__(self) -> Harness:
        self.stack.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stack.stop()

    @property
    def good(self) -> Path:
        return self.workdir / "inputs" / "good"

    def folder(self, name: str) -> Path:
        path = self.workdir / "inputs" / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def request(self, run_id: str, data: Path | str, model: Path | str | None = None, **kw: Any) -> dict[str, Any]:
        return {"run_id": run_id, "data": str(data), "model": str(model or self.model), "results": LOCAL_RESULTS,
                "batch_size": 4, "max_concurrency": 4, "memory_mb": 512, "timeout_s": 60, "threads": 1, **kw}

    def run(self, request: dict[str, Any], faults: list[dict[str, Any]] | None = None,
            **kwargs: Any) -> tuple[Any, Path]:
        """Run ``request`` with ``faults``; returns (RunResult, run folder). Waits 600 s, or ``wait_s``
        when longer (10,000 load partitions take ~20 min on 2 cores)."""
        run_dir = self.workdir / "runs" / request["run_id"]
        wait_s = max(600.0, float(kwargs.pop("wait_s", 0.0)))
        self.stack.set_faults(faults)
        try:
            result = runner.run_pipeline(request, backend="local", run_dir=run_dir, progress=False,
                                         timeout_s=wait_s, local_stack=self.stack, **kwargs)
        finally:
            self.fired = self.stack.fired_faults()
            self.stack.set_faults(None)
        return result, run_dir

    def redrive(self, run_dir: Path) -> Any:
        return runner.redrive(run_dir, backend="local", progress=False, timeout_s=600, local_stack=self.stack)


def _finish(out: Outcome, ids: list[str], run_dir: Path, result: Any = None,
            expect_failed: set[str] | None = None, expect_in_error: str = "",
            may_fail: frozenset[str] = frozenset()) -> Outcome:
    """Account the run; ``may_fail`` are partitions that may fail too (in flight when a crash hit)."""
    out.partitions = len(ids)
    if (run_dir / "summary.json").exists() and result is not None and result.summary.get("partitions"):
        acc = account(run_dir, ids)
        out.ok, out.failed, out.lost = acc["ok"], acc["failed"], acc["lost"]
        out.details["failed_reasons"] = acc["failed_reasons"]
        reasons = [r for r in acc["failed_reasons"].values() if r]
        if not out.error and reasons:
            out.error = _short(reasons[0])
        if not out.outcome:
            out.outcome = f"run {result.status.lower()}; {out.ok} ok, {out.failed} failed with reason"
        failed_ids = {p for p, r in acc["failed_reasons"].items() if r}
        out.passed = out.lost == 0 and (expect_failed is None or expect_failed <= failed_ids <= expect_failed | may_fail) and \
            (not expect_in_error or any(expect_in_error in r for r in reasons))
    else:
        out.passed = bool(out.error) and (not expect_in_error or expect_in_error in out.error) and out.lost == 0
    return out


def _bad_partition(kind: str, what: str, expect: str) -> Callable[[Harness], Outcome]:
    def scenario(h: Harness) -> Outcome:
        out = Outcome(f"partition_{kind}", "bad input: partition", what)
        data = h.folder(kind)
        ids = make_dataset(data, 3, damage={1: kind} if kind != "missing" else None,
                           missing=(1,) if kind == "missing" else (), seed=sum(kind.encode()))
        result, run_dir = h.run(h.request(_rid(kind), data))
        return _finish(out, ids, run_dir, result, expect_failed={ids[1]}, expect_in_error=expect)
    scenario.__name__ = f"partition_{kind}"
    return scenario


def _must_refuse(out: Outcome, call: Callable[[], Any], error: type[BaseException], expect: str) -> Outcome:
    """Run ``call``; passed when it raises ``error`` whose message holds ``expect``."""
    try:
        call()
    except error as exc:
        out.outcome = f"refused before any partition ran ({type(exc).__name__})"
        out.error = _short(str(exc))
        out.passed = expect in str(exc)
        return out
    out.outcome = "ACCEPTED (should have been refused)"
    return out


def _rid(name: str) -> str:
    return f"rel-{name.replace('_', '-')}"


def _execution_refused(out: Outcome, result: Any, expect: str, partitions: int) -> Outcome:
    s = result.summary
    out.outcome = f"refused by Init: execution {result.status} ({s.get('execution_error')})"
    out.error = _short(str(s.get("execution_cause") or ""))
    with suppress(ValueError, AttributeError):  # the Lambda error payload: {"errorMessage": ..., "errorType": ...}
        out.error = _short(json.loads(s.get("execution_cause") or "{}").get("errorMessage") or out.error)
    out.partitions = partitions
    out.passed = result.status == "FAILED" and expect in out.error and not s.get("partitions")
    return out


def duplicate_ids_manifest(h: Harness) -> Outcome:
    out = Outcome("duplicate_partition_ids", "bad input: partition", "manifest lists partition id 1 twice")
    data = h.folder("dup-manifest")
    make_dataset(data, 3)
    raw = json.loads((data / "manifest.json").read_text())
    raw["entries"][2]["partition_id"] = raw["entries"][1]["partition_id"]
    (data / "manifest.json").write_text(json.dumps(raw))
    result, _ = h.run(h.request("rel-dup-manifest", data))
    return _execution_refused(out, result, "duplicate", 3)


def duplicate_ids_keys(h: Harness) -> Outcome:
    out = Outcome("duplicate_partition_keys", "bad input: partition",
                  "two keys map to one partition id (a/part-00000 and a__part-00000)")
    data = h.folder("dup-keys")
    (data / "a").mkdir(parents=True)
    (data / "a" / "part-00000.cpart").write_bytes(partition_bytes(4, 1))
    (data / "a__part-00000.cpart").write_bytes(partition_bytes(4, 2))
    result, _ = h.run(h.request("rel-dup-keys", data))
    return _execution_refused(out, result, "both have the partition id", 2)


def _request_refusal(name: str, what: str, update: dict[str, Any], expect: str) -> Callable[[Harness], Outcome]:
    def scenario(h: Harness) -> Outcome:
        req = {k: v for k, v in {**h.request(_rid(name), h.good), **update}.items() if v is not None}  # None: drop
        return _must_refuse(Outcome(name, "bad input: request", what), lambda: parse_request(req), RequestError,
                            expect)
    scenario.__name__ = name
    return scenario


def outside_allow_list(h: Harness) -> Outcome:
    out = Outcome("location_not_allowed", "bad input: request",
                  "data and results outside the deployment's allow-list (Init enforces it)")
    data = h.folder("elsewhere")
    make_dataset(data, 2)
    result, _ = h.run(h.request("rel-not-allowed", data, results="s3://cosmic-local-results/other-team"),
                      allowed_read=[str(h.good), str(h.model)], allowed_results=[LOCAL_RESULTS])
    return _execution_refused(out, result, "outside what this deployment allows", 2)


def run_id_reuse(h: Harness) -> Outcome:
    out = Outcome("run_id_reuse", "bad input: request",
                  "a second run with an existing run id (runner, then StartExecution directly)")
    data = h.good
    first, run_dir = h.run(h.request("rel-reuse", data))
    try:
        runner.run_pipeline(h.request("rel-reuse", data), backend="local", run_dir=h.workdir / "runs" / "rel-reuse-2",
                            progress=False, local_stack=h.stack)
        out.outcome = "ACCEPTED (should have been refused)"
        return out
    except runner.RunExistsError as exc:
        client_msg = str(exc)
    # Bypass the runner: start the deployed state machine with the same run id.
    be = h.stack.backend()
    sm = be.find_state_machine("cosmic-pipeline")
    arn = be.start_execution(sm, json.dumps(h.request("rel-reuse", data)), f"rel-reuse-direct-{time.time_ns()}")
    desc = be.wait_execution(arn, poll_s=0.5, timeout_s=120)
    cause = json.loads(desc.get("cause") or "{}").get("errorMessage", "")
    acc = account(run_dir, IDS)
    out.outcome = (f"refused by the runner and by Init (execution {desc['status']}, {desc.get('error')}); "
                   f"first run untouched: {acc['ok']} ok")
    out.error = _short(cause or client_msg)
    out.partitions, out.ok, out.lost = 3, acc["ok"], acc["lost"]
    out.passed = desc["status"] == "FAILED" and "already has results" in cause and acc["ok"] == 3 and \
        "already has" in client_msg
    return out


def _model_case(name: str, what: str, make: Callable[[Harness, Path], Path], expect: str) -> Callable[[Harness], Outcome]:
    def scenario(h: Harness) -> Outcome:
        out = Outcome(name, "bad input: model", what)
        model = make(h, h.folder(f"model-{name}"))
        result, run_dir = h.run(h.request(_rid(name), h.good, model=model))
        return _finish(out, IDS, run_dir, result, expect_failed=set(IDS), expect_in_error=expect)
    scenario.__name__ = name
    return scenario


def _model_meta(change: Callable[[dict[str, Any]], Any]) -> Callable[[Harness, Path], Path]:
    """A copy of the tiny model whose artifact.json went through ``change``."""
    def make(h: Harness, folder: Path) -> Path:
        shutil.copytree(h.model, folder)
        meta = read_meta(folder)
        change(meta)
        (folder / "artifact.json").write_text(json.dumps(meta))
        return folder
    return make


def _fault(name: str, what: str, faults: list[dict[str, Any]], expect_failed: bool, expect: str = "",
           timeout_s: int = 60, world_size: int | None = None,
           failed_ids: tuple[str, ...] = ("part-00001",),
           in_flight: tuple[str, ...] = ()) -> Callable[[Harness], Outcome]:
    def scenario(h: Harness) -> Outcome:
        out = Outcome(name, "fault", what)
        req = h.request(_rid(name), h.good, timeout_s=timeout_s)
        if world_size:
            req["world_size"] = world_size
        result, run_dir = h.run(req, faults=faults)
        out.faults_fired = len(h.fired)
        _finish(out, IDS, run_dir, result, expect_failed=set(failed_ids) if expect_failed else set(),
                expect_in_error=expect, may_fail=frozenset(in_flight))
        if expect_failed:
            again = h.redrive(run_dir)
            acc = account(run_dir, IDS)
            twice = h.redrive(run_dir)
            out.redrive = (f"{again.status.lower()}: {acc['ok']} ok, {acc['failed']} failed, {acc['lost']} lost; "
                           f"2nd redrive: {twice.status.lower()}")
            out.passed = out.passed and acc["ok"] == 3 and acc["lost"] == 0 and twice.status == "NOTHING_TO_REDRIVE"
        out.passed = out.passed and out.faults_fired >= 1
        return out
    scenario.__name__ = name
    return scenario


def concurrent_writers(h: Harness) -> Outcome:
    """Two runs into one run folder at once: the second is refused naming the holder's pid."""
    out = Outcome("concurrent_writers", "run identity", "two `cosmic run` into the same --out at once")
    data = h.good
    run_dir = h.workdir / "runs" / "rel-concurrent"
    shutil.rmtree(run_dir, ignore_errors=True)
    box: dict[str, Any] = {}
    first = threading.Thread(target=lambda: box.update(result=h.run(h.request("rel-concurrent", data))[0]))
    first.start()
    deadline = time.time() + 60
    while time.time() < deadline and not ((run_dir / LOCK_NAME).exists() and (run_dir / LOCK_NAME).read_text().strip()):
        time.sleep(0.05)
    refused = ""
    try:
        runner.run_pipeline(h.request("rel-concurrent-2", h.workdir / "inputs" / "elsewhere-2"), backend="local",
                            run_dir=run_dir, progress=False, local_stack=h.stack)
    except RunLockedError as exc:
        refused = str(exc)
    first.join()
    _finish(out, IDS, run_dir, box.get("result"), expect_failed=set())
    out.error = _short(refused) or "NOT refused"
    out.outcome = f"second writer refused (RunLockedError); first run {out.ok} ok"
    out.passed = out.passed and f"process {os.getpid()}" in refused and out.ok == 3
    return out


def overwrite_direct_crash(h: Harness) -> Outcome:
    """The reproduction: StartExecution with overwrite=true over an earlier run, one partition crashes."""
    out = Outcome("overwrite_counts_only_own_records", "run identity",
                  "direct StartExecution with overwrite=true over an earlier ok run; partition 1 crashes")
    data = h.good
    h.run(h.request("rel-overwrite", data))
    be = h.stack.backend()
    h.stack.set_faults([{"kind": "crash", "partition": "part-00001"}])
    try:
        arn = be.start_execution(be.find_state_machine("cosmic-pipeline"),
                                 json.dumps(h.request("rel-overwrite", data, overwrite=True)),
                                 f"rel-overwrite-direct-{time.time_ns()}")
        desc = be.wait_execution(arn, poll_s=0.5, timeout_s=300)
    finally:
        out.faults_fired = len(h.stack.fired_faults())
        h.stack.set_faults(None)
    results = open_storage(LOCAL_RESULTS, s3_client=be.client("s3"))
    summary = json.loads(results.read_text("rel-overwrite/summary.json"))
    failed = {f["partition_id"]: f["error"] for f in summary.get("failed", [])}
    out.partitions, out.ok, out.failed = 3, int(summary.get("partitions_ok", 0)), len(failed)
    out.lost = 3 - out.ok - out.failed
    out.outcome = (f"execution {desc['status'].lower()}; summary {out.ok}/3 ok, {out.failed} failed; "
                   f"{summary.get('records_of_other_executions_ignored', 0)} records of other executions ignored")
    out.error = _short(failed.get("part-00001", ""))
    out.passed = out.ok == 2 and set(failed) == {"part-00001"} and summary.get("execution_chain") == [arn]
    return out


def model_replaced(h: Harness) -> Outcome:
    """A model replaced at the same location between two runs on warm workers is used at once."""
    out = Outcome("model_replaced_in_place", "model identity",
                  "second run after the model at the same location was replaced (warm workers)")
    model = h.folder("model-replaced")
    write_tiny_artifact(model, scale=0.01)
    data = h.good
    first, dir1 = h.run(h.request("rel-model-a", data, model=model))
    write_tiny_artifact(model, scale=0.02)
    sha2 = hashlib.sha256((model / "artifact.json").read_bytes()).hexdigest()
    second, dir2 = h.run(h.request("rel-model-b", data, model=model))
    _finish(out, IDS, dir2, second, expect_failed=set())
    ratios, shas = [], set()
    for pid in IDS:
        z1 = np.loadtxt(dir1 / "predictions" / f"{pid}.csv", delimiter=",", skiprows=1, usecols=2, ndmin=1)
        z2 = np.loadtxt(dir2 / "predictions" / f"{pid}.csv", delimiter=",", skiprows=1, usecols=2, ndmin=1)
        ratios.append(float(np.median(z2 / z1)))
        shas.add(json.loads((dir2 / "records" / f"{pid}.json").read_text()).get("model_sha256"))
    warm = sum(not json.loads((dir2 / "records" / f"{p}.json").read_text()).get("cold_start") for p in IDS)
    out.outcome = (f"second run: predictions x{np.median(ratios):.3f} of the first (new model x2.000), "
                   f"records model_sha256 {'= new' if shas == {sha2} else shas}; {warm} warm starts")
    out.passed = out.passed and shas == {sha2} and all(abs(r - 2.0) < 1e-3 for r in ratios) and \
        second.summary.get("model_sha256") == sha2 and first.summary.get("model_sha256") != sha2
    return out


def _deploy_refusal(name: str, what: str, reads: list[str], results: str, expect: str) -> Callable[[Harness], Outcome]:
    def scenario(h: Harness) -> Outcome:
        return _must_refuse(Outcome(name, "bad input: deploy", what),
                            lambda: aws.check_locations(aws.DeployConfig(results_uri=results, read_uris=reads)),
                            aws.DeployError, expect)
    scenario.__name__ = name
    return scenario


def manifest_bad_key(h: Harness) -> Outcome:
    """A manifest key '../x' is that partition's failure record; the redrive of the others goes on."""
    out = Outcome("manifest_bad_key", "bad input: partition",
                  "manifest key '../x.cpart' for partition 1, and partition 2 crashes; then redrive")
    data = h.folder("bad-key")
    make_dataset(data, 3)
    raw = json.loads((data / "manifest.json").read_text())
    raw["entries"][1]["key"] = "../x.cpart"
    (data / "manifest.json").write_text(json.dumps(raw))
    (data / "part-00001.cpart").unlink()
    bad = invalid_partition_id("../x.cpart")
    ids = ["part-00000", bad, "part-00002"]
    result, run_dir = h.run(h.request("rel-bad-key", data), faults=[{"kind": "crash", "partition": "part-00002"}])
    out.faults_fired = len(h.fired)
    _finish(out, ids, run_dir, result, expect_failed={bad, "part-00002"}, expect_in_error="'..' segment")
    again = h.redrive(run_dir)
    acc = account(run_dir, ids)
    out.redrive = f"{again.status.lower()}: {acc['ok']} ok, {acc['failed']} failed (the bad key), {acc['lost']} lost"
    out.passed = out.passed and acc["ok"] == 2 and acc["failed"] == 1 and acc["lost"] == 0 and \
        "'..' segment" in acc["failed_reasons"].get(bad, "")
    return out


def unlisted_file(h: Harness) -> Outcome:
    """A .cpart file in the data folder that the manifest does not list is never processed, and counted."""
    out = Outcome("unlisted_file", "bad input: partition", "a .cpart file present but not in the manifest")
    data = h.folder("unlisted")
    ids = make_dataset(data, 3)
    (data / "extra.cpart").write_bytes(partition_bytes(4, 99))
    result, run_dir = h.run(h.request("rel-unlisted", data))
    _finish(out, ids, run_dir, result, expect_failed=set())
    unlisted = result.summary.get("summary_in_execution", {}) or {}
    n = int(unlisted.get("unlisted") or 0)
    out.outcome = f"run {result.status.lower()}; {out.ok} ok; {n} unlisted file(s) ignored: {unlisted.get('unlisted_keys')}"
    out.passed = out.passed and out.ok == 3 and n == 1 and not (run_dir / "records" / "extra.json").exists()
    return out


def partition_fifo(h: Harness) -> Outcome:
    """A partition that is a FIFO (opening it would block forever) is that partition's failure."""
    out = Outcome("partition_fifo", "bad input: partition", "partition 1 is a FIFO, not a regular file")
    data = h.folder("fifo")
    ids = make_dataset(data, 3)
    (data / "part-00001.cpart").unlink()
    os.mkfifo(data / "part-00001.cpart")
    result, run_dir = h.run(h.request("rel-fifo", data))
    return _finish(out, ids, run_dir, result, expect_failed={"part-00001"}, expect_in_error="not a regular file")


def catalogue_extra_field(h: Harness) -> Outcome:
    """A catalogue row with one field more than the header declares is refused with its line number."""
    out = Outcome("catalogue_extra_field", "bad input: catalogue", "line 3 of a catalogue has 20 fields for 19 columns")
    path = h.folder("catalogue") / "cat.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = " ".join(["0.1"] + ["18.0"] * 9 + ["0.05"] * 9)
    path.write_text("# " + " ".join(catalog.COLUMNS) + "\n" + row + "\n7 " + row + "\n")
    return _must_refuse(out, lambda: catalog.load_catalog(path), catalog.CatalogError, "line 3 has 20 fields")


SCENARIOS: list[Callable[[Harness], Outcome]] = [
    _bad_partition("truncated", "file cut to half its size (manifest has the full size)", "truncated"),
    _bad_partition("corrupt", "first 64 bytes overwritten with random bytes", "bad magic"),
    _bad_partition("wrong_shape", "header says image [4,5,16,64]", "wrong shape"),
    _bad_partition("wrong_dtype", "header says magnitude <i8", "wrong dtype"),
    _bad_partition("nan_image", "one image pixel is NaN", "non-finite"),
    _bad_partition("inf_magnitude", "one magnitude is +inf", "non-finite"),
    _bad_partition("empty", "a well-formed partition with 0 samples", "empty partition"),
    _bad_partition("checksum", "last 64 bytes changed after the manifest recorded the sha256", "checksum mismatch"),
    _bad_partition("missing", "listed in the manifest, absent from storage", "missing from"),
    duplicate_ids_manifest,
    duplicate_ids_keys,
    _request_refusal("unknown_field", "request has an extra field 'colour'", {"colour": "red"}, "unknown field 'colour'"),
    _request_refusal("missing_field", "request without 'model'", {"model": None}, "missing field 'model'"),
    _request_refusal("code_field", "request carries 'script' (the published payload did)",
                     {"script": "/tmp/x.py"}, "never carries code"),
    _request_refusal("batch_size_zero", "batch_size 0", {"batch_size": 0}, "batch_size"),
    _request_refusal("batch_size_huge", "batch_size 10,000,000", {"batch_size": 10_000_000}, "batch_size"),
    _request_refusal("key_traversal", "partition key '../../etc/passwd'",
                     {"partitions": ["../../etc/passwd"]}, "'..' segment"),
    _request_refusal("key_absolute", "partition key '/etc/passwd'", {"partitions": ["/etc/passwd"]}, "absolute"),
    _request_refusal("s3_traversal", "data 's3://data-bucket/ok/../other'", {"data": "s3://data-bucket/ok/../other"},
                     "field 'data'"),
    outside_allow_list,
    run_id_reuse,
    _model_case("model_missing", "model folder does not exist", lambda h, f: f / "does-not-exist", "folder not found"),
    _model_case("model_checksum", "artifact.json sha256 of model.onnx is wrong",
                _model_meta(lambda m: m["files"]["onnx"].update(sha256="0" * 64)), "sha256 mismatch"),
    _model_case("model_version", "artifact format_version 99", _model_meta(lambda m: m.update(format_version=99)),
                "format_version 99"),
    _model_case("predictions_nonfinite", "model outputs NaN for every row",
                lambda h, f: write_tiny_artifact(f, scale=float("nan")), "not finite"),
    _fault("crash_mid_partition", "inference process exits while reading partition 1 (every attempt)",
           [{"kind": "crash", "partition": "part-00001"}], True, "no record"),
    _fault("timeout", "inference of partition 1 sleeps past the 5 s function timeout",
           [{"kind": "timeout", "partition": "part-00001"}], True, "no record", timeout_s=5),
    _fault("throttle", "Invoke answers 429 TooManyRequestsException twice for partition 1 (ASL Retry)",
           [{"kind": "throttle", "partition": "part-00001", "times": 2}], False),
    _fault("upload_error_transient", "writing partition 1's predictions fails once (InfrastructureError Retry)",
           [{"kind": "upload_error", "partition": "part-00001", "times": 1}], False),
    _fault("upload_error_persistent", "writing partition 1's predictions fails on every attempt",
           [{"kind": "upload_error", "partition": "part-00001"}], True, "injected fault: upload"),
    # Inference prefetches partition 1 while computing 0, so a crash reading 1 usually takes 0 (in flight,
    # no record yet) down too: 0 may fail; nothing may be lost, and the redrive brings all three back.
    _fault("crash_with_world_size", "crash on partition 1 of a 3-partition invocation (world_size=1; "
           "partition 0 in flight under prefetch)",
           [{"kind": "crash", "partition": "part-00001"}], True, "no record", world_size=1,
           failed_ids=("part-00001", "part-00002"), in_flight=("part-00000",)),
    # issue 13: run and model identity, IAM, readers
    concurrent_writers,
    overwrite_direct_crash,
    model_replaced,
    _request_refusal("batch_size_bool", '"batch_size": true (was taken as 1)', {"batch_size": True},
                     "must be a number, got bool"),
    _request_refusal("tolerance_nan", "tolerated_failure_percentage NaN", {"tolerated_failure_percentage": float("nan")},
                     "must be finite"),
    _deploy_refusal("deploy_wildcard_data", "deploy --data 's3://*'", ["s3://*"], "s3://example-results/runs",
                    "wildcard"),
    _deploy_refusal("deploy_results_is_data", "results location = data location",
                    ["s3://data-bucket/parts"], "s3://data-bucket/parts", "overlaps"),
    _deploy_refusal("deploy_results_contains_data", "results location is the data bucket's root",
                    ["s3://data-bucket/parts"], "s3://data-bucket", "overlaps"),
    _deploy_refusal("deploy_bad_bucket_name", "bucket name 'example-Bad_Bucket'", ["s3://example-Bad_Bucket/parts"],
                    "s3://example-results/runs", "naming rules"),
    manifest_bad_key,
    unlisted_file,
    partition_fifo,
    catalogue_extra_field,
    # issue 13: exit status and interruption (cosmic_utils.jobs.reliability_exits: the command line as a user types it)
    *reliability_exits.SCENARIOS,
]


def run_scenarios(workdir: Path, names: list[str] | None = None, concurrency: int = 4,
                  progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run the scenarios (all, or those named) on one shared local backend; one Outcome each."""
    chosen = [s for s in SCENARIOS if names is None or s.__name__ in names]
    outcomes = []
    with Harness(workdir, concurrency=concurrency) as h:
        make_dataset(h.good, 3)
        for scenario in chosen:
            t0 = time.perf_counter()
            try:
                out = scenario(h)
                out.seconds = time.perf_counter() - t0  # every scenario's wall time, its redrives included
            except Exception as exc:  # a harness error is a row too, never a silent skip
                log.exception("scenario %s", scenario.__name__)
                out = Outcome(scenario.__name__, "harness error", "", outcome="harness error",
                              error=_short(f"{type(exc).__name__}: {exc}"))
            outcomes.append(out)
            if progress:
                progress(out)
    return outcomes


def load_test(workdir: Path, partitions: int = 2000, max_concurrency: int = 8, concurrency: int = 4,
              samples: tuple[int, ...] = (1, 2, 3, 4), harness: Harness | None = None) -> Outcome:
    """``partitions`` tiny partitions (1-4 samples) through the Map, one per invocation, MaxConcurrency
    above the core count: wall time, Summarize's peak RSS (it streams every record), this process's.
    ``harness``: run on an already started one (one moto hook per process) instead of a new one."""
    t0 = time.perf_counter()
    out = Outcome("load", "load", f"{partitions:,} partitions of {min(samples)}-{max(samples)} samples, "
                                  f"MaxConcurrency {max_concurrency} on {os.cpu_count()} cores")
    data = Path(workdir) / "inputs" / f"load-{partitions}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    pool = [partition_bytes(n, 1000 + n) for n in samples]  # a few finite arrays, written many times
    entries = []
    for k in range(partitions):
        blob = pool[k % len(pool)]
        key = partition_name(k)
        (data / key).write_bytes(blob)
        entries.append(ManifestEntry(k, key, samples[k % len(samples)], len(blob), hashlib.sha256(blob).hexdigest(),
                                     "load", k))
    Manifest(entries=entries, source="load").write(data)
    ids = [partition_id_for(e.key) for e in entries]
    want = {partition_id_for(e.key): e.samples for e in entries}
    t_data = time.perf_counter() - t0
    with ExitStack() as stack:
        h = harness or stack.enter_context(Harness(Path(workdir), concurrency=concurrency))
        t_run = time.perf_counter()
        started = datetime.now(timezone.utc)
        result, run_dir = h.run(h.request(f"rel-load-{partitions}", data, max_concurrency=max_concurrency,
                                          overwrite=True), wait_s=0.5 * partitions)
        run_s = time.perf_counter() - t_run
        be = h.stack.backend()
        reports = [parse_report_line(line) for line in be.report_lines("cosmic-summarize", started)]
        summarize_rss = max((r.max_memory_used_mb for r in reports if r is not None), default=None)
    acc = account(run_dir, ids, want)
    out.partitions, out.ok, out.failed, out.lost = partitions, acc["ok"], acc["failed"], acc["lost"]
    out.seconds = time.perf_counter() - t0
    out.details = {
        "data_s": t_data, "run_s": run_s, "execution_wall_s": result.summary.get("wall_s"),
        "summarize_peak_rss_mb": summarize_rss,
        "inference_peak_rss_mb": result.summary.get("timing", {}).get("max_peak_rss_mb"),
        "harness_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "partitions_per_s": partitions / run_s if run_s > 0 else None,
        "s_per_1000_partitions": 1000.0 * run_s / partitions if partitions else None,
        "summary_partitions_ok": result.summary.get("partitions_ok"),
        "status": result.status,
    }
    out.outcome = (f"run {result.status.lower()} in {run_s:.0f} s ({partitions / run_s:.1f} partitions/s, "
                   f"{1000.0 * run_s / partitions:.0f} s per 1,000); Summarize peak RSS {summarize_rss} MB")
    out.passed = result.status == "SUCCEEDED" and acc["ok"] == partitions and acc["lost"] == 0 and \
        result.summary.get("partitions_ok") == partitions
    return out


def write_table(outcomes: list[Outcome], out_dir: Path) -> tuple[Path, Path]:
    """reliability.csv and reliability.md (a Markdown table) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "reliability.csv", out_dir / "reliability.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for o in outcomes:
            writer.writerow(portable(o.row()))
    # Scenario folders live under a temp dir: records say $TMPDIR/..., not this machine's path.
    md_path.write_text(portable_text(markdown_table(outcomes)))
    (out_dir / "reliability.json").write_text(json.dumps(
        portable([{**o.row(), "details": json.loads(json.dumps(o.details, default=str))} for o in outcomes]),
        indent=1, default=str))
    # the machine the timings (the load run) were measured on, for the README table
    (out_dir / "reliability_provenance.json").write_text(json.dumps(provenance(), indent=1) + "\n")
    return csv_path, md_path


def markdown_table(outcomes: list[Outcome]) -> str:
    """The table as Markdown (what `cosmic reliability` prints)."""
    head = "| scenario | what | outcome | error shown | ok | failed | lost | faults fired | redrive | pass |\n"
    head += "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    rows = []
    for o in outcomes:
        def cell(text: str) -> str:
            return str(text).replace("|", "/").replace("\n", " ")
        rows.append(f"| {o.scenario} | {cell(o.what)} | {cell(o.outcome)} | {cell(o.error)} | {o.ok} | {o.failed} "
                    f"| {o.lost} | {o.faults_fired or ''} | {cell(o.redrive)} | {'yes' if o.passed else 'NO'} |")
    lost = sum(o.lost for o in outcomes)
    tail = f"\n{sum(o.passed for o in outcomes)}/{len(outcomes)} scenarios passed; partitions lost in total: {lost}\n"
    return head + "\n".join(rows) + "\n" + tail
