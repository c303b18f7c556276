"""The layout's contracts: import-linter's (pyproject.toml) hold, and the Lambda handlers import
only the runtime. docs/architecture.md explains them."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str | None:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else shutil.which("lint-imports")


def test_import_contracts_hold() -> None:
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "5 kept, 0 broken" in proc.stdout


def test_notebook_contract_catches_a_notebook_importing_the_cli(tmp_path: Path) -> None:
    """The notebooks-off-cli contract breaks when a notebook imports ``commands`` (as 03 once did)."""
    exe = _lint_imports()
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "cosmic_utils").symlink_to(ROOT / "cosmic_utils")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "__init__.py").write_text("")
    (tmp_path / "notebooks" / "03_lambda_sweep.py").write_text("from cosmic_utils.commands.run import run_exit_status\n")
    proc = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "notebooks import the package, not the CLI (commands, cli) BROKEN" in proc.stdout, (
        proc.stdout[-3000:] + proc.stderr[-2000:])


@pytest.mark.parametrize("function", ["init", "inference", "summarize"])
def test_handlers_import_only_the_runtime(function: str) -> None:
    tree = ast.parse((ROOT / "lambda" / function / "handler.py").read_text())
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    ours = [m for m in mods if m.startswith("cosmic_utils")]
    assert ours and all(m == "cosmic_utils.runtime" or m.startswith("cosmic_utils.runtime.") for m in ours), ours


@pytest.mark.parametrize(("module", "absent"), [
    ("cosmic_utils.runtime.steps.init", ("numpy", "onnxruntime", "yaml", "torch")),
    ("cosmic_utils.runtime.steps.summarize", ("numpy", "onnxruntime", "torch")),
    ("cosmic_utils.runtime.steps.inference", ("torch", "pandas", "yaml")),
])
def test_each_step_imports_what_its_zip_ships(module: str, absent: tuple[str, ...]) -> None:
    """lambda/<fn>/requirements.txt: Init has pydantic only, Summarize pydantic + pyyaml, Inference no torch."""
    block = "; ".join(f"sys.modules[{name!r}] = None" for name in absent)
    code = f"import sys; {block}; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
