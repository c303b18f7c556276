"""Argument types of the ``cosmic`` command line: out-of-range values are usage errors (exit 2),
refused before any work starts; counts are digits ("1.0", "true", "1e3" refused), sizes finite.
Why (a batch size of -1 once read an unfilled buffer): docs/reliability.md, docs/bench.md.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

__all__ = ["positive_int", "nonnegative_int", "positive_float", "percentage"]

_INT = re.compile(r"[+-]?\d+")


def _int(text: str, low: int) -> int:
    s = str(text).strip()
    if not _INT.fullmatch(s):
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}")
    if int(s) < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {int(s)}")
    return int(s)


def positive_int(text: str) -> int:
    """A whole number >= 1 (batch sizes, counts, threads, MB of memory, seconds of timeout)."""
    return _int(text, 1)


def batch_size(text: str) -> int:
    """A batch size: a whole number from 1 to the request model's limit (a usage error, exit 2,
    rather than a refusal by the request model after the run has started, exit 1)."""
    from cosmic_utils.runtime.request import RunRequest

    value = positive_int(text)
    limit = next((m.le for m in RunRequest.model_fields["batch_size"].metadata if getattr(m, "le", None)), None)
    if limit is not None and value > limit:
        raise argparse.ArgumentTypeError(f"must be <= {limit} (samples per engine call), got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """A whole number >= 0 (``0`` meaning none / no limit where the option says so)."""
    return _int(text, 0)


def _float(text: str, what: str, ok: Callable[[float], bool], bound: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (data sizes in GB, partition sizes in MB, speedups, deadlines)."""
    return _float(text, "a number > 0", lambda v: v > 0, "> 0")


def percentage(text: str) -> float:
    """A finite number in [0, 100]."""
    return _float(text, "a percentage (0 to 100)", lambda v: 0 <= v <= 100, "between 0 and 100")
