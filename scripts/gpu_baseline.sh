#!/usr/bin/env bash
# GPU baseline in one shot, for a machine with a CUDA device (docs/inference.md "GPU baseline"):
#   1. notebook 02 at the report parameters (papermill) -> $OUT/notebook/records.csv (kind local_gpu)
#   2. `cosmic bench` restricted to the CUDA engines     -> $OUT/bench/{bench.json,engine_checks.json}
# Records land in $OUT (default <config.RECORDS_DIR>/gpu_baseline-<UTC time>, i.e. data/records/...,
# the committed records folder); the bench's record CSV is under $OUT/bench/runs/local/<run-id>/.
# Refuses (exit 2) without a CUDA device, so a CPU machine never writes an empty "GPU" result.
# Environment: PYTHON (default .venv/bin/python, else python3), OUT, DATA_GB (default 1.0),
# BATCH_SIZES (notebook, default "256,1024,4096,16384"), BENCH_BATCH_SIZES (default "256,1024,4096": the
# bench also runs the eager CPU reference and the published CPU loop at each size), REPEATS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-$("$PYTHON" -c 'from cosmic_utils import config; print(config.RECORDS_DIR)')/gpu_baseline-$(date -u +%Y%m%dT%H%M%SZ)}
DATA_GB=${DATA_GB:-1.0}
BATCH_SIZES=${BATCH_SIZES:-256,1024,4096,16384}
BENCH_BATCH_SIZES=${BENCH_BATCH_SIZES:-256,1024,4096}
REPEATS=${REPEATS:-3}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_baseline.sh: no CUDA device is present (torch.cuda.is_available() is False); nothing was run" >&2
  exit 2
fi
mkdir -p "$OUT/notebook" "$OUT/bench"
"$PYTHON" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)' \
  | tee "$OUT/device.txt"

"$PYTHON" -m papermill notebooks/02_gpu_baseline.ipynb "$OUT/notebook/02_gpu_baseline.executed.ipynb" \
  --cwd notebooks -p data_gb "$DATA_GB" -y "batch_sizes: [$BATCH_SIZES]" -p repeats "$REPEATS" \
  -p output_dir "$(cd "$OUT/notebook" && pwd)"

COSMIC_RUNS_DIR="$(cd "$OUT/bench" && pwd)/runs" "$PYTHON" -m cosmic_utils.cli bench \
  --engines torch-cuda,torch-cuda-bf16,torch-cuda-fp16 --batch-sizes "$BENCH_BATCH_SIZES" --repeats "$REPEATS" \
  --json "$OUT/bench/bench.json"

echo "GPU baseline records in $OUT (commit this folder)"
