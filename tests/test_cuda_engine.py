"""The torch-cuda engines: what runs without a GPU (argument checks, the refusal without a
device, registration, bench skipping, the prefetch ordering), plus GPU checks when CUDA exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmic_utils.inference import bench, cuda_engine, engines
from cosmic_utils.inference.cuda_engine import (
    CudaUnavailableError,
    batch_plan,
    check_arguments,
    prefetched,
)
from cosmic_utils.runtime.engine import EngineUnavailableError

NO_CUDA = not torch.cuda.is_available()


def test_registered_with_precisions() -> None:
    for name, precision in {"torch-cuda": "fp32", "torch-cuda-bf16": "bf16", "torch-cuda-fp16": "fp16"}.items():
        assert name in engines.ENGINE_NAMES and name in engines.CUDA_ENGINE_NAMES
        assert engines.ENGINE_PRECISION[name] == precision
        assert cuda_engine.CUDA_ENGINE_PRECISION[name] == precision


@pytest.mark.parametrize("precision, batch_size, match", [
    ("fp8", 16, "precision must be one of fp32, bf16, fp16, got 'fp8'"),
    ("fp32", 0, "batch_size must be an integer >= 1, got 0"),
    ("bf16", -3, "batch_size must be an integer >= 1"),
    ("fp16", 2.5, "batch_size must be an integer >= 1, got 2.5"),
    ("fp32", True, "batch_size must be an integer >= 1"),
])
def test_argument_checks_before_any_cuda_call(monkeypatch: pytest.MonkeyPatch, precision: str, batch_size: object,
                                              match: str) -> None:
    def no_cuda_call() -> bool:
        raise AssertionError("CUDA was queried before the arguments were checked")

    monkeypatch.setattr(torch.cuda, "is_available", no_cuda_call)
    with pytest.raises(ValueError, match=match):
        cuda_engine.CudaEngine.from_artifact("no-such-artifact", precision=precision, batch_size=batch_size)
    with pytest.raises(ValueError, match=match):
        cuda_engine.CudaEngine(torch.nn.Identity(), precision=precision, batch_size=batch_size)


def test_valid_arguments_pass() -> None:
    for precision in ("fp32", "bf16", "fp16"):
        check_arguments(precision, 1)
    check_arguments("fp32", np.int64(4096))


@pytest.mark.parametrize("name", engines.CUDA_ENGINE_NAMES)
def test_refusal_without_device_names_the_problem(monkeypatch: pytest.MonkeyPatch, tmp_path, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # refused before the artifact is read: the folder does not even exist
    with pytest.raises(CudaUnavailableError) as info:
        engines.create_engine(name, tmp_path / "absent")
    assert isinstance(info.value, EngineUnavailableError) and isinstance(info.value, RuntimeError)
    msg = str(info.value)
    assert msg.startswith(f"{name}: no CUDA device is present") and "torch.cuda.is_available() is False" in msg
    assert "\n" not in msg


def test_default_engine_never_cuda_without_device(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import json

    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"rows": [
        {"engine": "torch-cuda", "batch_size": 256, "samples_per_s": 1e6},
        {"engine": "torch", "batch_size": 256, "samples_per_s": 100.0}]}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert engines.default_engine(checks_path=tmp_path / "none.json", bench_path=bench_file) == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert engines.default_engine(checks_path=tmp_path / "none.json", bench_path=bench_file) == "torch-cuda"


def test_bench_skips_cuda_engines_with_reason(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    skipped = bench.cuda_skips(["torch-eager", "torch", "torch-cuda", "torch-cuda-fp16"])
    assert set(skipped) == {"torch-cuda", "torch-cuda-fp16"}
    assert all("no CUDA device is present" in r for r in skipped.values())
    err = capsys.readouterr().err
    assert "skipping torch-cuda, torch-cuda-fp16" in err and "torch.cuda.is_available() is False" in err
    assert bench.cuda_skips(["torch", "onnx"]) == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench.cuda_skips(["torch-cuda"]) == {}


@pytest.mark.parametrize("n, bs, expected", [
    (0, 4, []), (3, 4, [(0, 3)]), (8, 4, [(0, 4), (4, 8)]), (9, 4, [(0, 4), (4, 8), (8, 9)]), (5, 1, [(i, i + 1) for i in range(5)]),
])
def test_batch_plan_covers_rows_in_order(n: int, bs: int, expected: list) -> None:
    assert batch_plan(n, bs) == expected


def test_batch_plan_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_plan(10, 0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        batch_plan(-1, 4)


def test_prefetch_issues_next_load_before_current_compute() -> None:
    """The double buffer: load(i+1) is issued before item i is handed out, never load(i+2)."""
    events: list[str] = []
    image = torch.arange(10, dtype=torch.float32)
    plan = batch_plan(len(image), 4)

    def load(i: int, rows: tuple[int, int]) -> torch.Tensor:
        events.append(f"load{i}")
        return image[rows[0]:rows[1]].clone()

    got = []
    for i, rows, loaded in prefetched(plan, load):
        events.append(f"compute{i}")
        assert torch.equal(loaded, image[rows[0]:rows[1]])
        got.append(loaded)
    assert events == ["load0", "load1", "compute0", "load2", "compute1", "compute2"]
    assert torch.equal(torch.cat(got), image)
    assert list(prefetched([], load)) == []


class _FakeEvent:
    def record(self, stream: object = None) -> None:
        return None

    def synchronize(self) -> None:
        return None


class _FakeStream:
    def __init__(self, device: object = None) -> None:
        self.waited: list[object] = []

    def wait_event(self, event: object) -> None:
        assert isinstance(event, _FakeEvent)
        self.waited.append(event)


def test_predict_path_on_a_cpu_stand_in(monkeypatch: pytest.MonkeyPatch, untrained_artifact_dir) -> None:
    """The whole predict path (pinned staging, double buffer, FastAstro choice, batching, numpy
    out) with the CUDA calls replaced by CPU stand-ins: same redshifts as the eager engine."""
    import contextlib

    compute = _FakeStream()
    real_device, real_autocast = torch.device, torch.autocast
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "stand-in")
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: compute)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda self, stream: None)
    monkeypatch.setattr(cuda_engine.torch, "device", lambda name: real_device("cpu"))
    monkeypatch.setattr(cuda_engine.torch, "autocast", lambda dev, dtype: real_autocast("cpu", dtype=dtype))
    rng = np.random.default_rng(0)
    image = rng.random((40, 5, 32, 32), dtype=np.float32)
    image.setflags(write=False)  # partitions arrive as read-only memory maps
    mag = 18 + 4 * rng.random((40, 5))
    with engines.create_engine("torch-eager", untrained_artifact_dir, threads=2) as ref:
        z_ref = ref.predict(image, mag)
    with cuda_engine.CudaEngine.from_artifact(untrained_artifact_dir, precision="fp32", batch_size=16) as eng:
        assert (eng.name, eng.kind, eng.device_name, eng.network) == ("torch-cuda", "local_gpu", "stand-in", "fast")
        z = eng.predict(image, mag)
    assert len(compute.waited) == 3  # 40 rows in batches of 16: three uploads, each awaited once
    assert z.dtype == np.float32 and z.shape == (40,)
    np.testing.assert_allclose(z, z_ref, rtol=0, atol=1e-4 * (float(np.abs(z_ref).max()) + 1e-3))


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("name, atol", [("torch-cuda", 1e-3), ("torch-cuda-bf16", 0.1), ("torch-cuda-fp16", 0.05)])
def test_cuda_engine_agrees_with_cpu(untrained_artifact_dir, name: str, atol: float) -> None:  # pragma: no cover
    model_dir = untrained_artifact_dir
    rng = np.random.default_rng(0)
    image = rng.random((300, 5, 32, 32), dtype=np.float32)
    mag = 18 + 4 * rng.random((300, 5))
    precision = engines.ENGINE_PRECISION[name]
    # batch 128: three device batches, so the prefetch path runs
    with engines.create_engine("torch-eager", model_dir) as ref, \
            cuda_engine.CudaEngine.from_artifact(model_dir, precision=precision, batch_size=128) as eng:
        assert eng.name == name and eng.kind == "local_gpu" and eng.device_name
        z_ref, z = ref.predict(image, mag), eng.predict(image, mag)
    assert z.dtype == np.float32 and z.shape == (300,)
    assert np.max(np.abs(z - z_ref)) < atol
