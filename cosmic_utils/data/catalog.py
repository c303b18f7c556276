"""Read the bundled SDSS Main Galaxy Sample catalogue and resample it to any size.

The catalogue (``data/sdss_mgs/*.txt``) is whitespace-separated with one ``#`` header line
naming 19 columns: ``zs`` (the label), magnitudes ``u g r i z``, four colours and their errors.
:func:`resample_catalog` draws rows with replacement and jitters each magnitude within its own
error (another plausible observation of the same galaxy). Reasoning: docs/data.md "The catalogue".
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cosmic_utils import config

COLUMNS: tuple[str, ...] = (
    "zs", "u", "g", "r", "i", "z", "u-g", "g-r", "r-i", "i-z",
    "eu", "eg", "er", "ei", "ez", "eu-g", "eg-r", "er-i", "ei-z",
)
MAG_COLUMNS: tuple[str, ...] = ("u", "g", "r", "i", "z")
ERR_COLUMNS: tuple[str, ...] = ("eu", "eg", "er", "ei", "ez")
COLOUR_COLUMNS: tuple[str, ...] = ("u-g", "g-r", "r-i", "i-z")
LABEL_COLUMN: str = "zs"

SeedLike = int | Sequence[int] | np.random.SeedSequence | None


class CatalogError(ValueError):
    """The catalogue file is missing or malformed (the message names the file and problem)."""


#: Byte-order marks of the encodings a spreadsheet or Windows editor saves "Unicode text" in.
_BOMS: tuple[tuple[bytes, str], ...] = ((b"\xef\xbb\xbf", "UTF-8 with a byte-order mark"),
                                       (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
                                       (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
                                       (b"\xff\xfe", "UTF-16 (little-endian)"), (b"\xfe\xff", "UTF-16 (big-endian)"))


def _check_encoding(path: Path, error: type[Exception]) -> None:
    """Refuse a catalogue that is not plain UTF-8 / ASCII text, naming the encoding and the fix."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    for bom, name in _BOMS:
        if head.startswith(bom):
            raise error(f"catalogue {path}: saved as {name}; the catalogue format is plain UTF-8 (ASCII) text. "
                        f"Re-save it as UTF-8 without a byte-order mark (e.g. iconv -f UTF-16 -t UTF-8, or "
                        f"'UTF-8' in the editor's save dialogue)")
    if b"\x00" in head:
        raise error(f"catalogue {path}: contains NUL bytes (a binary file, or UTF-16/32 text without a "
                    f"byte-order mark); the catalogue format is plain UTF-8 text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut by the 64 KiB window
            raise error(f"catalogue {path}: not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start}; "
                        f"Latin-1 or another legacy encoding?); re-save it as UTF-8") from None


def read_header_table(path: str | os.PathLike[str], required: Sequence[str], what: str = "columns",
                      error: type[Exception] = CatalogError) -> pd.DataFrame:
    """Read a whitespace-separated table with a ``#`` header (catalogues, ``cosmic predict`` input) as float64;
    ``required`` columns must be present (``what`` names them); problems raise ``error`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise error(f"catalogue {path}: file not found")
    _check_encoding(path, error)
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    if not first.startswith("#"):
        raise error(f"catalogue {path}: first line must be a '#' header naming the columns, got {first[:60]!r}")
    names = first.lstrip("#").split()
    missing = [c for c in required if c not in names]
    if missing:
        raise error(f"catalogue {path}: missing {what} {missing} (header names {names})")
    if len(set(names)) != len(names):
        raise error(f"catalogue {path}: duplicate column names in header {names}")
    _check_rows(path, len(names), error)
    try:
        df = pd.read_csv(path, sep=r"\s+", skiprows=1, header=None, names=names, comment="#",
                         dtype="float64", engine="c", index_col=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise error(f"catalogue {path}: cannot parse: {_first_bad_value(path, names) or exc}") from exc
    if df.empty:
        raise error(f"catalogue {path}: no rows")
    return df


def _data_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of every data line (1-based file line numbers; the header is line 1;
    blank lines and ``#`` comments skipped, an inline ``#`` ends the line as for the parser)."""
    with open(path, encoding="utf-8") as fh:
        fh.readline()
        for lineno, line in enumerate(fh, start=2):
            fields = line.split("#", 1)[0].split()
            if fields:
                yield lineno, fields


def _check_rows(path: Path, ncols: int, error: type[Exception]) -> None:
    """Refuse a row with more or fewer fields than the header, naming its line (pandas would pad or shift it)."""
    for lineno, fields in _data_lines(path):
        if len(fields) != ncols:
            raise error(f"catalogue {path}: line {lineno} has {len(fields)} fields, the header declares {ncols}")


def _first_bad_value(path: Path, names: Sequence[str]) -> str | None:
    """Where the first value that is not a number is (for the error message), or None."""
    for lineno, fields in _data_lines(path):
        for name, value in zip(names, fields, strict=False):
            try:
                float(value)
            except ValueError:
                return f"line {lineno}, column {name!r}: {value!r} is not a number"
    return None


def load_catalog(path: str | os.PathLike[str]) -> pd.DataFrame:
    """One catalogue file as a DataFrame of the 19 columns (float64, file order); :class:`CatalogError` if bad."""
    df = read_header_table(path, COLUMNS)
    df = df.loc[:, list(COLUMNS)]
    values = df.to_numpy()
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))
        row, col = bad[0]
        raise CatalogError(f"catalogue {path}: {len(bad)} missing / non-finite values, first in column "
                           f"{COLUMNS[col]!r} of data row {int(row) + 1}")
    errs = df.loc[:, list(ERR_COLUMNS)].to_numpy()
    if (errs < 0).any():
        raise CatalogError(f"catalogue {path}: negative magnitude errors")
    df.attrs["source"] = str(path)
    return df


