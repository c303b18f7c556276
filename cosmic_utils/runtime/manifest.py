"""The manifest of a dataset (``manifest.json``): which partitions exist, their sizes and sha256s.

The contract between data preparation and every consumer (Init lists from it, workers check
what they downloaded, the summary knows the totals). Plain JSON, entries sorted by partition id,
duplicates rejected at construction. ``data_bytes`` counts ``units.SAMPLE_BYTES`` per sample
(the published convention), ``bytes`` the real file size. Policy: docs/pipeline.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cosmic_utils.runtime import units

MANIFEST_NAME: str = "manifest.json"
MANIFEST_VERSION: int = 1


class ManifestError(ValueError):
    """A manifest is malformed or inconsistent (the message names the file / field)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One partition of a dataset."""

    partition_id: int
    key: str  # relative to the dataset root, e.g. "part-00000.cpart"
    samples: int
    bytes: int  # file size
    sha256: str  # of the whole file
    source: str = ""  # e.g. "sdss_mgs_valid:resampled" or the .pt file it was converted from
    seed: int | None = None

    @property
    def data_bytes(self) -> int:
        """Bytes as the published work counts them (SAMPLE_BYTES per sample)."""
        return self.samples * units.SAMPLE_BYTES

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "manifest") -> ManifestEntry:
        missing = [k for k in ("partition_id", "key", "samples", "bytes", "sha256") if k not in raw]
        if missing:
            raise ManifestError(f"{where}: entry {dict(raw)!r} lacks {missing}")
        try:
            return cls(partition_id=int(raw["partition_id"]), key=str(raw["key"]),
                       samples=int(raw["samples"]), bytes=int(raw["bytes"]), sha256=str(raw["sha256"]),
                       source=str(raw.get("source", "")),
                       seed=None if raw.get("seed") is None else int(raw["seed"]))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: bad entry {dict(raw)!r}: {exc}") from exc


@dataclass
class Manifest:
    """All partitions of a dataset plus how it was made."""

    entries: list[ManifestEntry]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    gb: float | None = None  # requested size in GB (1e9 bytes), None for converted data
    partition_mb: float | None = None  # requested partition size in 2**20-byte MB
    seed: int | None = None
    source: str = ""  # "valid" | "train" | "catalog:valid" | "pt:<path>" ...
    renderer_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        self.entries = sorted(self.entries, key=lambda e: e.partition_id)
        for what, values in (("ids", [e.partition_id for e in self.entries]), ("keys", [e.key for e in self.entries])):
            if len(set(values)) != len(values):
                dup = sorted({v for v in values if values.count(v) > 1})
                raise ManifestError(f"manifest: duplicate partition {what} {dup}")

    @property
    def partitions(self) -> int:
        return len(self.entries)

    @property
    def total_samples(self) -> int:
        return sum(e.samples for e in self.entries)

    @property
    def total_bytes(self) -> int:
        """Sum of the file sizes."""
        return sum(e.bytes for e in self.entries)

    @property
    def data_bytes(self) -> int:
        """Bytes as the published work counts them (SAMPLE_BYTES per sample)."""
        return self.total_samples * units.SAMPLE_BYTES

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "created": self.created, "gb": self.gb,
            "partition_mb": self.partition_mb, "seed": self.seed, "source": self.source,
            "renderer_version": self.renderer_version, "sample_bytes": units.SAMPLE_BYTES,
            "partitions": self.partitions, "total_samples": self.total_samples,
            "total_bytes": self.total_bytes, "data_bytes": self.data_bytes,
            "extra": self.extra, "entries": [asdict(e) for e in self.entries],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "manifest") -> Manifest:
        if not isinstance(raw, Mapping):
            raise ManifestError(f"{where}: not a JSON object")
        version = raw.get("version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise ManifestError(f"{where}: unsupported manifest version {version!r}")
        entries_raw = raw.get("entries")
        if not isinstance(entries_raw, list):
            raise ManifestError(f"{where}: field 'entries' is missing or not a list")
        entries = [ManifestEntry.from_dict(e, where) for e in entries_raw]
        try:
            return cls(entries=entries, created=str(raw.get("created", "")), gb=raw.get("gb"),
                       partition_mb=raw.get("partition_mb"), seed=raw.get("seed"),
                       source=str(raw.get("source", "")), renderer_version=raw.get("renderer_version"),
                       extra=dict(raw.get("extra") or {}))
        except ManifestError as exc:
            raise ManifestError(f"{where}: {str(exc).removeprefix('manifest: ')}") from exc

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            return cls.from_dict(json.loads(text), where)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{where}: not valid JSON: {exc}") from exc

    def write(self, target: Any) -> str:
        """Write ``manifest.json`` into a storage, dataset folder / URI or ``.json`` path; returns where."""
        storage = _as_storage(target)
        if storage is None:
            from cosmic_utils.runtime.storage import durable_write

            durable_write(target, self.to_json().encode(), sync_dir=False)
            return str(Path(target))
        storage.write_text(MANIFEST_NAME, self.to_json())
        return storage.uri(MANIFEST_NAME)

    @classmethod
    def read(cls, source: Any) -> Manifest:
        """Read ``manifest.json`` from a storage, a dataset folder / URI, or a ``.json`` path."""
        storage = _as_storage(source)
        if storage is None:
            path = Path(source)
            try:
                return cls.from_json(path.read_text(), where=str(path))
            except FileNotFoundError as exc:
                raise ManifestError(f"{path}: manifest not found") from exc
        from cosmic_utils.runtime.storage import MissingObjectError

        where = storage.uri(MANIFEST_NAME)
        try:
            return cls.from_json(storage.read_text(MANIFEST_NAME), where=where)
        except MissingObjectError as exc:
            raise ManifestError(f"{where}: manifest not found") from exc

    def verify(self, storage: Any, deep: bool = True,
               progress: Callable[[Iterable[ManifestEntry]], Iterable[ManifestEntry]] | None = None) -> VerifyReport:
        """Check every partition against its entry: present, size, sha256 (and, when ``deep``,
        finite values); ``report.ok`` is False when any partition is bad."""
        from cosmic_utils.runtime.partition import PartitionError, read_partition
        from cosmic_utils.runtime.storage import StorageError, open_storage

        store = _as_storage(storage) or open_storage(str(Path(os.fspath(storage)).parent))  # a .json's folder
        report = VerifyReport(checked=0)
        for entry in progress(self.entries) if progress is not None else self.entries:
            report.checked += 1
            try:
                source = store.local_path(entry.key)
                if source is None:
                    source = store.read_bytes(entry.key)
                elif not source.is_file():
                    raise StorageError(f"missing: {store.uri(entry.key)}")
                read_partition(source, name=entry.key, expected=entry, check_finite=deep, writable=False)
                report.good.append(entry.key)
            except (PartitionError, StorageError) as exc:
                report.bad[entry.key] = str(exc)
        return report


@dataclass
class VerifyReport:
    """Outcome of :meth:`Manifest.verify`: the good keys and, for the bad ones, the problem."""

    checked: int
    good: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.bad

    def __str__(self) -> str:
        if self.ok:
            return f"all {self.checked} partitions OK"
        return "\n".join([f"{len(self.bad)} of {self.checked} partitions bad:",
                          *(f"  {key}: {problem}" for key, problem in sorted(self.bad.items()))])


def _as_storage(target: Any) -> Any:
    """A Storage for a storage / dataset folder / URI; None for a path to a ``.json`` file."""
    from cosmic_utils.runtime.storage import Storage, open_storage

    if isinstance(target, Storage):
        return target
    text = os.fspath(target)
    if text.endswith(".json") and not text.startswith("s3://"):
        return None
    return open_storage(text)
