"""`make figures` writes the same bytes every time, so an unchanged checkout stays clean in git.

Two fresh processes with different ``PYTHONHASHSEED`` render the same figures from the shipped
records: a timestamp in the PDF/PNG metadata, or an order that depends on set/dict hashing,
would make the bytes differ. One representative figure keeps the test fast: it
groups the local-engine, published, simulated and (when present) aws-sweep records (every figure goes through the same
:func:`cosmic_utils.analysis.figstyle.save`); `make figures` itself is checked with `git status` (README).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBSET = ("lambda_batch_size",)


def _render(out: Path, seed: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT),
           "COSMIC_RUNS_DIR": str(out / "no-runs"), "COSMIC_FIGURES_DIR": str(out)}
    env.pop("SOURCE_DATE_EPOCH", None)  # reproducible without it
    return subprocess.Popen([sys.executable, "-m", "cosmic_utils.cli", "figures", "--out", str(out),
                             "--only", *SUBSET], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_figures_are_byte_reproducible(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    procs = [_render(a, "1"), _render(b, "2")]
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out
    files = sorted(f.name for f in a.iterdir() if f.is_file())
    assert files == sorted(f"{n}.{ext}" for n in SUBSET for ext in ("png", "pdf"))
    differ = [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not differ, f"figures differ between two renders: {differ}"
    pdf = (a / files[0].replace(".png", ".pdf")).read_bytes()
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf

