"""Shipped bench records of several machines, side by side (``cosmic bench --compare``).

One column per record (``data/records/bench.json``, ``data/records/machines/<machine>/bench.json``,
docs/records.md), named with the CPU its probe measured; every value is measured on that machine,
nothing is converted between machines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cosmic_utils import config


def bench_record_paths(records_dir: Path | None = None) -> list[Path]:
    """The study's bench record first, then each other machine's, existing ones only."""
    recs = Path(records_dir or config.RECORDS_DIR)
    return [p for p in [recs / "bench.json", *sorted(recs.glob("machines/*/bench.json"))] if p.is_file()]


def machine_label(meta: dict[str, Any]) -> str:
    """``CPU model (isa, N cores)`` from a bench record's probe."""
    cores = meta.get("cpus") or meta.get("cpu_count")
    return f"{meta.get('cpu_model') or 'CPU not recorded'} ({meta.get('isa') or '?'}" + (f", {cores} cores)" if cores else ")")


def compare_table(paths: list[Path], batch_size: int = 256) -> str:
    """One line per (threads, engine) at ``batch_size``; one column pair per record."""
    docs = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]
    if not docs:
        return "no bench records to compare (make bench, then ship the record)"
    cells: dict[tuple[int, str], dict[int, dict[str, Any]]] = {}
    for i, (_, doc) in enumerate(docs):
        for r in doc.get("rows", []):
            if r.get("batch_size") == batch_size:
                key = (int(r.get("threads") or doc["meta"].get("threads") or 0), str(r["engine"]))
                cells.setdefault(key, {})[i] = r
    width = 24
    lines = [f"measured, batch {batch_size}; samples/s and x the published loop at the same threads, same run; "
             "'refused': that engine failed its accuracy check on that machine"]
    for i, (p, doc) in enumerate(docs):
        shown = p.resolve().relative_to(config.PROJECT_ROOT) if p.resolve().is_relative_to(config.PROJECT_ROOT) else p
        lines.append(f"  [{i}] {machine_label(doc['meta'])}: {shown.as_posix()}")
    lines.append(f"{'threads':>7} {'engine':<15}" + "".join(f"{'[' + str(i) + ']':>{width}}" for i in range(len(docs))))
    for (threads, engine) in sorted(cells):
        row = f"{threads:>7} {engine:<15}"
        for i in range(len(docs)):
            r = cells[(threads, engine)].get(i)
            text = f"{r['samples_per_s']:,.0f}/s ({r['ratio_vs_published_loop']:.2f}x)" if r else "-"
            if r and r.get("check_passed") is False:
                text = "refused " + text
            row += f"{text:>{width}}"
        lines.append(row)
    return "\n".join(lines)
