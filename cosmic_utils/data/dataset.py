"""Build datasets of partitions from the real catalogue: render, partition, checksum, manifest.

:func:`prepare_dataset` resamples the catalogue (validation file by default) to any size and
writes ``part-NNNNN.cpart`` + ``manifest.json`` to a folder or ``s3://bucket/prefix``, one
partition in memory at a time; partition ``k`` depends only on (seed, k, partition size, source),
so reruns are byte-identical. :func:`prepare_catalog_partitions` writes a catalogue as it is.
Reasoning: docs/data.md "Datasets" and "Sizes".
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cosmic_utils import config
from cosmic_utils.data import catalog
from cosmic_utils.data.render import RENDERER_VERSION, render_cutouts
from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from cosmic_utils.runtime.partition import (
    Partition,
    PartitionInfo,
    iter_batches,
    partition_name,
    read_partition,
    write_partition,
)
from cosmic_utils.runtime.storage import LocalStorage, Storage, open_storage

log = logging.getLogger(__name__)
PARTITION_KEY_RE = re.compile(r"^part-\d{5,}\.cpart$")


def default_dataset_dir(gb: float, partition_mb: float, seed: int = 0, source: str = "valid") -> Path:
    """``config.GENERATED_DIR / sdss_{gb}gb_{mb}mb_s{seed}`` (``_train`` appended for training data)."""
    suffix = "" if source == "valid" else f"_{source}"
    return config.GENERATED_DIR / f"sdss_{gb:g}gb_{partition_mb:g}mb_s{seed}{suffix}"


def partition_counts(total_samples: int, per_partition: int) -> list[int]:
    """Samples per partition: full partitions and a smaller last one."""
    if total_samples <= 0 or per_partition <= 0:
        raise ValueError(f"need positive sizes, got total={total_samples}, per_partition={per_partition}")
    n_parts = math.ceil(total_samples / per_partition)
    counts = [per_partition] * n_parts
    counts[-1] = total_samples - per_partition * (n_parts - 1)
    return counts


def render_catalog(df: pd.DataFrame, seed: int, **render: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image float32 [N,5,32,32], magnitude float64 [N,5], mag_err float64 [N,5])`` of a catalogue;
    ``render``: further arguments of :func:`render_cutouts` (``row_offset``, ``threads``)."""
    mags = catalog.magnitudes(df)
    errs = catalog.magnitude_errors(df)
    return render_cutouts(mags, errs, seed=seed, **render), mags, errs


def put_partition(store: Storage, key: str, image: np.ndarray, magnitude: np.ndarray, redshift: np.ndarray | None,
                  meta: dict[str, Any]) -> PartitionInfo:
    """Write one partition under ``key``: in place when local, else through a temp file and an upload."""
    path = store.local_path(key)
    if path is not None:
        return write_partition(path, image, magnitude, redshift, meta)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / "upload.cpart"
        info = write_partition(tmp, image, magnitude, redshift, meta)
        store.upload_file(tmp, key)  # managed (multipart) transfer
    return info


def _remove_stale(store: Storage, keep: set[str]) -> None:
    for key in store.list_keys("part-"):
        if PARTITION_KEY_RE.match(key) and key not in keep:
            log.info("removing stale partition %s", store.uri(key))
            store.delete(key)


def _write_dataset(
    out: str | os.PathLike[str] | Storage, s3_client: Any, df: pd.DataFrame, total: int, per: int,
    rows_for: Callable[[int, int], pd.DataFrame], seed: int, entry_source: str, gb: float | None,
    partition_mb: float, source: str, progress: bool, threads: int | None,
) -> Manifest:
    counts = partition_counts(total, per)
    store = open_storage(out, s3_client=s3_client) if not isinstance(out, Storage) else out
    if gb is not None:
        log.info("preparing %s: %.3g GB = %d samples in %d partitions of %d", store.root_uri, gb, total,
                 len(counts), per)
    from cosmic_utils.progress import progress as progress_bar

    entries: list[ManifestEntry] = []
    with progress_bar(total=sum(counts), unit="gal", unit_scale=True, desc=f"render -> {store.root_uri}",
                      disable=not progress) as bar:
        for k, count in enumerate(counts):
            rows = rows_for(k, count)
            image, mags, _ = render_catalog(rows, seed, row_offset=k * per, threads=threads)
            key = partition_name(k)
            meta = {"partition_id": k, "seed": seed, "source": entry_source, "row_offset": k * per,
                    "renderer_version": RENDERER_VERSION}
            info = put_partition(store, key, image, mags, catalog.redshifts(rows), meta)
            entries.append(ManifestEntry(k, key, info.samples, info.nbytes, info.sha256, entry_source, seed))
            del image, rows
            bar.update(count)
    _remove_stale(store, {e.key for e in entries})
    manifest = Manifest(entries=entries, seed=seed, renderer_version=RENDERER_VERSION, gb=gb,
                        partition_mb=partition_mb, source=source,
                        extra={"samples_per_partition": per, "catalog": str(df.attrs.get("source", source))})
    manifest.write(store)
    return manifest


