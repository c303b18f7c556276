"""Shared pytest fixtures. Tests never write into the repository: paths go to tmp folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def untrained_artifact_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One random-weights artifact of the full network (with ONNX), shared by every test.

    Exporting the full model to ONNX takes tens of seconds, so it is built once per test
    session and shared across pytest-xdist workers through a file lock in the common base
    temporary folder. Tests must treat it as read-only (copy it to modify it).
    """
    from filelock import FileLock

    from cosmic_utils.model.artifacts import create_untrained_artifact

    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    target = shared / "shared-artifacts" / "untrained"
    with FileLock(str(shared / "untrained-artifact.lock")):
        if not (target / "artifact.json").exists():
            create_untrained_artifact(target, seed=0, with_onnx=True)
    return target


@pytest.fixture()
def moto_aws_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The aws backend (us-east-1) inside moto's in-process mock, with dummy credentials only."""
    from moto import mock_aws

    from cosmic_utils.cloud import aws

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield aws.AwsBackend(region="us-east-1")
