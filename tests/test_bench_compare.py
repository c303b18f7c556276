"""Bench records of two machines side by side: `cosmic bench --compare` and the README's rows."""

from __future__ import annotations

import json

from cosmic_utils.analysis import readme
from cosmic_utils.inference.bench_compare import bench_record_paths, compare_table


def _row(doc: dict, threads: int, engine: str) -> dict:
    return next(r for r in doc["rows"] if r["threads"] == threads and r["engine"] == engine and r["batch_size"] == 256)


def test_shipped_records_of_both_machines_side_by_side() -> None:
    """Intel and AMD columns, each named by its probe, each value the record's own."""
    paths = bench_record_paths()
    assert [p.parent.name for p in paths][-1] == "amd-epyc-avx2" and paths[0].name == "bench.json"
    docs = [json.loads(p.read_text()) for p in paths]
    table = compare_table(paths)
    assert "Intel(R) Xeon(R) Processor (amx" in table and "AMD EPYC (avx2, 2 cores)" in table
    line = next(ln for ln in table.splitlines() if ln.split()[:2] == ["1", "onnx-int8"])
    for doc in docs:
        r = _row(doc, 1, "onnx-int8")
        assert f"{r['samples_per_s']:,.0f}/s ({r['ratio_vs_published_loop']:.2f}x)" in line


def test_readme_has_engine_rows_for_each_machine() -> None:
    """One engines row and one Lambda-engine row per machine, named with that machine's CPU."""
    rows = [r for r in readme.measured_rows() if r.what.startswith(("engines at", "Lambda engine"))]
    machines = sorted({r.machine for r in rows})
    assert len(rows) == 4 and len(machines) == 2 and any(m.startswith("AMD EPYC") for m in machines)
    amd = next(r for r in rows if r.machine.startswith("AMD") and r.what.startswith("Lambda engine"))
    doc = json.loads(bench_record_paths()[-1].read_text())
    speed = _row(doc, 1, "onnx-int8")["samples_per_s"]
    assert "machines/amd-epyc-avx2/bench.json" in amd.record and f"onnx-int8 {speed:,.0f}/s" in amd.result