def prepare_dataset(out: str | os.PathLike[str] | Storage, gb: float, partition_mb: float, seed: int = 0,
                    source: str = "valid", progress: bool = True, s3_client: Any = None,
                    threads: int | None = None) -> Manifest:
    """Render ``gb`` GB of galaxies resampled from the ``source`` catalogue into partitions under ``out``
    (a folder or ``s3://bucket/prefix``); returns the manifest (also written next to the partitions)."""
    total, per = config.samples_for_gb(gb), config.samples_per_partition(partition_mb)
    df = catalog.catalog_by_name(source)

    def rows_for(k: int, count: int) -> pd.DataFrame:
        return catalog.resample_catalog(df, count, seed=np.random.SeedSequence(seed, spawn_key=(k,)))

    return _write_dataset(out, s3_client, df, total, per, rows_for, seed, f"{source}:resampled", gb, partition_mb,
                          source, progress, threads)


def prepare_catalog_partitions(df: pd.DataFrame, out: str | os.PathLike[str] | Storage, partition_mb: float,
                               seed: int = 0, source: str = "catalog", progress: bool = True, s3_client: Any = None,
                               threads: int | None = None) -> Manifest:
    """Write the rows of ``df`` as they are (no resampling, in order) as a rendered dataset."""
    catalog.check_columns(df)
    per = config.samples_per_partition(partition_mb)

    def rows_for(k: int, count: int) -> pd.DataFrame:
        return df.iloc[k * per : k * per + count]

    return _write_dataset(out, s3_client, df, len(df), per, rows_for, seed, source, None, partition_mb, source,
                          progress, threads)


# ------------------------------------------------------------------ reading datasets
def iter_partitions(dataset: str | os.PathLike[str] | Storage, verify: bool = True,
                    s3_client: Any = None) -> Iterator[tuple[ManifestEntry, Partition]]:
    """Each partition of a dataset with its manifest entry (checksums checked when ``verify``)."""
    store = dataset if isinstance(dataset, Storage) else open_storage(dataset, s3_client=s3_client)
    manifest = Manifest.read(store)
    for entry in manifest.entries:
        path = store.local_path(entry.key)
        source: Any = path if path is not None else store.read_bytes(entry.key)
        yield entry, read_partition(source, name=entry.key, expected=entry if verify else None)


def load_dataset(dataset: str | os.PathLike[str] | Storage, max_samples: int | None = None, verify: bool = True,
                 s3_client: Any = None) -> Partition:
    """All (or the first ``max_samples``) samples of a dataset as one :class:`Partition`."""
    images, mags, zs = [], [], []
    got = 0
    for _entry, part in iter_partitions(dataset, verify=verify, s3_client=s3_client):
        take = part.samples if max_samples is None else min(part.samples, max_samples - got)
        images.append(part.image[:take])
        mags.append(part.magnitude[:take])
        zs.append(part.redshift[:take])
        got += take
        if max_samples is not None and got >= max_samples:
            break
    if not images:
        raise ValueError(f"dataset {dataset} has no partitions")
    return Partition(np.concatenate(images), np.concatenate(mags), np.concatenate(zs), meta={"dataset": str(dataset)})


def iter_storage_batches(storage: Storage, key: str, batch_size: int, check_finite: bool = True) -> Iterator[Partition]:
    """Stream one partition in batches with bounded memory (local ``pread``, S3 ranged GETs); the sha256 is
    not checked (that needs the whole object: :func:`read_partition` with the manifest entry)."""
    path = storage.local_path(key)
    if path is not None:
        yield from iter_batches(path, batch_size, name=key, check_finite=check_finite)
        return
    size = storage.size(key)
    yield from iter_batches(lambda offset, length: storage.read_range(key, offset, length), batch_size,
                            name=key, total_bytes=size, check_finite=check_finite)


#: Render seed of the validation galaxies (training reports its metrics on these renders).
VALID_RENDER_SEED: int = 0


def validation_rows(rows: int, seed: int = VALID_RENDER_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``rows`` galaxies of the validation catalogue, rendered as training renders them:
    ``(image f32 [N,5,32,32], magnitude f64 [N,5], z_spec f32 [N])``."""
    df = catalog.valid_catalog().iloc[:rows]
    image, mags, _ = render_catalog(df, seed)
    return image, mags, catalog.redshifts(df).astype(np.float32)


def ensure_dataset(gb: float, partition_mb: float, seed: int = 0, progress: bool = False) -> Path:
    """The validation-catalogue dataset of ``gb`` GB in :func:`default_dataset_dir`: prepared once, then reused
    (the one "prepare the dataset if missing" of the notebooks, the demo and the bench)."""
    folder = default_dataset_dir(gb, partition_mb, seed=seed)
    if not LocalStorage(folder).exists(MANIFEST_NAME):
        log.info("preparing a %.3g GB dataset of %g MB partitions in %s", gb, partition_mb, folder)
        prepare_dataset(folder, gb, partition_mb, seed=seed, progress=progress)
    return folder


def distinct_galaxies(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"samples", "distinct_galaxies", "catalog_galaxies"}`` of a resampled local dataset, else ``{}``;
    exact: :func:`prepare_dataset`'s row draws replayed from the manifest (indices only, nothing rendered)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = Manifest.from_json(path.read_text(encoding="utf-8"), str(path))
        df = catalog.catalog_by_name(str(manifest.source))
    except (OSError, ValueError, KeyError, catalog.CatalogError):
        return {}
    if manifest.seed is None or not manifest.entries:
        return {}
    seen: set[int] = set()
    for k, entry in enumerate(manifest.entries):
        rng = np.random.default_rng(np.random.SeedSequence(int(manifest.seed), spawn_key=(k,)))
        seen.update(rng.integers(0, len(df), size=int(entry.samples)).tolist())
    return {"samples": int(sum(e.samples for e in manifest.entries)), "distinct_galaxies": len(seen),
            "catalog_galaxies": int(len(df))}
