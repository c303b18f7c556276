"""The strict loaders of the four record kinds (run summary, bench, sweep point, projection): every reader
goes through :func:`load`, so a field a record lacks or mangles is one error naming file and field. Models
allow extra fields (records grow) and pin what readers use. Reasoning: docs/records.md, "Strict loaders".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cosmic_utils.runtime.strict import RecordError

NonNeg = Annotated[float, Field(ge=0)]
M = TypeVar("M", bound="Record")


class Record(BaseModel):
    """A record read strictly: finite numbers only, no booleans or strings for numbers, unknown fields kept."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)


class Provenance(Record):
    cpu_model: str | None = None
    cpus: int | None = None
    cpu_count: int | None = None


class _Throughput(Record):
    end_to_end_gb_s: NonNeg


class _Timing(Record):
    sum_duration_s: NonNeg


class _Cost(Record):
    lambda_usd: NonNeg
    total_usd: NonNeg


class _Billing(Record):
    memory_mb_configured: NonNeg


class _Accuracy(Record):
    sigma_nmad: float | None = None
    outlier_015: float | None = None
    labelled_samples: int | None = None


class RunSummary(Record):
    """A run's ``summary.json`` (cloud/runner writes it; ``pipeline_*_summary.json`` are copies)."""

    data_gb: NonNeg
    wall_s: NonNeg
    partitions: Annotated[int, Field(ge=0)]
    partitions_ok: int | None = None
    backend: str | None = None
    throughput: _Throughput
    timing: _Timing
    cost: _Cost
    billing: _Billing
    accuracy: _Accuracy | None = None
    provenance: Provenance | None = None
    model_info: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        """Every partition succeeded (a point with a failed one describes part of the data only)."""
        return self.partitions_ok is None or self.partitions_ok >= self.partitions


class SweepDone(Record):
    """A finished sweep point's ``_done.json``: its parameters and repeat."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    repeat: int | None = None
    provenance: Provenance | None = None
    cpu_model: str | None = None
    cpus: int | None = None


class _BenchMeta(Record):
    cpu_model: str


class _BenchSummary(Record):
    batch_size: Annotated[int, Field(gt=0)]


class BenchRecord(Record):
    """``bench.json`` of ``cosmic bench`` (``data/records/bench.json``, ``machines/*/bench.json``)."""

    rows: Annotated[list[dict[str, Any]], Field(min_length=1)]
    meta: _BenchMeta
    summary: _BenchSummary
    checks: list[dict[str, Any]] | None = None


class ProjectionRecord(Record):
    """``lambda_projection.json`` (``cosmic simulate --project --json``)."""

    label: str
    memory: Annotated[list[dict[str, Any]], Field(min_length=1)]
    best_memory_mb: NonNeg
    best: dict[str, Any]
    arm64: dict[str, Any]
    wall_clock_12_6gb: list[dict[str, Any]]
    targets: dict[str, Any]
    decomposition: dict[str, Any] | None = None
    by_cpu: list[dict[str, Any]] | None = None


def read_json(path: Path, label: str | None = None) -> Any:
    """The JSON document at ``path``, or :class:`RecordError` saying it is missing or unreadable."""
    name = label or str(path)
    if not Path(path).is_file():
        raise RecordError(f"{name} is missing")
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecordError(f"{name} is unreadable: {exc}") from exc


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object at ``path``, or ``{}`` when it is missing, unreadable or not an object (lenient readers)."""
    try:
        data = read_json(path)
    except RecordError:
        return {}
    return data if isinstance(data, dict) else {}


def validate(kind: type[M], data: Any, label: str) -> M:
    """``data`` as a ``kind``, or :class:`RecordError` ``<label> is malformed: field 'a.b' ...``."""
    if not isinstance(data, dict):
        raise RecordError(f"{label} is malformed: not a JSON object")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RecordError(f"{label} is malformed: field {where!r}: {err['msg'].lower()} "
                          f"(got {err.get('input')!r:.80})") from None


def load(kind: type[M], path: Path, label: Callable[[Path], str] | str | None = None) -> M:
    """The record at ``path`` validated as ``kind`` (``label``: how errors name the file)."""
    name = label(Path(path)) if callable(label) else (label or str(path))
    return validate(kind, read_json(path, name), name)
