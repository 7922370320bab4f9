# manifold-sweeps: `make help` lists the targets.
PYTHON ?= python3
# A pinned torch installs the local CPU wheel here in seconds and the regular CUDA build on a GPU
# cluster; an already installed torch is kept.
TORCH ?= torch==2.13.0
ARGS ?=
# The demo sweep: 9 small runs, one process per core at a time (`hydra/launcher=local`, which shares the
# cores among them) rather than one after another in this process: 1.23x faster on 2 cores (README).
DEMO_SWEEP = experiment=demo 'seed=range(3)' curriculum=single,mixed,sequential hydra/launcher=local \
	hydra.launcher.progress_every_s=15
# The newest sweep under outputs/multirun/<date>/<time>/ (names sort by time; a sweep is a folder
# holding Hydra's multirun.yaml, not the tables/ or report/ of a folder of sweeps), for
# `make aggregate` and `make report`; SWEEP=path for another.
SWEEP ?= $(patsubst %/multirun.yaml,%,$(lastword $(sort $(wildcard outputs/multirun/*/*/multirun.yaml))))

.DEFAULT_GOAL := help
.PHONY: help install test test-fast run sweep demo aggregate report bench clean slurm-up slurm-down

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

sweep: ## Sweep the demo preset over 3 seeds x the three curricula, a process per core (extra overrides: ARGS=...)
	$(PYTHON) -m manifold_sweeps -m $(DEMO_SWEEP) $(ARGS)

# The demo's sweep gets a directory of its own name, so its report finds it whatever else runs.
# Commutators are measured at their default interval (commutator.every) unless ARGS says otherwise.
demo: ## The main job: a small sweep (demo preset, 3 seeds x 3 curricula), then its report; prints index.html's path
	@dir=outputs/multirun/$$(date +%Y-%m-%d/%H-%M-%S)-demo; \
	$(PYTHON) -m manifold_sweeps -m $(DEMO_SWEEP) hydra.sweep.dir=$$dir $(ARGS) && \
	$(PYTHON) -m manifold_sweeps.report $$dir

report: ## Report on the newest sweep under outputs/ (or SWEEP=path): SWEEP/report/index.html and report.md
	@test -n "$(SWEEP)" || { echo "no sweep under outputs/multirun/: run one (make sweep) or give SWEEP=path" >&2; exit 2; }
	$(PYTHON) -m manifold_sweeps.report $(SWEEP)

aggregate: ## Reduce the newest sweep to tables in its tables/ (SWEEP=path for another; ARGS='--reference displacement')
	@test -n "$(SWEEP)" || { echo "no sweep under outputs/multirun/: run one (make sweep) or give SWEEP=path" >&2; exit 2; }
	$(PYTHON) -m manifold_sweeps.aggregate '$(SWEEP)' $(ARGS)

slurm-up: ## Start a one-node SLURM cluster on localhost (root; installs SLURM if missing; then export SLURM_CONF)
	launchers/local_cluster/up.sh

slurm-down: ## Stop the local SLURM cluster (cancels its jobs; stops its daemons by their pid files)
	launchers/local_cluster/down.sh

bench: ## Measure speed on this machine -> outputs/bench/bench.{json,md} (QUICK=1: tiny versions, 1-2 minutes)
	$(PYTHON) -m manifold_sweeps.bench $(if $(QUICK),--quick)

clean: ## Delete outputs (runs, sweeps, tables, reports) and caches; keeps outputs/README.md
	find outputs -mindepth 1 ! -name README.md -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache
