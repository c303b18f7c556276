"""Execute every notebook, so no notebook can rot.

Each notebook runs in a fresh kernel through papermill, with every output folder pointed at a
temporary directory (runs, figures, models, generated data), so the checkout is never touched.
The defaults are meant for a user (notebook 00 trains the real model, ~2-10 minutes), so the test
passes tiny parameters (:data:`TEST_PARAMETERS`): "quick" training, a few hundred samples with
batch sizes that still fill several batches, and, since each notebook gets an empty models
folder, an explicit ``allow_untrained=True`` (the path that labels everything UNTRAINED). The
defaults themselves are run from a fresh clone as docs/records.md describes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cosmic_utils import config

NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))
#: Small parameters per notebook for the test (the defaults are for users; see the module docstring).
TEST_PARAMETERS: dict[str, dict] = {
    "00_setup": {"train_config": "quick", "data_gb": 0.002, "partition_mb": 0.5},
    "01_local_baseline": {"allow_untrained": True, "batch_sizes": [8, 16], "data_sweep_batch_size": 16,
                          "batch_sweep_gb": 0.002, "data_gb_min": 0.002, "data_gb_max": 0.004},
    "02_gpu_baseline": {"allow_untrained": True, "data_gb": 0.002, "batch_sizes": [16]},
    "03_lambda_sweep": {"allow_untrained": True, "data_gb": 0.002, "partition_mb": 0.5, "batch_size": 8},
    "04_analysis": {},
}


def test_notebooks_exist_and_are_paired() -> None:
    names = {p.stem for p in NOTEBOOKS}
    for stem in ("00_setup", "01_local_baseline", "02_gpu_baseline", "03_lambda_sweep", "04_analysis"):
        assert stem in names, f"notebooks/{stem}.ipynb is missing"
    for nb in NOTEBOOKS:
        assert nb.with_suffix(".py").exists(), f"{nb.name} has no paired py:percent script"
        doc = json.loads(nb.read_text())
        fmt = doc.get("metadata", {}).get("jupytext", {}).get("formats", "")
        assert "py:percent" in fmt, f"{nb.name} is not paired as py:percent ({fmt!r})"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_thin(notebook: Path) -> None:
    """A few cells of package calls: no function or class defined, no plotting code, at most 120 lines."""
    script = notebook.with_suffix(".py").read_text()
    lines = script.splitlines()
    assert len(lines) <= 120, f"{notebook.stem}.py has {len(lines)} lines (at most 120: move code into cosmic_utils)"
    defs = [i + 1 for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "class ", "async def "))]
    assert not defs, f"{notebook.stem}.py defines functions/classes at lines {defs}: move them into cosmic_utils"
    plotting = [i + 1 for i, line in enumerate(lines)
                if "import matplotlib" in line or "plt." in line or "plt =" in line]
    assert not plotting, f"{notebook.stem}.py draws with matplotlib at lines {plotting}: use cosmic_utils.analysis.plots"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(notebook: Path) -> None:
    doc = json.loads(notebook.read_text())
    dirty = [i for i, c in enumerate(doc["cells"]) if c["cell_type"] == "code" and c.get("outputs")]
    assert not dirty, f"{notebook.name} has outputs in cells {dirty}; strip them before committing"
    tagged = [c for c in doc["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name} needs exactly one cell tagged 'parameters'"


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_with_defaults(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import papermill as pm

    for var, sub in (
        ("COSMIC_RUNS_DIR", "runs"),
        ("COSMIC_FIGURES_DIR", "figures"),
        ("COSMIC_MODELS_DIR", "models"),
        ("COSMIC_GENERATED_DIR", "generated"),
        ("COSMIC_BUILD_DIR", "build"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / f"{notebook.stem}.executed.ipynb"
    pm.execute_notebook(
        str(notebook),
        str(out),
        kernel_name="python3",
        cwd=str(config.NOTEBOOKS_DIR),
        parameters=TEST_PARAMETERS.get(notebook.stem, {}),
        progress_bar=False,
        request_save_on_cell_execute=False,
    )
    assert out.exists()
    assert os.environ["COSMIC_RUNS_DIR"].startswith(str(tmp_path))
