"""Read the published ``.pt`` partitions and convert them to ``.cpart`` datasets, losslessly.

A ``.pt`` file is a pickle: it is loaded with ``torch.load(weights_only=True)`` allowing only
``TensorDataset``, so a hostile file cannot run code. torch is imported inside the functions.
Reasoning: docs/data.md "Published .pt partitions".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import Partition, PartitionError, check_arrays, partition_name
from cosmic_utils.runtime.storage import Storage, open_storage

log = logging.getLogger(__name__)
_NAMES = ("image", "magnitude", "redshift")


def _to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def _unpack(obj: Any, name: str) -> list[Any]:
    tensors = getattr(obj, "tensors", None)
    if tensors is not None:
        return list(tensors)
    if isinstance(obj, Mapping):
        missing = [k for k in _NAMES[:2] if k not in obj]
        if missing:
            raise PartitionError(f"partition {name}: .pt dict lacks {missing} (has {sorted(obj)})")
        return [obj["image"], obj["magnitude"]] + ([obj["redshift"]] if "redshift" in obj else [])
    if isinstance(obj, (tuple, list)):
        return list(obj)
    raise PartitionError(f"partition {name}: .pt holds a {type(obj).__name__}, expected a TensorDataset")


def read_pt_partition(path: str | os.PathLike[str]) -> Partition:
    """Load one published ``.pt`` partition (restricted unpickler) and validate its arrays."""
    import torch
    from torch.utils.data import TensorDataset

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise PartitionError(f"partition {name}: file not found: {path}")
    try:
        with torch.serialization.safe_globals([TensorDataset]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        first = (str(exc).splitlines() or [""])[0] or type(exc).__name__  # an empty file: a bare EOFError
        if "weights_only" in str(exc) or "Weights only load failed" in first:
            # torch's own message goes on to suggest weights_only=False, which would execute the
            # file's pickled code: never repeated here.
            first = ("it holds Python objects other than tensors, which the safe loader refuses (the file is "
                     "not loaded; only trust-free tensor files are read: save the image, magnitude and "
                     "redshift tensors alone, e.g. torch.save(TensorDataset(image, magnitude, redshift), path))")
        raise PartitionError(f"partition {name}: cannot load .pt file: {first}") from exc
    tensors = _unpack(obj, name)
    if len(tensors) not in (2, 3):
        raise PartitionError(f"partition {name}: .pt holds {len(tensors)} tensors, expected 3 (image, magnitude, redshift)")
    arrays = [_to_numpy(t) for t in tensors]
    converted = {
        label: str(arr.dtype)
        for label, arr, want in zip(_NAMES, arrays, ("float32", "float64", "float32"), strict=False)
        if str(arr.dtype) != want
    }
    image, magnitude, redshift = check_arrays(arrays[0], arrays[1], arrays[2] if len(arrays) == 3 else None, name=name)
    meta: dict[str, Any] = {"source": f"pt:{name}"}
    if converted:
        meta["converted_dtypes"] = converted
    return Partition(image=image, magnitude=magnitude, redshift=redshift, meta=meta)


def find_pt_files(path_or_dir: str | os.PathLike[str]) -> list[Path]:
    """One ``.pt`` file, or every ``*.pt`` under a folder (sorted, recursively)."""
    src = Path(path_or_dir)
    if src.is_file():
        return [src]
    if src.is_dir():
        files = sorted(p for p in src.rglob("*.pt") if p.is_file())
        if not files:
            raise FileNotFoundError(f"no .pt files under {src}")
        return files
    raise FileNotFoundError(f"no such file or folder: {src}")


class ConvertError(PartitionError):
    """No ``.pt`` file could be converted (each file's reason is in ``failures``); nothing was written."""

    def __init__(self, message: str, failures: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.failures = failures


def _local_target(out: Path) -> Path:
    """Refuse a target folder that already holds files (a conversion never mixes two datasets)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PartitionError(f"output {out} already exists and is not an empty folder; "
                             "choose a new --out (nothing was converted)")
    return out


def convert_pt(path_or_dir: str | os.PathLike[str], out: str | os.PathLike[str] | Storage, progress: bool = False,
               s3_client: Any = None) -> Manifest:
    """Convert one ``.pt`` file or a folder of them into a ``.cpart`` dataset with a manifest: one partition per
    readable file, the others in ``manifest.extra["failed_files"]``. All or nothing: a local dataset is staged in
    a hidden sibling folder and renamed into place (on S3 the manifest, written last, makes it a dataset); when
    no file converts, :class:`ConvertError` lists the reasons."""
    import shutil
    import tempfile

    from cosmic_utils.data.dataset import put_partition
    from cosmic_utils.progress import progress as progress_bar

    files = find_pt_files(path_or_dir)
    final: Path | None = None
    staging: Path | None = None
    if isinstance(out, Storage):
        store = out
    elif str(out).startswith("s3://"):
        store = open_storage(out, s3_client=s3_client)
    else:
        final = _local_target(Path(out).expanduser().resolve())
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.converting-", dir=final.parent))
        store = open_storage(staging)
    entries: list[ManifestEntry] = []
    failures: list[dict[str, str]] = []
    try:
        for pt in progress_bar(files, unit="file", desc="convert .pt", disable=not progress):
            try:
                part = read_pt_partition(pt)
            except PartitionError as exc:
                failures.append({"file": str(pt), "error": str(exc)})
                log.debug("skipped %s: %s", pt, exc)
                continue
            k = len(entries)
            key = partition_name(k)
            meta = {**part.meta, "partition_id": k}
            info = put_partition(store, key, part.image, part.magnitude, part.redshift, meta)
            entries.append(ManifestEntry(k, key, info.samples, info.nbytes, info.sha256, f"pt:{pt.name}", None))
            log.info("converted %s -> %s (%d samples)", pt, store.uri(key), info.samples)
        if not entries:
            raise ConvertError(f"none of the {len(files)} .pt files under {path_or_dir} could be "
                               f"converted; nothing was written", failures)
        manifest = Manifest(entries=entries, source=f"pt:{Path(path_or_dir).name}",
                            extra={"pt_files": [str(p) for p in files], "failed_files": failures})
        manifest.write(store)
        if final is not None and staging is not None:
            if final.exists():
                final.rmdir()  # empty (checked above); a race that filled it makes this fail loudly
            os.replace(staging, final)
            staging = None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def write_pt_partition(path: str | os.PathLike[str], image: np.ndarray, magnitude: np.ndarray,
                       redshift: np.ndarray | None = None) -> Path:
    """Write arrays as a published-style ``.pt`` TensorDataset (what the published loop reads; tests, round
    trips); ``redshift`` NaN when not given."""
    import torch
    from torch.utils.data import TensorDataset

    if redshift is None:
        redshift = np.full(len(image), np.nan, dtype=np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = TensorDataset(torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(magnitude)),
                       torch.from_numpy(np.ascontiguousarray(redshift)))
    torch.save(ds, path)
    return path
