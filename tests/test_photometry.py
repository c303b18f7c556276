"""Missing-photometry codes are not magnitudes; redshifts outside the trained range are flagged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cosmic_utils import exits
from cosmic_utils.cli import main
from cosmic_utils.data import catalog
from cosmic_utils.data.photometry import TRAINED_Z, missing_photometry, redshift_flags
from cosmic_utils.inference import predict
from cosmic_utils.jobs.reliability import write_tiny_artifact


def test_codes_and_implausible_values_are_missing_photometry_named_by_band() -> None:
    mags = np.array([[18.0, 17.5, 17.0, 16.8, 16.5],
                     [18.0, -99.0, 17.0, 16.8, 16.5],
                     [-9999.0, 17.5, 17.0, 16.8, 16.5],
                     [18.0, 17.5, 99.0, 16.8, 16.5],
                     [18.0, 17.5, 17.0, 16.8, 40.0],
                     [18.0, 17.5, 17.0, 4.0, np.nan]])
    out = missing_photometry(mags)
    assert sorted(out) == [1, 2, 3, 4, 5]
    assert out[1] == "missing photometry: g = -99 (SDSS's missing-photometry code -99)"
    assert "u = -9999 (SDSS's missing-value code -9999)" in out[2] and "r = 99 (the not-detected code 99)" in out[3]
    assert "z = 40 (outside 5-35 mag)" in out[4] and "i = 4" in out[5] and "z = nan (not a number)" in out[5]


def test_trained_range_matches_the_training_catalogue() -> None:
    zs = catalog.train_catalog()["zs"]
    assert TRAINED_Z == pytest.approx((zs.min(), zs.max()))
    flags = redshift_flags(np.array([0.1, -0.876, 8.83, np.nan]))
    assert sorted(flags) == [1, 2] and "negative" in flags[1] and "outside the trained range" in flags[2]


def _catalogue(tmp_path: Path, edit: dict[tuple[int, str], float]) -> Path:
    df = catalog.valid_catalog().iloc[:8].copy()
    for (row, band), value in edit.items():
        df.loc[df.index[row], band] = value
    src = tmp_path / "cat.txt"
    src.write_text("# " + " ".join(df.columns) + "\n" + df.to_csv(sep=" ", header=False, index=False))
    return src


def test_missing_rows_are_not_drawn_nor_predicted_and_the_others_are_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    model = write_tiny_artifact(tmp_path / "tiny")
    clean = predict.predict_catalog(_catalogue(tmp_path, {}), model=model, batch_size=4, with_knn=False)
    drawn: list[np.ndarray] = []
    from cosmic_utils.data import render

    original = render.render_cutouts

    def spy(mags: np.ndarray, *a: object, **k: object) -> np.ndarray:
        drawn.append(np.asarray(mags))
        return original(mags, *a, **k)

    monkeypatch.setattr(render, "render_cutouts", spy)
    src = _catalogue(tmp_path, {(2, "g"): -99.0, (5, "r"): 99.0})
    res = predict.predict_catalog(src, model=model, batch_size=4, with_knn=False)
    assert drawn and all(((m > 5) & (m < 35)).all() for m in drawn)  # never asked to draw a code
    assert res.missing_rows == [2, 5] and "g = -99" in res.flags[2] and "r = 99" in res.flags[5]
    z = res.predictions["z_pred"].to_numpy()
    assert np.isnan(z[[2, 5]]).all()
    keep = [0, 1, 3, 4, 6, 7]
    np.testing.assert_array_equal(z[keep], clean.predictions["z_pred"].to_numpy()[keep])  # same cutouts, same rows
    out = tmp_path / "p.csv"
    monkeypatch.undo()
    assert main(["predict", "--catalog", str(src), "--out", str(out), "--model", str(model),
                 "--batch-size", "4"]) == exits.PARTIAL
    err = capsys.readouterr().err
    assert "2 of 8 rows have missing photometry" in err and "g = -99 (SDSS's missing-photometry code -99)" in err
    written = pd.read_csv(out, keep_default_na=False)
    assert written.loc[2, "z_pred"] == "" and written.loc[2, "flag"].startswith("missing photometry")


def test_a_negative_prediction_is_never_written_as_a_result(tmp_path: Path) -> None:
    model = write_tiny_artifact(tmp_path / "neg", scale=-1.0)
    res = predict.predict_catalog(_catalogue(tmp_path, {}), model=model, batch_size=4, with_knn=False)
    assert res.predictions["z_pred"].isna().all()
    assert all("negative redshift" in res.flags[i] for i in range(8))


@pytest.mark.parametrize(("encoding", "named"), [("utf-16", "UTF-16 (little-endian)"), ("utf-8-sig", "UTF-8 with a byte-order mark"),
                                                 ("latin-1", "not UTF-8 text")])
def test_a_catalogue_in_another_encoding_names_the_encoding_and_the_fix(tmp_path: Path, encoding: str, named: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    df = catalog.valid_catalog().iloc[:3]
    text = "# " + " ".join(df.columns) + " é\n" + df.to_csv(sep=" ", header=False, index=False)
    src = tmp_path / "cat.txt"
    src.write_bytes(text.encode(encoding))
    assert main(["predict", "--catalog", str(src), "--out", str(tmp_path / "p.csv"),
                 "--model", str(write_tiny_artifact(tmp_path / "tiny"))]) == exits.FAILED
    err = capsys.readouterr().err
    assert named in err and "UTF-8" in err and "UnicodeDecodeError" not in err and len(err.strip().splitlines()) == 1
