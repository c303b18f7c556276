"""The exit-status contract of every ``cosmic`` command, and how signals become exceptions.

0 success, 1 refused / failed as a whole, 2 usage error, 3 partial (each failure printed on
stderr), 130 SIGINT, 143 SIGTERM. :func:`cosmic_utils.cli.main` applies it centrally: an
exception a user can cause is printed as ``cosmic <cmd>: error: <message>`` without a
traceback unless ``-v``. The table: README "Exit status", docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO

OK = 0
FAILED = 1
USAGE = 2
PARTIAL = 3
SIGINT_STATUS = 128 + int(signal.SIGINT)    # 130
SIGTERM_STATUS = 128 + int(signal.SIGTERM)  # 143


class UsageError(Exception):
    """Arguments that cannot work together (exit 2); argparse handles the rest of usage errors."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; a KeyboardInterrupt so every ``except KeyboardInterrupt`` cleans up.
    ``status`` is ``128 + signal number`` (130 for Ctrl-C, 143 for SIGTERM)."""

    def __init__(self, signum: int = int(signal.SIGINT), message: str = "") -> None:
        self.signum = int(signum)
        super().__init__(message or f"interrupted ({self.signal_name})")

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def status(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def _swap_handlers(handler: Any) -> dict[int, Any]:
    """Install ``handler`` for SIGINT and SIGTERM; returns the previous ones (none outside the main thread)."""
    saved: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            break
    return saved


def _restore(saved: Mapping[int, Any]) -> None:
    for sig, handler in saved.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(sig, handler)


def install_signal_handlers() -> Callable[[], None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread; returns a restore function."""
    saved = _swap_handlers(_raise_interrupted)
    return lambda: _restore(saved)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT / SIGTERM while cleanup runs (a second Ctrl-C must not leave children behind);
    signals that arrive meanwhile are recorded in the yielded list, not raised."""
    arrived: list[int] = []
    saved = _swap_handlers(lambda s, f: arrived.append(s))
    try:
        yield arrived
    finally:
        _restore(saved)


#: The project's named error classes: anything a user can cause through input or setup.
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("cosmic_utils.runtime.artifact", "ArtifactError"), ("cosmic_utils.data.catalog", "CatalogError"),
    ("cosmic_utils.runtime.manifest", "ManifestError"), ("cosmic_utils.runtime.partition", "PartitionError"),
    ("cosmic_utils.runtime.request", "RequestError"), ("cosmic_utils.runtime.steps", "DataError"),
    ("cosmic_utils.runtime.steps", "InfrastructureError"), ("cosmic_utils.inference.predict", "PredictError"),
    ("cosmic_utils.runtime.storage", "StorageError"), ("cosmic_utils.model.checkpoint", "CheckpointError"),
    ("cosmic_utils.runtime.preprocess", "PreprocessingError"), ("cosmic_utils.cloud.aws", "DeployError"),
    ("cosmic_utils.cloud.lambda_zip", "PackagingError"), ("cosmic_utils.cloud.moto_hook", "MotoHookError"),
    ("cosmic_utils.model.export", "ExportError"), ("cosmic_utils.cloud.asl", "DefinitionError"),
    ("cosmic_utils.cloud.lock", "RunLockedError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    """The classes of :data:`USER_ERRORS` whose module is loaded (an exception of a never-imported
    class cannot exist, so nothing heavy such as torch is imported here)."""
    types: list[type[BaseException]] = [OSError]
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            types.append(cls)
    return tuple(types)


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an exception that reached the command line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, UsageError):
        return USAGE, text
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    if isinstance(exc, _user_error_types()):
        return FAILED, text
    module = type(exc).__module__ or ""
    if module.startswith(("botocore", "boto3", "s3transfer")):  # credentials, missing bucket, access denied
        return FAILED, f"{type(exc).__name__}: {text}"
    if isinstance(exc, (ValueError, TypeError, KeyError)) and module.startswith("cosmic_utils"):
        return FAILED, text
    if isinstance(exc, ValueError):  # e.g. a value checked deep inside a library call
        return FAILED, f"{type(exc).__name__}: {text}"
    return FAILED, f"internal error {type(exc).__name__}: {text} (rerun with -v for the traceback)"


def print_failures(prog: str, failed: Iterable[Mapping[str, Any]], what: str = "partition",
                   id_key: str = "partition_id", out: TextIO | None = None) -> int:
    """One stderr line per failure: ``<prog>: <what> <id> failed: <first reason>``; returns the count."""
    out = out or sys.stderr
    n = 0
    for item in failed:
        reason = " ".join(str(item.get("error") or "no reason recorded").split())
        print(f"{prog}: {what} {item.get(id_key)} failed: {reason}", file=out)
        n += 1
    return n
