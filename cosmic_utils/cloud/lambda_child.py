"""A tiny Lambda runtime for the local backend: one child process = one warm "container".

Run by :mod:`.moto_hook` via ``runpy.run_path`` with ``CODE_DIR MODULE.FUNCTION`` (the unpacked zip
first on ``sys.path``); it imports the handler, says it is ready, then serves one JSON line per
invocation on stdin and answers on the original stdout. Standard library only, and never the
installed cosmic_utils: the zip's copy runs, and the reliability fault plan wraps that copy.
Reasoning: docs/aws.md#implementation-notes-cosmic_utilscloud, docs/reliability.md
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import json
import logging
import os
import resource
import sys
import time
import traceback
from typing import Any


class _BlockTorch(importlib.abc.MetaPathFinder):
    """Refuses torch, so code that would not fit the Lambda zip fails here too."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ImportError(f"import of {fullname!r} inside a Lambda handler (torch is not in the package)")
        return None


class LambdaContext:
    """The attributes of Lambda's context object that handlers use."""

    def __init__(self, request_id: str, timeout_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.invoked_function_arn = os.environ.get("COSMIC_FUNCTION_ARN", "")
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


FAULT_PLAN_ENV = "COSMIC_FAULT_PLAN"
FAULT_KINDS = ("crash", "timeout", "upload_error", "throttle")


def read_fault_plan(path: str | None) -> list[dict[str, Any]]:
    """The faults of the plan file at ``path`` (none when unset or missing)."""
    if not path or not os.path.exists(path):
        return []
    with open(path) as fh:
        faults = json.load(fh).get("faults", [])
    return [f for f in faults if isinstance(f, dict) and f.get("kind") in FAULT_KINDS]


def partition_id_of(key: str) -> str:
    """The pipeline's partition id of a key (cosmic_utils.runtime.items.partition_id_for)."""
    stem = key[: -len(".cpart")] if key.endswith(".cpart") else key
    return stem.replace("/", "__")


def fault_matches(fault: dict[str, Any], function_name: str, partition_id: str | None) -> bool:
    """Whether ``fault`` targets this function (``inference``: ``cosmic-inference``) and partition (none: any)."""
    fn = str(fault.get("function") or "inference")
    if not (function_name == fn or function_name.endswith("-" + fn)):
        return False
    want = fault.get("partition")
    return want is None or (partition_id is not None and partition_id == want)


def take_fault(plan_path: str, fault: dict[str, Any], where: str) -> bool:
    """Consume one charge of ``fault`` (atomic marker files, safe across processes); log when it fires."""
    state = os.path.join(os.path.dirname(plan_path), "fault-state")
    os.makedirs(state, exist_ok=True)
    times = fault.get("times")
    fired = times is None
    for i in range(0 if fired else int(times)):
        try:
            os.close(os.open(os.path.join(state, f"{fault.get('id', 'fault')}.{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            fired = True
            break
        except FileExistsError:
            continue
    if fired:
        with open(os.path.join(state, "fired.jsonl"), "a") as fh:
            fh.write(json.dumps({"id": fault.get("id"), "kind": fault.get("kind"), "where": where,
                                 "pid": os.getpid(), "time": time.time()}) + "\n")
    return fired


def _install_fault_hooks(plan_path: str) -> None:
    """Wrap the handler's read_partition and storage writes (the zip's own modules) to inject faults."""
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    try:  # the modules the handler imported (sys.modules), else the zip's
        partition = importlib.import_module("cosmic_utils.runtime.partition")
        storage = importlib.import_module("cosmic_utils.runtime.storage")
    except ImportError:
        return
    original_read = partition.read_partition

    def read_partition(source: Any, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        pid = partition_id_of(str(name)) if name else None
        for fault in read_fault_plan(plan_path):
            if fault["kind"] in ("crash", "timeout") and fault_matches(fault, function_name, pid) \
                    and take_fault(plan_path, fault, f"{function_name}:{pid}"):
                print(f"FAULT INJECTED: {fault['kind']} while reading {name}", file=sys.stderr, flush=True)
                if fault["kind"] == "crash":
                    os._exit(137)
                time.sleep(float(fault.get("sleep_s", 3600)))
        return original_read(source, name, *args, **kwargs)

    partition.read_partition = read_partition
    # modules of the zip that imported the function by name (the Inference step) get the wrapper too
    for name, module in list(sys.modules.items()):
        if name.startswith("cosmic_utils.") and getattr(module, "read_partition", None) is original_read:
            module.read_partition = read_partition  # type: ignore[attr-defined]
    for cls in (storage.S3Storage, storage.LocalStorage):
        original_write = cls.write_bytes

        def write_bytes(self: Any, key: str, data: bytes, _orig: Any = original_write) -> None:
            parts = key.split("/")
            if len(parts) >= 2 and parts[-2] == "predictions":
                pid = parts[-1].rsplit(".", 1)[0]
                for fault in read_fault_plan(plan_path):
                    if fault["kind"] == "upload_error" and fault_matches(fault, function_name, pid) \
                            and take_fault(plan_path, fault, f"{function_name}:{pid}"):
                        raise storage.StorageError(f"injected fault: upload of {key} failed (connection reset)")
            _orig(self, key, data)

        cls.write_bytes = write_bytes


def _max_rss_mb() -> float:
    """Peak RSS of this process's own memory, MB: ``VmHWM`` of /proc/self/status, not ``ru_maxrss``,
    which Linux carries from the parent across fork + exec (a 400 MB harness's child: 427 vs 11 MB)."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _RequestIdFilter(logging.Filter):
    """Stamps the current invocation's request id on every log record, as Lambda's runtime does."""

    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _lambda_log_handler() -> _RequestIdFilter:
    """Log lines in Lambda's text format (``[LEVEL]\tts\trequest-id\tmessage``) on stderr, the container log."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    rid = _RequestIdFilter()
    handler.addFilter(rid)
    logging.getLogger().addHandler(handler)
    return rid


def main(argv: list[str]) -> int:
    code_dir, spec = argv[1], argv[2]
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # handler prints land in the log, never in the protocol
    sys.stdout = sys.stderr
    if os.environ.get("COSMIC_BLOCK_TORCH") == "1":
        sys.meta_path.insert(0, _BlockTorch())
    # The unpacked zip first, as /var/task is in Lambda; drop the working-directory entry ("" of -c).
    sys.path[:] = [code_dir] + [p for p in sys.path if p not in ("", ".", code_dir)]
    module_name, _, func_name = spec.rpartition(".")
    t0 = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
    except Exception as exc:  # report the init failure as Lambda does (Runtime.ImportModuleError)
        proto.write(json.dumps({"ready": False, "error": {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import module '{module_name}': {exc}",
            "stackTrace": traceback.format_exc().splitlines()}}) + "\n")
        return 1
    plan_path = os.environ.get(FAULT_PLAN_ENV)
    if plan_path:
        _install_fault_hooks(plan_path)
    rid = _lambda_log_handler()
    proto.write(json.dumps({"ready": True, "init_ms": (time.perf_counter() - t0) * 1000.0}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        ctx = LambdaContext(msg.get("request_id", ""), int(msg.get("timeout_ms", 900_000)))
        t0 = time.perf_counter()
        rid.request_id = ctx.aws_request_id
        print(f"START RequestId: {ctx.aws_request_id} Version: $LATEST", file=sys.stderr, flush=True)
        try:
            payload = handler(msg.get("event"), ctx)
            out: dict[str, Any] = {"ok": True, "payload": payload}
        except Exception as exc:
            out = {"ok": False, "error": {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                          "stackTrace": traceback.format_exc().splitlines()}}
            traceback.print_exc()
            # The runtime's error line (Lambda's JSON shape, with the request id): what `cosmic logs` reads.
            print(json.dumps({"errorType": out["error"]["errorType"], "errorMessage": out["error"]["errorMessage"],
                              "requestId": ctx.aws_request_id}), file=sys.stderr, flush=True)
        out["duration_ms"] = (time.perf_counter() - t0) * 1000.0
        out["max_rss_mb"] = _max_rss_mb()
        sys.stderr.flush()
        try:
            proto.write(json.dumps(out, default=str) + "\n")
        except (TypeError, ValueError) as exc:
            proto.write(json.dumps({"ok": False, "duration_ms": out["duration_ms"], "max_rss_mb": out["max_rss_mb"],
                                    "error": {"errorType": "Runtime.MarshalError",
                                              "errorMessage": f"result is not JSON: {exc}"}}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
