"""Measurements shared by every local run: timers, latency percentiles, peak RSS, machine
information, the fp32 matmul peak, and the tidy run records (``runs/local/<run-id>/records.csv``).

Peak RSS is the reset ``VmHWM`` (else 5 ms psutil sampling); library versions are read without
importing them; torch is imported only by :func:`matmul_peak_gflops`.
Reasoning: docs/inference.md ("Measurements and records").
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils import config
from cosmic_utils.provenance import LIBRARIES, library_version, model_fields, portable, provenance
from cosmic_utils.runtime.memory import read_hwm_mb

#: Columns of ``runs/local/<run-id>/records.csv`` (docs/architecture.md, "Run records"), in order.
RECORD_COLUMNS: tuple[str, ...] = (
    "kind", "engine", "precision", "batch_size", "threads", "samples", "data_bytes", "data_gb",
    "wall_s", "samples_per_s", "gb_per_s", "model_load_s", "first_batch_s", "batch_p50_ms",
    "batch_p95_ms", "peak_rss_mb", "device", "cpu_model", "isa", "cpu_flags", "isa_caps", "cpu_type",
    "torch_version", "onnxruntime_version",
    "timestamp", "run_id",
)
LOCAL_RUNS_DIR: Path = config.RUNS_DIR / "local"
#: CPU probe fields copied into every record and bench row.
PROBE_FIELDS: tuple[str, ...] = ("cpu_model", "isa", "cpu_flags", "isa_caps", "cpu_type")


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of durations in seconds, in milliseconds (NaN if empty)."""
    if len(seconds) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(seconds, dtype=np.float64), q) * 1e3)


def current_rss_mb() -> float:
    """Resident set size of this process now, in MB (2**20 bytes)."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """Peak resident memory (MB) of this process between ``__enter__`` and ``__exit__``; ``method``
    is ``"vmhwm"`` (kernel high-water mark reset at entry, exact) or ``"sampled"`` (5 ms polling)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, current_rss_mb())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.peak_mb = current_rss_mb()
        if _reset_hwm() and read_hwm_mb() is not None:
            self.method = "vmhwm"
        else:
            self.method = "sampled"
            self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def read(self) -> float:
        """The peak so far (MB)."""
        if self.method == "vmhwm":
            hwm = read_hwm_mb()
            if hwm is not None:
                self.peak_mb = max(self.peak_mb, hwm)
        else:
            self.peak_mb = max(self.peak_mb, current_rss_mb())
        return self.peak_mb

    def __exit__(self, *exc: object) -> None:
        self.read()
        if self._thread is not None:
            self._stop.set()
            self._thread.join()


def machine_info() -> dict[str, Any]:
    """The CPU probe, memory and library versions; ``flags`` (a list) is kept for readers of older
    bench files (``cpu_flags`` is the probe's string)."""
    import psutil

    from cosmic_utils.runtime.cpu import cpu_probe

    probe = cpu_probe()
    return {
        **probe,
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 2),
        "flags": probe["cpu_flags"].split(),
        "platform": platform.platform(),
        "python_version": platform.python_version(),
        **{f"{lib}_version": library_version(lib) for lib in (*LIBRARIES, "onnx")},
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
    }


