# manifold-sweeps: `make help` lists the targets.
PYTHON ?= python3
# A pinned torch installs the local CPU wheel here in seconds and the regular CUDA build on a GPU
# cluster; an already installed torch is kept.
TORCH ?= torch==2.13.0
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-fast run sweep demo bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## Install the package (editable) with its test tools; torch first, pinned
	$(PYTHON) -c 'import torch' 2>/dev/null || $(PYTHON) -m pip install -q '$(TORCH)'
	$(PYTHON) -m pip install -q -e '.[dev]'

test: ## Run the whole test suite, slow end-to-end tests included
	$(PYTHON) -m pytest

test-fast: ## Run the tests without the slow end-to-end ones
	$(PYTHON) -m pytest -m 'not slow'

run: ## Train one run with the default config (extra overrides: ARGS='seed=3 task.m=2')
	$(PYTHON) -m manifold_sweeps $(ARGS)

sweep: ## Sweep 3 seeds x m = 1..3 with the demo preset (extra overrides: ARGS=...)
	$(PYTHON) -m manifold_sweeps -m experiment=demo curriculum=single 'seed=range(3)' 'task.m=range(1,4)' $(ARGS)

demo: ## The main job: the demo sweep
	$(PYTHON) -m manifold_sweeps -m experiment=demo curriculum=single 'seed=range(3)' 'task.m=range(1,4)' $(ARGS)

bench: ## Measure speed on this machine -> outputs/bench/bench.{json,md} (QUICK=1: tiny versions, 1-2 minutes)
	$(PYTHON) -m manifold_sweeps.bench $(if $(QUICK),--quick)

clean: ## Delete outputs (runs, sweeps, tables, reports) and caches; keeps outputs/README.md
	find outputs -mindepth 1 ! -name README.md -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache
