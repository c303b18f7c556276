"""The .cpart format: round trips, layout, slices, and every kind of bad file."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from cosmic_utils import config
from cosmic_utils.runtime.partition import (
    ALIGN,
    MAGIC,
    PartitionError,
    encode_partition,
    expected_file_bytes,
    iter_batches,
    parse_header,
    read_header,
    read_partition,
    read_rows,
    write_partition,
)


def _arrays(n: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 5, 32, 32)).astype(np.float32)
    mag = rng.uniform(14, 21, (n, 5))
    z = rng.uniform(0, 0.3, n).astype(np.float32)
    return image, mag, z


def _craft(arrays: dict[str, np.ndarray], samples: int, meta: dict | None = None) -> bytes:
    """An independent minimal writer, to make files the real writer refuses to make."""
    specs, offset = {}, 512
    blobs = []
    for name, arr in arrays.items():
        specs[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "nbytes": arr.nbytes}
        blobs.append((offset, arr.tobytes()))
        offset = (offset + arr.nbytes + 63) // 64 * 64
    end = blobs[-1][0] + len(blobs[-1][1]) if blobs else 512
    header = json.dumps({"version": 1, "samples": samples, "file_bytes": end, "arrays": specs,
                         "meta": meta or {}}).encode()
    assert 16 + len(header) <= 512
    buf = bytearray(end)
    buf[:8] = MAGIC
    buf[8:16] = struct.pack("<Q", len(header))
    buf[16 : 16 + len(header)] = header
    for off, blob in blobs:
        buf[off : off + len(blob)] = blob
    return bytes(buf)


def test_round_trip_path_bytes_and_file(tmp_path: Path) -> None:
    image, mag, z = _arrays()
    path = tmp_path / "part-00000.cpart"
    info = write_partition(path, image, mag, z, meta={"partition_id": 0})
    data = path.read_bytes()
    assert info.samples == 7 and info.nbytes == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert data == encode_partition(image, mag, z, meta={"partition_id": 0})
    buf = io.BytesIO()
    assert write_partition(buf, image, mag, z, meta={"partition_id": 0}).sha256 == info.sha256
    for source in (path, str(path), data, io.BytesIO(data)):
        part = read_partition(source, expected=info.__dict__ | {"bytes": info.nbytes})
        assert part.image.dtype == np.float32 and part.magnitude.dtype == np.float64 and part.redshift.dtype == np.float32
        assert np.array_equal(part.image, image) and np.array_equal(part.magnitude, mag)
        assert np.array_equal(part.redshift, z)
        assert part.meta == {"partition_id": 0}
    assert not list(tmp_path.glob(".*tmp*")), "temp file left behind"


def test_layout_is_aligned_and_documented(tmp_path: Path) -> None:
    image, mag, z = _arrays(3)
    data = encode_partition(image, mag, z)
    assert data[:8] == b"CPART\x00\x01\x00"
    hlen = struct.unpack("<Q", data[8:16])[0]
    header = json.loads(data[16 : 16 + hlen])
    assert header["version"] == 1 and header["samples"] == 3 and header["file_bytes"] == len(data)
    order = [header["arrays"][k]["offset"] for k in ("image", "magnitude", "redshift")]
    assert order == sorted(order) and all(o % ALIGN == 0 for o in order)
    assert header["arrays"]["image"] == {"dtype": "<f4", "shape": [3, 5, 32, 32], "offset": order[0], "nbytes": image.nbytes}
    off = header["arrays"]["magnitude"]["offset"]
    assert np.array_equal(np.frombuffer(data, "<f8", 15, off).reshape(3, 5), mag)


def test_redshift_optional_is_nan() -> None:
    image, mag, _ = _arrays(2)
    part = read_partition(encode_partition(image, mag))
    assert part.redshift.shape == (2,) and np.isnan(part.redshift).all()


def test_partition_bytes_match_published_mb() -> None:
    for mb in (10, 25, 50, 100):
        target = mb * 2**20
        size = expected_file_bytes(config.samples_per_partition(mb), {"partition_id": 12345, "seed": 0})
        assert abs(size - target) / target < 0.02, (mb, size)


def test_slices_and_streaming(tmp_path: Path) -> None:
    image, mag, z = _arrays(23)
    path = tmp_path / "p.cpart"
    write_partition(path, image, mag, z)
    assert read_header(path).samples == 23
    part = read_rows(path, 5, 11)
    assert np.array_equal(part.image, image[5:11]) and np.array_equal(part.redshift, z[5:11])
    batches = list(iter_batches(path, 10))
    assert [b.samples for b in batches] == [10, 10, 3]
    assert np.array_equal(np.concatenate([b.image for b in batches]), image)
    assert np.array_equal(np.concatenate([b.magnitude for b in batches]), mag)
    data = path.read_bytes()
    reads: list[int] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append(length)
        return data[offset : offset + length]

    streamed = list(iter_batches(read_at, 8, name="remote.cpart", total_bytes=len(data)))
    assert np.array_equal(np.concatenate([b.image for b in streamed]), image)
    assert max(reads) <= 8 * 5 * 32 * 32 * 4, "a batch read more than its rows"


def _expect(match: str, source, name: str | None = None, **kw) -> PartitionError:
    with pytest.raises(PartitionError) as info:
        read_partition(source, name=name, **kw)
    msg = str(info.value)
    assert match in msg, msg
    return info.value


def test_truncated(tmp_path: Path) -> None:
    image, mag, z = _arrays(4)
    path = tmp_path / "part-00003.cpart"
    write_partition(path, image, mag, z)
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[:1000])
    err = _expect("truncated", path)
    assert "part-00003.cpart" in str(err) and f"header says {full:,} bytes, file has 1,000" in str(err)
    path.write_bytes(b"CPART")
    _expect("truncated", path)
    path.write_bytes(b"")
    _expect("part-00003.cpart: truncated", path)
    with pytest.raises(PartitionError, match="part-00003.cpart: truncated"):
        list(iter_batches(path, 2))


def test_bad_magic_and_version(tmp_path: Path) -> None:
    image, mag, z = _arrays(2)
    good = encode_partition(image, mag, z)
    bad = tmp_path / "bad.cpart"
    bad.write_bytes(b"PK\x03\x04" + good[4:])
    _expect("bad.cpart: bad magic", bad)
    bad.write_bytes(b"CPART\x00\x02\x00" + good[8:])
    _expect("unsupported format version", bad)
    torchlike = tmp_path / "x.pt.cpart"
    torchlike.write_bytes(b"\x80\x02" + b"\x00" * 100)
    _expect("bad magic", torchlike)


def test_not_json_header() -> None:
    image, mag, z = _arrays(2)
    data = bytearray(encode_partition(image, mag, z))
    data[16] = ord("!")
    _expect("header is not valid JSON", bytes(data), name="h.cpart")


def test_wrong_shape_and_dtype() -> None:
    n = 3
    good = {"image": np.zeros((n, 5, 32, 32), "<f4"), "magnitude": np.zeros((n, 5), "<f8"), "redshift": np.zeros(n, "<f4")}
    _craft_ok = _craft(good, n)
    assert read_partition(_craft_ok).samples == n  # the crafted writer agrees with the reader
    wrong_shape = dict(good, image=np.zeros((n, 5, 16, 16), "<f4"))
    err = _expect("wrong shape", _craft(wrong_shape, n), name="part-00007.cpart")
    assert "part-00007.cpart" in str(err) and "image" in str(err)
    _expect("wrong shape", _craft(dict(good, magnitude=np.zeros((n, 4), "<f8")), n), name="m.cpart")
    err = _expect("wrong dtype", _craft(dict(good, image=np.zeros((n, 5, 32, 32), "<f8")), n), name="d.cpart")
    assert "'<f8'" in str(err) and "'<f4'" in str(err)
    _expect("wrong dtype", _craft(dict(good, magnitude=np.zeros((n, 5), "<f4")), n), name="d.cpart")
    _expect("wrong dtype", _craft(dict(good, redshift=np.zeros(n, ">f4")), n), name="d.cpart")
    _expect("has no array 'redshift'", _craft({k: good[k] for k in ("image", "magnitude")}, n), name="r.cpart")
    # the writer refuses wrong shapes too
    with pytest.raises(PartitionError, match="wrong shape"):
        encode_partition(np.zeros((2, 3, 32, 32), np.float32), np.zeros((2, 5)))
    with pytest.raises(PartitionError, match="wrong shape"):
        encode_partition(np.zeros((2, 5, 32, 32), np.float32), np.zeros((3, 5)))


def test_empty_partition() -> None:
    empty = {"image": np.zeros((0, 5, 32, 32), "<f4"), "magnitude": np.zeros((0, 5), "<f8"), "redshift": np.zeros(0, "<f4")}
    _expect("empty partition", _craft(empty, 0), name="e.cpart")
    with pytest.raises(PartitionError, match="empty partition"):
        encode_partition(np.zeros((0, 5, 32, 32), np.float32), np.zeros((0, 5)))


@pytest.mark.parametrize("value,label", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
@pytest.mark.parametrize("array", ["image", "magnitude"])
def test_non_finite(tmp_path: Path, value: float, label: str, array: str) -> None:
    image, mag, z = _arrays(5)
    path = tmp_path / "part-00001.cpart"
    write_partition(path, image, mag, z)
    spec = read_header(path).arrays[array]
    raw = bytearray(path.read_bytes())
    dtype = np.dtype(spec.dtype)
    pos = spec.offset + 3 * spec.row_bytes + dtype.itemsize  # row 3
    raw[pos : pos + dtype.itemsize] = np.array([value], dtype=dtype).tobytes()
    path.write_bytes(bytes(raw))
    err = _expect(f"non-finite values ({label}) in {array}", path)
    assert "part-00001.cpart" in str(err) and "rows 3" in str(err)
    with pytest.raises(PartitionError, match="non-finite"):
        list(iter_batches(path, 2))
    with pytest.raises(PartitionError, match="non-finite"):
        bad = image.copy()
        bad[0, 0, 0, 0] = value
        encode_partition(bad, mag, z)


def test_nan_redshift_is_allowed() -> None:
    image, mag, z = _arrays(3)
    z[1] = np.nan
    assert np.isnan(read_partition(encode_partition(image, mag, z)).redshift[1])


def test_manifest_mismatches(tmp_path: Path) -> None:
    image, mag, z = _arrays(4)
    path = tmp_path / "part-00002.cpart"
    info = write_partition(path, image, mag, z)
    entry = {"samples": 4, "bytes": info.nbytes, "sha256": info.sha256}
    read_partition(path, expected=entry)
    err = _expect("checksum mismatch", path, expected=dict(entry, sha256="0" * 64))
    assert "part-00002.cpart" in str(err)
    _expect("sample count mismatch: manifest says 5", path, expected=dict(entry, samples=5))
    _expect("size mismatch", path, expected=dict(entry, bytes=info.nbytes + 1))
    # a flipped bit in the data is caught by the checksum even though the file parses
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1
    path.write_bytes(bytes(raw))
    _expect("checksum mismatch", path, expected=entry)


def test_trailing_data_and_missing_file(tmp_path: Path) -> None:
    image, mag, z = _arrays(2)
    path = tmp_path / "t.cpart"
    path.write_bytes(encode_partition(image, mag, z) + b"junk")
    _expect("trailing data", path)
    _expect("file not found", tmp_path / "nope.cpart")


def test_parse_header_direct() -> None:
    image, mag, z = _arrays(2)
    data = encode_partition(image, mag, z, meta={"k": "v"})
    header = parse_header(data, "x.cpart", total_bytes=len(data))
    assert header.samples == 2 and header.meta == {"k": "v"} and header.file_bytes == len(data)


def test_partition_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, cosmic_utils.runtime.partition, cosmic_utils.runtime.storage, cosmic_utils.runtime.manifest; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_writable_arrays() -> None:
    image, mag, z = _arrays(2)
    data = encode_partition(image, mag, z)
    part = read_partition(data)
    part.image[0, 0, 0, 0] = 1.0  # copies: writable
    view = read_partition(data, writable=False)
    assert not view.image.flags.writeable
    assert np.array_equal(view.image, image)


def test_local_readers_name_a_missing_file(tmp_path: Path) -> None:
    from cosmic_utils.runtime.partition import PartitionError, iter_batches, read_header, read_rows

    missing = tmp_path / "part-00042.cpart"
    for call in (lambda: read_header(missing), lambda: read_rows(missing, 0, 1),
                 lambda: next(iter_batches(missing, 4))):
        with pytest.raises(PartitionError, match="part-00042.cpart.*file not found"):
            call()
