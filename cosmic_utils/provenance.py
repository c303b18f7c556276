"""Where a record came from, and records that travel between machines.

:func:`provenance` (git commit, library versions, CPU probe) and :func:`model_fields` (the
artifact's identity, trained or not, its validation score) are added by every record writer;
:func:`portable` / :func:`portable_text` rewrite machine paths (project root -> relative,
``$TMPDIR/...``, ``~/...``). Standard library only; it never raises.
Reasoning: docs/architecture.md ("Run records"), docs/records.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmic_utils import config
from cosmic_utils.runtime.cpu import cpu_probe

#: Model fields every record carries (:func:`model_fields`); "" / None when not known.
MODEL_FIELDS: tuple[str, ...] = ("model_sha256", "model_trained", "model_sigma_nmad", "model_knn_sigma_nmad",
                                 "model_validation_rows")

#: CPU-probe fields every record carries (cpu_vendor / arch / cpu_type are derivable or redundant).
PROBE_FIELDS: tuple[str, ...] = ("cpu_model", "isa", "cpu_flags", "isa_caps", "cpus")
#: Distributions whose versions change measured numbers.
LIBRARIES: tuple[str, ...] = ("numpy", "torch", "onnxruntime")


def library_version(dist: str) -> str:
    """Installed version of a distribution ("" when absent), without importing it."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


