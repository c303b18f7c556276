"""The published local inference loop (``torch.load`` of a ``.pt`` TensorDataset, ``DataLoader``,
eager fp32 model under ``no_grad``), reproduced as the in-run baseline of every comparison.

:class:`PublishedLoopWorker` runs it in a fresh interpreter, so it never inherits the engines'
allocator tuning. Reasoning and timing definitions: docs/inference.md ("The published loop").
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cosmic_utils.data.pt_io import write_pt_partition as write_pt  # the .pt this loop reads (bench, tests)
from cosmic_utils.inference.measure import PeakRSS, RunMeasurement
from cosmic_utils.inference.torch_engines import load_torch_artifact
from cosmic_utils.inference.tuning import malloc_tuned
from cosmic_utils.model.export import Preprocess


@dataclass
class PublishedLoopResult:
    """Predictions and the measurement of one pass of the published loop."""

    z_pred: np.ndarray
    measurement: RunMeasurement
    data_load_s: float


def load_pt_dataset(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` of a ``.pt`` TensorDataset (restricted unpickler, TensorDataset allowed)."""
    with torch.serialization.safe_globals([TensorDataset]):
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(obj, (tuple, list)):
        obj = TensorDataset(*obj)
    if not hasattr(obj, "__getitem__") or not hasattr(obj, "__len__"):
        raise ValueError(f"{path}: expected a TensorDataset, got {type(obj).__name__}")
    return obj


