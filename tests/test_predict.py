"""`cosmic predict` and `cosmic model evaluate` on an untrained artifact (fast, real code paths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cosmic_utils import config
from cosmic_utils.cli import main
from cosmic_utils.data import catalog
from cosmic_utils.data.render import render_cutouts
from cosmic_utils.inference.predict import PredictError, predict_catalog, read_photometry
from cosmic_utils.jobs.reliability import write_tiny_artifact
from cosmic_utils.model import artifacts
from cosmic_utils.runtime.artifact import ArtifactNotFoundError, ModelArtifact


@pytest.fixture(scope="module")
def artifact(untrained_artifact_dir: Path) -> ModelArtifact:
    """The session's shared random-weights artifact (conftest), read-only."""
    return ModelArtifact.load(untrained_artifact_dir)


def _write(path: Path, df: pd.DataFrame) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# " + " ".join(df.columns) + "\n")
        df.to_csv(fh, sep=" ", header=False, index=False, float_format="%.6f", na_rep="nan")
    return path


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    return _write(tmp_path / "small.txt", catalog.valid_catalog().iloc[:25])


def test_predict_with_labels(artifact: ModelArtifact, small_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    res = predict_catalog(small_catalog, out, model=artifact.path, seed=0)
    df = pd.read_csv(out)
    assert list(df.columns) == ["row", "z_spec", "z_pred", "flag"] and len(df) == 25
    assert list(df["row"]) == list(range(25))
    np.testing.assert_allclose(df["z_spec"], catalog.valid_catalog()["zs"].iloc[:25], atol=1e-6)
    # the engine applies the artifact's preprocessing: same numbers as the torch predictor
    valid = catalog.valid_catalog().iloc[:25]
    image = render_cutouts(catalog.magnitudes(valid), catalog.magnitude_errors(valid), seed=0)
    ref = artifacts.predictor(artifact).predict_numpy(image, catalog.magnitudes(valid))
    # (random weights: a negative prediction is never written as a result, it is left empty and flagged)
    np.testing.assert_allclose(res.predictions["z_pred"], np.where(ref >= 0, ref, np.nan), atol=1e-4)
    assert (res.predictions["flag"].str.startswith("negative") == (ref < 0)).all()
    assert res.table is None or list(res.table["model"])[-1].startswith("kNN")
    torch_res = predict_catalog(small_catalog, None, model=artifact.path, seed=0, engine="torch-eager")
    np.testing.assert_allclose(torch_res.predictions["z_pred"], res.predictions["z_pred"], atol=1e-4)


def test_predict_without_labels_or_errors(artifact: ModelArtifact, tmp_path: Path) -> None:
    src = _write(tmp_path / "mags.txt", catalog.valid_catalog().iloc[:5][["u", "g", "r", "i", "z"]])
    res = predict_catalog(src, tmp_path / "p.csv", model=artifact.path)
    assert res.table is None
    assert list(pd.read_csv(tmp_path / "p.csv").columns) == ["row", "z_pred", "flag"]


def test_bad_catalogues(tmp_path: Path) -> None:
    src = _write(tmp_path / "bad.txt", catalog.valid_catalog().iloc[:3][["zs", "u", "g", "r"]])
    with pytest.raises(PredictError, match=r"missing magnitude columns \['i', 'z'\]"):
        read_photometry(src)
    with pytest.raises(PredictError, match="not found"):
        read_photometry(tmp_path / "none.txt")
    (tmp_path / "nohdr.txt").write_text("0.1 17 17 17 17 17\n")
    with pytest.raises(PredictError, match="header"):
        read_photometry(tmp_path / "nohdr.txt")


def test_missing_default_model_says_how_to_train(small_catalog: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "DEFAULT_MODEL_DIR", tmp_path / "models" / "default")
    with pytest.raises(ArtifactNotFoundError, match="cosmic model train"):
        predict_catalog(small_catalog, tmp_path / "x.csv")
    assert main(["predict", "--catalog", str(small_catalog), "--out", str(tmp_path / "x.csv")]) == 1


def test_cli_predict_and_evaluate(artifact: ModelArtifact, small_catalog: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(config, "FIGURES_DIR", tmp_path / "figures")
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    out = tmp_path / "cli.csv"
    assert main(["predict", "--catalog", str(small_catalog), "--out", str(out), "--model", str(artifact.path),
                 "--json", str(tmp_path / "s.json")]) == 0
    assert len(pd.read_csv(out)) == 25
    printed = capsys.readouterr().out
    assert "sigma_nmad" in printed and "kNN" in printed
    assert main(["model", "evaluate", "--model", str(artifact.path), "--rows", "60", "--engine", "onnx"]) == 0
    assert (tmp_path / "figures" / "model_evaluation_untrained.png").is_file()
    assert (tmp_path / "runs" / "evaluate" / "predictions_untrained.csv").is_file()


def test_unknown_redshifts_are_predicted_not_scored(artifact: ModelArtifact, tmp_path: Path) -> None:
    df = catalog.valid_catalog().iloc[:8].copy()
    df.loc[df.index[:3], "zs"] = np.nan
    src = _write(tmp_path / "partly.txt", df)
    tiny = write_tiny_artifact(tmp_path / "tiny")  # positive redshifts (random weights give negative ones)
    res = predict_catalog(src, tmp_path / "p.csv", model=tiny, with_knn=False)
    assert len(res.predictions) == 8 and res.predictions["z_spec"].isna().sum() == 3
    assert list(res.table["n"]) == [5]
