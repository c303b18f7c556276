"""The local backend: the aws backend's own deploy-and-run code against an embedded moto server.

:class:`LocalStack` starts moto's threaded server (Step Functions execution on), installs
:mod:`.moto_hook` and hands out an :class:`~cosmic_utils.cloud.aws.AwsBackend` pointed at it.
Reasoning: docs/pipeline.md#the-local-backend-cosmic_utilscloudlocal-moto_hook
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from cosmic_utils.cloud import moto_hook
from cosmic_utils.cloud.aws import AwsBackend

log = logging.getLogger(__name__)

REGION = "us-east-1"
#: The results bucket inside the embedded moto server (never a real bucket).
LOCAL_RESULTS_BUCKET = "cosmic-local-results"
LOCAL_RESULTS_URI = f"s3://{LOCAL_RESULTS_BUCKET}/runs"
LOCAL_DATA_BUCKET = "cosmic-local-data"
_QUIET = ("werkzeug", "moto", "moto.stepfunctions", "botocore", "urllib3")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Recursion limit and C stack of the moto server's threads: moto's Distributed Map worker recurses
#: a few frames per item (``DistributedItemProcessorWorker._eval_pool``; docs/reliability.md#load).
RECURSION_LIMIT = 200_000
THREAD_STACK_BYTES = 512 * 2**20


def _allow_deep_distributed_maps() -> None:
    """Raise :data:`RECURSION_LIMIT` and :data:`THREAD_STACK_BYTES` (process-wide, only ever raised)."""
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)
    if threading.stack_size() < THREAD_STACK_BYTES:
        threading.stack_size(THREAD_STACK_BYTES)


class LocalStack:
    """An embedded moto server with Step Functions execution and the Lambda hook."""

    def __init__(self, concurrency: int = 4, workdir: Path | None = None, block_torch: bool = True,
                 port: int | None = None) -> None:
        self.concurrency = concurrency
        self.port = port  # None: a free one (the stand-in server of :mod:`.standin` names its own)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="cosmic-local-"))
        self.block_torch = block_torch
        self.server: Any = None
        self.endpoint_url = ""
        self.runtime: moto_hook.LocalLambdaRuntime | None = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_levels: dict[str, int] = {}

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _setenv(self, key: str, value: str) -> None:
        self._saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def start(self) -> None:
        import requests
        from moto.server import ThreadedMotoServer

        moto_hook.check_moto()
        port = self.port or free_port()
        # moto's Step Functions interpreter calls Lambda and S3 at localhost:$MOTO_PORT.
        self._setenv("MOTO_PORT", str(port))
        for name in _QUIET:
            lg = logging.getLogger(name)
            self._saved_levels[name] = lg.level
            lg.setLevel(logging.ERROR if name != "moto.stepfunctions" else logging.CRITICAL)
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        _allow_deep_distributed_maps()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        resp = requests.post(f"{self.endpoint_url}/moto-api/config",
                             json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
        resp.raise_for_status()
        self.runtime = moto_hook.install(self.endpoint_url, self.concurrency, self.workdir / "lambda",
                                         self.block_torch)

    def backend(self) -> AwsBackend:
        """An AwsBackend whose clients talk to this server with dummy credentials."""
        import boto3

        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        aws_session_token="testing", region_name=REGION)
        return AwsBackend(session, endpoint_url=self.endpoint_url, region=REGION)

    def set_faults(self, faults: list[dict[str, Any]] | None) -> None:
        """Install a fault plan (``{"kind", "function", "partition", "times"}`` each) in a file only the
        backend owns, never the run request; ``None`` or ``[]`` removes it. Used charges are forgotten."""
        if self.runtime is None:
            raise RuntimeError("LocalStack is not started")
        plan = self.runtime.fault_plan
        shutil.rmtree(plan.parent, ignore_errors=True)
        if faults:
            plan.parent.mkdir(parents=True, exist_ok=True)
            numbered = [{"id": f"f{i}", **f} for i, f in enumerate(faults)]
            plan.write_text(json.dumps({"faults": numbered}, indent=1))

    def fired_faults(self) -> list[dict[str, Any]]:
        """The faults that fired since the plan was set (one entry per hit)."""
        if self.runtime is None:
            return []
        log_path = self.runtime.fault_plan.parent / "fault-state" / "fired.jsonl"
        if not log_path.exists():
            return []
        return [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]

    def copy_logs(self, target: Path) -> None:
        """Copy the handler processes' logs (stderr of every container) to ``target``."""
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((self.workdir / "lambda").glob("*.log")):
            shutil.copyfile(path, target / path.name)

    def stop(self) -> None:
        moto_hook.uninstall()
        self.runtime = None
        if self.server is not None:
            with contextlib.suppress(Exception):  # the server is going away anyway
                import requests

                requests.post(f"{self.endpoint_url}/moto-api/config",
                              json={"stepfunctions": {"execute_state_machine": False}}, timeout=5)
                requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10)
            self.server.stop()
            self.server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def stage_folder(backend: AwsBackend, folder: Path, bucket: str, prefix: str) -> str:
    """Upload a local dataset folder into moto S3; returns its s3:// URI."""
    s3 = backend.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"