def load_published_model(model_or_dir: nn.Module | str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """The eager ``ViTAstro`` (eval mode) and the artifact's preprocessing (None for a module)."""
    if isinstance(model_or_dir, nn.Module):
        return model_or_dir.eval(), None
    return load_torch_artifact(model_or_dir)


def run_published_loop(pt_path: str | os.PathLike[str], model_or_dir: nn.Module | str | os.PathLike[str],
                       batch_size: int = 256, threads: int | None = None, max_batches: int | None = None,
                       model: tuple[nn.Module, Any] | None = None) -> PublishedLoopResult:
    """One pass of the published loop over a ``.pt`` file. ``threads``: torch's intra-op threads
    (default: torch's); ``model``: a loaded ``(model, preprocessing)`` to reuse (``model_load_s`` 0)."""
    if threads:
        torch.set_num_threads(int(threads))
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        net, pre = model if model is not None else load_published_model(model_or_dir)
        net.eval()
        preprocess = Preprocess(pre).eval()
        load_s = 0.0 if model is not None else time.perf_counter() - t0
        t1 = time.perf_counter()
        dataset = load_pt_dataset(pt_path)
        data_load_s = time.perf_counter() - t1
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        outputs: list[np.ndarray] = []
        batch_seconds: list[float] = []
        first = float("nan")
        samples = 0
        t2 = time.perf_counter()
        with torch.no_grad():
            tb = time.perf_counter()
            for i, batch in enumerate(loader):
                image, magnitude = batch[0], batch[1]
                x, m = preprocess(image, magnitude)
                out = net([x, m])
                outputs.append(out.cpu().numpy().reshape(-1))
                now = time.perf_counter()
                batch_seconds.append(now - tb)
                tb = now
                if i == 0:
                    first = now - t2
                samples += int(image.shape[0])
                if max_batches is not None and i + 1 >= max_batches:
                    break
        wall = time.perf_counter() - t2
    m = RunMeasurement(
        engine="published-loop", precision="fp32", batch_size=batch_size, threads=torch.get_num_threads(),
        samples=samples, wall_s=wall, model_load_s=load_s, first_batch_s=first, batch_seconds=batch_seconds,
        peak_rss_mb=rss.peak_mb, extra={"data_load_s": data_load_s, "peak_rss_method": rss.method},
    )
    z = np.concatenate(outputs).astype(np.float32) if outputs else np.empty(0, np.float32)
    return PublishedLoopResult(z_pred=z, measurement=m, data_load_s=data_load_s)


def _worker_main(conn: Any, model_dir: str, threads: int | None) -> None:
    """Child body of :class:`PublishedLoopWorker`: ``(pt_path, batch_size, max_batches)`` ->
    ``("ok", PublishedLoopResult)`` or ``("error", text)``; ``None`` ends it. Only paths and numbers travel."""
    try:
        if threads:
            torch.set_num_threads(int(threads))
        model = load_published_model(model_dir)
        conn.send(("ready", {"pid": os.getpid(), "malloc_tuned": malloc_tuned(),
                             "threads": torch.get_num_threads()}))
    except BaseException as exc:  # report, then exit
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        pt_path, batch_size, max_batches = msg
        try:
            res = run_published_loop(pt_path, model_dir, batch_size=batch_size, threads=threads,
                                     max_batches=max_batches, model=model)
            conn.send(("ok", res))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class PublishedLoopWorker:
    """The published loop in a fresh interpreter:
    ``with PublishedLoopWorker(model_dir, threads) as w: w.run(pt, batch_size)`` returns what
    :func:`run_published_loop` would, from an untuned process. A ``python -m ... --serve`` subprocess over a
    socket pair (``multiprocessing``'s spawn would re-run the caller's ``__main__``); the parent waits while
    the child computes; child errors raise ``RuntimeError``."""

    def __init__(self, model_dir: str | os.PathLike[str], threads: int | None = None,
                 start_timeout_s: float = 300.0) -> None:
        parent, child = socket.socketpair()
        root = Path(__file__).resolve().parents[2]  # the folder holding cosmic_utils/
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cosmic_utils.inference.published_loop", "--serve", str(child.fileno()),
             str(Path(model_dir).resolve()), str(int(threads or 0))],
            pass_fds=(child.fileno(),), env=env,
        )
        child.close()
        self._conn = Connection(parent.detach())
        if not self._conn.poll(start_timeout_s):
            self.close()
            raise RuntimeError(f"published-loop worker did not start within {start_timeout_s:.0f} s")
        #: what the child reports about itself: pid, malloc_tuned (always False), threads
        self.child_state: dict[str, Any] = self._expect("ready")

    def _expect(self, want: str) -> Any:
        try:
            kind, payload = self._conn.recv()
        except (EOFError, ConnectionResetError):
            raise RuntimeError(f"published-loop worker exited (code {self._proc.poll()})") from None
        if kind != want:
            raise RuntimeError(f"published-loop worker: {payload}")
        return payload

    def run(self, pt_path: str | os.PathLike[str], batch_size: int,
            max_batches: int | None = None) -> PublishedLoopResult:
        """One pass of the published loop over ``pt_path`` in the child."""
        self._conn.send((str(pt_path), int(batch_size), max_batches))
        return self._expect("ok")

    def close(self) -> None:
        """Stop the child (idempotent)."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._conn.close()

    def __enter__(self) -> PublishedLoopWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(argv: list[str]) -> int:
    """``--serve FD MODEL_DIR THREADS``: the child side of :class:`PublishedLoopWorker`."""
    fd, model_dir, threads = int(argv[0]), argv[1], int(argv[2])
    conn = Connection(fd)
    try:
        _worker_main(conn, model_dir, threads or None)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        # run the imported module's copy, so results pickle as cosmic_utils...PublishedLoopResult
        from cosmic_utils.inference.published_loop import _serve as serve

        sys.exit(serve(sys.argv[2:]))
    sys.exit("usage: python -m cosmic_utils.inference.published_loop --serve FD MODEL_DIR THREADS "
             "(started by PublishedLoopWorker)")


def published_batch_sweep(model_dir: str | os.PathLike[str], dataset_dir: str | os.PathLike[str],
                          batch_sizes: list[int], work_dir: str | os.PathLike[str], run_id: str,
                          threads: int | None = None, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The published loop on a rendered dataset at every batch size, one record each: the data is
    written once as a ``.pt`` in ``work_dir`` (removed afterwards) and run in one fresh child."""
    from cosmic_utils.data.dataset import load_dataset  # lazy: keeps pandas out of the child

    part = load_dataset(dataset_dir, verify=False)
    pt = write_pt(Path(work_dir) / "published.pt", part.image, part.magnitude, part.redshift)
    rows: list[dict[str, Any]] = []
    try:
        with PublishedLoopWorker(model_dir, threads=threads) as worker:
            for size in batch_sizes:
                row = worker.run(pt, batch_size=size).measurement.record(run_id)
                row.update(dataset=str(dataset_dir), model_dir=str(model_dir), **(extra or {}))
                rows.append(row)
    finally:
        pt.unlink()
    return rows
