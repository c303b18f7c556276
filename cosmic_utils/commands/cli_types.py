"""Argument types of the ``cosmic`` command line: out-of-range values are usage errors (exit 2).

A batch size of -1 once filled a prediction file from an unfilled buffer and a size of ``nan``
crashed deep inside the renderer; both are refused here, by argparse, before any work starts.
Each function is an argparse ``type=``: it returns the parsed value or raises
``argparse.ArgumentTypeError`` whose message argparse prints as
``cosmic <cmd>: error: argument --x: <message>``.

* :func:`positive_int`: a whole number >= 1, written as digits (``"1.0"``, ``"true"``, ``"1e3"``
  are refused: a count is never a float or a boolean);
* :func:`nonnegative_int`: the same, >= 0 (``0`` meaning "none");
* :func:`positive_float`: a finite number > 0 (refuses ``0``, ``-1``, ``nan``, ``inf``);
* :func:`nonnegative_float`, :func:`percentage`: finite, >= 0 (and <= 100).
"""

from __future__ import annotations

import argparse
import math
import re

__all__ = ["positive_int", "nonnegative_int", "positive_float", "nonnegative_float", "percentage"]

_INT = re.compile(r"[+-]?\d+")


def _int(text: str, what: str) -> int:
    s = str(text).strip()
    if not _INT.fullmatch(s):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return int(s)


def positive_int(text: str) -> int:
    """A whole number >= 1 (batch sizes, counts, threads, MB of memory, seconds of timeout)."""
    value = _int(text, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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
    value = _int(text, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _float(text: str, what: str) -> float:
    s = str(text).strip()
    if s.lower() in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    try:
        value = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (data sizes in GB, partition sizes in MB, speedups, deadlines)."""
    value = _float(text, "a number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text, "a number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def percentage(text: str) -> float:
    """A finite number in [0, 100]."""
    value = _float(text, "a percentage (0 to 100)")
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {text!r}")
    return value
