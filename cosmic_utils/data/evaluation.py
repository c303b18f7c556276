"""Accuracy tables of redshift predictions against the catalogue, and the kNN reference (pandas):
workstation-side evaluation built on the torch-free metrics of :mod:`cosmic_utils.runtime.metrics`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cosmic_utils.runtime.metrics import METRIC_NAMES, redshift_metrics


def knn_features(df: pd.DataFrame) -> np.ndarray:
    """``[N, 5]`` float64: r and the colours u-g, g-r, r-i, i-z computed from the magnitudes."""
    missing = [c for c in ("u", "g", "r", "i", "z") if c not in df.columns]
    if missing:
        raise ValueError(f"catalogue {df.attrs.get('source', '<DataFrame>')}: missing magnitude columns {missing}")
    m = df.loc[:, ["u", "g", "r", "i", "z"]].to_numpy(dtype=np.float64)
    return np.column_stack([m[:, 2], m[:, 0] - m[:, 1], m[:, 1] - m[:, 2], m[:, 2] - m[:, 3], m[:, 3] - m[:, 4]])


def knn_baseline(train_df: pd.DataFrame, valid_df: pd.DataFrame, k: int = 10, chunk_rows: int = 1024) -> np.ndarray:
    """Float64 ``[len(valid_df)]``: median ``zs`` of the ``k`` nearest training galaxies in
    :func:`knn_features` standardised by the training mean and population std (ties: ``argpartition`` order)."""
    if "zs" not in train_df.columns:
        raise ValueError(f"training catalogue {train_df.attrs.get('source', '<DataFrame>')}: no 'zs' column")
    if k < 1 or k > len(train_df):
        raise ValueError(f"k must be in 1..{len(train_df)} (training rows), got {k}")
    x_train = knn_features(train_df)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    a = (x_train - mean) / std
    b = (knn_features(valid_df) - mean) / std
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
def accuracy_table(z_spec: Any, predictions: Mapping[str, Any] | Sequence[tuple[str, Any]],
                   train_df: pd.DataFrame | None = None, valid_df: pd.DataFrame | None = None,
                   knn_label: str = "kNN (k=10, r + colours)") -> pd.DataFrame:
    """One row of :func:`redshift_metrics` per ``predictions`` label -> ``z_pred``, columns ``model`` + METRIC_NAMES
    (outliers as fractions); given ``train_df`` and ``valid_df`` (the catalogue of ``z_spec``), a kNN row too."""
    items = predictions.items() if isinstance(predictions, Mapping) else predictions
    rows = [{"model": str(label), **redshift_metrics(z_spec, z_pred)} for label, z_pred in items]
    if train_df is not None and valid_df is not None:
        if len(valid_df) != np.asarray(z_spec).reshape(-1).size:
            raise ValueError(f"valid_df has {len(valid_df)} rows but z_spec has {np.asarray(z_spec).size}")
        rows.append({"model": knn_label, **redshift_metrics(z_spec, knn_baseline(train_df, valid_df))})
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
