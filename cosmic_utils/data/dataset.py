"""Build datasets of partitions from the real catalogue: render, partition, checksum, manifest.

:func:`prepare_dataset` makes a dataset of any size (``gb`` in 1e9 bytes, counted as the
published work does: ``config.SAMPLE_BYTES`` per sample) cut into partitions of
``partition_mb`` (2**20-byte MB, ``config.samples_per_partition``: 25 MB -> 1,278 samples; the
last partition holds the remainder). It writes ``part-00000.cpart`` ... and ``manifest.json``
into a local folder or ``s3://bucket/prefix`` through :mod:`cosmic_utils.runtime.storage`.

Choices:

- Source: the *validation* catalogue by default, so a model trained on the training file is
  tested on galaxies it never saw (``source="train"`` makes training data).
- Scale-up: rows are resampled with their magnitudes jittered within their errors
  (:func:`cosmic_utils.data.catalog.resample_catalog`), then rendered
  (:func:`cosmic_utils.data.render.render_cutouts`) with the jittered magnitudes and the catalogue
  errors. The stored ``magnitude`` is the jittered one; the label is the row's ``zs``.
- Memory is bounded by one partition: each partition is resampled, rendered, written and
  forgotten before the next (a 100 MB partition peaks at a few hundred MB of RAM).
- Reproducible and order-free: partition ``k`` is resampled from
  ``SeedSequence(seed, spawn_key=(k,))`` and rendered with global row offset
  ``k * samples_per_partition``, so it depends only on ``(seed, k, partition size, source)``;
  the same command gives byte-identical files (the manifest's ``created`` time aside), and a
  dataset can be extended or regenerated partition by partition.
- Writing over an existing dataset removes partitions (``part-NNNNN.cpart``) that the new
  manifest does not list, so a paginated listing never sees stale files.

:func:`prepare_catalog_partitions` writes a catalogue as it is (no resampling, rows in order),
e.g. the validation set itself as a dataset.
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


def _put_partition(store: Storage, key: str, image: np.ndarray, magnitude: np.ndarray, redshift: np.ndarray,
                   meta: dict[str, Any]) -> tuple[int, int, str]:
    path = store.local_path(key)
    if path is not None:
        info = write_partition(path, image, magnitude, redshift, meta)
        return info.samples, info.nbytes, info.sha256
    fd, tmp = tempfile.mkstemp(suffix=".cpart")
    os.close(fd)
    try:
        info = write_partition(tmp, image, magnitude, redshift, meta)
        store.upload_file(tmp, key)  # managed (multipart) transfer
    finally:
        Path(tmp).unlink(missing_ok=True)
    return info.samples, info.nbytes, info.sha256


def _remove_stale(store: Storage, keep: set[str]) -> None:
    for key in store.list_keys("part-"):
        if PARTITION_KEY_RE.match(key) and key not in keep:
            log.info("removing stale partition %s", store.uri(key))
            store.delete(key)


def _write_dataset(
    store: Storage,
    counts: list[int],
    rows_for: Callable[[int, int], pd.DataFrame],
    seed: int,
    entry_source: str,
    manifest_kwargs: dict[str, Any],
    progress: bool,
    threads: int | None,
) -> Manifest:
    per = counts[0]
    entries: list[ManifestEntry] = []
    bar = None
    if progress:
        from cosmic_utils.progress import progress as progress_bar

        bar = progress_bar(total=sum(counts), unit="gal", unit_scale=True, desc=f"render -> {store.root_uri}")
    try:
        for k, count in enumerate(counts):
            rows = rows_for(k, count)
            mags = catalog.magnitudes(rows)
            errs = catalog.magnitude_errors(rows)
            image = render_cutouts(mags, errs, seed=seed, row_offset=k * per, threads=threads)
            key = partition_name(k)
            meta = {"partition_id": k, "seed": seed, "source": entry_source, "row_offset": k * per,
                    "renderer_version": RENDERER_VERSION}
            samples, nbytes, sha = _put_partition(store, key, image, mags, catalog.redshifts(rows), meta)
            entries.append(ManifestEntry(k, key, samples, nbytes, sha, entry_source, seed))
            del image, rows
            if bar is not None:
                bar.update(count)
    finally:
        if bar is not None:
            bar.close()
    _remove_stale(store, {e.key for e in entries})
    manifest = Manifest(entries=entries, seed=seed, renderer_version=RENDERER_VERSION, **manifest_kwargs)
    manifest.write(store)
    return manifest


def prepare_dataset(
    out: str | os.PathLike[str] | Storage,
    gb: float,
    partition_mb: float,
    seed: int = 0,
    source: str = "valid",
    progress: bool = True,
    s3_client: Any = None,
    threads: int | None = None,
) -> Manifest:
    """Render ``gb`` GB of galaxies resampled from the ``source`` catalogue into partitions.

    ``out``: a local folder or ``s3://bucket/prefix``. Returns the manifest (also written as
    ``manifest.json`` next to the partitions).
    """
    total = config.samples_for_gb(gb)
    per = config.samples_per_partition(partition_mb)
    counts = partition_counts(total, per)
    df = catalog.catalog_by_name(source)
    store = open_storage(out, s3_client=s3_client) if not isinstance(out, Storage) else out
    tag = f"{source}:resampled"

    def rows_for(k: int, count: int) -> pd.DataFrame:
        return catalog.resample_catalog(df, count, seed=np.random.SeedSequence(seed, spawn_key=(k,)))

    log.info("preparing %s: %.3g GB = %d samples in %d partitions of %d", store.root_uri, gb, total, len(counts), per)
    return _write_dataset(
        store, counts, rows_for, seed, tag,
        dict(gb=gb, partition_mb=partition_mb, source=source,
             extra={"samples_per_partition": per, "catalog": str(df.attrs.get("source", source))}),
        progress, threads,
    )


def prepare_catalog_partitions(
    df: pd.DataFrame,
    out: str | os.PathLike[str] | Storage,
    partition_mb: float,
    seed: int = 0,
    source: str = "catalog",
    progress: bool = True,
    s3_client: Any = None,
    threads: int | None = None,
) -> Manifest:
    """Write the rows of ``df`` as they are (no resampling, in order) as a rendered dataset."""
    missing = [c for c in catalog.COLUMNS if c not in df.columns]
    if missing:
        raise catalog.CatalogError(f"catalogue {df.attrs.get('source', '<DataFrame>')}: missing columns {missing}")
    per = config.samples_per_partition(partition_mb)
    counts = partition_counts(len(df), per)
    store = open_storage(out, s3_client=s3_client) if not isinstance(out, Storage) else out

    def rows_for(k: int, count: int) -> pd.DataFrame:
        return df.iloc[k * per : k * per + count]

    return _write_dataset(
        store, counts, rows_for, seed, source,
        dict(gb=None, partition_mb=partition_mb, source=source,
             extra={"samples_per_partition": per, "catalog": str(df.attrs.get("source", source))}),
        progress, threads,
    )


# ------------------------------------------------------------------ reading datasets
def iter_partitions(
    dataset: str | os.PathLike[str] | Storage, verify: bool = True, s3_client: Any = None
) -> Iterator[tuple[ManifestEntry, Partition]]:
    """Each partition of a dataset with its manifest entry (checksums checked when ``verify``)."""
    store = dataset if isinstance(dataset, Storage) else open_storage(dataset, s3_client=s3_client)
    manifest = Manifest.read(store)
    for entry in manifest.entries:
        path = store.local_path(entry.key)
        source: Any = path if path is not None else store.read_bytes(entry.key)
        yield entry, read_partition(source, name=entry.key, expected=entry if verify else None)


def load_dataset(
    dataset: str | os.PathLike[str] | Storage, max_samples: int | None = None, verify: bool = True,
    s3_client: Any = None,
) -> Partition:
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


def iter_storage_batches(
    storage: Storage, key: str, batch_size: int, check_finite: bool = True
) -> Iterator[Partition]:
    """Stream one partition from any storage in batches with bounded memory.

    Local: ``pread`` on the file; S3: one ranged GET per array per batch (plus two small reads
    for the header), so a worker never holds more than one batch. The sha256 is not checked
    (that needs the whole object; use :func:`read_partition` with the manifest entry for that).
    """
    path = storage.local_path(key)
    if path is not None:
        yield from iter_batches(path, batch_size, name=key, check_finite=check_finite)
        return
    size = storage.size(key)
    yield from iter_batches(lambda offset, length: storage.read_range(key, offset, length), batch_size,
                            name=key, total_bytes=size, check_finite=check_finite)


def is_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether a local folder holds a manifest."""
    return LocalStorage(path).exists(MANIFEST_NAME)


