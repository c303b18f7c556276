"""Put a model artifact or a prepared dataset into S3: idempotent, resumable, verified by checksum.

A file already at its key with the recorded size and sha256 is skipped, anything else uploaded and
read back; the listing file goes last. A model lands under ``<prefix>/<sha256(artifact.json)[:16]>/``.
Reasoning: docs/aws.md#implementation-notes-cosmic_utilscloud
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmic_utils.runtime.artifact import META_FILE, ModelArtifact, sha256_file
from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest
from cosmic_utils.runtime.storage import MissingObjectError, Storage, open_storage

log = logging.getLogger(__name__)


class UploadError(RuntimeError):
    """An upload could not be completed or verified; the message names the file and the destination."""


@dataclass
class UploadReport:
    """Where the upload landed and what it did per file (uploaded / present / verified)."""

    uri: str
    actions: dict[str, str] = field(default_factory=dict)

    @property
    def uploaded(self) -> int:
        return sum(a == "uploaded" for a in self.actions.values())

    @property
    def skipped(self) -> int:
        return len(self.actions) - self.uploaded


def sync_file(store: Storage, local: Path, key: str, sha256: str, size: int, trusted: bool) -> str:
    """Make ``key`` hold ``local`` (recorded ``sha256`` and ``size``); returns what was done.
    ``trusted`` (the destination's listing records this sha256): a matching size is enough; else an
    object is read back and hashed before it is accepted; a missing or different one is uploaded, then verified."""
    try:
        remote: int | None = store.size(key)
    except MissingObjectError:
        remote = None
    if remote == size:
        if trusted:
            return "present"
        if hashlib.sha256(store.read_bytes(key)).hexdigest() == sha256:
            return "present (verified)"
    store.upload_file(local, key)
    got = hashlib.sha256(store.read_bytes(key)).hexdigest()
    if got != sha256:
        raise UploadError(f"{store.uri(key)}: sha256 after upload {got[:16]}... differs from the recorded "
                          f"{sha256[:16]}... of {local}")
    return "uploaded"


def _remote_json(store: Storage, key: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(store.read_text(key)))
    except (MissingObjectError, ValueError):  # missing, or unreadable: trust nothing, re-verify every file
        return None


def model_version(model_dir: str | Path) -> str:
    """The artifact's version folder name: the first 16 hex digits of the sha256 of artifact.json."""
    return sha256_file(Path(model_dir) / META_FILE)[:16]


def upload_model(model_dir: str | Path, dest: str, s3_client: Any = None) -> UploadReport:
    """Upload a verified model artifact to ``dest/<version>/``; returns the URI to pass as ``--model``."""
    art = ModelArtifact.load(model_dir, verify=True)  # a corrupt local artifact is never uploaded
    if not dest.startswith("s3://"):
        raise UploadError(f"model destination {dest!r}: expected s3://bucket/prefix")
    version = model_version(art.path)
    uri = f"{dest.rstrip('/')}/{version}"
    store = open_storage(uri, s3_client=s3_client)
    meta_bytes = (Path(art.path) / META_FILE).read_bytes()
    remote_meta = _remote_json(store, META_FILE)
    complete = remote_meta is not None and store.read_bytes(META_FILE) == meta_bytes
    report = UploadReport(uri)
    for role, entry in sorted(art.files.items()):
        local = Path(art.path) / str(entry["path"])
        report.actions[str(entry["path"])] = sync_file(store, local, str(entry["path"]), str(entry["sha256"]),
                                                       int(entry.get("bytes") or local.stat().st_size), complete)
        log.info("model %s: %s", role, report.actions[str(entry["path"])])
    report.actions[META_FILE] = "present" if complete else "uploaded"
    if not complete:
        store.write_bytes(META_FILE, meta_bytes)
        if store.read_bytes(META_FILE) != meta_bytes:
            raise UploadError(f"{store.uri(META_FILE)}: differs from {Path(art.path) / META_FILE} after upload")
    return report


def upload_dataset(dataset_dir: str | Path, dest: str, s3_client: Any = None) -> UploadReport:
    """Upload a prepared dataset (partitions + manifest.json) to ``dest``; only what is missing or differs."""
    src = Path(dataset_dir)
    manifest = Manifest.read(src)
    if not dest.startswith("s3://"):
        raise UploadError(f"dataset destination {dest!r}: expected s3://bucket/prefix")
    store = open_storage(dest, s3_client=s3_client)
    remote = _remote_json(store, MANIFEST_NAME)
    remote_sha = {str(e.get("key")): str(e.get("sha256")) for e in (remote or {}).get("entries", [])
                  if isinstance(e, dict)}
    report = UploadReport(dest.rstrip("/"))
    for entry in manifest.entries:
        local = src / entry.key
        if not local.is_file():
            raise UploadError(f"{local}: listed in {src / MANIFEST_NAME} but missing")
        report.actions[entry.key] = sync_file(store, local, entry.key, entry.sha256, entry.bytes,
                                              remote_sha.get(entry.key) == entry.sha256)
    text = (src / MANIFEST_NAME).read_text()
    present = remote is not None and store.read_text(MANIFEST_NAME) == text
    report.actions[MANIFEST_NAME] = "present" if present else "uploaded"
    if not present:
        store.write_text(MANIFEST_NAME, text)
    return report


def describe(report: UploadReport) -> str:
    """One line: where, how many files uploaded and how many were already there."""
    return f"{report.uri}: {report.uploaded} uploaded, {report.skipped} already present"
