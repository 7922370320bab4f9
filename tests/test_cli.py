"""`python -m manifold_sweeps` as users run it: single runs, multiruns, bad input, divergence."""

import os
import socket

import pytest
from omegaconf import OmegaConf

from manifold_sweeps.rundir.lock import hold_run_dirs
from manifold_sweeps.rundir.status import read_status
from manifold_sweeps.rundir.trajectory import load_trajectory

from .conftest import run_cli

pytestmark = pytest.mark.slow


def test_a_single_run_from_the_command_line(tmp_path):
    run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}")
    assert read_status(tmp_path)["state"] == "completed"
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert (tmp_path / "manifold_sweeps.log").exists()  # named after the project, not __main__
    assert "completed 40 steps" in (tmp_path / "manifold_sweeps.log").read_text()


def test_a_two_job_multirun_gives_two_completed_runs_named_after_their_overrides(tmp_path):
    run_cli("-m", "experiment=smoke", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    runs = sorted(p.name for p in tmp_path.iterdir() if (p / "status.json").exists())
    assert runs == ["experiment=smoke,seed=0", "experiment=smoke,seed=1"]
    for name in runs:
        assert read_status(tmp_path / name)["state"] == "completed"
        assert len(load_trajectory(tmp_path / name)) == 5
    assert (tmp_path / "multirun.yaml").exists()


def test_bad_input_exits_nonzero_before_training_naming_the_key(tmp_path):
    proc = run_cli("experiment=smoke", "curriculum=single", "task.m=9", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "task.m=9" in proc.stderr and "allowed: 1..5" in proc.stderr
    assert not (tmp_path / "trajectory.npy").exists()
    proc = run_cli("experiment=smoke", "train.device=tpu", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0 and "train.device" in proc.stderr and "cuda" in proc.stderr


@pytest.mark.parametrize("pack_size", [None, 2])
def test_an_override_that_the_runs_settings_leave_unread_is_warned_of_in_its_log(tmp_path, pack_size):
    """experiment=smoke trains curriculum=mixed: task.m=1 would silently train m in {1, 2}."""
    warning = "task.m=1 has no effect: curriculum=mixed does not read it (it trains curriculum.ms)"
    if pack_size is None:
        proc = run_cli("experiment=smoke", "task.m=1", f"hydra.run.dir={tmp_path}")
        assert warning in proc.stdout + proc.stderr
        run_dirs = [tmp_path]
    else:
        run_cli("-m", "experiment=smoke", "task.m=1", "seed=0,1", f"hydra.launcher.pack_size={pack_size}",
                f"hydra.sweep.dir={tmp_path}")
        run_dirs = sorted(p for p in tmp_path.iterdir() if (p / "status.json").exists())
        assert len(run_dirs) == 2
    for run_dir in run_dirs:
        assert warning in (run_dir / "manifold_sweeps.log").read_text()
        assert read_status(run_dir)["state"] == "completed"


def test_a_refused_single_run_leaves_no_directory_behind(tmp_path):
    # Checked before Hydra creates the run directory, so the aggregation finds no "failed" run for a typo.
    for override, message in (("seed=-1", "error: seed=-1 is not allowed"),
                              # what Hydra's own error for a misspelled key suggests: a key nothing would read
                              ("+train.stpes=20", "error: train.stpes is not a config key")):
        proc = run_cli("experiment=smoke", override, f"hydra.run.dir={tmp_path / 'run'}", check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "run").exists()


def test_a_job_refused_in_another_runs_directory_leaves_that_run_as_it_was(tmp_path):
    run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}")
    hydra_dir = tmp_path / ".hydra"
    before = {name: (hydra_dir / name).read_text() for name in ("hydra.yaml", "overrides.yaml")}
    config_before = OmegaConf.load(hydra_dir / "config.yaml")
    proc = run_cli("experiment=smoke", "optimizer=sgd", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "already holds a run with a different config" in proc.stderr and "optimizer.name ('adamw' -> 'sgd')" in proc.stderr
    assert read_status(tmp_path)["state"] == "completed"
    assert {name: (hydra_dir / name).read_text() for name in before} == before
    assert OmegaConf.load(hydra_dir / "config.yaml") == config_before
    assert OmegaConf.load(hydra_dir / "hydra.yaml").hydra.runtime.choices.optimizer == "adamw"


def hydra_files(run_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run_dir / ".hydra").glob("*.yaml")}


def test_a_refused_single_run_puts_back_the_hydra_files_of_a_run_without_a_checkpoint(tmp_path):
    run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}")
    (tmp_path / "checkpoint.pt").unlink()  # as a run that failed before its first checkpoint has none
    before = hydra_files(tmp_path)
    proc = run_cli("experiment=smoke", "optimizer=sgd", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "already holds a run with a different config" in proc.stderr
    assert hydra_files(tmp_path) == before


def test_a_single_run_into_a_directory_another_process_trains_leaves_its_hydra_files_alone(tmp_path):
    run_cli("experiment=smoke", f"hydra.run.dir={tmp_path}", "train.steps=20")
    before = hydra_files(tmp_path)
    with hold_run_dirs([tmp_path]):  # this test's process is "the other process"
        # The same run (seed 0 is the default), named otherwise: Hydra writes other .hydra files for it.
        proc = run_cli("experiment=smoke", "seed=0", f"hydra.run.dir={tmp_path}", "train.steps=20", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"error: {tmp_path} is being trained by another process (host {socket.gethostname()}, pid {os.getpid()})" in proc.stderr
    assert hydra_files(tmp_path) == before


@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_sweep_relaunched_with_another_config_is_refused_before_any_job_is_set_up(tmp_path, pack_size):
    # An override left out of the run directories' names: the relaunch's jobs land in the first runs' directories.
    common = ("-m", "experiment=smoke", "seed=0,1", f"hydra.launcher.pack_size={pack_size}",
              "hydra.job.config.override_dirname.exclude_keys=[train.steps]", f"hydra.sweep.dir={tmp_path}")
    run_cli(*common)
    files = {p: p.read_bytes() for p in tmp_path.glob("*/.hydra/*.yaml")}
    assert len(files) == 6
    proc = run_cli(*common, "train.steps=60", check=False)
    assert proc.returncode != 0
    assert "2 of 2 jobs cannot run; nothing was started" in proc.stderr
    assert "it differs in train.steps (40 -> 60)" in proc.stderr
    assert {p: p.read_bytes() for p in tmp_path.glob("*/.hydra/*.yaml")} == files
    assert {read_status(p.parent)["state"] for p in tmp_path.glob("*/status.json")} == {"completed"}


def test_a_diverging_job_does_not_stop_the_others(tmp_path):
    run_cli("-m", "experiment=smoke", "optimizer=sgd", "optimizer.lr=1e12,0.01", "train.steps=100",
            f"hydra.sweep.dir={tmp_path}")
    states = {p.name: read_status(p)["state"] for p in tmp_path.iterdir() if (p / "status.json").exists()}
    assert sorted(states.values()) == ["completed", "diverged"], states


def test_sweep_directories_are_unique_below_the_second():
    from hydra import compose, initialize_config_dir

    from manifold_sweeps.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True)
    raw = cfg.hydra.sweep._get_node("dir")._value()
    assert "%f" in raw and "%S" in raw
