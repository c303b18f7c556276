"""Route moto's Lambda invocation to the real handler code in a child process.

:func:`install` replaces ``LambdaFunction._invoke_lambda`` of the pinned moto (5.2.5; moto runs
Lambda code only in Docker) and :func:`check_moto` makes a moto upgrade fail loudly. What the hook
does: docs/pipeline.md#the-local-backend-cosmic_utilscloudlocal-moto_hook
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cosmic_utils.cloud import lambda_child

log = logging.getLogger(__name__)

#: The moto version the hook was written against (pyproject pins it).
MOTO_VERSION = "5.2.5"
#: Attributes of moto's LambdaFunction the hook reads.
FUNCTION_ATTRIBUTES = ("code_bytes", "code_sha_256", "timeout", "memory_size", "handler", "function_name",
                       "environment_vars", "region", "function_arn", "logs_backend", "logs_group_name")


class MotoHookError(RuntimeError):
    """moto's Lambda internals are not what the hook was written for."""


def check_moto() -> Any:
    """Return ``moto.awslambda.models.LambdaFunction`` after checking what the hook relies on."""
    import moto
    from moto.awslambda import models

    cls = getattr(models, "LambdaFunction", None)
    method = getattr(cls, "_invoke_lambda", None)
    if cls is None or method is None:
        raise MotoHookError(f"moto {moto.__version__}: LambdaFunction._invoke_lambda is gone; the local "
                            f"backend was written for moto=={MOTO_VERSION}")
    params = list(inspect.signature(method).parameters)
    if params != ["self", "event"]:
        raise MotoHookError(f"moto {moto.__version__}: LambdaFunction._invoke_lambda{inspect.signature(method)} "
                            f"changed (expected (self, event)); the hook was written for moto=={MOTO_VERSION}")
    source = inspect.getsource(cls)
    if "self._invoke_lambda(event=body)" not in source:
        raise MotoHookError(f"moto {moto.__version__}: LambdaFunction.invoke no longer calls _invoke_lambda(event=body)")
    missing = [a for a in FUNCTION_ATTRIBUTES if f"self.{a}" not in source and not hasattr(cls, a)]
    if missing:
        raise MotoHookError(f"moto {moto.__version__}: LambdaFunction lacks {missing}")
    if moto.__version__ != MOTO_VERSION:
        log.warning("moto %s is not the pinned %s; the hook's checks passed", moto.__version__, MOTO_VERSION)
    return cls


def _throttled(message: str) -> Exception:
    """What Lambda's Invoke API answers when the account is out of concurrency (HTTP 429)."""
    from moto.core.exceptions import JsonRESTError

    class TooManyRequestsException(JsonRESTError):
        code = 429

    return TooManyRequestsException("TooManyRequestsException", message)


#: How the child starts: :func:`runpy.run_path` puts no script folder on ``sys.path`` and imports
#: nothing of the installed ``cosmic_utils``, so the unpacked zip (the working directory, as
#: ``/var/task`` on Lambda) is the project's only code there (docs/architecture.md, the local container).
_BOOT = "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"


