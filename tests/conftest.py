"""Shared fixtures: the real config tree composed through Hydra's compose API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from manifold_sweeps.config.schema import register_configs
from manifold_sweeps.paths import CONF_DIR, REPO_ROOT

register_configs()


def compose_config(*overrides: str) -> DictConfig:
    """The composed job config (without the `hydra` node), as a job would receive it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def one_torch_thread():
    """Smoke runs are too small to gain from threads, and on a busy machine OpenMP threads spin for
    cores (a packed smoke test: 1.7 s with one thread, 49 s with two at load 5 on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def smoke_cfg() -> DictConfig:
    return compose_config("experiment=smoke")


def shrink(cfg: DictConfig, **dotted) -> DictConfig:
    """Set dotted keys (train__steps=10 -> train.steps=10) on a composed config."""
    with open_dict(cfg):
        for key, value in dotted.items():
            node = cfg
            *parents, leaf = key.split("__")
            for part in parents:
                node = node[part]
            node[leaf] = value
    return cfg


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m manifold_sweeps ARGS` in a subprocess, as a user would run it."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "manifold_sweeps", *args],
        cwd=cwd or REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc
