"""How numbers (significant digits, published precision), Markdown tables, machines and galaxy counts are
written, and how a generated file is rewritten: one place for docs/report.md, the README block and the figures.
docs/records.md#the-report-as-a-template.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_utils.data import catalog

#: What a record that names no machine is shown as (the report; the README's machine column says NOT_RECORDED).
NO_MACHINE = "machine not recorded in the record"
NOT_RECORDED = "not recorded in the record"


def g(x: float | None, sig: int = 3) -> str:
    """``x`` to ``sig`` significant digits in plain notation with thousands separators (None/NaN -> '-')."""
    if x is None or not math.isfinite(x):
        return "-"
    if x == 0:
        return "0"
    digits = max(0, sig - 1 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{digits}f}"


def pub_g(x: float | None) -> str:
    """A published number at its published precision (67.11 stays 67.11), NaN -> '-'."""
    if x is None or not math.isfinite(float(x)):
        return "-"
    text = repr(float(x))
    if "e" in text:
        return g(float(x))
    whole, _, frac = text.partition(".")
    whole = f"{int(whole):,}" if whole.lstrip("-").isdigit() else whole
    return whole if frac in ("", "0") else f"{whole}.{frac}"


def x_text(x: float) -> str:
    """A swept value as a column header (64, not 64.0)."""
    return f"{int(x):,}" if float(x).is_integer() else g(x)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table ('|' inside a cell becomes '/')."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def rewrite(path: Path, new: str, check: bool) -> bool:
    """Write a generated file ``path`` unless it already holds ``new`` (or ``check``); True when it differs."""
    if path.is_file() and path.read_text(encoding="utf-8") == new:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def machine(info: Mapping[str, Any] | None, isa: bool = False, missing: str = NO_MACHINE) -> str:
    """``CPU model, N cores`` (``, ISA`` with ``isa``) of a record's provenance, or ``missing``."""
    if not info or not info.get("cpu_model"):
        return missing
    cores = info.get("cpus") or info.get("cpu_count")
    tail = f", {info['isa']}" if isa and info.get("isa") else ""
    return f"{info['cpu_model']}, {int(cores)} cores{tail}" if cores else f"{info['cpu_model']}{tail}"


def machine_of(df: pd.DataFrame) -> str:
    """The CPU model named in a record frame (first column ending in ``cpu_model``, with its cores)."""
    for col in (c for c in df.columns if str(c).endswith("cpu_model")):
        vals = df[col].dropna().astype(str)
        if vals.empty:
            continue
        cpus = next((f", {int(df[cc].dropna().iloc[0])} cores" for cc in ("meta.cpus", "provenance.cpus", "cpus")
                     if cc in df.columns and df[cc].notna().any()), "")
        return vals.iloc[0] + cpus
    return "machine not named in these records"


def galaxies_text(samples: int, summary: Mapping[str, Any] | None = None) -> str:
    """``N samples`` with how many distinct galaxies they are (issue 21): ``distinct_galaxies`` of the record, else
    "at most" the validation catalogue the datasets are resampled from with replacement (``config.VALID_CATALOG``)."""
    distinct = (summary or {}).get("distinct_galaxies")
    if distinct:
        return f"{int(samples):,} samples of {int(distinct):,} distinct galaxies"
    n = len(catalog.valid_catalog())
    return f"{int(samples):,} samples resampled from the {n:,}-galaxy validation catalogue (at most {n:,} distinct)"