class _Container:
    """One warm child process running :mod:`.lambda_child`."""

    def __init__(self, code_dir: Path, handler: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "ab")  # noqa: SIM115 - lives as long as the container
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, lambda_child.__file__, str(code_dir), handler], cwd=str(code_dir),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file, env=env, text=True,
            # Own session: a terminal's Ctrl-C reaches the runner only, which stops the execution
            # and then ends the children itself (abort) instead of each dying mid-write.
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.spawn_s = t0
        self.init_ms: float | None = None
        self.init_error: dict[str, Any] | None = None
        self.fresh = True

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self, timeout_s: float) -> bool:
        try:
            line = self.lines.get(timeout=timeout_s)
        except queue.Empty:
            return False
        if line is None:
            self.init_error = {"errorType": "Runtime.ExitError", "errorMessage": "runtime exited during init"}
            return False
        msg = json.loads(line)
        if not msg.get("ready"):
            self.init_error = msg.get("error")
            return False
        self.init_ms = (time.perf_counter() - self.spawn_s) * 1000.0
        return True

    def invoke(self, event: Any, request_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The child's result message, or None when it timed out or died."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"event": event, "request_id": request_id,
                                              "timeout_ms": int(timeout_s * 1000)}) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout_s)
        except (queue.Empty, BrokenPipeError, OSError):
            return None
        return None if line is None else json.loads(line)

    def kill(self) -> None:
        """End the child now (SIGTERM, then SIGKILL after 2 s): an interrupted run does not wait."""
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            except OSError:
                pass
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class LocalLambdaRuntime:
    """Pools of warm child processes, keyed by function and code hash, behind a semaphore."""

    def __init__(self, endpoint_url: str, concurrency: int, workdir: Path | None = None,
                 block_torch: bool = True) -> None:
        self.endpoint_url = endpoint_url
        self.concurrency = max(1, int(concurrency))
        self.semaphore = threading.BoundedSemaphore(self.concurrency)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cosmic-lambda-"))
        self.block_torch = block_torch
        self._idle: dict[tuple[str, str], list[_Container]] = {}
        self._all: list[_Container] = []
        self._lock = threading.Lock()
        self.invocations = 0
        self.cold_starts = 0
        #: Set by :meth:`abort` (an interrupted run): invocations are answered with an error at once.
        self.stopping = False
        self.throttled = 0
        #: The fault plan file the children read (written by LocalStack.set_faults); absent = no faults.
        self.fault_plan = self.workdir / "faults" / "plan.json"

    def code_dir(self, fn: Any) -> Path:
        sha = str(fn.code_sha_256 or hashlib.sha256(fn.code_bytes).hexdigest())
        target = self.workdir / "code" / sha.replace("/", "_").replace("+", "-")[:40]
        with self._lock:
            if not (target / ".complete").exists():
                target.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as zf:
                    zf.extractall(target)
                (target / ".complete").write_text("ok")
        return target

    def environment(self, fn: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "MOTO_", "COSMIC_S3_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update({str(k): str(v) for k, v in (fn.environment_vars or {}).items()})
        env.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": str(fn.region), "AWS_REGION": str(fn.region),
            "AWS_ENDPOINT_URL": self.endpoint_url, "COSMIC_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_LAMBDA_FUNCTION_NAME": str(fn.function_name),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "COSMIC_FUNCTION_ARN": str(fn.function_arn),
            "PYTHONUNBUFFERED": "1",
        })
        if self.block_torch:
            env["COSMIC_BLOCK_TORCH"] = "1"
        env[lambda_child.FAULT_PLAN_ENV] = str(self.fault_plan)
        return env

    def _maybe_throttle(self, fn: Any, event: Any) -> None:
        """Raise 429 for an invocation the fault plan throttles (before any container is used)."""
        faults = [f for f in lambda_child.read_fault_plan(str(self.fault_plan)) if f["kind"] == "throttle"]
        if not faults:
            return
        try:
            body = json.loads(event) if isinstance(event, (str, bytes)) else (event or {})
            keys = [p.get("key", "") for p in ((body.get("item") or {}).get("partitions") or [])]
        except (ValueError, AttributeError):
            keys = []
        pids = [lambda_child.partition_id_of(k) for k in keys] or [None]
        for fault in faults:
            for pid in pids:
                if lambda_child.fault_matches(fault, str(fn.function_name), pid) and \
                        lambda_child.take_fault(str(self.fault_plan), fault, f"{fn.function_name}:{pid}"):
                    self.throttled += 1
                    raise _throttled(f"Rate exceeded (injected throttle of {fn.function_name})")

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        """What moto's ``_invoke_lambda`` returns: (payload, errored, logs)."""
        if self.stopping:
            return json.dumps({"errorType": "Runtime.Stopped", "errorMessage": "the run was interrupted"}), True, ""
        self._maybe_throttle(fn, event)
        # A configuration update (environment, memory, timeout) retires warm containers, as on Lambda.
        config_key = json.dumps([fn.environment_vars or {}, str(fn.memory_size), str(fn.timeout)], sort_keys=True)
        key = (str(fn.function_arn), str(fn.code_sha_256), hashlib.sha256(config_key.encode()).hexdigest()[:16])
        timeout_s = float(fn.timeout or 3)
        request_id = str(uuid.uuid4())
        with self.semaphore:
            with self._lock:
                idle = self._idle.setdefault(key, [])
                container = idle.pop() if idle else None
            cold = container is None
            if container is None:
                container = _Container(self.code_dir(fn), str(fn.handler), self.environment(fn),
                                       self.workdir / f"{fn.function_name}.log")
                with self._lock:
                    self._all.append(container)
                if not container.wait_ready(max(timeout_s, 60.0)):
                    err = container.init_error or {"errorType": "Runtime.InitError", "errorMessage": "init timed out"}
                    container.close()
                    return self._finish(fn, request_id, err, True, 0.0, None, 0.0, error=True)
            log_offset = _size(container.log_path)
            t0 = time.perf_counter()
            result = container.invoke(event, request_id, timeout_s)
            lines = _request_lines(container.log_path, log_offset, request_id)
            wall_ms = (time.perf_counter() - t0) * 1000.0
            init_ms = container.init_ms if cold else None
            self.invocations += 1
            self.cold_starts += cold
            if result is None:  # timed out or died: the container is gone, as on Lambda
                # EOF on stdout comes before the exit is reaped: give a died runtime a moment
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.proc.wait(timeout=1.0 if wall_ms < timeout_s * 1000 else 0.01)
                died = container.proc.poll() is not None
                container.proc.kill()
                container.close()
                err = ({"errorType": "Runtime.ExitError", "errorMessage": "the runtime exited without a result"}
                       if died and wall_ms < timeout_s * 1000 else
                       {"errorType": "Sandbox.Timedout",
                        "errorMessage": f"Task timed out after {timeout_s:.2f} seconds"})
                # the line Lambda's runtime writes: a timeout line, or its JSON error for a died runtime
                lines.append(f"{_now_iso()} {request_id} {err['errorMessage']}" if err["errorType"] == "Sandbox.Timedout"
                             else json.dumps({**err, "requestId": request_id}))
                return self._finish(fn, request_id, err, cold, min(wall_ms, timeout_s * 1000), init_ms, 0.0,
                                    error=True, lines=lines)
            with self._lock:
                self._idle.setdefault(key, []).append(container)
        ok = bool(result.get("ok"))
        return self._finish(fn, request_id, result.get("payload" if ok else "error"), cold,
                            float(result.get("duration_ms", wall_ms)), init_ms, float(result.get("max_rss_mb", 0.0)),
                            error=not ok, lines=lines)

    def _finish(self, fn: Any, request_id: str, payload: Any, cold: bool, duration_ms: float,
                init_ms: float | None, rss_mb: float, error: bool,
                lines: list[str] | None = None) -> tuple[str, bool, str]:
        """Lambda's START / handler lines / END / REPORT into moto's CloudWatch Logs; ``lines`` (the
        handler's lines carrying this request id) let ``cosmic logs`` find partition and error."""
        billed = int(math.ceil(duration_ms)) if duration_ms > 0 else 1
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
                  f"Memory Size: {fn.memory_size} MB\tMax Memory Used: {int(math.ceil(rss_mb))} MB")
        if cold and init_ms is not None:
            report += f"\tInit Duration: {init_ms:.2f} ms"
        body = [ln for ln in (lines or []) if not ln.startswith(("START RequestId:", "END RequestId:"))]
        logs = "\n".join([f"START RequestId: {request_id} Version: $LATEST", *body, f"END RequestId: {request_id}",
                          report])
        if rss_mb > float(fn.memory_size):
            log.warning("%s used %.0f MB, more than its configured %s MB (measured, not enforced locally)",
                        fn.function_name, rss_mb, fn.memory_size)
        try:
            fn.logs_backend.ensure_log_group(fn.logs_group_name)
            fn.save_logs(logs)
        except Exception as exc:  # logs are best effort; the invocation result is not
            log.debug("could not write logs for %s: %s", fn.function_name, exc)
        return json.dumps(payload), error, logs

    def abort(self) -> None:
        """Refuse new invocations and end every child now (the run was interrupted)."""
        self.stopping = True
        with self._lock:
            containers, self._all, self._idle = self._all, [], {}
        for c in containers:
            c.kill()

    def resume(self) -> None:
        """Accept invocations again after :meth:`abort` (a server shared by several runs)."""
        self.stopping = False

    def close(self) -> None:
        with self._lock:
            containers, self._all, self._idle = self._all, [], {}
        for c in containers:  # EOF to every child first, so they all exit at once
            with contextlib.suppress(OSError):
                if c.proc.stdin and c.proc.poll() is None:
                    c.proc.stdin.close()
        for c in containers:
            c.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _request_lines(path: Path, offset: int, request_id: str) -> list[str]:
    """Lines of the (shared, interleaved) container log written since ``offset`` that carry ``request_id``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if request_id in ln]


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"


_ORIGINAL: Callable[..., Any] | None = None
_RUNTIME: LocalLambdaRuntime | None = None


def _invoke_in_child(self: Any, event: Any = None) -> tuple[str, bool, str]:
    if _RUNTIME is None:
        raise MotoHookError("moto hook called without an installed runtime")
    return _RUNTIME.invoke(self, {} if event is None else event)


def install(endpoint_url: str, concurrency: int, workdir: Path | None = None,
            block_torch: bool = True) -> LocalLambdaRuntime:
    """Patch moto (after :func:`check_moto`) so Lambda invocations run in child processes."""
    global _ORIGINAL, _RUNTIME
    cls = check_moto()
    if _RUNTIME is not None:
        raise MotoHookError("the moto hook is already installed in this process")
    _ORIGINAL = cls._invoke_lambda
    _RUNTIME = LocalLambdaRuntime(endpoint_url, concurrency, workdir, block_torch)
    cls._invoke_lambda = _invoke_in_child
    return _RUNTIME


def uninstall() -> None:
    """Stop every child process and restore moto's method."""
    global _ORIGINAL, _RUNTIME
    from moto.awslambda import models

    if _RUNTIME is not None:
        _RUNTIME.close()
    if _ORIGINAL is not None:
        models.LambdaFunction._invoke_lambda = _ORIGINAL
    _ORIGINAL = _RUNTIME = None


def abort_invocations() -> None:
    """Stop the installed runtime's children now (no-op when the hook is not installed)."""
    if _RUNTIME is not None:
        _RUNTIME.abort()


def resume_invocations() -> None:
    """Undo :func:`abort_invocations` for a runtime that serves further runs."""
    if _RUNTIME is not None:
        _RUNTIME.resume()


def default_concurrency(max_concurrency: int, per_core: int = 2) -> int:
    """``min(max_concurrency, cores * per_core)``: what the machine can run at once."""
    return max(1, min(int(max_concurrency), (os.cpu_count() or 1) * per_core))
