"""The partition file format (``.cpart``): write, read, validate, and read in slices.

Magic, uint64 header length, a JSON header, then image <f4 [N,5,32,32], magnitude <f8 [N,5] and
redshift <f4 [N] (NaN when unknown), each 64-byte aligned at an absolute offset: numpy reads it
zero copy, and any rows cost one read per array. Specified in docs/architecture.md, why not
``.pt``: docs/data.md. Every problem is a :class:`PartitionError` starting ``partition <name>:``.
No torch here: it runs in the inference Lambda.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from cosmic_utils.runtime.storage import NotRegularFileError, open_regular, replacing

MAGIC: bytes = b"CPART\x00\x01\x00"
VERSION: int = 1
ALIGN: int = 64
PREFIX_BYTES: int = 16  # magic + uint64 header length
IMAGE_SHAPE: tuple[int, int, int] = (5, 32, 32)
N_BANDS: int = 5
#: Array name -> (dtype string, per-sample shape), in file order.
ARRAYS: dict[str, tuple[str, tuple[int, ...]]] = {
    "image": ("<f4", IMAGE_SHAPE),
    "magnitude": ("<f8", (N_BANDS,)),
    "redshift": ("<f4", ()),
}
#: Refuse absurd header lengths early (a corrupt length field would otherwise allocate GBs).
MAX_HEADER_BYTES: int = 1 << 20
EXTENSION: str = ".cpart"


class PartitionError(ValueError):
    """A partition file is malformed or does not match its manifest entry."""


@dataclass(frozen=True)
class PartitionInfo:
    """What :func:`write_partition` wrote: sample count, file size and sha256 of the whole file."""

    samples: int
    nbytes: int
    sha256: str


@dataclass
class Partition:
    """The arrays of one partition (see docs/architecture.md for units)."""

    image: np.ndarray  # float32 [N, 5, 32, 32]
    magnitude: np.ndarray  # float64 [N, 5]
    redshift: np.ndarray  # float32 [N], NaN when unknown
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return int(self.image.shape[0])

    def __len__(self) -> int:
        return self.samples


@dataclass(frozen=True)
class ArraySpec:
    """Where one array lives in a partition file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def row_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * np.prod(self.shape[1:], dtype=np.int64))


@dataclass(frozen=True)
class PartitionHeader:
    """The parsed, validated header of a partition file."""

    name: str
    samples: int
    file_bytes: int
    arrays: dict[str, ArraySpec]
    meta: dict[str, Any]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _error(name: str, problem: str) -> PartitionError:
    return PartitionError(f"partition {name}: {problem}")


def _display_name(source: Any, name: str | None) -> str:
    if name:
        return name
    label = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
    return Path(label).name if isinstance(label, (str, os.PathLike)) else "<bytes>"


def _expected_get(expected: Any, key: str) -> Any:
    return expected.get(key) if isinstance(expected, Mapping) else getattr(expected, key, None)


