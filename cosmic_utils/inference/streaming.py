"""Stream a dataset of partitions through an engine with bounded memory, and record the run.

Each partition is read in row slices of one batch; a background thread (:class:`prefetch`)
reads ahead through a bounded queue, so memory is at most ``(prefetch + 2) x batch`` of inputs
whatever the data size. ``python -m cosmic_utils.inference.streaming --dataset DIR --engine onnx
--json OUT`` runs one pass in a fresh process (its peak RSS its own; ``cosmic bench --stream-gb``).
Reasoning: docs/inference.md ("Streaming over partitions").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from cosmic_utils import config
from cosmic_utils.inference.measure import PeakRSS, RunMeasurement, machine_info, new_run_id, write_records

log = logging.getLogger(__name__)
T = TypeVar("T")

_DONE = object()


@dataclass
class Batch:
    """Rows ``start:start+len`` of partition ``partition_id`` (raw arrays as stored)."""

    partition_id: int
    key: str
    start: int
    image: np.ndarray
    magnitude: np.ndarray
    redshift: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])


def iter_dataset(dataset: Any, batch_size: int, max_samples: int | None = None) -> Iterator[Batch]:
    """Batches of every partition of a dataset (local folder, ``s3://`` URI or Storage), in
    manifest order, reading only each batch's rows. ``max_samples`` stops early."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from cosmic_utils.data.dataset import iter_storage_batches
    from cosmic_utils.runtime.manifest import Manifest
    from cosmic_utils.runtime.storage import Storage, open_storage

    store = dataset if isinstance(dataset, Storage) else open_storage(dataset)
    manifest = Manifest.read(store)
    left = max_samples
    for entry in manifest.entries:
        start = 0
        for part in iter_storage_batches(store, entry.key, batch_size):
            n = part.samples if left is None else min(part.samples, left)
            if n > 0:
                yield Batch(entry.partition_id, entry.key, start, part.image[:n], part.magnitude[:n], part.redshift[:n])
            start += part.samples
            if left is not None:
                left -= n
                if left <= 0:
                    return


class prefetch(Iterator[T]):  # noqa: N801 - used like a function: ``for b in prefetch(it, 2)``
    """Iterate ``source`` in a background thread, at most ``depth`` items ahead (memory bounded). Reader
    exceptions re-raise in the consumer; ``close()`` (or leaving a ``with`` block) stops the reader.
    ``max_queued`` records the largest queue length seen (tests check it)."""

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.depth = depth
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.max_queued = 0
        self._source = iter(source)
        self._thread = threading.Thread(target=self._run, name="cosmic-prefetch", daemon=True)
        self._finished = False
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                self.max_queued = max(self.max_queued, self._queue.qsize())
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            close = getattr(self._source, "close", None)
            if close is not None and self._stop.is_set():
                with contextlib.suppress(Exception):  # best effort
                    close()

    def __iter__(self) -> prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE or isinstance(item, BaseException):
            self._finished = True
            self._thread.join()
            raise StopIteration if item is _DONE else item
        return item

    def close(self) -> None:
        """Stop the reader thread and drop what it had read ahead."""
        self._stop.set()
        self._finished = True
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=10)

    def __enter__(self) -> prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        if not getattr(self, "_finished", True):
            self._stop.set()


@dataclass
class StreamResult:
    """What one streaming pass did: counts, timings and (optionally) the predictions."""

    samples: int = 0
    batches: int = 0
    wall_s: float = 0.0
    first_batch_s: float = float("nan")
    batch_seconds: list[float] = field(default_factory=list)
    read_wait_s: float = 0.0
    z_pred: np.ndarray | None = None
    z_true: np.ndarray | None = None
    partitions: int = 0


