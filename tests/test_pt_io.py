"""Published .pt TensorDataset partitions: safe loading and a lossless round trip to .cpart."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosmic_utils.data.dataset import load_dataset  # noqa: E402
from cosmic_utils.data.pt_io import convert_pt, read_pt_partition, write_pt_partition  # noqa: E402
from cosmic_utils.runtime.manifest import Manifest  # noqa: E402
from cosmic_utils.runtime.partition import PartitionError, read_partition  # noqa: E402


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


def test_folder_with_bad_files_converts_the_rest_and_exits_3(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    src = tmp_path / "pt"
    src.mkdir()
    write_pt_partition(src / "a.pt", *_arrays(3, 0))
    (src / "b.pt").write_bytes(b"not a pickle at all")
    write_pt_partition(src / "c.pt", *_arrays(4, 1))
    (src / "d.pt").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["data", "convert-pt", str(src), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cosmic data convert-pt: file ")]
    assert len(lines) == 2 and "b.pt failed: partition b.pt: cannot load" in lines[0] and "d.pt" in lines[1]
    manifest = Manifest.read(out)
    assert [e.source for e in manifest.entries] == ["pt:a.pt", "pt:c.pt"] and manifest.verify(out).ok
    assert [f["file"].rsplit("/", 1)[-1] for f in manifest.extra["failed_files"]] == ["b.pt", "d.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "pt"]  # no staging folder left


def test_folder_without_a_readable_file_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cosmic_utils.cli import main

    src = tmp_path / "pt"
    src.mkdir()
    (src / "x.pt").write_bytes(b"junk")
    assert main(["data", "convert-pt", str(src), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "file " in err and "x.pt failed" in err and "none of the 1 .pt files" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pt"]
    write_pt_partition(src / "x.pt", *_arrays(2, 0))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    assert main(["data", "convert-pt", str(src), "--out", str(tmp_path / "busy")]) == 1
    assert "already exists" in capsys.readouterr().err
