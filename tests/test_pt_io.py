"""Published .pt TensorDataset partitions: safe loading and a lossless round trip to .cpart."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosmic_utils.dataset import load_dataset  # noqa: E402
from cosmic_utils.manifest import Manifest  # noqa: E402
from cosmic_utils.partition import PartitionError, read_partition  # noqa: E402
from cosmic_utils.pt_io import convert_pt, read_pt_partition, write_pt_partition  # noqa: E402


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = (rng.standard_normal((n, 5, 32, 32)) * 10.0**rng.uniform(-3, 3, (n, 1, 1, 1))).astype(np.float32)
    image[0, 0, 0, 0] = np.float32(1e-42)  # a subnormal survives bit for bit
    image[0, 0, 0, 1] = -0.0
    mag = rng.uniform(12, 22, (n, 5))
    z = rng.uniform(0, 0.3, n).astype(np.float32)
    z[-1] = np.nan  # an unknown label
    return image, mag, z


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_pt_to_cpart_round_trip_is_bit_for_bit(tmp_path: Path) -> None:
    src = tmp_path / "pt"
    src.mkdir()
    originals = [_arrays(13, 0), _arrays(8, 1)]
    for i, arrays in enumerate(originals):
        write_pt_partition(src / f"partition_{i}.pt", *arrays)
    # the published object really is a TensorDataset
    obj = torch.load(src / "partition_0.pt", weights_only=False)
    assert type(obj).__name__ == "TensorDataset"

    part = read_pt_partition(src / "partition_0.pt")
    for got, want in zip((part.image, part.magnitude, part.redshift), originals[0], strict=True):
        assert _bits_equal(got, want)

    manifest = convert_pt(src, tmp_path / "out")
    assert manifest.partitions == 2 and [e.samples for e in manifest.entries] == [13, 8]
    assert Manifest.read(tmp_path / "out").verify(tmp_path / "out").ok
    for entry, want in zip(manifest.entries, originals, strict=True):
        back = read_partition(tmp_path / "out" / entry.key, expected=entry)
        for got, exp in zip((back.image, back.magnitude, back.redshift), want, strict=True):
            assert _bits_equal(got, exp)
        assert entry.source.startswith("pt:partition_")
    all_rows = load_dataset(tmp_path / "out")
    assert all_rows.samples == 21


def test_single_file_conversion(tmp_path: Path) -> None:
    write_pt_partition(tmp_path / "one.pt", *_arrays(4, 2))
    manifest = convert_pt(tmp_path / "one.pt", tmp_path / "out")
    assert manifest.total_samples == 4


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_untrusted_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"image": _Evil()}, path)
    with pytest.raises(PartitionError, match="evil.pt: cannot load .pt file"):
        read_pt_partition(path)
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(PartitionError, match="evil.pt"):
        read_pt_partition(path)


def test_bad_contents(tmp_path: Path) -> None:
    image, mag, z = _arrays(3, 3)
    from torch.utils.data import TensorDataset

    torch.save(TensorDataset(torch.from_numpy(image[:, :3]), torch.from_numpy(mag), torch.from_numpy(z)), tmp_path / "s.pt")
    with pytest.raises(PartitionError, match="s.pt: wrong shape"):
        read_pt_partition(tmp_path / "s.pt")
    with pytest.raises(PartitionError, match="missing.pt: file not found"):
        read_pt_partition(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError):
        convert_pt(tmp_path / "empty_dir_that_is_missing", tmp_path / "out")
