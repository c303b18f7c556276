"""The model artifact folder: ``artifact.json`` + ``model.pt`` / ``model.onnx`` (+ ``calibration.npz``).

Layout: docs/architecture.md "Model artifact"; the calibration set: docs/portability.md.
:meth:`ModelArtifact.load` checks the folder, ``format_version`` and every listed file's sha256
before anything uses them (:class:`ArtifactError` names folder and file). No torch here (Lambda
reads artifacts); the writers live in :mod:`cosmic_utils.model.artifacts`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cosmic_utils.runtime.preprocess import Preprocessing, PreprocessingError
from cosmic_utils.runtime.storage import durable_write
from cosmic_utils.runtime.strict import jsonable

#: Version of the artifact layout this code writes and reads.
FORMAT_VERSION: int = 1
#: Versions :meth:`ModelArtifact.load` accepts.
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (1,)
ARCHITECTURE: str = "pcm-astromae"
META_FILE: str = "artifact.json"
STATE_DICT_FILE: str = "model.pt"
ONNX_FILE: str = "model.onnx"
#: File roles of the ``files`` entry.
ROLE_STATE_DICT: str = "state_dict"
ROLE_ONNX: str = "onnx"
ROLE_CALIBRATION: str = "calibration"
#: Role of the int8 graph (``model.int8.onnx``, see ``cosmic_utils.runtime.onnx_engine.register_int8``).
ROLE_ONNX_INT8: str = "onnx_int8"
CALIBRATION_FILE: str = "calibration.npz"
#: The form of ``model.onnx`` this code exports (``FastAstro``, ONNX ``Attention``, log-form asinh),
#: stored in the graph and in ``artifact.json``, so an older (slower) export is detected.
ONNX_GRAPH_FORM: str = "fastastro-attn23-1"
GRAPH_FORM_KEY: str = "cosmic_graph_form"
_REQUIRED_KEYS: tuple[str, ...] = ("format_version", "name", "architecture", "files")


def onnx_graph_form(meta: dict[str, Any]) -> str | None:
    """The graph form an ``artifact.json`` records for its ``model.onnx`` (``None``: exported before forms)."""
    form = (meta.get("onnx_export") or {}).get("graph_form")
    return str(form) if form else None


class ArtifactError(ValueError):
    """A model artifact is invalid: the message names the folder, the file and the problem."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    """The artifact folder or one of its files is missing."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class ModelArtifact:
    """A model artifact folder and its metadata (see the module docstring)."""

    path: Path
    name: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    architecture: str = ARCHITECTURE
    created: str = field(default_factory=_now)
    config: dict[str, Any] = field(default_factory=dict)
    training_data_sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> ModelArtifact:
        """Read ``path/artifact.json`` and (``verify``) check every listed file's sha256;
        :class:`ArtifactNotFoundError` for anything missing, :class:`ArtifactError` for anything invalid."""
        folder = Path(path)
        if not folder.is_dir():
            raise ArtifactNotFoundError(f"model artifact {folder}: folder not found "
                                        f"(train one with `cosmic model train` or pass --model)")
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise ArtifactNotFoundError(f"model artifact {folder}: {META_FILE} not found")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"model artifact {meta_path}: not valid JSON: {exc}") from exc
        if not isinstance(meta, dict):
            raise ArtifactError(f"model artifact {meta_path}: expected a JSON object, got {type(meta).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in meta]
        if missing:
            raise ArtifactError(f"model artifact {meta_path}: missing keys {missing}")
        version = meta["format_version"]
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise ArtifactError(
                f"model artifact {meta_path}: format_version {version!r} is not supported "
                f"(this code reads {list(SUPPORTED_FORMAT_VERSIONS)}); re-create the artifact with this version")
        files = meta["files"]
        if not isinstance(files, dict) or not files:
            raise ArtifactError(f"model artifact {meta_path}: 'files' must list at least one file")
        for role, entry in files.items():
            if not isinstance(entry, dict) or "path" not in entry:
                raise ArtifactError(f"model artifact {meta_path}: files.{role} needs a 'path'")
            rel = Path(str(entry["path"]))
            if rel.is_absolute() or ".." in rel.parts:
                raise ArtifactError(f"model artifact {meta_path}: files.{role}.path {rel} must stay inside the folder")
        try:
            pre = Preprocessing.from_dict(meta.get("preprocessing"))
        except (PreprocessingError, TypeError) as exc:
            raise ArtifactError(f"model artifact {meta_path}: invalid preprocessing: {exc}") from exc
        known = {f.name for f in fields(cls)} - {"path", "extra"}
        art = cls(path=folder, name=str(meta["name"]), preprocessing=pre,
                  architecture=str(meta["architecture"]), created=str(meta.get("created", "")),
                  config=dict(meta.get("config") or {}),
                  training_data_sha256=meta.get("training_data_sha256"),
                  metrics=dict(meta.get("metrics") or {}), files={str(k): dict(v) for k, v in files.items()},
                  format_version=int(version), extra={k: v for k, v in meta.items() if k not in known})
        if verify:
            art.verify()
        return art

    def verify(self, roles: Sequence[str] | None = None) -> None:
        """Check that the listed files (all, or only ``roles``) exist and have the recorded sha256,
        else :class:`ArtifactError` naming the artifact, the file and the problem."""
        for role in roles if roles is not None else list(self.files):
            entry = self.files.get(role)
            if entry is None:
                raise ArtifactError(f"model artifact {self.path}: lists no {role} file (run `cosmic model export`)")
            file = self.path / entry["path"]
            if not file.is_file():
                raise ArtifactNotFoundError(f"model artifact {self.path}: {role} file {entry['path']} not found")
            expected = entry.get("sha256")
            if not expected:
                raise ArtifactError(f"model artifact {self.path}: files.{role} has no sha256")
            if (actual := sha256_file(file)) != expected:
                raise ArtifactError(
                    f"model artifact {self.path}: checksum mismatch for {entry['path']} ({role}): "
                    f"sha256 mismatch (artifact.json says {str(expected)[:12]}..., file is {actual[:12]}...; "
                    "corrupt or replaced file)")

    def has(self, role: str) -> bool:
        """Whether the artifact lists a file for ``role`` (``"state_dict"`` / ``"onnx"``)."""
        return role in self.files

    def file_path(self, role: str) -> Path:
        """Path of the file for ``role``; :class:`ArtifactNotFoundError` when not listed."""
        if role not in self.files:
            raise ArtifactNotFoundError(f"model artifact {self.path}: lists no {role} file "
                                        f"(files: {sorted(self.files)})")
        return self.path / self.files[role]["path"]

    @property
    def state_dict_path(self) -> Path:
        return self.file_path(ROLE_STATE_DICT)

    @property
    def onnx_path(self) -> Path:
        return self.file_path(ROLE_ONNX)

    def to_dict(self) -> dict[str, Any]:
        """The ``artifact.json`` content."""
        return jsonable({"format_version": self.format_version, "name": self.name, "created": self.created,
                          "architecture": self.architecture, "preprocessing": self.preprocessing.to_dict(),
                          "config": self.config, "training_data_sha256": self.training_data_sha256,
                          "metrics": self.metrics, "files": self.files, **self.extra})

    def add_file(self, role: str, filename: str) -> None:
        """Record (or refresh) the checksum of ``path/filename`` under ``role``."""
        file = self.path / filename
        if not file.is_file():
            raise ArtifactNotFoundError(f"model artifact {self.path}: cannot add {role}: {filename} not found")
        self.files[role] = {"path": filename, "sha256": sha256_file(file), "bytes": file.stat().st_size}

    def save(self) -> Path:
        """Write ``artifact.json`` (atomically: temp file + rename); returns its path."""
        meta_path = self.path / META_FILE
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        durable_write(meta_path, text.encode("utf-8"), sync_dir=False)
        return meta_path


def read_meta(folder: str | os.PathLike[str], missing_ok: bool = False) -> dict[str, Any]:
    """``artifact.json`` of a model folder as a plain dict, unchecked: ``FileNotFoundError`` when
    absent (``{}`` with ``missing_ok``), ``ValueError`` naming the file when it is not a JSON object."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"model artifact {folder}: {META_FILE} not found")
    return parse_meta(path.read_text(encoding="utf-8"), str(path))


def parse_meta(text: str, where: str) -> dict[str, Any]:
    """The dict of an ``artifact.json`` text (read from a folder or downloaded from S3)."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"model artifact {where}: {META_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"model artifact {where}: expected a JSON object, got {type(meta).__name__}")
    return meta
