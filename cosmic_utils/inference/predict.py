"""Predict redshifts for a photometric catalogue: render cutouts, run an engine, score.

``cosmic predict --catalog FILE --out PRED.csv`` calls :func:`predict_catalog`: a catalogue in the
``data/sdss_mgs`` format (``u g r i z`` required; ``eu..ez`` set the noise, ``zs`` scores), cutouts
rendered with a fixed seed, output ``row, z_spec, z_pred, flag``. Without ``--model`` the default
trained artifact is required (no training as a side effect). Details: docs/inference.md ("Predicting a catalogue").
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cosmic_utils import config
from cosmic_utils.data.catalog import ERR_COLUMNS, MAG_COLUMNS, read_header_table
from cosmic_utils.data.photometry import missing_photometry, redshift_flags

log = logging.getLogger(__name__)

#: Render seed when none is given (equal to ``cosmic_utils.model.train.VALID_RENDER_SEED``).
DEFAULT_SEED: int = 0


class PredictError(ValueError):
    """Bad input to a prediction (the message names the file and the problem)."""


@dataclass
class PredictResult:
    """Predictions (one row per galaxy) and, when labels exist, the accuracy table."""

    predictions: pd.DataFrame
    table: pd.DataFrame | None
    engine: str
    model_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    #: Rows whose prediction is NaN/inf: written as an empty ``z_pred`` and never scored.
    nonfinite_rows: list[int] = field(default_factory=list)
    #: Row -> why it is flagged: missing photometry (not predicted), negative redshift (left
    #: empty) or a prediction outside the trained range (written, flagged).
    flags: dict[int, str] = field(default_factory=dict)
    #: Rows not predicted because a magnitude is missing photometry.
    missing_rows: list[int] = field(default_factory=list)


def read_photometry(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalogue in the data/sdss_mgs format; requires ``u g r i z`` (``zs``, errors optional)."""
    path = Path(path)
    df = read_header_table(path, MAG_COLUMNS, what="magnitude columns", error=PredictError)
    mags = df.loc[:, list(MAG_COLUMNS)].to_numpy()
    if not np.isfinite(mags).all():
        row = int(np.argwhere(~np.isfinite(mags))[0][0])
        raise PredictError(f"catalogue {path}: non-finite magnitude in data row {row + 1}")
    if all(c in df.columns for c in ERR_COLUMNS):
        errs = df.loc[:, list(ERR_COLUMNS)].to_numpy()
        if not np.isfinite(errs).all() or (errs < 0).any():
            raise PredictError(f"catalogue {path}: magnitude errors must be finite and >= 0")
    df.attrs["source"] = str(path)
    return df


def predict_arrays(image: np.ndarray, magnitude: np.ndarray, model_dir: str | os.PathLike[str],
                   engine: str = "onnx", batch_size: int = 256, threads: int | None = None) -> np.ndarray:
    """Run ``engine`` of :mod:`cosmic_utils.inference.engines` on raw arrays -> float32 ``[N]``."""
    from cosmic_utils.inference.engines import create_engine

    _check_batch_size(batch_size)  # before the engine loads
    if len(image) != len(magnitude):
        raise PredictError(f"{len(image)} images but {len(magnitude)} magnitude rows")
    with create_engine(engine, model_dir, threads=threads) as eng:
        return predict_batches(eng, image, magnitude, batch_size, engine)


def predict_batches(engine: Any, image: np.ndarray, magnitude: np.ndarray, batch_size: int = 256,
                    name: str | None = None) -> np.ndarray:
    """``engine.predict`` in batches -> float32 ``[N]``; each batch must return one value per row."""
    _check_batch_size(batch_size)
    name = name or engine.name
    # NaN-filled and every batch's length checked: np.empty once handed out uninitialised memory as redshifts
    out = np.full(len(image), np.nan, dtype=np.float32)
    for start in range(0, len(image), int(batch_size)):
        stop = min(start + int(batch_size), len(image))
        z = np.asarray(engine.predict(image[start:stop], magnitude[start:stop])).reshape(-1)
        if len(z) != stop - start:
            raise PredictError(f"engine {name} returned {len(z)} predictions for rows {start}..{stop - 1} "
                               f"({stop - start} rows)")
        out[start:stop] = z
    return out


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise PredictError(f"batch size must be a whole number >= 1, got {batch_size!r}")


def resolve_model_dir(model: str | os.PathLike[str] | None) -> Path:
    """``model`` or the default artifact; a clear error when it does not exist."""
    from cosmic_utils.model.artifacts import find_model
    from cosmic_utils.runtime.artifact import ModelArtifact

    folder = Path(model) if model is not None else find_model(None, allow_untrained=False)[0]
    ModelArtifact.load(folder)  # checked: a clear error for a missing or damaged artifact
    return folder


