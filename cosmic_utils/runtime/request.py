"""The validated run request: the one document a pipeline run starts from.

It says what to run and how wide, never carries code (the published pipeline executed a script
named in the payload): ``extra="forbid"`` rejects unknown fields by name. The seed payload is
translated by :func:`from_seed_payload`, its code fields refused with the reason. Pure pydantic
(every Lambda). Fields and allow-list: docs/pipeline.md "The run request".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Run ids become S3 key segments, Step Functions execution names (<= 80 chars) and folder names.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: Engines that run inside Lambda (ONNX Runtime + numpy). Torch engines do not fit the zip.
LAMBDA_ENGINES: tuple[str, ...] = ("onnx", "onnx-int8")
#: Lambda's configurable memory range (MB) and timeout (s).
MEMORY_MB_RANGE: tuple[int, int] = (128, 10240)
TIMEOUT_S_RANGE: tuple[int, int] = (1, 900)
#: Fields of the seed payload that carried code to execute; refused, with the reason.
SEED_CODE_FIELDS: dict[str, str] = {
    "script": "it names a script that the published worker downloaded and executed",
    "S3_object_name": "it names the code folder the published worker downloaded to run its script",
    "object_type": "it tells the published worker how to download its code folder",
}
#: Seed payload fields that translate into request fields.
SEED_FIELDS: tuple[str, ...] = (
    "bucket", "file_limit", "batch_size", "result_path", "data_bucket", "data_prefix", "world_size",
)
#: Environment variables (set by the deploy code) holding the allow-list: JSON lists of locations a
#: request may read from / write results to. Absent = no allow-list; present = enforced by Init.
ALLOWED_READ_ENV = "COSMIC_ALLOWED_READ"
ALLOWED_RESULTS_ENV = "COSMIC_ALLOWED_RESULTS"


class RequestError(ValueError):
    """A run request that cannot be accepted; the message names the fields and the problem."""


def _is_location(value: str) -> bool:
    if value.startswith("s3://"):
        bucket, _, prefix = value[5:].partition("/")
        if any(part in ("..", ".") for part in prefix.split("/")):
            return False  # s3://bucket/a/../b: a prefix never walks up
        return bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket))
    return bool(value) and "\x00" not in value and "://" not in value


class RunRequest(BaseModel):
    """One pipeline run. Every field is checked; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    run_id: str = Field(pattern=RUN_ID_PATTERN, description="names the run's folder, keys and execution")
    data: str = Field(description="dataset location: a local folder or s3://bucket/prefix of .cpart files")
    model: str = Field(description="model artifact location (artifact.json + model.onnx), folder or s3://")
    results: str = Field(description="where items, predictions, records and summary go (folder or s3://)")
    batch_size: int = Field(default=256, ge=1, le=8192, description="samples per engine call")
    partition_limit: int | None = Field(default=None, ge=1, description="use only the first N partitions")
    partitions: list[str] | None = Field(  # max_length: the execution input must stay under 256 KiB
        default=None, description="explicit partition keys (relative to data) instead of listing; redrive",
        max_length=10_000)
    engine: str = Field(default="onnx", description=f"inference engine, one of {LAMBDA_ENGINES}")
    threads: int | None = Field(default=None, ge=1, le=64, description="engine intra-op threads")
    max_concurrency: int = Field(default=16, ge=1, le=10_000, description="Map MaxConcurrency")
    tolerated_failure_percentage: float = Field(default=10.0, ge=0.0, le=100.0, allow_inf_nan=False)
    world_size: int | None = Field(
        default=None, ge=1, le=10_000,
        description="spread partitions evenly over this many invocations; None = one per invocation")
    memory_mb: int = Field(default=3008, ge=MEMORY_MB_RANGE[0], le=MEMORY_MB_RANGE[1])
    timeout_s: int = Field(default=900, ge=TIMEOUT_S_RANGE[0], le=TIMEOUT_S_RANGE[1])
    predictions_format: Literal["csv", "npz"] = "csv"
    tags: dict[str, str] = Field(default_factory=dict, description="free labels for sweeps (partition_mb ...)")
    overwrite: bool = Field(default=False, description="replace the results of an earlier run with this run id")
    redrive: bool = Field(default=False, description="re-run the listed partitions of an existing run (runner.redrive)")

    @field_validator("batch_size", "partition_limit", "threads", "max_concurrency", "world_size", "memory_mb",
                     "timeout_s", "tolerated_failure_percentage", mode="before")
    @classmethod
    def _strict_number(cls, value: Any, info: Any) -> Any:
        # pydantic's lax mode takes True as 1 and "8" as 8: numbers must be JSON numbers, integral
        # for the integer fields, finite for the others
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        if info.field_name != "tolerated_failure_percentage" and isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"must be an integer, got {value!r}")
            return int(value)
        return value

    @field_validator("data", "model", "results")
    @classmethod
    def _location(cls, value: str) -> str:
        if not _is_location(value):
            raise ValueError(f"{value!r} is not a local folder or an s3://bucket/prefix location")
        return value.rstrip("/") if value not in ("/", "s3://") else value

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value not in LAMBDA_ENGINES:
            raise ValueError(f"engine {value!r} does not run inside Lambda; choose one of {LAMBDA_ENGINES}")
        return value

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("partitions, when given, must list at least one key")
        from cosmic_utils.runtime.storage import InvalidKeyError, validate_key

        for key in value:
            try:
                validate_key(key)
            except InvalidKeyError as exc:
                raise ValueError(f"partition key {key!r} must be relative to the data location: {exc}") from None
        if len(set(value)) != len(value):
            raise ValueError("partitions lists a key twice")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 32 or any(len(k) > 64 or len(v) > 256 for k, v in value.items()):
            raise ValueError("tags: at most 32 entries, keys <= 64 and values <= 256 characters")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunRequest:
        if self.world_size is not None and self.partition_limit is not None and self.world_size > self.partition_limit:
            raise ValueError(f"world_size ({self.world_size}) exceeds partition_limit ({self.partition_limit}):"
                             " some workers would get no partition")
        if self.redrive and not self.partitions:
            raise ValueError("redrive: the partitions to re-run must be listed in 'partitions'")
        return self

    def to_json(self) -> str:
        """The request as an execution's JSON input."""
        return self.model_dump_json()


