# Cosmic AI inference: every task of the project is a target here. `make help` lists them.
# The two commands of a fresh clone: `make demo` (main job, local backend) and `make test`.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
COSMIC := $(BIN)/cosmic
STAMP := $(VENV)/.installed
SWEEP ?= sweeps/batch_size.yaml
export PYTHONUNBUFFERED := 1
# Keep CPU benchmarks honest on small machines: torch and onnxruntime pick their own threads.
export MPLBACKEND := Agg

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	# torch first, pinned to the CPU build (on these machines a wheel on disk; elsewhere the
	# PyTorch CPU index keeps the install small, see README).
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev,lab]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the package with its dev and lab extras

.PHONY: demo
demo: $(STAMP) ## MAIN JOB: data -> model (trained once, cached) -> ONNX -> state machine on the local backend -> summary + figures
	$(COSMIC) demo

.PHONY: qemu
qemu: ## install qemu-user where root and apt-get allow (the tests under an emulated AMD EPYC / Intel Haswell need it; QEMU=0 skips)
	@if command -v qemu-x86_64 >/dev/null; then echo "qemu: $$(qemu-x86_64 --version | head -1)"; \
	elif [ "$(QEMU)" = "0" ]; then echo "qemu: QEMU=0, the tests under QEMU will be skipped"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "qemu: installing qemu-user (apt-get)"; \
	  (timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq qemu-user >/dev/null) \
	    || echo "qemu: qemu-user could not be installed, the tests under QEMU will be skipped"; \
	else echo "qemu: no qemu-x86_64 and no root apt-get (install qemu-user): the tests under QEMU will be skipped"; fi

.PHONY: test
test: $(STAMP) qemu ## run the linter, the architecture contracts, the test suite and every notebook with its default parameters
	$(BIN)/ruff check cosmic_utils lambda tests
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 -q

.PHONY: test-all
test-all: $(STAMP) ## the test suite including the slow tests
	$(BIN)/pytest -n 2 -q -m ""

.PHONY: lint
lint: $(STAMP) ## ruff over the package, handlers and tests; import-linter's architecture contracts
	$(BIN)/ruff check cosmic_utils lambda tests
	$(BIN)/lint-imports

.PHONY: data
data: $(STAMP) ## render a 0.2 GB dataset of 25 MB partitions from the real catalogue (data/generated/)
	$(COSMIC) data prepare --gb 0.2 --partition-mb 25

.PHONY: model
model: $(STAMP) ## train the default model on the bundled galaxies (cached) and export it to ONNX
	$(COSMIC) model train
	$(COSMIC) model export

.PHONY: bench
BENCH_BUDGET_S ?= 420
bench: $(STAMP) ## benchmarks: renderer, partition I/O, engines at 1 and 2 threads vs the published loop (prints ratios, phase times)
	@t0=$$(date +%s) && $(COSMIC) data bench && t1=$$(date +%s) && \
	$(COSMIC) bench --threads 1 2 --batch-sizes 32,64,128,256,512 --batch-sizes-at 1:256 --budget-s $(BENCH_BUDGET_S) \
		--json runs/bench/bench.json && t2=$$(date +%s) && \
	echo "make bench (measured wall clock): data bench $$((t1 - t0)) s, engine bench $$((t2 - t1)) s, total $$((t2 - t0)) s"

.PHONY: sweep
sweep: $(STAMP) ## run a papermill sweep grid: make sweep SWEEP=sweeps/batch_size.yaml
	$(COSMIC) sweep $(SWEEP)

.PHONY: figures
figures: $(STAMP) ## redraw every figure of the report from stored records (no experiment re-run)
	$(COSMIC) figures

.PHONY: readme
readme: $(STAMP) ## rewrite the README's "What it measures" table from the shipped records (data/records/)
	$(COSMIC) readme

.PHONY: report
report: $(STAMP) ## redraw every figure and write docs/report.md (the seed study, claim by claim) from stored records only
	$(COSMIC) figures
	$(COSMIC) report

.PHONY: local-data-size
LOCAL_GB ?= 1 2 4 8
LOCAL_REPEATS ?= 1
LOCAL_ENGINE ?= auto
local-data-size: $(STAMP) ## local streaming study: LOCAL_GB sizes (default 1 2 4 8 GB), peak RSS per size -> data/records/local_data_size.csv (~15 min on 2 cores)
	$(COSMIC) local data-size --gb $(LOCAL_GB) --repeats $(LOCAL_REPEATS) --engine $(LOCAL_ENGINE)

.PHONY: records
records: $(STAMP) ## ship the runs in runs/ that pass the admission rules (docs/records.md) into data/records/ (one line per refusal), then redraw the figures
	$(COSMIC) records ship
	$(COSMIC) figures

.PHONY: reliability
reliability: $(STAMP) ## bad inputs and injected faults, with the outcome of each (nothing lost)
	$(COSMIC) reliability

.PHONY: load
LOAD_PARTITIONS ?= 10000
LOAD_CONCURRENCY ?= 8
load: $(STAMP) ## load run only: LOAD_PARTITIONS (default 10,000, the Map's concurrency ceiling) tiny partitions on the local backend; nothing lost, Summarize RSS, s per 1,000 partitions
	$(COSMIC) reliability --load-only --load-partitions $(LOAD_PARTITIONS) --load-concurrency $(LOAD_CONCURRENCY) --out runs/load

.PHONY: gpu-baseline
gpu-baseline: $(STAMP) ## on a CUDA machine: notebook 02 at report parameters + cosmic bench of the torch-cuda engines -> data/records/gpu_baseline-<time>
	PYTHON=$(BIN)/python scripts/gpu_baseline.sh

.PHONY: notebooks-sync
notebooks-sync: $(STAMP) ## regenerate the .ipynb notebooks (without outputs) from their paired py:percent scripts
	$(BIN)/jupytext --sync notebooks/*.py

.PHONY: lab
lab: $(STAMP) ## start JupyterLab on the notebooks
	$(BIN)/jupyter lab notebooks/

.PHONY: clean
clean: ## remove generated data, runs, build outputs and caches (keeps .venv and models/)
	rm -rf data/generated runs build .pytest_cache .ruff_cache

.PHONY: distclean
distclean: clean ## also remove the virtual environment and cached models
	rm -rf $(VENV) models
