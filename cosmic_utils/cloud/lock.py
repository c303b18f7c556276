"""An exclusive lock on a run folder, so two writers never mix their outputs in one folder.

:func:`run_lock` holds ``fcntl.flock`` on ``<run folder>/.lock`` (holding the pid, for the message)
for the whole run; a second writer gets :class:`RunLockedError` at once, and a dead holder's lock
is simply taken over. Reasoning: docs/pipeline.md#run-and-model-identity-issue-13
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Name of the lock file inside a run folder.
LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run folder; the message names the folder and the holder's pid."""

    def __init__(self, run_dir: Path, pid: int | None) -> None:
        self.run_dir = run_dir
        self.pid = pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"run folder {run_dir} is in use by {who} (lock {run_dir / LOCK_NAME}): wait for it to "
                         "finish or choose another --out / run id")


def _holder(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[Path]:
    """Hold an exclusive, non-blocking lock on ``run_dir`` (created if needed) for the block; not
    re-entrant (flock is per open file: a second lock in this process is refused too)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLockedError(run_dir, _holder(path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)  # no pid of a finished run left behind
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
