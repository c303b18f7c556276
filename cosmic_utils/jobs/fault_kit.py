"""Building blocks of the fault scenarios (tiny model and datasets, damaged partitions, the outcome
record and the accounting of a run), shared by :mod:`.reliability` and :mod:`.reliability_exits`."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmic_utils.runtime.items import partition_id_for
from cosmic_utils.runtime.manifest import Manifest, ManifestEntry
from cosmic_utils.runtime.partition import encode_partition, partition_name

LOCAL_RESULTS = "s3://cosmic-local-results/runs"
#: Columns of reliability.csv.
COLUMNS: tuple[str, ...] = (
    "scenario", "category", "what", "outcome", "error", "partitions", "ok", "failed", "lost",
    "redrive", "faults_fired", "seconds", "passed",
)


def write_tiny_artifact(folder: Path, scale: float = 0.01) -> Path:
    """A model artifact (artifact.json + model.onnx, with sha256) whose graph is tiny but has the
    real signature: image float32 [B,5,32,32], magnitude float64 [B,5] -> redshift float32 [B]
    = r magnitude x ``scale`` (+ 0 x mean image). ``scale=nan`` gives non-finite predictions."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 5, 32, 32])
    mag = helper.make_tensor_value_info("magnitude", TensorProto.DOUBLE, ["B", 5])
    out = helper.make_tensor_value_info("redshift", TensorProto.FLOAT, ["B"])
    nodes = [
        helper.make_node("Cast", ["magnitude"], ["mag_f"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["mag_f", "band"], ["r_band"], axis=1),
        helper.make_node("ReduceMean", ["image"], ["img_mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["img_mean", "zero"], ["img_zero"]),
        helper.make_node("Mul", ["r_band", "scale"], ["z0"]),
        helper.make_node("Add", ["z0", "img_zero"], ["redshift"]),
    ]
    inits = [helper.make_tensor("band", TensorProto.INT64, [], [2]),
             helper.make_tensor("scale", TensorProto.FLOAT, [], [float(scale)]),
             helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [image, mag], [out], inits),
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    sha = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    meta = {"format_version": 1, "name": folder.name, "created": "2026-01-01T00:00:00+00:00",
            "architecture": "tiny-test", "preprocessing": {}, "config": {"scale": str(scale)},
            "training_data_sha256": None, "metrics": {},
            "files": {"onnx": {"path": "model.onnx", "sha256": sha}}}
    (folder / "artifact.json").write_text(json.dumps(meta, indent=1))
    return folder


def partition_bytes(samples: int, seed: int) -> bytes:
    """A valid partition of ``samples`` random finite rows (labels = r/100 + noise)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 1, (samples, 5, 32, 32)).astype(np.float32)
    magnitude = rng.uniform(14, 20, (samples, 5))
    redshift = (magnitude[:, 2] / 100.0 + rng.normal(0, 0.01, samples)).astype(np.float32)
    return encode_partition(image, magnitude, redshift, {"seed": seed})


def _header_end(blob: bytes) -> int:
    return 16 + int(np.frombuffer(blob[8:16], dtype="<u8")[0])


def _array_offset(blob: bytes, name: str) -> int:
    header = json.loads(blob[16:_header_end(blob)])
    return int(header["arrays"][name]["offset"])


def _patch_header(blob: bytes, old: bytes, new: bytes) -> bytes:
    end = _header_end(blob)
    head = blob[:end]
    if old not in head or len(old) != len(new):
        raise ValueError(f"cannot patch header: {old!r}")
    return head.replace(old, new, 1) + blob[end:]


def _empty_partition() -> bytes:
    """A well-formed file that holds 0 samples (the writer refuses to write one)."""
    from cosmic_utils.runtime.partition import MAGIC, _layout

    header, _specs, file_bytes = _layout(0, {})
    body = MAGIC + np.uint64(len(header)).astype("<u8").tobytes() + header
    return body + b"\x00" * (file_bytes - len(body))


#: Damage applied to one partition's bytes; the manifest records the bytes AFTER damage unless
#: the damage is meant to be caught by the manifest (``checksum``, ``truncated``).
DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda b: b[: len(b) // 2],
    "corrupt": lambda b: bytes(np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8)) + b[64:],
    "wrong_shape": lambda b: _patch_header(b, b'"shape":[4,5,32,32]', b'"shape":[4,5,16,64]'),
    "wrong_dtype": lambda b: _patch_header(b, b'"dtype":"<f8"', b'"dtype":"<i8"'),
    "nan_image": lambda b: (lambda o: b[:o + 4 * 100] + struct.pack("<f", float("nan")) + b[o + 4 * 101:])(
        _array_offset(b, "image")),
    "inf_magnitude": lambda b: (lambda o: b[:o + 8] + struct.pack("<d", float("inf")) + b[o + 16:])(
        _array_offset(b, "magnitude")),
    "empty": lambda b: _empty_partition(),
    "checksum": lambda b: b[:-64] + bytes(64 * [0xFF]),
}
#: Damage the manifest is not told about (it records the original size / sha256).
CAUGHT_BY_MANIFEST = ("truncated", "checksum")


def make_dataset(folder: Path, partitions: int, samples: int = 4, damage: dict[int, str] | None = None,
                 missing: tuple[int, ...] = (), seed: int = 0, manifest: bool = True) -> list[str]:
    """Write ``partitions`` partitions (+ manifest.json); returns the partition ids written or listed.
    ``damage`` maps a partition index to a :data:`DAMAGE` kind; ``missing`` partitions are listed in
    the manifest but never written (a partition lost from storage)."""
    folder.mkdir(parents=True, exist_ok=True)
    damage = damage or {}
    entries = []
    for k in range(partitions):
        blob = partition_bytes(samples, seed * 100_000 + k)
        key = partition_name(k)
        kind = damage.get(k)
        written = DAMAGE[kind](blob) if kind else blob
        listed = blob if kind in CAUGHT_BY_MANIFEST else written
        entries.append(ManifestEntry(k, key, max(samples if kind != "empty" else 0, 0), len(listed),
                                     hashlib.sha256(listed).hexdigest(), "reliability", k))
        if k not in missing:
            (folder / key).write_bytes(written)
    if manifest:
        Manifest(entries=entries, source="reliability").write(folder)
    return [partition_id_for(e.key) for e in entries]


@dataclass
class Outcome:
    """One row of the reliability table."""

    scenario: str
    category: str
    what: str
    outcome: str = ""
    error: str = ""
    partitions: int = 0
    ok: int = 0
    failed: int = 0
    lost: int = 0
    redrive: str = ""
    faults_fired: int = 0
    seconds: float = 0.0
    passed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("details")
        d["seconds"] = round(self.seconds, 1)
        return d


def account(run_dir: Path, expected_ids: list[str], samples: dict[str, int] | None = None) -> dict[str, Any]:
    """Count ok / failed / lost partitions of a run folder against the harness's own list. ok: an
    ``ok`` record and a predictions file with one row per sample; failed: listed in
    ``summary.json["failed"]`` with a reason; lost: neither (or both, which would be a lie)."""
    summary = read_json(run_dir / "summary.json")
    failed = {str(f["partition_id"]): str(f.get("error") or "") for f in summary.get("failed", [])}
    ok = n_failed = 0
    lost: list[str] = []
    for pid in expected_ids:
        rec = read_json(run_dir / "records" / f"{pid}.json")
        pred = run_dir / "predictions" / f"{pid}.csv"
        rows = len(pred.read_text().splitlines()) - 1 if pred.exists() else -1
        want = (samples or {}).get(pid, rec.get("samples"))
        is_ok = rec.get("status") == "ok" and rows >= 1 and (want is None or rows == want)
        is_failed = bool(failed.get(pid))
        if is_ok and not is_failed:
            ok += 1
        elif is_failed and not is_ok:
            n_failed += 1
        else:
            lost.append(pid)
    return {"ok": ok, "failed": n_failed, "lost": len(lost), "lost_ids": lost[:10], "failed_reasons": failed}


def read_json(path: Path) -> Any:
    """The JSON in ``path``, ``{}`` when there is no such file."""
    return json.loads(path.read_text()) if path.exists() else {}


def _short(text: str, limit: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