def _within(location: str, allowed: str) -> bool:
    """Whether ``location`` is ``allowed`` or below it, by whole segments, local folders resolved."""
    if location.startswith("s3://") != allowed.startswith("s3://"):
        return False
    if not location.startswith("s3://"):
        location, allowed = str(Path(location).resolve()), str(Path(allowed).resolve())
    loc, base = location.rstrip("/"), allowed.rstrip("/")
    return loc == base or loc.startswith(base + "/")


def check_allowed(request: RunRequest, allowed_read: list[str] | None, allowed_results: list[str] | None) -> None:
    """Refuse a request whose data, model or results location is outside the deployment's allow-list
    (``None``: nothing checked; ``[]`` allows nothing)."""
    problems = []
    for field, allowed in (("data", allowed_read), ("model", allowed_read), ("results", allowed_results)):
        if allowed is None:
            continue
        value = getattr(request, field)
        if not any(_within(value, a) for a in allowed):
            problems.append(f"field {field!r}: {value!r} is outside what this deployment allows ({sorted(allowed)})")
    if problems:
        raise RequestError("run request refused: " + "; ".join(problems))


def allow_list_from_env(env: Mapping[str, str]) -> tuple[list[str] | None, list[str] | None]:
    """The deployment's allow-list from a function's environment (see :data:`ALLOWED_READ_ENV`)."""
    return tuple(None if env.get(name) is None else [str(x) for x in json.loads(env[name])]
                 for name in (ALLOWED_READ_ENV, ALLOWED_RESULTS_ENV))


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(x) for x in err["loc"]) or "request"
        prefix = {"extra_forbidden": "unknown field", "missing": "missing field"}.get(err["type"])
        parts.append(f"{prefix} {field!r}" if prefix else f"field {field!r}: {err['msg']}")
    return "invalid run request: " + "; ".join(parts)


def parse_request(data: Mapping[str, Any] | str | bytes | RunRequest) -> RunRequest:
    """Validate a request given as a dict or JSON text; errors name every offending field."""
    if isinstance(data, RunRequest):
        return data
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise RequestError(f"invalid run request: not JSON ({exc})") from exc
    if not isinstance(data, Mapping):
        raise RequestError(f"invalid run request: expected a JSON object, got {type(data).__name__}")
    _refuse_code(data)
    try:
        return RunRequest.model_validate(dict(data))
    except ValidationError as exc:
        raise RequestError(_format_errors(exc)) from None


def _refuse_code(payload: Mapping[str, Any]) -> None:
    fields = sorted(k for k in payload if k in SEED_CODE_FIELDS)
    if fields:
        reasons = "; ".join(f"{f!r}: {SEED_CODE_FIELDS[f]}" for f in fields)
        raise RequestError(f"refused field(s) {', '.join(repr(f) for f in fields)}: a run request never"
                           f" carries code or a script path ({reasons}); the pipeline runs only its packaged"
                           " handlers")


def _as_int(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise RequestError(f"invalid seed payload: field {key!r} must be an integer, got {value!r}") from None


def from_seed_payload(payload: Mapping[str, Any], *, model: str, run_id: str | None = None,
                      **overrides: Any) -> RunRequest:
    """The seed project's Step Functions payload as a :class:`RunRequest` (docs/pipeline.md "The run request")."""
    _refuse_code(payload)
    unknown = sorted(k for k in payload if k not in SEED_FIELDS)
    if unknown:
        raise RequestError(f"invalid seed payload: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = [k for k in ("data_bucket", "bucket", "result_path") if not payload.get(k)]
    if missing:
        raise RequestError(f"invalid seed payload: missing field(s) {', '.join(map(repr, missing))}")
    prefix = str(payload.get("data_prefix") or "").strip("/")
    result_path = str(payload["result_path"]).strip("/")
    if run_id is None:
        run_id = re.sub(r"[^A-Za-z0-9._-]", "-", result_path.replace("/", "-"))[-64:].lstrip("-._") or "seed-run"
    fields: dict[str, Any] = {
        "run_id": run_id,
        "data": f"s3://{payload['data_bucket']}" + (f"/{prefix}" if prefix else ""),
        "results": f"s3://{payload['bucket']}/{result_path}",
        "model": model,
    }
    for seed_key, key in (("file_limit", "partition_limit"), ("batch_size", "batch_size"), ("world_size", "world_size")):
        value = _as_int(payload, seed_key)
        if value is not None:
            fields[key] = value
    fields.update(overrides)
    return parse_request(fields)
