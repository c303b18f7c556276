"""Engines agree with the eager fp32 model; the ONNX engine is torch-free; default choice; the
published loop runs on a .pt file; the bench runs end to end on a tiny grid."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosmic_utils.inference.engines import (
    CUDA_ENGINE_NAMES,
    ENGINE_NAMES,
    ENGINE_PRECISION,
    create_engine,
    default_engine,
)
from cosmic_utils.runtime.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, untrained_artifact_dir: Path) -> Path:
    """A private copy of the session's untrained artifact (the int8 engines write
    ``model.int8.onnx`` next to ``model.onnx``; the shared folder stays read-only)."""
    import shutil

    out = tmp_path_factory.mktemp("engines") / "model"
    shutil.copytree(untrained_artifact_dir, out)
    return out


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    from cosmic_utils.data import catalog
    from cosmic_utils.data.render import render_cutouts

    df = catalog.valid_catalog().iloc[:24]
    mags = catalog.magnitudes(df)
    return render_cutouts(mags, catalog.magnitude_errors(df), seed=0), mags


@pytest.fixture(scope="module")
def reference(artifact: Path, batch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    with create_engine("torch-eager", artifact, threads=2) as eng:
        return eng.predict(*batch)


@pytest.mark.parametrize("name", [n for n in ENGINE_NAMES if n != "torch-eager"  # CUDA engines: tests/test_cuda_engine.py
                                  and n not in CUDA_ENGINE_NAMES])
def test_engine_agrees_with_eager_fp32(name: str, artifact: Path, batch: tuple[np.ndarray, np.ndarray],
                                       reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    if name == "torch-compile":  # one compiled shape (32) serves 24 and 3 rows, both zero-padded
        from cosmic_utils.inference.torch_engines import TorchCompiledEngine

        monkeypatch.setattr(TorchCompiledEngine, "default_chunk", 32)
    # gate=False: this compares numerics on every CPU; whether the engine may serve here is
    # tests/test_gating.py's question (bf16 is refused where it is emulated)
    with create_engine(name, artifact, threads=2, gate=False) as eng:
        assert isinstance(eng, Engine) and eng.name == name and eng.precision == ENGINE_PRECISION[name]
        z = eng.predict(*batch)
        z_small = eng.predict(batch[0][:3], batch[1][:3])  # another batch size, same rows
    assert z.dtype == np.float32 and z.shape == (24,)
    scale = float(np.abs(reference).max()) + 1e-3
    diff = float(np.abs(z - reference).max())
    if ENGINE_PRECISION[name] == "fp32":
        assert diff <= 1e-4 * scale + 1e-6, diff
    else:  # bf16 / int8: within 0.01 in redshift (the trained model's checks stay under 8e-3)
        assert diff <= max(0.05 * scale, 0.01), diff
    # the same rows in a smaller batch: identical for fp32; int8 activations are quantised per
    # batch (dynamic scales), so there the rows move within the reduced-precision tolerance
    tol = 1e-5 if ENGINE_PRECISION[name] == "fp32" else max(0.05 * scale, 0.01)
    np.testing.assert_allclose(z_small, z[:3], rtol=0, atol=tol)


def test_bad_inputs_and_names(artifact: Path, batch: tuple[np.ndarray, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        create_engine("nope", artifact)
    with create_engine("onnx", artifact, threads=1) as eng:
        with pytest.raises(ValueError, match="image must have shape"):
            eng.predict(batch[0][:, :3], batch[1])
        with pytest.raises(ValueError, match="magnitude must have shape"):
            eng.predict(batch[0], batch[1][:5])
    with pytest.raises(FileNotFoundError, match="artifact.json"):
        create_engine("torch", artifact.parent / "missing")


@pytest.mark.parametrize("module", ["cosmic_utils.runtime.onnx_engine", "cosmic_utils.inference.engines",
                                    "cosmic_utils.inference.streaming", "cosmic_utils.inference"])
def test_lambda_modules_do_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"{module} imports torch: {proc.stderr}"


def test_onnx_engine_runs_without_torch(artifact: Path, batch: tuple[np.ndarray, np.ndarray], tmp_path: Path,
                                         reference: np.ndarray) -> None:
    np.save(tmp_path / "image.npy", batch[0])
    np.save(tmp_path / "mag.npy", batch[1])
    code = (
        "import sys, numpy as np\n"
        "sys.modules['torch'] = None  # any torch import now fails\n"
        "from cosmic_utils.inference.engines import create_engine\n"
        f"e = create_engine('onnx', {str(artifact)!r}, threads=1)\n"
        f"z = e.predict(np.load({str(tmp_path / 'image.npy')!r}), np.load({str(tmp_path / 'mag.npy')!r}))\n"
        f"np.save({str(tmp_path / 'z.npy')!r}, z)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), reference, atol=1e-5)


def test_default_engine_picks_fastest_passing(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    checks = tmp_path / "checks.json"
    rows = [
        {"engine": "torch", "batch_size": 256, "samples_per_s": 700.0},
        {"engine": "onnx", "batch_size": 256, "samples_per_s": 600.0},
        {"engine": "torch-bf16", "batch_size": 256, "samples_per_s": 1500.0},
        {"engine": "onnx-int8", "batch_size": 256, "samples_per_s": 900.0},
        {"engine": "torch-int8", "batch_size": 32, "samples_per_s": 5000.0},
    ]
    from cosmic_utils.runtime.cpu import cpu_type

    bench.write_text(json.dumps({"meta": {"cpu_type": cpu_type()}, "rows": rows}))
    # no checks recorded: reduced precision is not used
    assert default_engine(checks_path=checks, bench_path=bench) == "torch"
    checks.write_text(json.dumps({"cpu_type": cpu_type(), "checks": [
        {"engine": "torch-bf16", "passed": False, "trained_model": True},
        {"engine": "onnx-int8", "passed": True, "trained_model": True},
    ]}))
    assert default_engine(checks_path=checks, bench_path=bench) == "onnx-int8"
    assert default_engine(checks_path=checks, bench_path=bench, candidates=("onnx",)) == "onnx"
    # checks made on an untrained model do not count
    checks.write_text(json.dumps({"checks": [{"engine": "torch-bf16", "passed": True, "trained_model": False}]}))
    assert default_engine(checks_path=checks, bench_path=bench) == "torch"
    assert default_engine(checks_path=tmp_path / "none.json", bench_path=tmp_path / "none.json") in ("torch", "onnx")


def test_published_loop_on_pt(artifact: Path, batch: tuple[np.ndarray, np.ndarray], reference: np.ndarray,
                              tmp_path: Path) -> None:
    from cosmic_utils.inference.published_loop import run_published_loop, write_pt

    pt = write_pt(tmp_path / "part.pt", *batch)
    res = run_published_loop(pt, artifact, batch_size=10, threads=2)
    m = res.measurement
    assert m.samples == 24 and len(m.batch_seconds) == 3 and m.engine == "published-loop"
    assert res.data_load_s >= 0 and m.wall_s > 0 and m.peak_rss_mb > 0
    np.testing.assert_allclose(res.z_pred, reference, atol=1e-5)


def test_compiled_engine_shapes_are_padded_powers_of_two() -> None:
    from cosmic_utils.inference.torch_engines import TorchCompiledEngine

    eng = object.__new__(TorchCompiledEngine)  # the shape policy alone, nothing compiled
    eng.chunk = 128
    assert [eng._shape(n) for n in (1, 31, 32, 33, 64, 65, 100, 128)] == [32, 32, 32, 64, 64, 128, 128, 128]
    eng.chunk = 16  # a chunk below the smallest shape: one shape, never a recompile per tail
    assert {eng._shape(n) for n in (1, 7, 16)} == {32}


def test_compiled_engine_is_not_a_silent_default(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [{"engine": "torch-compile", "batch_size": 256, "samples_per_s": 2000.0},
                                          {"engine": "torch", "batch_size": 256, "samples_per_s": 900.0}]}))
    none = tmp_path / "none.json"
    assert default_engine(checks_path=none, bench_path=bench) == "torch"
    assert default_engine(checks_path=none, bench_path=bench, candidates=("torch", "torch-compile")) == "torch-compile"


def test_published_loop_worker_runs_in_an_untuned_child(artifact: Path, batch: tuple[np.ndarray, np.ndarray],
                                                       reference: np.ndarray, tmp_path: Path) -> None:
    from cosmic_utils.inference.published_loop import PublishedLoopWorker, write_pt
    from cosmic_utils.inference.tuning import keep_freed_memory, malloc_tuned

    keep_freed_memory()  # this process is tuned, as it is once a torch engine exists
    pt = write_pt(tmp_path / "part.pt", *batch)
    with PublishedLoopWorker(artifact, threads=1) as worker:
        assert worker.child_state["malloc_tuned"] is False and worker.child_state["pid"] != os.getpid()
        res = worker.run(pt, batch_size=10)
        assert res.measurement.samples == 24 and len(res.measurement.batch_seconds) == 3
        np.testing.assert_allclose(res.z_pred, reference, atol=1e-5)
        with pytest.raises(RuntimeError, match="missing.pt"):
            worker.run(tmp_path / "missing.pt", batch_size=10)
        assert worker.run(pt, batch_size=24, max_batches=1).measurement.samples == 24  # still serving
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert malloc_tuned()


@pytest.mark.slow
def test_bench_end_to_end(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmic_utils.inference import measure
    from cosmic_utils.inference.bench import BenchConfig, format_table, run_bench

    monkeypatch.setattr(measure, "LOCAL_RUNS_DIR", tmp_path / "runs" / "local")  # keep the repo's runs/ clean

    cfg = BenchConfig(model_dir=artifact, engines=("torch", "onnx"), batch_sizes=(8,), samples=16, repeats=1,
                      threads=2, check_rows=24, json_out=tmp_path / "bench.json", run_id="bench-test")
    doc = run_bench(cfg)
    rows = {r["engine"]: r for r in doc["rows"]}
    assert set(rows) == {"published-loop", "torch", "onnx"}
    for key in ("engine", "batch_size", "samples_per_s", "ratio_vs_published_loop", "gflops", "peak_fraction",
                "nmad_delta_rel"):
        assert key in rows["torch"]
    assert rows["published-loop"]["ratio_vs_published_loop"] == pytest.approx(1.0)
    assert doc["meta"]["trained_model"] is False
    assert json.loads((tmp_path / "engine_checks.json").read_text())["trained_model"] is False
    assert "UNTRAINED" in format_table(doc)
    assert "summary" in doc and doc["summary"]["batch_size"] == 8
    assert (tmp_path / "runs" / "local" / "bench-test" / "records.csv").is_file()
    from cosmic_utils.runtime.cpu import cpu_probe

    for key in ("cpu_model", "isa", "cpu_flags", "isa_caps", "cpu_type"):  # the CPU probe in every row and record
        assert all(r[key] == cpu_probe()[key] for r in doc["rows"])
    import pandas as pd

    recs = pd.read_csv(tmp_path / "runs" / "local" / "bench-test" / "records.csv", keep_default_na=False)
    assert set(recs["cpu_type"]) == {cpu_probe()["cpu_type"]} and set(recs["isa"]) == {cpu_probe()["isa"]}