def train_catalog() -> pd.DataFrame:
    """The training file (``config.TRAIN_CATALOG``, 5,000 galaxies)."""
    return load_catalog(config.TRAIN_CATALOG)


def valid_catalog() -> pd.DataFrame:
    """The validation file (``config.VALID_CATALOG``, 2,500 galaxies): reported metrics use it."""
    return load_catalog(config.VALID_CATALOG)


def catalog_by_name(name: str) -> pd.DataFrame:
    """``"train"`` / ``"valid"`` or a path to a catalogue file."""
    if name == "train":
        return train_catalog()
    if name in ("valid", "validation"):
        return valid_catalog()
    return load_catalog(name)


def magnitudes(df: pd.DataFrame) -> np.ndarray:
    """AB magnitudes u,g,r,i,z as float64 ``[N, 5]``."""
    return np.ascontiguousarray(df.loc[:, list(MAG_COLUMNS)].to_numpy(dtype=np.float64))


def magnitude_errors(df: pd.DataFrame) -> np.ndarray:
    """1-sigma magnitude errors eu..ez as float64 ``[N, 5]``."""
    return np.ascontiguousarray(df.loc[:, list(ERR_COLUMNS)].to_numpy(dtype=np.float64))


def redshifts(df: pd.DataFrame) -> np.ndarray:
    """The spectroscopic redshift label as float32 ``[N]``."""
    return np.ascontiguousarray(df[LABEL_COLUMN].to_numpy(dtype=np.float32))


def colours(mags: np.ndarray) -> np.ndarray:
    """Adjacent-band colours u-g, g-r, r-i, i-z from ``[N, 5]`` magnitudes."""
    mags = np.asarray(mags, dtype=np.float64)
    return mags[:, :-1] - mags[:, 1:]


def check_columns(df: pd.DataFrame) -> None:
    """Raise :class:`CatalogError` naming the catalogue's missing columns, if any."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise CatalogError(f"catalogue {df.attrs.get('source', '<DataFrame>')}: missing columns {missing}")


def resample_catalog(df: pd.DataFrame, n: int, seed: SeedLike = 0, jitter: bool = True) -> pd.DataFrame:
    """``n`` rows drawn with replacement from ``df``, magnitudes jittered by N(0, own ``e*``), colours recomputed;
    ``zs`` and the errors are copied; ``source_row`` is the original row. ``seed``: int, ints or SeedSequence."""
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if len(df) == 0:
        raise CatalogError("cannot resample an empty catalogue")
    check_columns(df)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(df), size=n)
    out = df.iloc[rows].loc[:, list(COLUMNS)].reset_index(drop=True).copy()
    if jitter:
        mags = magnitudes(out) + rng.standard_normal((n, len(MAG_COLUMNS))) * magnitude_errors(out)
        out.loc[:, list(MAG_COLUMNS)] = mags
        out.loc[:, list(COLOUR_COLUMNS)] = colours(mags)
    out["source_row"] = rows.astype(np.int64)
    out.attrs = dict(df.attrs)
    return out
