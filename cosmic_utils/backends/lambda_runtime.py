"""A tiny Lambda runtime for the local backend: one child process = one warm "container".

Started by :mod:`cosmic_utils.backends.moto_hook` as ``python lambda_runtime.py CODE_DIR
MODULE.FUNCTION``. It imports the handler from the unpacked deployment package (``CODE_DIR`` is
first on ``sys.path``), says it is ready (with the init duration), then serves invocations one
at a time, like a Lambda execution environment that stays warm between invocations:

* parent -> child (stdin), one JSON line per invocation: ``{"event", "request_id", "timeout_ms"}``
* child -> parent (the original stdout), one JSON line per result:
  ``{"ok": true, "payload"}`` or ``{"ok": false, "error": {"errorMessage", "errorType",
  "stackTrace"}}``, with ``duration_ms`` and ``max_rss_mb`` (peak RSS of this process so far,
  what Lambda reports as "Max Memory Used").

Everything the handler prints goes to stderr (the container log), never into the protocol.
With ``COSMIC_BLOCK_TORCH=1`` any ``import torch`` fails, as it would in the slim Lambda zip.

Standard library only, and no import of cosmic_utils: the handler's own copy (from the zip)
is the one that runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
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


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str]) -> int:
    code_dir, spec = argv[1], argv[2]
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # handler prints land in the log, never in the protocol
    sys.stdout = sys.stderr
    if os.environ.get("COSMIC_BLOCK_TORCH") == "1":
        sys.meta_path.insert(0, _BlockTorch())
    sys.path.insert(0, code_dir)
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
    proto.write(json.dumps({"ready": True, "init_ms": (time.perf_counter() - t0) * 1000.0}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        ctx = LambdaContext(msg.get("request_id", ""), int(msg.get("timeout_ms", 900_000)))
        t0 = time.perf_counter()
        print(f"START RequestId: {ctx.aws_request_id} Version: $LATEST", file=sys.stderr, flush=True)
        try:
            payload = handler(msg.get("event"), ctx)
            out: dict[str, Any] = {"ok": True, "payload": payload}
        except Exception as exc:
            out = {"ok": False, "error": {"errorMessage": str(exc), "errorType": type(exc).__name__,
                                          "stackTrace": traceback.format_exc().splitlines()}}
            traceback.print_exc()
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