def check_arrays(image: np.ndarray, magnitude: np.ndarray, redshift: np.ndarray | None = None,
                 name: str = "<arrays>", check_finite: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays validated and converted to the partition dtypes (little-endian, C order)."""
    image = np.asarray(image)
    magnitude = np.asarray(magnitude)
    if image.ndim != 4 or image.shape[1:] != IMAGE_SHAPE:
        raise _error(name, f"wrong shape: image has shape {list(image.shape)}, expected [N, 5, 32, 32]")
    n = image.shape[0]
    if n == 0:
        raise _error(name, "empty partition: 0 samples")
    if magnitude.shape != (n, N_BANDS):
        raise _error(name, f"wrong shape: magnitude has shape {list(magnitude.shape)}, expected [{n}, 5]")
    if redshift is None:
        redshift = np.full(n, np.nan, dtype="<f4")
    redshift = np.asarray(redshift)
    if redshift.shape != (n,):
        raise _error(name, f"wrong shape: redshift has shape {list(redshift.shape)}, expected [{n}]")
    for label, arr in (("image", image), ("magnitude", magnitude), ("redshift", redshift)):
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise _error(name, f"wrong dtype: {label} has dtype {arr.dtype}, expected a number type")
    image = np.ascontiguousarray(image, dtype="<f4")
    magnitude = np.ascontiguousarray(magnitude, dtype="<f8")
    redshift = np.ascontiguousarray(redshift, dtype="<f4")
    if check_finite:
        _check_finite(name, image, magnitude)
    return image, magnitude, redshift


def _check_finite(name: str, image: np.ndarray, magnitude: np.ndarray, row0: int = 0) -> None:
    for label, arr in (("image", image), ("magnitude", magnitude)):
        if np.isfinite(arr.sum(dtype=np.float64)):
            continue
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1))
        rows = np.flatnonzero(bad.any(axis=1))
        if rows.size == 0:  # the sum overflowed but every value is finite
            continue
        kinds = [kind for kind, test in (("NaN", np.isnan), ("inf", np.isinf)) if test(arr).any()]
        shown = ", ".join(str(int(r) + row0) for r in rows[:5]) + (" ..." if rows.size > 5 else "")
        raise _error(name, f"non-finite values ({'/'.join(kinds)}) in {label}: {int(bad.sum())} values in "
                     f"{rows.size} samples (rows {shown})")


def _layout(samples: int, meta: Mapping[str, Any]) -> tuple[bytes, dict[str, ArraySpec], int]:
    """Header bytes (padded), array specs with absolute offsets, total file size."""
    data_start = _align(PREFIX_BYTES + 256)
    for _ in range(8):  # offsets change the header length; iterate to a fixed point
        specs: dict[str, ArraySpec] = {}
        offset = data_start
        for array_name, (dtype, shape) in ARRAYS.items():
            full_shape = (samples, *shape)
            nbytes = int(np.dtype(dtype).itemsize * np.prod(full_shape, dtype=np.int64))
            specs[array_name] = ArraySpec(array_name, dtype, full_shape, offset, nbytes)
            offset = _align(offset + nbytes)
        file_bytes = specs["redshift"].offset + specs["redshift"].nbytes
        arrays = {s.name: {"dtype": s.dtype, "shape": list(s.shape), "offset": s.offset, "nbytes": s.nbytes}
                  for s in specs.values()}
        header = {"version": VERSION, "samples": samples, "file_bytes": file_bytes, "arrays": arrays,
                  "meta": dict(meta)}
        text = json.dumps(header, separators=(",", ":"), sort_keys=False, allow_nan=False).encode()
        needed = _align(PREFIX_BYTES + len(text))
        if needed == data_start:
            return text + b" " * (data_start - PREFIX_BYTES - len(text)), specs, file_bytes
        data_start = needed
    raise RuntimeError("partition header layout did not converge")  # pragma: no cover


def _write_to(out: BinaryIO, image: np.ndarray, magnitude: np.ndarray, redshift: np.ndarray | None,
              meta: Mapping[str, Any] | None, name: str) -> PartitionInfo:
    image, magnitude, redshift = check_arrays(image, magnitude, redshift, name=name)
    try:
        header, specs, file_bytes = _layout(image.shape[0], meta or {})
    except (TypeError, ValueError) as exc:  # NaN in meta, unserialisable meta
        raise _error(name, f"meta is not JSON-serialisable: {exc}") from exc
    digest = hashlib.sha256()
    written = 0

    def emit(chunk: bytes | memoryview) -> None:
        nonlocal written
        out.write(chunk)
        digest.update(chunk)
        written += len(chunk)

    emit(MAGIC)
    emit(np.uint64(len(header)).astype("<u8").tobytes())
    emit(header)
    for array_name, arr in (("image", image), ("magnitude", magnitude), ("redshift", redshift)):
        spec = specs[array_name]
        if written < spec.offset:
            emit(b"\x00" * (spec.offset - written))
        emit(memoryview(arr).cast("B"))
    assert written == file_bytes
    return PartitionInfo(samples=int(image.shape[0]), nbytes=written, sha256=digest.hexdigest())


def encode_partition(image: np.ndarray, magnitude: np.ndarray, redshift: np.ndarray | None = None,
                     meta: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a partition file holding these arrays (see the module docstring)."""
    buf = io.BytesIO()
    _write_to(buf, image, magnitude, redshift, meta, name="<bytes>")
    return buf.getvalue()


def write_partition(target: str | os.PathLike[str] | BinaryIO, image: np.ndarray, magnitude: np.ndarray,
                    redshift: np.ndarray | None = None, meta: Mapping[str, Any] | None = None) -> PartitionInfo:
    """Write a partition to a path (atomically: temp file + rename) or an open binary file; returns
    the sample count, size and sha256 of the whole file (what a manifest entry records)."""
    if isinstance(target, (str, os.PathLike)):
        path = Path(target)
        with replacing(path) as tmp, open(tmp, "wb") as fh:
            return _write_to(fh, image, magnitude, redshift, meta, name=path.name)
    return _write_to(target, image, magnitude, redshift, meta, name=_display_name(target, None))


def parse_header(prefix: bytes | bytearray | memoryview, name: str = "<bytes>", total_bytes: int | None = None) -> PartitionHeader:
    """The validated header in the first :func:`header_length` bytes of a partition file;
    ``total_bytes`` (the file's size, when known) is checked against ``file_bytes``."""
    view = memoryview(prefix)
    if len(view) < PREFIX_BYTES:
        what = "empty file" if len(view) == 0 else f"{len(view)} bytes"
        raise _error(name, f"truncated: not a partition file ({what}, need at least {PREFIX_BYTES} bytes)")
    magic = bytes(view[:8])
    if magic != MAGIC:
        if magic[:5] == MAGIC[:5]:
            raise _error(name, f"unsupported format version {magic[5:].hex()} (this reader knows version {VERSION})")
        raise _error(name, f"bad magic {magic!r}: not a .cpart partition file (expected {MAGIC!r})")
    hlen = int(np.frombuffer(view[8:16], dtype="<u8")[0])
    if hlen == 0 or hlen > MAX_HEADER_BYTES:
        raise _error(name, f"bad header length {hlen:,} bytes")
    if len(view) < PREFIX_BYTES + hlen:
        raise _error(name, f"truncated: header says the JSON header is {hlen:,} bytes, file has "
                     f"{max(0, (total_bytes if total_bytes is not None else len(view)) - PREFIX_BYTES):,} after the prefix")
    try:
        header = json.loads(bytes(view[PREFIX_BYTES : PREFIX_BYTES + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _error(name, f"header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise _error(name, "header is not a JSON object")
    if header.get("version") != VERSION:
        raise _error(name, f"unsupported header version {header.get('version')!r} (expected {VERSION})")
    samples = header.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 0:
        raise _error(name, f"header field 'samples' is {samples!r}, expected a non-negative integer")
    if samples == 0:
        raise _error(name, "empty partition: header says 0 samples")
    arrays_raw = header.get("arrays")
    if not isinstance(arrays_raw, dict):
        raise _error(name, "header field 'arrays' is missing or not an object")
    arrays: dict[str, ArraySpec] = {}
    end = PREFIX_BYTES + hlen
    for array_name, (dtype, shape) in ARRAYS.items():
        spec_raw = arrays_raw.get(array_name)
        if not isinstance(spec_raw, dict):
            raise _error(name, f"header has no array '{array_name}'")
        got_dtype = spec_raw.get("dtype")
        if got_dtype != dtype:
            raise _error(name, f"wrong dtype: {array_name} is {got_dtype!r}, expected {dtype!r}")
        got_shape = spec_raw.get("shape")
        want_shape = [samples, *shape]
        if got_shape != want_shape:
            raise _error(name, f"wrong shape: {array_name} has shape {got_shape}, expected {want_shape}")
        offset, nbytes = spec_raw.get("offset"), spec_raw.get("nbytes")
        want_nbytes = int(np.dtype(dtype).itemsize * np.prod(want_shape, dtype=np.int64))
        if not isinstance(offset, int) or offset < end or offset % ALIGN:
            raise _error(name, f"bad offset {offset!r} for {array_name} (must be 64-byte aligned, after byte {end})")
        if nbytes != want_nbytes:
            raise _error(name, f"bad size for {array_name}: header says {nbytes!r} bytes, shape needs {want_nbytes:,}")
        arrays[array_name] = ArraySpec(array_name, dtype, tuple(want_shape), offset, nbytes)
        end = offset + nbytes
    extra = sorted(set(arrays_raw) - set(ARRAYS))
    if extra:
        raise _error(name, f"header has unknown arrays {extra}")
    file_bytes = header.get("file_bytes", end)
    if file_bytes != end:
        raise _error(name, f"header says the file is {file_bytes!r} bytes but its arrays end at byte {end:,}")
    if total_bytes is not None:
        if total_bytes < file_bytes:
            raise _error(name, f"truncated: header says {file_bytes:,} bytes, file has {total_bytes:,}")
        if total_bytes > file_bytes:
            raise _error(name, f"trailing data: header says {file_bytes:,} bytes, file has {total_bytes:,}")
    meta = header.get("meta") or {}
    if not isinstance(meta, dict):
        raise _error(name, "header field 'meta' is not an object")
    return PartitionHeader(name=name, samples=samples, file_bytes=file_bytes, arrays=arrays, meta=meta)


def header_length(prefix16: bytes, name: str = "<bytes>") -> int:
    """Bytes needed to parse the header, from the first 16 bytes of a file (magic checked)."""
    if len(prefix16) < PREFIX_BYTES:
        raise _error(name, f"truncated: not a partition file ({len(prefix16)} bytes)")
    if prefix16[:8] != MAGIC:
        parse_header(prefix16, name)  # raises the precise magic / version error
    hlen = int(np.frombuffer(prefix16[8:16], dtype="<u8")[0])
    if hlen == 0 or hlen > MAX_HEADER_BYTES:
        raise _error(name, f"bad header length {hlen:,} bytes")
    return PREFIX_BYTES + hlen


def _check_expected(name: str, expected: Any, samples: int | None, nbytes: int | None, data: Any | None) -> None:
    if expected is None:
        return
    want_samples = _expected_get(expected, "samples")
    if want_samples is not None and samples is not None and int(want_samples) != samples:
        raise _error(name, f"sample count mismatch: manifest says {int(want_samples):,}, file has {samples:,}")
    want_bytes = _expected_get(expected, "bytes")
    if want_bytes is not None and nbytes is not None and int(want_bytes) != nbytes:
        raise _error(name, f"size mismatch: manifest says {int(want_bytes):,} bytes, file has {nbytes:,}")
    want_sha = _expected_get(expected, "sha256")
    if want_sha and data is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != want_sha:
            raise _error(name, f"checksum mismatch: manifest sha256 {want_sha[:12]}..., file {got[:12]}...")


def _open_fd(path: Path, label: str, shown: str | None = None) -> int:
    """``storage.open_regular``; a missing or non-regular file as :class:`PartitionError` naming ``label``."""
    try:
        return open_regular(path, shown)
    except NotRegularFileError as exc:  # before FileNotFoundError, its base class
        raise _error(label, f"not a regular file: {exc}") from exc
    except FileNotFoundError as exc:
        raise _error(label, f"file not found: {path}") from exc


def _read_source(source: Any, name: str) -> bytes | bytearray | memoryview:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            fd = _open_fd(path, name, name)
        except OSError as exc:
            raise _error(name, f"cannot read {path}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            # header checked against the real size before the buffer is allocated
            first = os.pread(fd, PREFIX_BYTES, 0)
            need = header_length(first, name) if len(first) == PREFIX_BYTES else len(first)
            parse_header(first + os.pread(fd, max(0, need - PREFIX_BYTES), PREFIX_BYTES), name, total_bytes=size)
            buf = bytearray(size)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                got = fh.readinto(buf)
        except OSError as exc:
            raise _error(name, f"cannot read {path}: {exc}") from exc
        finally:
            os.close(fd)
        return buf if got == size else buf[:got]
    if hasattr(source, "read"):
        return source.read()
    raise TypeError(f"cannot read a partition from {type(source).__name__}")


def read_partition(source: str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO,
                   name: str | None = None, expected: Any = None, check_finite: bool = True,
                   writable: bool = True) -> Partition:
    """Read and validate a whole partition (path, bytes or binary file), and ``expected`` (a manifest
    entry or mapping: ``samples``, ``bytes``, ``sha256``). Arrays are views of one buffer; from ``bytes``
    they are copied unless ``writable=False`` (read-only views: half the peak memory)."""
    label = _display_name(source, name)
    data = _read_source(source, label)
    header = parse_header(data, label, total_bytes=len(data))
    _check_expected(label, expected, header.samples, len(data), data)
    copy = writable and memoryview(data).readonly
    out: dict[str, np.ndarray] = {}
    for spec in header.arrays.values():
        arr = np.frombuffer(data, dtype=spec.dtype, count=spec.nbytes // np.dtype(spec.dtype).itemsize,
                            offset=spec.offset).reshape(spec.shape)
        out[spec.name] = arr.copy() if copy else arr
    if check_finite:
        _check_finite(label, out["image"], out["magnitude"])
    return Partition(image=out["image"], magnitude=out["magnitude"], redshift=out["redshift"], meta=header.meta)


#: ``read_at(offset, length) -> bytes``: how a slice reader fetches bytes (file pread, S3 range).
ReadAt = Callable[[int, int], bytes]


@contextmanager
def _open_local(path: str | os.PathLike[str], label: str) -> Iterator[tuple[ReadAt, int]]:
    """``(read_at, size)`` of a local regular file (a FIFO or device has no size to check), closed after."""
    fd = _open_fd(Path(path), label)

    def read_at(offset: int, length: int) -> bytes:
        chunks = []
        while length > 0:
            chunk = os.pread(fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    try:
        yield read_at, os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_header_at(read_at: ReadAt, name: str, total_bytes: int | None = None) -> PartitionHeader:
    """Parse the header through a ``read_at`` function (two small reads)."""
    first = read_at(0, PREFIX_BYTES)
    need = header_length(first, name)
    if total_bytes is not None and need > total_bytes:
        raise _error(name, f"truncated: header says the JSON header ends at byte {need:,}, file has {total_bytes:,}")
    return parse_header(first + read_at(PREFIX_BYTES, need - PREFIX_BYTES), name, total_bytes=total_bytes)


def read_rows_at(read_at: ReadAt, header: PartitionHeader, start: int, stop: int, check_finite: bool = True) -> Partition:
    """Rows ``start:stop`` of a partition, fetching only their bytes (one read per array)."""
    if not 0 <= start <= stop <= header.samples:
        raise _error(header.name, f"rows {start}:{stop} out of range (0:{header.samples})")
    out: dict[str, np.ndarray] = {}
    for spec in header.arrays.values():
        rb = spec.row_bytes
        want = (stop - start) * rb
        raw = read_at(spec.offset + start * rb, want) if want else b""
        if len(raw) != want:
            raise _error(header.name, f"truncated: wanted {want:,} bytes of {spec.name} at byte "
                         f"{spec.offset + start * rb:,}, got {len(raw):,}")
        out[spec.name] = np.frombuffer(bytearray(raw), dtype=spec.dtype).reshape((stop - start, *spec.shape[1:]))
    if check_finite and stop > start:
        _check_finite(header.name, out["image"], out["magnitude"], row0=start)
    return Partition(image=out["image"], magnitude=out["magnitude"], redshift=out["redshift"], meta=header.meta)


def read_header(path: str | os.PathLike[str], name: str | None = None) -> PartitionHeader:
    """The validated header of a local partition file (reads only the first few hundred bytes)."""
    label = _display_name(path, name)
    with _open_local(path, label) as (read_at, size):
        return read_header_at(read_at, label, total_bytes=size)


def read_rows(path: str | os.PathLike[str], start: int, stop: int, name: str | None = None) -> Partition:
    """Rows ``start:stop`` of a local partition file, reading only those bytes."""
    label = _display_name(path, name)
    with _open_local(path, label) as (read_at, size):
        header = read_header_at(read_at, label, total_bytes=size)
        return read_rows_at(read_at, header, start, min(stop, header.samples))


def iter_batches(source: str | os.PathLike[str] | ReadAt, batch_size: int, name: str | None = None,
                 total_bytes: int | None = None, check_finite: bool = True) -> Iterator[Partition]:
    """Stream a partition in batches of ``batch_size`` rows (memory: one batch; no sha256 check) from a
    local path or a ``read_at(offset, length)`` function (then pass ``total_bytes`` to detect truncation)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if callable(source) and not isinstance(source, (str, os.PathLike)):
        label = name or "<stream>"
        opened: Any = nullcontext((source, total_bytes))
    else:
        label = _display_name(source, name)
        opened = _open_local(source, label)
    with opened as (read_at, size):
        header = read_header_at(read_at, label, total_bytes=size)
        for start in range(0, header.samples, batch_size):
            yield read_rows_at(read_at, header, start, min(start + batch_size, header.samples), check_finite)


def partition_name(index: int) -> str:
    """The file name of partition ``index``: ``part-00000.cpart``."""
    return f"part-{index:05d}{EXTENSION}"


def expected_file_bytes(samples: int, meta: Mapping[str, Any] | None = None) -> int:
    """Size of a partition file with ``samples`` rows and this meta (without writing it)."""
    return _layout(samples, meta or {})[2]
