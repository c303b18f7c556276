"""Which magnitudes are measurements and which are missing-photometry codes; which redshifts to trust.

SDSS writes a missing magnitude as a code (-9999, -99, 99), not NaN; a plausible range
(:data:`PLAUSIBLE_MAG`) rather than a list of codes catches them all. Predictions outside the
training range (:data:`TRAINED_Z`) are flagged, negative ones never written as results.
Reasoning: docs/data.md "Missing photometry", docs/reliability.md (round three).
"""

from __future__ import annotations

import numpy as np

__all__ = ["PLAUSIBLE_MAG", "SDSS_MISSING_CODES", "TRAINED_Z", "missing_photometry", "redshift_flags"]

PLAUSIBLE_MAG: tuple[float, float] = (5.0, 35.0)
"""Magnitudes (AB, any band) accepted as measurements; anything else is missing photometry."""
SDSS_MISSING_CODES: dict[float, str] = {-9999.0: "SDSS's missing-value code -9999",
                                        -99.0: "SDSS's missing-photometry code -99",
                                        99.0: "the not-detected code 99"}
"""Codes named in the messages (values outside :data:`PLAUSIBLE_MAG` are refused either way)."""
TRAINED_Z: tuple[float, float] = (0.003017, 0.27634)
"""Spectroscopic redshift range of the bundled training catalogue (data/sdss_mgs, 5,000 galaxies)."""


def _why(value: float) -> str:
    if not np.isfinite(value):
        return f"{value} (not a number)"
    code = SDSS_MISSING_CODES.get(float(value))
    return f"{value:g} ({code})" if code else f"{value:g} (outside {PLAUSIBLE_MAG[0]:g}-{PLAUSIBLE_MAG[1]:g} mag)"


def missing_photometry(mags: np.ndarray, bands: tuple[str, ...] = ("u", "g", "r", "i", "z")) -> dict[int, str]:
    """Rows with any magnitude outside :data:`PLAUSIBLE_MAG` (or not finite) -> a reason naming each band
    and value, e.g. ``"missing photometry: g = -99 (SDSS's missing-photometry code -99)"``."""
    arr = np.asarray(mags, dtype=np.float64)
    bad = ~np.isfinite(arr) | (arr < PLAUSIBLE_MAG[0]) | (arr > PLAUSIBLE_MAG[1])
    out: dict[int, str] = {}
    for row in np.flatnonzero(bad.any(axis=1)):
        parts = [f"{bands[j]} = {_why(arr[row, j])}" for j in np.flatnonzero(bad[row])]
        out[int(row)] = "missing photometry: " + ", ".join(parts)
    return out


def redshift_flags(z_pred: np.ndarray) -> dict[int, str]:
    """Rows whose prediction is negative or outside :data:`TRAINED_Z` -> the flag text."""
    z = np.asarray(z_pred, dtype=np.float64)
    out: dict[int, str] = {}
    lo, hi = TRAINED_Z
    for row in np.flatnonzero(np.isfinite(z) & ((z < lo) | (z > hi))):
        value = float(z[row])
        out[int(row)] = (f"negative redshift {value:.4f}: not a result, left empty" if value < 0 else
                         f"z_pred {value:.4f} outside the trained range {lo:g}-{hi:g}")
    return out
