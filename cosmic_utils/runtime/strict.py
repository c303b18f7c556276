"""Strict reading of numbers that come from records, and strict JSON writing.

:func:`check_number`: a real, finite number inside its physical range, else :class:`RecordError`
naming file, field and value; :func:`dumps` never writes NaN or Infinity (:func:`jsonable` makes them
null). In ``runtime`` so Summarize and every workstation reader share one rule (docs/reliability.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class RecordError(ValueError):
    """A record holds a value that is missing, not a number, not finite or out of its range."""


def check_number(value: Any, *, source: str | Path, field: str, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False) -> float:
    """``value`` as a float, else :class:`RecordError` naming ``source``, ``field`` and the value; ``lo`` /
    ``hi`` inclusive (``lo_open=True``: ``lo`` exclusive). Booleans are not numbers."""
    where = f"{source}: field {field!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError(f"{where} is {value!r}, not a number")
    x = float(value)
    if not math.isfinite(x):
        raise RecordError(f"{where} is {value!r}, not a finite number")
    if lo is not None and (x <= lo if lo_open else x < lo):
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        raise RecordError(f"{where} is {x:g}, outside its physical range (must be {bound})")
    if hi is not None and x > hi:
        raise RecordError(f"{where} is {x:g}, outside its physical range (must be <= {hi:g})")
    return x


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars -> float/int, NaN/inf -> None, tuples -> lists)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # numpy / torch arrays
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (standard JSON only)."""
    return json.dumps(obj, allow_nan=False, **kwargs)
