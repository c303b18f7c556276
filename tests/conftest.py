"""Shared pytest fixtures. Tests never write into the repository: paths go to tmp folders."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point runs/ and figures/ at a temporary folder so tests never touch the checkout."""
    base = tmp_path_factory.mktemp("cosmic")
    monkeypatch.setenv("COSMIC_RUNS_DIR", str(base / "runs"))
    monkeypatch.setenv("COSMIC_FIGURES_DIR", str(base / "figures"))
