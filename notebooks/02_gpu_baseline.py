# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 GPU baseline: the same model on CUDA (fp32, bf16 and fp16 autocast, large batches)
#
# The GPU counterpart of notebook 01: rendered galaxies from `.cpart` partitions go through the
# eager `ViTAstro` on a CUDA device, with batches copied from pinned host memory on a side stream
# (the next batch is uploaded while the current one computes). One record per (precision, batch
# size) is written to `runs/local/<run-id>/records.csv` with `kind = local_gpu` and the device
# name. The published loop (DataLoader, `.to(device)`, fp32, `no_grad`) is the in-run baseline.
#
# **Without a CUDA device this notebook says so and every later cell does nothing** (papermill
# still succeeds), so no GPU row exists in the records of a CPU-only machine.

# %% tags=["parameters"]
batch_sizes: list = [256, 1024]  # help: batch sizes (report: 256, 1024, 4096, 16384)
data_gb: float = 0.002  # help: dataset size in GB (1e9 bytes; report: 1.0)
precisions: list = ["fp32", "bf16", "fp16"]  # help: fp32 and/or autocast bf16 / fp16
include_published_loop: bool = True  # help: also time the published DataLoader loop on the GPU
repeats: int = 2  # help: passes per point; the best counts
model_dir: str = ""  # help: model artifact folder (empty: models/default, else an UNTRAINED stand-in, labelled)
output_dir: str = ""  # help: folder for records.csv (empty: runs/local/<run-id>)
partition_mb: float = 25.0  # help: partition size of the dataset (2**20-byte MB)
seed: int = 0  # help: seed of the rendered dataset

# %%
import logging

import torch

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("cosmic_utils").setLevel(logging.INFO)
HAS_GPU = torch.cuda.is_available()
if HAS_GPU:
    device = torch.device("cuda")
    print(f"CUDA device: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})")
else:
    print("No CUDA device on this machine (torch.cuda.is_available() is False): the GPU baseline is "
          "skipped and no local_gpu record is written. Run this notebook on a GPU machine.")

# %%
if HAS_GPU:
    import time
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from cosmic_utils import config
    from cosmic_utils.bench import resolve_model
    from cosmic_utils.dataset import default_dataset_dir, is_dataset, load_dataset, prepare_dataset
    from cosmic_utils.export import Preprocess
    from cosmic_utils.inference.engines import artifact_meta
    from cosmic_utils.inference.measure import RunMeasurement, machine_info, new_run_id, write_records
    from cosmic_utils.inference.torch_engines import load_torch_model
    from cosmic_utils.preprocess import Preprocessing

    run_id = new_run_id("gpu")
    out = Path(output_dir) if output_dir else config.RUNS_DIR / "local" / run_id
    model_path, trained = resolve_model(model_dir or None, with_onnx=False)
    pre = Preprocess(Preprocessing.from_dict(artifact_meta(model_path).get("preprocessing"))).to(device).eval()
    net = load_torch_model(model_path).to(device).eval()
    folder = default_dataset_dir(data_gb, partition_mb, seed)
    if not is_dataset(folder):
        prepare_dataset(folder, gb=data_gb, partition_mb=partition_mb, seed=seed, progress=False)
    data = load_dataset(folder, verify=False)
    info = machine_info()
    gpu_name = torch.cuda.get_device_name(0)
    print(f"model {model_path} ({'trained' if trained else 'UNTRAINED stand-in'}), {data.samples} samples")


# %%
def gpu_pass(batch_size: int, precision: str) -> "RunMeasurement":
    """One pass over the data: pinned host batches, async upload on a side stream, autocast."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    image = torch.from_numpy(data.image).pin_memory()
    magnitude = torch.from_numpy(data.magnitude).pin_memory()
    copy_stream = torch.cuda.Stream()
    starts = list(range(0, data.samples, batch_size))
    lat = []

    def upload(s: int) -> tuple:
        with torch.cuda.stream(copy_stream):
            return (image[s:s + batch_size].to(device, non_blocking=True),
                    magnitude[s:s + batch_size].to(device, non_blocking=True))

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    nxt = upload(starts[0])
    first = float("nan")
    outs = []
    with torch.inference_mode():
        for i, s in enumerate(starts):
            torch.cuda.current_stream().wait_stream(copy_stream)
            im, mg = nxt
            if i + 1 < len(starts):
                nxt = upload(starts[i + 1])
            tb = time.perf_counter()
            x, m = pre(im, mg)
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                z = net([x, m]).float().reshape(-1)
            outs.append(z.to("cpu", non_blocking=True))
            torch.cuda.synchronize()
            lat.append(time.perf_counter() - tb)
            if i == 0:
                first = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    return RunMeasurement(engine=f"torch-cuda-{precision}", precision=precision, batch_size=batch_size, threads=1,
                          samples=data.samples, wall_s=wall, first_batch_s=first, batch_seconds=lat,
                          peak_rss_mb=torch.cuda.max_memory_allocated() / 2**20, kind="local_gpu", device=gpu_name,
                          extra={"peak_rss_is_gpu_memory": True, "trained_model": trained})


def published_gpu_pass(batch_size: int) -> "RunMeasurement":
    """The published loop on the GPU: TensorDataset + DataLoader + .to(device) + fp32 under no_grad."""
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.from_numpy(data.image), torch.from_numpy(data.magnitude)),
                        batch_size=batch_size, shuffle=False)
    lat = []
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        for im, mg in loader:
            tb = time.perf_counter()
            x, m = pre(im.to(device), mg.to(device))
            net([x, m]).cpu()
            lat.append(time.perf_counter() - tb)
    wall = time.perf_counter() - t0
    return RunMeasurement(engine="published-loop-cuda", precision="fp32", batch_size=batch_size, threads=1,
                          samples=data.samples, wall_s=wall, first_batch_s=lat[0] if lat else float("nan"),
                          batch_seconds=lat, peak_rss_mb=torch.cuda.max_memory_allocated() / 2**20,
                          kind="local_gpu", device=gpu_name, extra={"peak_rss_is_gpu_memory": True})


if HAS_GPU:
    rows = []
    for bs in batch_sizes:
        cands = [("published", None)] if include_published_loop else []
        cands += [("engine", p) for p in precisions]
        for kind, prec in cands:
            best = None
            for _ in range(max(1, repeats)):
                torch.cuda.reset_peak_memory_stats()
                m = published_gpu_pass(bs) if kind == "published" else gpu_pass(bs, prec)
                best = m if best is None or m.wall_s < best.wall_s else best
            rows.append(best.record(run_id, info))
    gpu_df = pd.DataFrame(rows)
    path = write_records(rows, run_dir=out)
    print(f"{len(rows)} records -> {path}")
    display_cols = ["engine", "batch_size", "samples_per_s", "gb_per_s", "batch_p50_ms", "peak_rss_mb", "device"]
    print(gpu_df[display_cols].round(3).to_string(index=False))
