"""Photometric-redshift accuracy metrics (numpy only; the analysis and the tests use them).

With ``dz = (z_pred - z_spec) / (1 + z_spec)``: ``mae`` = mean ``|z_pred - z_spec|`` (on redshift:
the README's kNN MAE), ``mse``, ``bias`` = mean ``dz``, ``sigma_nmad`` = ``1.4826 * median(|dz -
median(dz)|)``, ``r2`` on redshift, ``outlier_005`` / ``outlier_015`` = fraction with ``|dz| > 0.05``
/ ``> 0.15``. The kNN reference is :func:`cosmic_utils.data.evaluation.knn_baseline`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cosmic_utils.runtime.units import NMAD_FACTOR  # the one constant (numpy-free: Summarize needs it)

#: |dz| thresholds of the two outlier fractions.
OUTLIER_THRESHOLDS: tuple[float, float] = (0.05, 0.15)
#: Keys of :func:`redshift_metrics`, in table order.
METRIC_NAMES: tuple[str, ...] = ("n", "sigma_nmad", "outlier_005", "outlier_015", "bias", "mae", "mse", "r2")


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
    """Every metric of the module docstring, keyed as :data:`METRIC_NAMES` (``n``: galaxies; fractions
    0..1, not percent; ``r2`` NaN when all ``z_spec`` are equal)."""
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