def stream_predict(engine: Any, dataset: Any, batch_size: int = 256, prefetch_depth: int = 2,
                   max_samples: int | None = None, keep_predictions: bool = True) -> StreamResult:
    """Run ``engine.predict`` over a dataset, batch by batch, reading ahead in a thread. ``wall_s``: first
    request to last prediction (reading included, model loading not); ``batch_seconds``: ``engine.predict``
    alone; ``read_wait_s``: time the engine waited for data. ``keep_predictions`` keeps one float32 per sample
    (and label)."""
    result = StreamResult()
    preds: list[np.ndarray] = []
    trues: list[np.ndarray] = []
    seen: set[int] = set()
    t0 = time.perf_counter()
    with prefetch(iter_dataset(dataset, batch_size, max_samples), depth=prefetch_depth) as batches:
        while True:
            t_wait = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            t1 = time.perf_counter()
            result.read_wait_s += t1 - t_wait
            z = engine.predict(batch.image, batch.magnitude)
            result.batch_seconds.append(time.perf_counter() - t1)
            if result.batches == 0:
                result.first_batch_s = time.perf_counter() - t0
            result.batches += 1
            result.samples += len(batch)
            seen.add(batch.partition_id)
            if keep_predictions:
                preds.append(np.asarray(z, dtype=np.float32))
                trues.append(np.asarray(batch.redshift, dtype=np.float32))
    result.wall_s = time.perf_counter() - t0
    result.partitions = len(seen)
    if keep_predictions:
        result.z_pred = np.concatenate(preds) if preds else np.empty(0, np.float32)
        result.z_true = np.concatenate(trues) if trues else np.empty(0, np.float32)
    return result


def run_local(engine_name: str, dataset: Any, batch_size: int = 256, model_dir: str | os.PathLike[str] | None = None,
              threads: int | None = None, max_samples: int | None = None, prefetch_depth: int = 2,
              run_id: str | None = None, run_dir: str | os.PathLike[str] | None = None, write: bool = True,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One local run: load the engine (a refused reduced engine falls back to fp32, recorded), stream the
    dataset, return its record and, when ``write``, append it to ``runs/local/<run-id>/records.csv`` (or
    ``run_dir``)."""
    from cosmic_utils.inference.engines import create_engine
    from cosmic_utils.runtime.gating import create_engine_with_fallback, engine_fields

    run_id = run_id or new_run_id("local")
    model_dir = Path(model_dir) if model_dir is not None else config.DEFAULT_MODEL_DIR
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        engine = create_engine_with_fallback(engine_name, model_dir, threads=threads, create=create_engine)  # refused -> fp32, recorded
        load_s = time.perf_counter() - t0
        try:
            res = stream_predict(engine, dataset, batch_size=batch_size, prefetch_depth=prefetch_depth,
                                 max_samples=max_samples, keep_predictions=False)
        finally:
            engine.close()
    m = RunMeasurement(
        engine=engine.name, precision=engine.precision, batch_size=batch_size, threads=engine.threads,
        samples=res.samples, wall_s=res.wall_s, model_load_s=load_s, first_batch_s=res.first_batch_s,
        batch_seconds=res.batch_seconds, peak_rss_mb=rss.peak_mb,
        kind=getattr(engine, "kind", "local_cpu"), device=getattr(engine, "device_name", "cpu"),
        extra={"partitions": res.partitions, "read_wait_s": res.read_wait_s, "prefetch": prefetch_depth,
               "peak_rss_method": rss.method, "model_dir": str(model_dir), "dataset": str(dataset),
               **{k: v for k, v in engine_fields(engine, engine_name).items() if k != "engine"},
               **(extra or {})},
    )
    row = m.record(run_id, machine_info())
    if write:
        write_records([row], run_dir=run_dir, run_id=run_id)
    return row


def run_child(args: Sequence[str]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """``python -m cosmic_utils.inference.streaming ARGS`` in a fresh process (its peak RSS its own): the
    finished process and the record it wrote as ``--json`` (None when it wrote none)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        path = os.pathsep.join(p for p in (str(config.PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        proc = subprocess.run([sys.executable, "-m", "cosmic_utils.inference.streaming", *args, "--json", str(out)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}, check=False)
        return proc, (json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None)


def main(argv: list[str] | None = None) -> int:
    """``python -m cosmic_utils.inference.streaming``: one streaming run in this process."""
    parser = argparse.ArgumentParser(description="Stream a dataset through an engine and record the run.")
    parser.add_argument("--dataset", required=True, help="dataset folder or s3:// URI (with manifest.json)")
    parser.add_argument("--engine", default="onnx")
    parser.add_argument("--model", default=str(config.DEFAULT_MODEL_DIR), help="model artifact folder")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--run-dir", default=None, help="write records.csv here (default runs/local/<run-id>)")
    parser.add_argument("--json", default=None, help="also write the record as JSON to this file")
    parser.add_argument("--no-write", action="store_true", help="do not write records.csv")
    args = parser.parse_args(argv)
    row = run_local(args.engine, args.dataset, batch_size=args.batch_size, model_dir=args.model,
                    threads=args.threads, max_samples=args.max_samples, prefetch_depth=args.prefetch,
                    run_dir=args.run_dir, write=not args.no_write)
    text = json.dumps(row, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