def predict_catalog(catalog_path: str | os.PathLike[str], out_csv: str | os.PathLike[str] | None = None,
                    model: str | os.PathLike[str] | None = None, seed: int = DEFAULT_SEED, engine: str = "onnx",
                    batch_size: int = 256, threads: int | None = None, with_knn: bool = True) -> PredictResult:
    """Render, predict, write ``out_csv`` (when given) and score when ``zs`` is present."""
    from cosmic_utils.data.catalog import magnitude_errors, magnitudes
    from cosmic_utils.data.evaluation import accuracy_table
    from cosmic_utils.data.render import render_cutouts

    timings: dict[str, float] = {}
    folder = resolve_model_dir(model)
    df = read_photometry(catalog_path)
    mags = magnitudes(df)
    errs = magnitude_errors(df) if all(c in df.columns for c in ERR_COLUMNS) else None
    # Missing photometry (a magnitude outside the plausible range, e.g. SDSS's -99 / -9999 / 99
    # codes) is never drawn nor predicted: those rows get an empty z_pred and a flag naming the
    # band and code. The good rows are rendered in contiguous runs at their own row index, so
    # each cutout is the one a full render would give (the renderer is keyed by row).
    missing = missing_photometry(mags)
    good = np.ones(len(df), dtype=bool)
    good[list(missing)] = False
    if missing:
        log.error("%d of %d rows have missing photometry (first: row %d, %s); not predicted",
                  len(missing), len(df), next(iter(missing)), next(iter(missing.values())))
    t = time.perf_counter()
    chunks = [render_cutouts(mags[a:b], None if errs is None else errs[a:b], seed=seed, row_offset=a)
              for a, b in _runs(good)]
    timings["render_s"] = time.perf_counter() - t
    t = time.perf_counter()
    z_pred = np.full(len(df), np.nan, dtype=np.float32)
    if good.any():
        z_pred[good] = predict_arrays(np.concatenate(chunks), mags[good], folder, engine=engine, batch_size=batch_size,
                                      threads=threads)
    timings["predict_s"] = time.perf_counter() - t
    flags = {**missing, **redshift_flags(z_pred)}
    negative = np.isfinite(z_pred) & (z_pred < 0)
    preds = pd.DataFrame({"row": np.arange(len(df), dtype=np.int64)})
    labelled = np.isfinite(df["zs"].to_numpy()) if "zs" in df.columns else np.zeros(len(df), dtype=bool)
    if "zs" in df.columns:
        preds["z_spec"] = df["zs"].to_numpy(dtype=np.float64)
    finite = np.isfinite(z_pred) & ~negative
    bad_rows = np.flatnonzero(~np.isfinite(z_pred) & good).tolist()
    if bad_rows:
        log.error("%d of %d predictions are not finite (rows %s%s); written as empty z_pred, not scored",
                  len(bad_rows), len(z_pred), bad_rows[:10], " ..." if len(bad_rows) > 10 else "")
    # A non-finite prediction is never written as a number: NaN -> empty field, inf -> empty too.
    preds["z_pred"] = np.where(finite, z_pred, np.nan)
    preds["flag"] = [flags.get(i, "") for i in range(len(df))]
    if out_csv is not None:
        out = Path(out_csv)
        out.parent.mkdir(parents=True, exist_ok=True)
        preds.to_csv(out, index=False, float_format="%.6f", na_rep="")
    labelled &= finite
    table = None
    if labelled.any():  # score the rows with a finite z_spec (NaN means unknown) and a finite prediction
        train_df = None
        if with_knn and config.TRAIN_CATALOG.is_file():
            from cosmic_utils.data.catalog import train_catalog

            train_df = train_catalog()
        scored = df.loc[labelled]
        table = accuracy_table(scored["zs"].to_numpy(), {f"{folder.name} ({engine})": z_pred[labelled]},
                               train_df=train_df, valid_df=scored if train_df is not None else None)
    return PredictResult(predictions=preds, table=table, engine=engine, model_dir=folder, timings=timings,
                         nonfinite_rows=bad_rows, flags=flags, missing_rows=sorted(missing))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def describe(result: PredictResult) -> dict[str, Any]:
    """A small JSON-ready summary of a prediction run."""
    out: dict[str, Any] = {"model": str(result.model_dir), "engine": result.engine,
                           "galaxies": int(len(result.predictions)), **result.timings,
                           "nonfinite_predictions": len(result.nonfinite_rows)}
    if result.table is not None:
        out["metrics"] = result.table.to_dict(orient="records")
    return out