#: Render seed of the validation galaxies (training reports its metrics on these renders).
VALID_RENDER_SEED: int = 0


def validation_rows(rows: int, seed: int = VALID_RENDER_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``rows`` galaxies of the validation catalogue, rendered as training renders them:
    ``(image f32 [N,5,32,32], magnitude f64 [N,5], z_spec f32 [N])``."""
    df = catalog.valid_catalog().iloc[:rows]
    mags = catalog.magnitudes(df)
    image = render_cutouts(mags, catalog.magnitude_errors(df), seed=seed)
    return image, mags, catalog.redshifts(df).astype(np.float32)


def ensure_dataset(gb: float, partition_mb: float, seed: int = 0, progress: bool = False) -> Path:
    """The rendered dataset of ``gb`` GB in ``partition_mb`` partitions from the validation catalogue
    (:func:`default_dataset_dir`): prepared the first time, then reused. The one "prepare the
    dataset if missing" of the notebooks, the demo and the bench."""
    folder = default_dataset_dir(gb, partition_mb, seed=seed)
    if not is_dataset(folder):
        log.info("preparing a %.3g GB dataset of %g MB partitions in %s", gb, partition_mb, folder)
        prepare_dataset(folder, gb, partition_mb, seed=seed, progress=progress)
    return folder


def distinct_galaxies(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """How many distinct catalogue galaxies a rendered dataset holds, from its ``manifest.json``.

    A resampled dataset draws every partition's rows with replacement from the catalogue
    (:func:`prepare_dataset`): 9,747 samples of the 2,500-galaxy validation file are at most
    2,500 distinct galaxies. The draw is replayed here from the manifest (seed, partition sizes;
    the row indices only, nothing is rendered), so the count is exact. Returns
    ``{"samples", "distinct_galaxies", "catalog_galaxies"}``; empty when the folder has no
    manifest of a resampled dataset (converted data, s3://).
    """
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
