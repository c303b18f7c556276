"""The local data-size study: a tiled dataset streams the right samples; rows carry what the report needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cosmic_utils import config
from cosmic_utils.inference import streaming
from cosmic_utils.jobs import local_data_size as study
from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import partition_name, write_partition
from cosmic_utils.runtime.storage import LocalStorage


def _base(root: Path, counts: list[int]) -> Path:
    rng = np.random.default_rng(0)
    entries = []
    for k, n in enumerate(counts):
        key = partition_name(k)
        info = write_partition(root / key, rng.standard_normal((n, 5, 32, 32)).astype(np.float32),
                               15 + 5 * rng.random((n, 5)), rng.random(n).astype(np.float32), {"partition_id": k})
        entries.append(ManifestEntry(k, key, info.samples, info.nbytes, info.sha256, "test", 0))
    Manifest(entries=entries, source="test").write(LocalStorage(root))
    return root


def test_tiled_dataset_repeats_the_base_partitions(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", [30, 20])
    gb = 170 * config.SAMPLE_BYTES / config.GB  # 170 samples: 30+20+30+20+30+20+30 = 180 >= 170
    tiled = study.tiled_dataset(base, gb)
    m = Manifest.read(LocalStorage(tiled))
    assert [e.samples for e in m.entries] == [30, 20, 30, 20, 30, 20, 30]
    assert m.extra["tiled_from"] == str(base.resolve())
    batches = list(streaming.iter_dataset(tiled, batch_size=16, max_samples=170))
    assert sum(len(b) for b in batches) == 170
    first = np.concatenate([b.image for b in batches if b.partition_id == 0])
    again = np.concatenate([b.image for b in batches if b.partition_id == 2])
    np.testing.assert_array_equal(first, again)  # partition 2 is base partition 0 again
    assert study.tiled_dataset(base, gb / 2) == tiled.parent / f"{base.name}_tiled_{gb / 2:g}gb"


def test_run_study_rows_and_interleaved_repeats(tmp_path: Path) -> None:
    base = _base(tmp_path / "base", [40])
    calls: list[int] = []

    def fake(dataset: Path, engine: str, batch: int, threads: int | None, n: int, model: Path) -> dict[str, Any]:
        calls.append(n)
        return {"data_gb": n * config.SAMPLE_BYTES / config.GB, "samples": n, "wall_s": n / 100, "samples_per_s": 100.0,
                "gb_per_s": 100 * config.SAMPLE_BYTES / config.GB, "peak_rss_mb": 300.0, "engine": engine,
                "precision": "fp32", "threads": 2, "batch_size": batch, "cpu_model": "Test CPU", "cpu_type": "x86_64"}

    out = tmp_path / "local_data_size.csv"
    sizes = [20 * config.SAMPLE_BYTES / config.GB, 60 * config.SAMPLE_BYTES / config.GB]
    study.run_study(sizes, repeats=2, engine="onnx", base=base, out=out, run_point=fake, echo=lambda _: None)
    assert calls == [20, 60, 20, 60]  # sizes interleaved within each repeat
    df = pd.read_csv(out)
    assert list(df.columns[:len(study.COLUMNS)]) == list(study.COLUMNS)
    assert df["repeat"].tolist() == [1, 1, 2, 2] and set(df["kind"]) == {"measured"} and set(df["backend"]) == {"local"}
    assert "git_commit" in df.columns and df["data_note"].str.contains("page cache").all()
    with pytest.raises(ValueError, match="repeats"):
        study.run_study(sizes, repeats=0, base=base, out=out, run_point=fake)
