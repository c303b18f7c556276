"""Metrics on hand-computed arrays, and the kNN reference numbers of data/sdss_mgs/README.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cosmic_utils.data import catalog
from cosmic_utils.data.evaluation import accuracy_table, format_table, knn_baseline
from cosmic_utils.runtime.metrics import METRIC_NAMES, delta_z, redshift_metrics, sigma_nmad


def test_metrics_on_known_arrays() -> None:
    z_spec = np.array([0.0, 0.1, 0.2, 0.3])
    z_pred = np.array([0.01, 0.1, 0.29, 0.0])
    dz = np.array([0.01, 0.0, 0.09 / 1.2, -0.3 / 1.3])
    np.testing.assert_allclose(delta_z(z_spec, z_pred), dz, rtol=1e-12)
    m = redshift_metrics(z_spec, z_pred)
    assert set(m) == set(METRIC_NAMES)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx((0.01 + 0 + 0.09 + 0.3) / 4)
    assert m["mse"] == pytest.approx((0.01**2 + 0.09**2 + 0.3**2) / 4)
    assert m["bias"] == pytest.approx(dz.mean())
    med = np.median(dz)  # (0.0 + 0.01) / 2
    assert m["sigma_nmad"] == pytest.approx(1.4826 * np.median(np.abs(dz - med)))
    assert m["outlier_005"] == pytest.approx(0.5)  # 0.075 and -0.23
    assert m["outlier_015"] == pytest.approx(0.25)
    ss_tot = np.sum((z_spec - z_spec.mean()) ** 2)
    assert m["r2"] == pytest.approx(1 - np.sum((z_pred - z_spec) ** 2) / ss_tot)


def test_perfect_predictions_and_gaussian_nmad() -> None:
    z = np.linspace(0.01, 0.3, 50)
    m = redshift_metrics(z, z)
    assert m["sigma_nmad"] == 0 and m["mae"] == 0 and m["r2"] == 1 and m["outlier_005"] == 0
    rng = np.random.default_rng(0)
    assert sigma_nmad(rng.normal(0.3, 0.02, 200_000)) == pytest.approx(0.02, rel=0.01)


@pytest.mark.parametrize(
    ("spec", "pred", "match"),
    [([0.1, 0.2], [0.1], "2 values"), ([0.1, 0.2], [0.1, np.nan], "non-finite"), ([], [], "empty"),
     ([0.1, np.nan], [0.1, 0.2], "z_spec")],
)
def test_bad_inputs_raise(spec: list[float], pred: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        redshift_metrics(spec, pred)


def test_knn_reference_numbers() -> None:
    """README: sigma_NMAD 0.0137, outliers 1.04 %, MAE 0.0134, bias -0.0009 on the validation file."""
    train, valid = catalog.train_catalog(), catalog.valid_catalog()
    z_pred = knn_baseline(train, valid, k=10)
    m = redshift_metrics(valid["zs"], z_pred)
    assert round(m["sigma_nmad"], 4) == 0.0137
    assert round(100 * m["outlier_005"], 2) == 1.04
    assert round(m["mae"], 4) == 0.0134
    assert round(m["bias"], 4) == -0.0009
    # chunking does not change the answer
    np.testing.assert_array_equal(knn_baseline(train, valid.iloc[:300], chunk_rows=7), z_pred[:300])


def test_knn_brute_force_small() -> None:
    rng = np.random.default_rng(1)
    mags = rng.normal(17, 1, (60, 5))
    df = pd.DataFrame(mags, columns=list("ugriz"))
    df["zs"] = rng.uniform(0, 0.3, 60)
    train, query = df.iloc[:50], df.iloc[50:]
    feats = lambda d: np.column_stack([d.r, d.u - d.g, d.g - d.r, d.r - d.i, d.i - d.z])  # noqa: E731
    a, b = feats(train), feats(query)
    mu, sd = a.mean(0), a.std(0)
    d = (((b - mu) / sd)[:, None, :] - ((a - mu) / sd)[None]) ** 2
    idx = np.argsort(d.sum(-1), axis=1)[:, :3]
    expected = np.median(train.zs.to_numpy()[idx], axis=1)
    np.testing.assert_allclose(knn_baseline(train, query, k=3), expected)
    with pytest.raises(ValueError, match="k must be"):
        knn_baseline(train, query, k=0)


def test_accuracy_table_has_knn_row() -> None:
    train, valid = catalog.train_catalog(), catalog.valid_catalog().iloc[:200]
    table = accuracy_table(valid["zs"], {"perfect": valid["zs"].to_numpy()}, train_df=train, valid_df=valid)
    assert list(table["model"]) == ["perfect", "kNN (k=10, r + colours)"]
    assert list(table.columns) == ["model", *METRIC_NAMES]
    assert table.loc[0, "sigma_nmad"] == 0 and table.loc[1, "sigma_nmad"] > 0
    text = format_table(table)
    assert "kNN" in text and "out>0.05_%" in text
    only = accuracy_table(valid["zs"], [("a", valid["zs"] + 0.01)])
    assert len(only) == 1
