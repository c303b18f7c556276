"""Photometric-redshift accuracy metrics and the classical kNN reference (numpy only).

Definitions (the conventions of the photo-z literature and of data/sdss_mgs/README.md), with
``dz = (z_pred - z_spec) / (1 + z_spec)``:

=================== ======================================================================
``mae``             mean ``|z_pred - z_spec|`` (on redshift, not on dz: the README's kNN
                    MAE = 0.0134 is this one)
``mse``             mean ``(z_pred - z_spec)**2``
``bias``            mean ``dz``
``sigma_nmad``      ``1.4826 * median(|dz - median(dz)|)`` (normalised median absolute
                    deviation: equals the standard deviation for a Gaussian, ignores outliers)
``r2``              ``1 - sum((z_pred - z_spec)**2) / sum((z_spec - mean(z_spec))**2)``
``outlier_005``     fraction of galaxies with ``|dz| > 0.05``
``outlier_015``     fraction with ``|dz| > 0.15`` (the "catastrophic" outliers)
=================== ======================================================================

:func:`knn_baseline` is the anchor every model is compared with: k nearest neighbours (k=10,
Euclidean) in the space of r and the four adjacent colours, each standardised with the
training file's mean and standard deviation; the prediction is the median ``zs`` of the
neighbours. On the bundled validation file it scores sigma_NMAD = 0.0137 and 1.04 %
outliers. Distances are computed in chunks of query rows (``|a|^2 + |b|^2 - 2 a.b`` as one
matrix product per chunk), so memory stays bounded for any catalogue size, and neighbours
are picked with ``argpartition`` (no full sort).

No torch here: the Summarize Lambda and the analysis notebooks use this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pandas is imported where a table is built: the inference Lambda has no pandas
    import pandas as pd

__all__ = [
    "METRIC_NAMES",
    "OUTLIER_THRESHOLDS",
    "accuracy_table",
    "delta_z",
    "format_table",
    "knn_baseline",
    "knn_features",
    "redshift_metrics",
    "sigma_nmad",
]

#: |dz| thresholds of the two outlier fractions.
OUTLIER_THRESHOLDS: tuple[float, float] = (0.05, 0.15)
#: Keys of :func:`redshift_metrics`, in table order.
METRIC_NAMES: tuple[str, ...] = (
    "n", "sigma_nmad", "outlier_005", "outlier_015", "bias", "mae", "mse", "r2",
)
#: Features of the kNN baseline, computed from the magnitude columns.
KNN_FEATURES: tuple[str, ...] = ("r", "u-g", "g-r", "r-i", "i-z")
NMAD_FACTOR: float = 1.4826


def _as_pair(z_spec: Any, z_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    spec = np.asarray(z_spec, dtype=np.float64).reshape(-1)
    pred = np.asarray(z_pred, dtype=np.float64).reshape(-1)
    if spec.shape != pred.shape:
        raise ValueError(f"z_spec has {spec.size} values but z_pred has {pred.size}")
    if spec.size == 0:
        raise ValueError("no redshifts to score (empty arrays)")
    if not np.isfinite(pred).all():
        raise ValueError(f"z_pred has {int((~np.isfinite(pred)).sum())} non-finite values")
    if not np.isfinite(spec).all():
        raise ValueError(f"z_spec has {int((~np.isfinite(spec)).sum())} non-finite values (drop unlabelled rows first)")
    if (spec <= -1).any():
        raise ValueError("z_spec must be > -1 (dz divides by 1 + z_spec)")
    return spec, pred


def delta_z(z_spec: Any, z_pred: Any) -> np.ndarray:
    """``(z_pred - z_spec) / (1 + z_spec)`` as float64."""
    spec, pred = _as_pair(z_spec, z_pred)
    return (pred - spec) / (1.0 + spec)


def sigma_nmad(dz: Any) -> float:
    """``1.4826 * median(|dz - median(dz)|)``."""
    dz = np.asarray(dz, dtype=np.float64).reshape(-1)
    if dz.size == 0:
        raise ValueError("sigma_nmad of an empty array")
    return float(NMAD_FACTOR * np.median(np.abs(dz - np.median(dz))))


def redshift_metrics(z_spec: Any, z_pred: Any) -> dict[str, float]:
    """Every metric of the module docstring for one set of predictions.

    Returns a dict with the keys of :data:`METRIC_NAMES` (``n`` is the number of galaxies;
    fractions are 0..1, not percent). ``r2`` is NaN when all ``z_spec`` are equal.
    """
    spec, pred = _as_pair(z_spec, z_pred)
    err = pred - spec
    dz = err / (1.0 + spec)
    ss_tot = float(np.sum((spec - spec.mean()) ** 2))
    r2 = float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan")
    return {
        "n": int(spec.size),
        "sigma_nmad": sigma_nmad(dz),
        "outlier_005": float(np.mean(np.abs(dz) > OUTLIER_THRESHOLDS[0])),
        "outlier_015": float(np.mean(np.abs(dz) > OUTLIER_THRESHOLDS[1])),
        "bias": float(np.mean(dz)),
        "mae": float(np.mean(np.abs(err))),
        "mse": float(np.mean(err**2)),
        "r2": r2,
    }


# --------------------------------------------------------------------------- kNN reference
def knn_features(df: pd.DataFrame) -> np.ndarray:
    """``[N, 5]`` float64: r and the colours u-g, g-r, r-i, i-z computed from the magnitudes."""
    missing = [c for c in ("u", "g", "r", "i", "z") if c not in df.columns]
    if missing:
        raise ValueError(f"catalogue {df.attrs.get('source', '<DataFrame>')}: missing magnitude columns {missing}")
    m = df.loc[:, ["u", "g", "r", "i", "z"]].to_numpy(dtype=np.float64)
    return np.column_stack([m[:, 2], m[:, 0] - m[:, 1], m[:, 1] - m[:, 2], m[:, 2] - m[:, 3], m[:, 3] - m[:, 4]])


def knn_baseline(
    train_df: pd.DataFrame, valid_df: pd.DataFrame, k: int = 10, chunk_rows: int = 1024
) -> np.ndarray:
    """Predict ``valid_df``'s redshifts: median ``zs`` of the ``k`` nearest training galaxies.

    Features: r and four colours (:func:`knn_features`), standardised with the training
    mean and (population) standard deviation. Returns float64 ``[len(valid_df)]``. Ties at
    the k-th distance are broken by ``argpartition``'s order (measure zero for real data).
    """
    if "zs" not in train_df.columns:
        raise ValueError(f"training catalogue {train_df.attrs.get('source', '<DataFrame>')}: no 'zs' column")
    if k < 1 or k > len(train_df):
        raise ValueError(f"k must be in 1..{len(train_df)} (training rows), got {k}")
    x_train = knn_features(train_df)
    x_query = knn_features(valid_df)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    a = (x_train - mean) / std
    b = (x_query - mean) / std
    z_train = train_df["zs"].to_numpy(dtype=np.float64)
    a_sq = np.einsum("ij,ij->i", a, a)
    out = np.empty(len(b), dtype=np.float64)
    step = max(1, int(chunk_rows))
    for start in range(0, len(b), step):
        q = b[start:start + step]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + a_sq[None, :] - 2.0 * (q @ a.T)
        if k < len(a):
            idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(len(a)), (len(q), len(a)))
        out[start:start + step] = np.median(z_train[idx], axis=1)
    return out


# --------------------------------------------------------------------------- tables
def accuracy_table(
    z_spec: Any,
    predictions: Mapping[str, Any] | Sequence[tuple[str, Any]],
    train_df: pd.DataFrame | None = None,
    valid_df: pd.DataFrame | None = None,
    knn_label: str = "kNN (k=10, r + colours)",
) -> pd.DataFrame:
    """One row of :func:`redshift_metrics` per model, plus the kNN reference row.

    ``predictions`` maps a model label to its ``z_pred`` for the galaxies of ``z_spec``.
    When both ``train_df`` and ``valid_df`` are given (``valid_df`` being the catalogue of
    ``z_spec``), a row for :func:`knn_baseline` is appended. Columns: ``model`` then
    :data:`METRIC_NAMES`; outlier fractions are fractions (multiply by 100 for percent).
    """
    items = list(predictions.items()) if isinstance(predictions, Mapping) else list(predictions)
    rows: list[dict[str, Any]] = []
    for label, z_pred in items:
        rows.append({"model": str(label), **redshift_metrics(z_spec, z_pred)})
    if train_df is not None and valid_df is not None:
        if len(valid_df) != np.asarray(z_spec).reshape(-1).size:
            raise ValueError(f"valid_df has {len(valid_df)} rows but z_spec has {np.asarray(z_spec).size}")
        rows.append({"model": knn_label, **redshift_metrics(z_spec, knn_baseline(train_df, valid_df))})
    import pandas as pd

    return pd.DataFrame(rows, columns=["model", *METRIC_NAMES])


def format_table(table: pd.DataFrame) -> str:
    """A fixed-width text rendering of :func:`accuracy_table` (percent for outlier fractions)."""
    shown = table.copy()
    for col in ("outlier_005", "outlier_015"):
        if col in shown:
            shown[col] = shown[col] * 100.0
    shown = shown.rename(columns={"outlier_005": "out>0.05_%", "outlier_015": "out>0.15_%"})
    formats = {"sigma_nmad": "{:.4f}", "out>0.05_%": "{:.2f}", "out>0.15_%": "{:.2f}", "bias": "{:+.5f}",
               "mae": "{:.4f}", "mse": "{:.6f}", "r2": "{:.4f}"}
    for col, fmt in formats.items():
        if col in shown:
            shown[col] = shown[col].map(lambda v, f=fmt: f.format(v))
    return shown.to_string(index=False)
