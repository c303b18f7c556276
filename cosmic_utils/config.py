"""Every path the project uses, in one place, and the units re-exported for workstation code.

The root is ``COSMIC_ROOT``, else this checkout, else the current folder; each folder can be
moved on its own (``COSMIC_DATA_DIR``, ``COSMIC_RUNS_DIR`` ...), e.g. to a scratch disk.
Nothing is created at import time; call :func:`ensure_dirs`.
"""

from __future__ import annotations

import os
from pathlib import Path

from cosmic_utils.runtime.units import BANDS, GB, PARTITION_MB, SAMPLE_BYTES  # noqa: E402,F401  re-exported


def _find_root() -> Path:
    env = os.environ.get("COSMIC_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() and (here / "cosmic_utils").is_dir():
        return here
    return Path.cwd().resolve()


def _dir(env_name: str, default: Path) -> Path:
    value = os.environ.get(env_name)
    return Path(value).expanduser().resolve() if value else default


PROJECT_ROOT: Path = _find_root()
#: Bundled, committed data (the SDSS catalogue with its licence, small reference records).
DATA_DIR: Path = _dir("COSMIC_DATA_DIR", PROJECT_ROOT / "data")
CATALOG_DIR: Path = DATA_DIR / "sdss_mgs"
TRAIN_CATALOG: Path = CATALOG_DIR / "sdss_mgs_train.txt"
VALID_CATALOG: Path = CATALOG_DIR / "sdss_mgs_valid.txt"
#: Published numbers kept as data (copied from the Cosmic AI work and the seed project).
REFERENCE_DIR: Path = DATA_DIR / "reference"
#: Small measured run records shipped with the repository so `make figures` needs no re-run.
RECORDS_DIR: Path = _dir("COSMIC_RECORDS_DIR", DATA_DIR / "records")
#: Generated partitions (git-ignored; can be several GB).
GENERATED_DIR: Path = _dir("COSMIC_GENERATED_DIR", DATA_DIR / "generated")
#: Trained / converted model artifacts (git-ignored cache).
MODELS_DIR: Path = _dir("COSMIC_MODELS_DIR", PROJECT_ROOT / "models")
DEFAULT_MODEL_DIR: Path = MODELS_DIR / "default"
#: Every run writes under runs/<run-id>/ (git-ignored): records, predictions, summary, notebooks.
RUNS_DIR: Path = _dir("COSMIC_RUNS_DIR", PROJECT_ROOT / "runs")
SWEEP_RUNS_DIR: Path = RUNS_DIR / "sweeps"
FIGURES_DIR: Path = _dir("COSMIC_FIGURES_DIR", PROJECT_ROOT / "figures")
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
LAMBDA_DIR: Path = PROJECT_ROOT / "lambda"
STEPFUNCTIONS_DIR: Path = PROJECT_ROOT / "stepfunctions"
SWEEP_GRIDS_DIR: Path = PROJECT_ROOT / "sweeps"
#: Build outputs (Lambda zip packages, wheels for Lambda's Linux).
BUILD_DIR: Path = _dir("COSMIC_BUILD_DIR", PROJECT_ROOT / "build")


def ensure_dirs() -> None:
    """Create the writable folders (generated data, models, runs, figures, build)."""
    for path in (GENERATED_DIR, MODELS_DIR, RUNS_DIR, FIGURES_DIR, BUILD_DIR, RECORDS_DIR):
        path.mkdir(parents=True, exist_ok=True)


def _samples(size: float, unit_bytes: float, what: str, unit: str) -> int:
    if size <= 0:
        raise ValueError(f"{what} must be positive, got {size} {unit}")
    return max(1, int(size * unit_bytes / SAMPLE_BYTES + 0.5))


def samples_per_partition(partition_mb: float) -> int:
    """Samples in a partition of ``partition_mb`` published-MB (2**20 bytes), rounded to the nearest
    sample, at least one: 10 -> 511, 25 -> 1,278, 100 -> 5,110."""
    return _samples(partition_mb, PARTITION_MB, "partition size", "MB")


def samples_for_gb(gb: float) -> int:
    """Samples in ``gb`` GB (1e9 bytes) of data, counted as the published work does."""
    return _samples(gb, GB, "data size", "GB")
