"""Reading the bundled SDSS catalogue and resampling it with jitter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmic_utils import config
from cosmic_utils.data import catalog


def test_bundled_files_load() -> None:
    train, valid = catalog.train_catalog(), catalog.valid_catalog()
    assert train.shape == (5000, 19) and valid.shape == (2500, 19)
    assert tuple(train.columns) == catalog.COLUMNS
    assert catalog.magnitudes(valid).shape == (2500, 5) and catalog.magnitudes(valid).dtype == np.float64
    assert catalog.redshifts(valid).dtype == np.float32
    assert (catalog.magnitude_errors(valid) > 0).all()
    assert 0 < valid["zs"].min() and valid["zs"].max() < 0.31
    # the colour columns are differences of the magnitudes
    assert np.allclose(catalog.colours(catalog.magnitudes(valid)), valid[list(catalog.COLOUR_COLUMNS)], atol=2e-6)
    assert valid.attrs["source"] == str(config.VALID_CATALOG)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(catalog.CatalogError, match="nope.txt: file not found"):
        catalog.load_catalog(tmp_path / "nope.txt")


def _write(tmp_path: Path, header: str, rows: list[str]) -> Path:
    path = tmp_path / "cat.txt"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_missing_columns_and_header(tmp_path: Path) -> None:
    names = list(catalog.COLUMNS)
    names.remove("eu")
    path = _write(tmp_path, "# " + " ".join(names), [" ".join(["1.0"] * 18)])
    with pytest.raises(catalog.CatalogError, match=r"cat.txt: missing columns \['eu'\]"):
        catalog.load_catalog(path)
    path = _write(tmp_path, " ".join(catalog.COLUMNS), [" ".join(["1.0"] * 19)])
    with pytest.raises(catalog.CatalogError, match="header"):
        catalog.load_catalog(path)


def test_bad_values(tmp_path: Path) -> None:
    header = "# " + " ".join(catalog.COLUMNS)
    path = _write(tmp_path, header, [" ".join(["1.0"] * 18 + ["abc"])])
    with pytest.raises(catalog.CatalogError, match="cat.txt"):
        catalog.load_catalog(path)
    path = _write(tmp_path, header, [" ".join(["1.0"] * 19), " ".join(["1.0"] * 18 + ["nan"])])
    with pytest.raises(catalog.CatalogError, match="non-finite values, first in column 'ei-z' of data row 2"):
        catalog.load_catalog(path)
    path = _write(tmp_path, header, [])
    with pytest.raises(catalog.CatalogError, match="no rows"):
        catalog.load_catalog(path)


def test_resample_reproducible_and_jittered() -> None:
    df = catalog.valid_catalog()
    a = catalog.resample_catalog(df, 20000, seed=5)
    b = catalog.resample_catalog(df, 20000, seed=5)
    c = catalog.resample_catalog(df, 20000, seed=6)
    assert a.equals(b) and not a.equals(c)
    assert len(a) == 20000 and set(catalog.COLUMNS) <= set(a.columns)
    src = df.iloc[a["source_row"].to_numpy()]
    # the label and the errors are copied, never jittered
    assert np.array_equal(a["zs"].to_numpy(), src["zs"].to_numpy())
    assert np.array_equal(catalog.magnitude_errors(a), catalog.magnitude_errors(src))
    # magnitudes move by about their own errors
    pull = (catalog.magnitudes(a) - catalog.magnitudes(src)) / catalog.magnitude_errors(src)
    assert np.all(np.abs(pull.mean(axis=0)) < 0.05) and np.all(np.abs(pull.std(axis=0) - 1) < 0.05)
    # colours are recomputed from the jittered magnitudes
    assert np.allclose(a[list(catalog.COLOUR_COLUMNS)].to_numpy(), catalog.colours(catalog.magnitudes(a)))
    # a SeedSequence works as a seed too
    ss = np.random.SeedSequence(5, spawn_key=(3,))
    assert catalog.resample_catalog(df, 10, seed=ss).equals(catalog.resample_catalog(df, 10, seed=ss))


def test_resample_without_jitter_copies_rows() -> None:
    df = catalog.train_catalog()
    a = catalog.resample_catalog(df, 50, seed=1, jitter=False)
    src = df.iloc[a["source_row"].to_numpy()].reset_index(drop=True)
    assert np.array_equal(a[list(catalog.COLUMNS)].to_numpy(), src.to_numpy())
    with pytest.raises(catalog.CatalogError):
        catalog.resample_catalog(df.drop(columns=["er"]), 5, seed=0)