def matmul_peak_gflops(threads: int | None = None, n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best achieved GFLOP/s of ``torch.mm`` on two ``n x n`` ``dtype`` matrices (float32: the
    yardstick of every "fraction of peak"; or bfloat16) on ``threads`` threads."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
        b = torch.randn(n, n, generator=g).to(getattr(torch, dtype))
        with torch.inference_mode():
            torch.mm(a, b)
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.mm(a, b)
                best = min(best, time.perf_counter() - t0)
        return 2.0 * n**3 / best / 1e9
    finally:
        torch.set_num_threads(previous)


def new_run_id(prefix: str = "local") -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-<6 hex>`` (UTC), unique and sortable."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:6]}"


def utc_now() -> str:
    """ISO-8601 UTC timestamp with seconds."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunMeasurement:
    """What one local run measured (turned into a record row by :meth:`record`)."""

    engine: str
    precision: str
    batch_size: int
    threads: int
    samples: int = 0
    wall_s: float = 0.0
    model_load_s: float = 0.0
    first_batch_s: float = float("nan")
    batch_seconds: list[float] = field(default_factory=list)
    peak_rss_mb: float = float("nan")
    kind: str = "local_cpu"
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("nan")

    def record(self, run_id: str, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One tidy row with :data:`RECORD_COLUMNS` first, then any ``extra`` columns."""
        info = info or machine_info()
        data_bytes = self.samples * config.SAMPLE_BYTES
        row: dict[str, Any] = {
            "kind": self.kind, "engine": self.engine, "precision": self.precision,
            "batch_size": int(self.batch_size), "threads": int(self.threads), "samples": int(self.samples),
            "data_bytes": int(data_bytes), "data_gb": data_bytes / config.GB, "wall_s": self.wall_s,
            "samples_per_s": self.samples_per_s,
            "gb_per_s": data_bytes / config.GB / self.wall_s if self.wall_s > 0 else float("nan"),
            "model_load_s": self.model_load_s, "first_batch_s": self.first_batch_s,
            "batch_p50_ms": percentile_ms(self.batch_seconds, 50),
            "batch_p95_ms": percentile_ms(self.batch_seconds, 95),
            "peak_rss_mb": self.peak_rss_mb, "device": self.device,
            **{k: info.get(k, "") for k in (*PROBE_FIELDS, "torch_version", "onnxruntime_version")},
            "timestamp": utc_now(), "run_id": run_id,
        }
        return {**row, **self.extra}


def write_records(rows: Iterable[Mapping[str, Any]], run_dir: str | os.PathLike[str] | None = None,
                  run_id: str | None = None) -> Path:
    """Write rows to ``<run_dir>/records.csv`` (default ``runs/local/<run_id>/``), :data:`RECORD_COLUMNS`
    first, appending (widening the header if needed); rows get provenance, model columns, portable paths."""
    prov = provenance()
    # what admits a record (cosmic records ship): the model's identity, trained or not, its score
    rows = [{**portable(dict(r)), **{k: v for k, v in prov.items() if k not in r},
             **{k: v for k, v in model_fields(r.get("model_dir")).items() if r.get(k) is None}} for r in rows]
    if run_dir is None:
        run_dir = LOCAL_RUNS_DIR / (run_id or new_run_id())
    path = Path(run_dir) / "records.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(RECORD_COLUMNS)
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    existing: list[str] = []
    if path.exists():
        with open(path, newline="") as fh:
            existing = next(csv.reader(fh), [])
    if existing:
        columns = existing + [c for c in columns if c not in existing]
        if columns != existing:  # new columns: rewrite with the wider header
            import pandas as pd

            new = pd.concat([pd.read_csv(path), pd.DataFrame(rows)], ignore_index=True, sort=False)
            new.reindex(columns=columns).to_csv(path, index=False)
            return path
    with open(path, "a" if existing else "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if not existing:
            writer.writeheader()
        writer.writerows(rows)
    return path


def check_batches(samples: int, batch_sizes: Iterable[int], min_batches: int = 4, what: str = "the data") -> None:
    """``ValueError`` (naming the sizes and the data that would do) when a batch size would not fill
    ``min_batches`` full batches of ``samples``: "batch 256" over 97 samples says nothing about 256."""
    bad = sorted(int(b) for b in batch_sizes if samples < min_batches * int(b))
    if bad:
        need = min_batches * bad[-1]
        raise ValueError(f"{what} is {samples} samples: batch size(s) {bad} would run fewer than {min_batches} full "
                         f"batches; use at least {need} samples ({need * config.SAMPLE_BYTES / 1e9:.3g} GB) or "
                         f"smaller batch sizes")
