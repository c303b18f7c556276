"""The local data-size study: stream 1 .. 8+ GB through one engine on this computer, with peak RSS.

Each size is one run of :mod:`cosmic_utils.inference.streaming` in a fresh process (its own peak
RSS) over a prefix of a *tiled* dataset (one rendered base listed repeatedly), likely read from the
page cache; every row goes to data/records/local_data_size.csv.
Reasoning: docs/inference.md#local-data-size-study-make-local-data-size
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils import config
from cosmic_utils.data.dataset import ensure_dataset
from cosmic_utils.provenance import portable, provenance
from cosmic_utils.runtime.manifest import MANIFEST_NAME, Manifest, ManifestEntry
from cosmic_utils.runtime.storage import LocalStorage

#: Columns every row of local_data_size.csv has first (more follow: the streaming record's).
COLUMNS: tuple[str, ...] = ("data_gb", "requested_gb", "samples", "wall_s", "samples_per_s", "gb_per_s",
                            "peak_rss_mb", "engine", "precision", "threads", "batch_size", "cpu_model", "cpu_type",
                            "backend", "kind", "repeat")

DATA_NOTE = ("prefix of a tiled dataset: the base partitions listed repeatedly (hard links); read from files on "
             "every pass, likely from the page cache")

#: One measured point: (dataset, engine, batch, threads, max_samples, model) -> the streaming record.
PointRunner = Callable[[Path, str, int, int | None, int, Path], dict[str, Any]]


def tiled_dataset(base: Path, gb: float, out: Path | None = None) -> Path:
    """A dataset of at least ``gb`` GB listing ``base``'s partitions repeatedly: partition ``i`` is
    base partition ``i mod n``, reused when large enough. Hard links (``out`` on the base's file
    system), since symbolic links are refused unopened (runtime/storage.open_regular)."""
    base_manifest = Manifest.read(LocalStorage(base))
    need = config.samples_for_gb(gb)
    out = Path(out or base.parent / f"{base.name}_tiled_{gb:g}gb")
    if (out / MANIFEST_NAME).is_file():
        old = Manifest.read(LocalStorage(out))
        if old.extra.get("tiled_from") == str(base.resolve()) and old.total_samples >= need:
            return out
    out.mkdir(parents=True, exist_ok=True)
    entries, total, i = [], 0, 0
    bases = base_manifest.entries
    while total < need:
        src = bases[i % len(bases)]
        key = f"part-{i:05d}.cpart"
        link = out / key
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            os.link((base / src.key).resolve(), link)
        except OSError as exc:
            raise OSError(f"cannot hard-link {src.key} of {base} into {out} ({exc.strerror}): a tiled dataset "
                          "must be on the base dataset's file system") from exc
        entries.append(ManifestEntry(i, key, src.samples, src.bytes, src.sha256, f"tile:{src.key}", src.seed))
        total += src.samples
        i += 1
    manifest = Manifest(entries=entries, gb=gb, partition_mb=base_manifest.partition_mb, seed=base_manifest.seed,
                        source=f"tiled:{base.name}", renderer_version=base_manifest.renderer_version,
                        extra={"tiled_from": str(base.resolve()), "base_partitions": len(bases)})
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return out


def subprocess_point(dataset: Path, engine: str, batch_size: int, threads: int | None, max_samples: int,
                     model_dir: Path) -> dict[str, Any]:
    """One streaming run in a fresh Python process; its record (raises with stderr on failure)."""
    from cosmic_utils.inference.streaming import run_child

    args = ["--dataset", str(dataset), "--engine", engine, "--model", str(model_dir), "--batch-size", str(batch_size),
            "--max-samples", str(max_samples), "--no-write", *(["--threads", str(threads)] if threads else [])]
    proc, rec = run_child(args)
    if proc.returncode != 0 or rec is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"streaming {max_samples} samples with {engine} failed (exit {proc.returncode}): "
                           + " | ".join(tail))
    return rec


def run_study(sizes_gb: Sequence[float], repeats: int = 1, engine: str = "auto", batch_size: int = 256,
              threads: int | None = None, base_gb: float = 1.0, partition_mb: float = 25.0, seed: int = 0,
              model_dir: Path | None = None, out: Path | None = None, base: Path | None = None,
              run_point: PointRunner = subprocess_point, echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Measure every size ``repeats`` times (sizes interleaved per repeat); write and return the rows.
    The CSV is rewritten after every point, so an interrupted study keeps what it measured."""
    if not sizes_gb or any(s <= 0 for s in sizes_gb):
        raise ValueError(f"sizes must be positive GB values, got {list(sizes_gb)}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    model_dir = Path(model_dir or config.DEFAULT_MODEL_DIR)
    out = Path(out or config.RECORDS_DIR / "local_data_size.csv")
    name = engine
    if engine == "auto":  # the fastest accurate engine `cosmic bench` measured on this CPU type
        from cosmic_utils.inference.engines import default_engine

        name = default_engine(batch_size=batch_size)
    base = Path(base) if base is not None else ensure_dataset(min(base_gb, max(sizes_gb)), partition_mb, seed)
    data = tiled_dataset(base, max(sizes_gb))
    stamp = provenance()
    rows: list[dict[str, Any]] = []
    for r in range(1, repeats + 1):
        for gb in sizes_gb:
            n = config.samples_for_gb(gb)
            echo(f"local data-size: {gb:g} GB ({n:,} samples), {name}, repeat {r}/{repeats} ...")
            rec = run_point(data, name, batch_size, threads, n, model_dir)
            row = {**{k: v for k, v in stamp.items() if k not in rec}, **rec,
                   "requested_gb": gb, "backend": "local", "kind": "measured", "repeat": r,
                   "engine_choice": engine, "base_dataset": base.name, "base_gb": min(base_gb, max(sizes_gb)),
                   "data_note": DATA_NOTE}
            rows.append(portable(row))
            echo(f"  {row['gb_per_s']:.4g} GB/s, {row['samples_per_s']:.4g} samples/s, peak RSS "
                 f"{row['peak_rss_mb']:.0f} MB, {row['wall_s']:.1f} s")
            _write(rows, out)
    return pd.DataFrame(rows)


def _write(rows: list[dict[str, Any]], out: Path) -> None:
    df = pd.DataFrame(rows)
    df = df[[*[c for c in COLUMNS if c in df.columns], *[c for c in df.columns if c not in COLUMNS]]]
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