@lru_cache(maxsize=4)
def git_commit(root: str | None = None) -> tuple[str, bool]:
    """``(short sha, dirty)`` of the checkout at ``root`` (default the project root); ``("", False)``
    outside a git checkout. Dirty: tracked files differ from the commit (untracked ones do not count)."""
    where = root or str(config.PROJECT_ROOT)
    try:
        sha = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        if sha.returncode != 0 or not sha.stdout.strip():
            return "", False
        status = subprocess.run(["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=False)
        return sha.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "", False


def provenance() -> dict[str, Any]:
    """Flat provenance fields (CSV columns or JSON fields alike): git commit, library versions, CPU probe."""
    sha, dirty = git_commit()
    out: dict[str, Any] = {"git_commit": sha, "git_dirty": dirty, "python_version": platform.python_version()}
    out.update({f"{lib}_version": library_version(lib) for lib in LIBRARIES})
    probe = cpu_probe()
    out.update({k: probe.get(k, "") for k in PROBE_FIELDS})
    return out


@lru_cache(maxsize=32)
def _model_fields_cached(folder: str, mtime_ns: int) -> tuple[tuple[str, Any], ...]:
    raw = (Path(folder) / "artifact.json").read_bytes()
    meta = json.loads(raw)
    trained = not (meta.get("trained") is False or (meta.get("extra") or {}).get("trained") is False
                   or (meta.get("config") or {}).get("kind") == "untrained")
    metrics = meta.get("metrics") or {}
    val, knn = metrics.get("validation") or {}, metrics.get("knn") or {}
    return (("model_sha256", hashlib.sha256(raw).hexdigest()), ("model_trained", trained),
            ("model_sigma_nmad", val.get("sigma_nmad")), ("model_knn_sigma_nmad", knn.get("sigma_nmad")),
            ("model_validation_rows", val.get("n")))


def model_fields(model_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The :data:`MODEL_FIELDS` of the artifact in a local ``model_dir`` (docs/records.md); all None
    for an ``s3://`` model or a missing folder."""
    empty: dict[str, Any] = {k: None for k in MODEL_FIELDS}
    if model_dir is None or str(model_dir).startswith("s3://"):
        return empty
    path = Path(model_dir) / "artifact.json"
    try:
        return dict(_model_fields_cached(str(Path(model_dir).resolve()), path.stat().st_mtime_ns))
    except (OSError, ValueError, AttributeError):
        return empty


def untrained_label(fields: Mapping[str, Any]) -> str:
    """"UNTRAINED model: " when :func:`model_fields` say the model is untrained, else ""."""
    return "UNTRAINED model: " if fields.get("model_trained") is False else ""


def describe_model(model_dir: str | os.PathLike[str] | None) -> str:
    """One line about a model for a notebook or a log: trained with its score beside the kNN
    anchor's, or UNTRAINED (speeds only: every accuracy it gives is meaningless)."""
    f = model_fields(model_dir)
    where = portable_path(model_dir) if model_dir is not None else "no model"
    if f["model_sha256"] is None:
        return f"{where}: model not readable here (s3:// or missing); not labelled"
    if f["model_trained"] is False:
        return f"{where}: UNTRAINED stand-in (sha256 {f['model_sha256'][:12]}): speeds only, accuracy meaningless"
    sig, knn = f["model_sigma_nmad"], f["model_knn_sigma_nmad"]
    score = (f"validation sigma_NMAD {sig:.4f}, kNN anchor {knn:.4f}: "
             f"{'at or under' if sig <= knn else 'ABOVE'} the anchor") if sig is not None and knn is not None \
        else "no validation score recorded"
    return f"{where}: trained (sha256 {f['model_sha256'][:12]}), {score}"


def _roots(extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """``(absolute prefix, replacement)`` pairs, longest first: project root -> "", temp folder ->
    ``$TMPDIR``, home -> ``~``, each as given and resolved (``/tmp`` may be a link)."""
    pairs: list[tuple[str, str]] = list(extra)
    for folder, repl in ((config.PROJECT_ROOT, ""), (Path(tempfile.gettempdir()), "$TMPDIR"),
                         (Path("/tmp"), "$TMPDIR"), (Path.home(), "~")):
        for spelled in {str(folder), os.path.realpath(folder)}:
            if len(spelled) > 1:
                pairs.append((spelled.rstrip("/"), repl))
    seen: dict[str, str] = {}
    for prefix, repl in pairs:
        seen.setdefault(prefix, repl)
    return sorted(seen.items(), key=lambda kv: -len(kv[0]))


def portable_text(text: str, extra_roots: Iterable[tuple[str, str]] = ()) -> str:
    """``text`` with machine path prefixes rewritten where they are a whole path component:
    ``<root>/x`` -> ``x``, ``<root>`` -> ``.``; ``extra_roots`` adds ``(prefix, replacement)`` pairs."""
    for prefix, repl in _roots(extra_roots):
        if prefix not in text:
            continue
        pattern = re.compile(re.escape(prefix) + r"(/|(?=[\"',;:)\]\s]|$))")

        def sub(m: re.Match[str], repl: str = repl) -> str:
            if m.group(1) == "/":
                return f"{repl}/" if repl else ""
            return repl or "."

        text = pattern.sub(sub, text)
    return text


def portable(obj: Any, extra_roots: Iterable[tuple[str, str]] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings, paths) with :func:`portable_text` applied."""
    extra = list(extra_roots)
    if isinstance(obj, str):
        return portable_text(obj, extra)
    if isinstance(obj, os.PathLike):
        return portable_text(os.fspath(obj), extra)
    if isinstance(obj, Mapping):
        return {k: portable(v, extra) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v, extra) for v in obj]
    return obj


def portable_path(path: str | os.PathLike[str]) -> str:
    """One path as a record should store it: project-relative when under the project root."""
    return portable_text(os.fspath(path))


#: Absolute-path shapes that must never appear in a shipped record (tests grep for them).
ABSOLUTE_PATH_PATTERNS: tuple[str, ...] = (r"/home/", r"/work/", r"/tmp/", r"/root/", r"/Users/", r"/private/var/",
                                           r"\b[A-Za-z]:\\")


def find_absolute_paths(text: str) -> list[str]:
    """Snippets of ``text`` that look like an absolute path of the writing machine."""
    return [text[max(0, m.start() - 20): m.end() + 40]
            for pat in [*ABSOLUTE_PATH_PATTERNS, re.escape(str(config.PROJECT_ROOT))]
            for m in re.finditer(r"(?<![\w.$])" + pat, text)]


def stamped(record: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON record ready to write: paths made portable, ``provenance`` added (kept if present)."""
    out = portable(dict(record))
    out.setdefault("provenance", provenance())
    return out
