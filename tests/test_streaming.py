"""Streaming over partitions: order, completeness, bounded read-ahead, records."""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cosmic_utils.inference import streaming
from cosmic_utils.inference.measure import RECORD_COLUMNS, RunMeasurement, write_records
from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import partition_name, write_partition
from cosmic_utils.runtime.storage import LocalStorage


def _dataset(root: Path, counts: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images, mags, zs, entries = [], [], [], []
    for k, n in enumerate(counts):
        image = rng.standard_normal((n, 5, 32, 32)).astype(np.float32)
        mag = 15 + 5 * rng.random((n, 5))
        z = rng.random(n).astype(np.float32)
        key = partition_name(k)
        info = write_partition(root / key, image, mag, z, {"partition_id": k})
        entries.append(ManifestEntry(k, key, info.samples, info.nbytes, info.sha256, "test", seed))
        images.append(image)
        mags.append(mag)
        zs.append(z)
    Manifest(entries=entries, source="test").write(LocalStorage(root))
    return np.concatenate(images), np.concatenate(mags), np.concatenate(zs)


class MeanEngine:
    """A numpy stand-in engine: z = mean magnitude / 100 (order-sensitive, cheap)."""

    name = "fake"
    precision = "fp32"
    threads = 1

    def predict(self, image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
        return (magnitude.mean(axis=1) / 100).astype(np.float32)

    def close(self) -> None:
        pass


def test_iter_dataset_yields_every_sample_in_order(tmp_path: Path) -> None:
    image, mag, z = _dataset(tmp_path, [37, 50, 13])
    batches = list(streaming.iter_dataset(tmp_path, batch_size=16))
    assert [b.partition_id for b in batches] == [0, 0, 0, 1, 1, 1, 1, 2]
    assert all(len(b) <= 16 for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.image for b in batches]), image)
    np.testing.assert_array_equal(np.concatenate([b.magnitude for b in batches]), mag)
    np.testing.assert_array_equal(np.concatenate([b.redshift for b in batches]), z)
    assert [b.start for b in batches[:3]] == [0, 16, 32]
    part = list(streaming.iter_dataset(tmp_path, batch_size=16, max_samples=40))
    assert sum(len(b) for b in part) == 40
    with pytest.raises(ValueError, match="batch_size"):
        list(streaming.iter_dataset(tmp_path, batch_size=0))


def test_prefetch_is_bounded_and_in_order() -> None:
    produced = []
    consumed = []
    lead = []
    lock = threading.Lock()

    def source() -> Iterator[int]:
        for i in range(30):
            with lock:
                produced.append(i)
                lead.append(len(produced) - len(consumed))
            yield i

    depth = 3
    pf = streaming.prefetch(source(), depth=depth)
    for item in pf:
        time.sleep(0.002)  # a slow consumer: the reader must wait, not run ahead
        with lock:
            consumed.append(item)
    assert consumed == list(range(30))
    assert pf.max_queued <= depth
    # in the queue (depth) + the one being put + the one the consumer holds
    assert max(lead) <= depth + 2


def test_prefetch_reraises_and_closes() -> None:
    def bad() -> Iterator[int]:
        yield 1
        raise OSError("disk gone")

    pf = streaming.prefetch(bad(), depth=2)
    assert next(pf) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(pf)

    def endless() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    pf2 = streaming.prefetch(endless(), depth=2)
    assert next(pf2) == 0
    pf2.close()
    assert not pf2._thread.is_alive()
    with pytest.raises(ValueError, match="depth"):
        streaming.prefetch(iter([]), depth=0)


def test_stream_predict_matches_direct_prediction(tmp_path: Path) -> None:
    image, mag, z = _dataset(tmp_path, [20, 20, 5])
    engine = MeanEngine()
    res = streaming.stream_predict(engine, tmp_path, batch_size=8, prefetch_depth=2)
    assert res.samples == 45 and res.partitions == 3 and res.batches == 3 + 3 + 1
    np.testing.assert_array_equal(res.z_pred, engine.predict(image, mag))
    np.testing.assert_array_equal(res.z_true, z)
    assert res.wall_s > 0 and res.first_batch_s <= res.wall_s and len(res.batch_seconds) == res.batches


def test_run_local_writes_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _dataset(data, [30, 12])
    import cosmic_utils.inference.engines as engines

    monkeypatch.setattr(engines, "create_engine", lambda name, folder, threads=None: MeanEngine())
    row = streaming.run_local("fake", data, batch_size=16, model_dir=tmp_path, run_id="t1", run_dir=tmp_path / "run")
    assert row["samples"] == 42 and row["data_bytes"] == 42 * 20_520
    assert row["peak_rss_mb"] > 0 and row["samples_per_s"] > 0
    with open(tmp_path / "run" / "records.csv") as fh:
        header = next(csv.reader(fh))
    assert header[: len(RECORD_COLUMNS)] == list(RECORD_COLUMNS)


def test_records_have_documented_columns(tmp_path: Path) -> None:
    m = RunMeasurement(engine="onnx", precision="fp32", batch_size=32, threads=2, samples=100, wall_s=0.5,
                       batch_seconds=[0.1, 0.2, 0.2], peak_rss_mb=10.0)
    row = m.record("run-1")
    assert list(row)[: len(RECORD_COLUMNS)] == list(RECORD_COLUMNS)
    assert row["samples_per_s"] == pytest.approx(200.0)
    assert row["gb_per_s"] == pytest.approx(200 * 20_520 / 1e9)
    assert row["batch_p50_ms"] == pytest.approx(200.0)
    path = write_records([row], run_dir=tmp_path)
    write_records([dict(row, extra_col=1)], run_dir=tmp_path)  # appends, widens the header
    import pandas as pd

    df = pd.read_csv(path)
    assert len(df) == 2 and list(df.columns[: len(RECORD_COLUMNS)]) == list(RECORD_COLUMNS)
    assert "extra_col" in df.columns
