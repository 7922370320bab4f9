"""The whole sweep's progress, logged by the launching process while the jobs of a local or SLURM sweep run."""

import time

import pytest

from manifold_sweeps.launch.sweep_progress import SweepProgress, describe, sweep_state
from manifold_sweeps.rundir.status import StatusWriter

from .test_launchers import launcher_for, refusal, compose_hydra


def write_status(run_dir, **fields):
    run_dir.mkdir(parents=True, exist_ok=True)
    StatusWriter(run_dir).update(**fields)


def test_steps_and_states_are_read_from_the_runs_status_files(tmp_path):
    runs = [tmp_path / name for name in "abcde"]
    write_status(runs[0], state="completed", last_step=100, total_steps=100)
    write_status(runs[1], state="diverged", last_step=30, total_steps=100)  # trains no further: all done
    write_status(runs[2], state="running", last_step=40, total_steps=100, pid=None, host="elsewhere")
    write_status(runs[3], state="interrupted", last_step=60, total_steps=100)  # waits for its requeue
    done, states = sweep_state(runs, [100] * 5)  # runs[4] has not started
    assert done == 100 + 100 + 40 + 60
    assert describe(states) == "5 run(s): 1 completed, 1 diverged, 1 running, 1 interrupted, 1 waiting"


def test_a_progress_line_comes_every_interval_and_once_more_at_the_end(tmp_path, caplog):
    runs = [tmp_path / "a", tmp_path / "b"]
    write_status(runs[0], state="completed", last_step=50, total_steps=50)  # done by an earlier launch
    with caplog.at_level("INFO"), SweepProgress(runs, [50, 50], every_s=0.05):
        write_status(runs[1], state="running", last_step=25, total_steps=50, pid=None, host="elsewhere")
        time.sleep(0.3)
        write_status(runs[1], state="completed", last_step=50, total_steps=50)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep step")]
    assert len(lines) >= 3
    assert "sweep step 75/100 (75.0%)" in " ".join(lines) and "1 completed, 1 running" in " ".join(lines)
    assert lines[-1].startswith("sweep step 100/100 (100.0%)") and lines[-1].endswith("2 run(s): 2 completed")


def test_the_line_at_the_end_is_left_out_when_the_last_tick_said_the_same(tmp_path, caplog):
    runs = [tmp_path / "a"]
    write_status(runs[0], state="running", last_step=10, total_steps=50, pid=None, host="elsewhere")

    def lines():
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep step")]

    with caplog.at_level("INFO"):
        with SweepProgress(runs, [50], every_s=3600) as progress:
            progress.report()  # a tick
        assert len(lines()) == 1
        with SweepProgress(runs, [50], every_s=3600) as progress:
            progress.report()
            write_status(runs[0], state="completed", last_step=50, total_steps=50)
        assert len(lines()) == 3 and lines()[-1].startswith("sweep step 50/50")


@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_submitit_launch_logs_the_sweeps_progress_while_it_waits(tmp_path, monkeypatch, caplog, pack_size):
    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", f"hydra.launcher.pack_size={pack_size}",
                            "hydra.launcher.progress_every_s=0.05", f"hydra.sweep.dir={tmp_path}")

    def submit(self, entries, first):  # the jobs, as they would run elsewhere
        for seed in range(3):
            write_status(tmp_path / f"experiment=smoke,seed={seed}", state="running", last_step=20, total_steps=40, pid=None,
                         host="elsewhere")
        time.sleep(0.3)
        for seed in range(3):
            write_status(tmp_path / f"experiment=smoke,seed={seed}", state="completed", last_step=40, total_steps=40)
        return [[]] * len(entries) if self.packs else []

    monkeypatch.setattr(type(launcher), "submit", submit)
    with caplog.at_level("INFO"):
        # as Hydra hands them over: every job with the sweep's shared overrides
        launcher.launch([["experiment=smoke", f"seed={seed}"] for seed in range(3)], 0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sweep step")]
    assert any(line.startswith("sweep step 60/120 (50.0%)") and "3 running" in line for line in lines)
    assert lines[-1].startswith("sweep step 120/120") and lines[-1].endswith("3 run(s): 3 completed")


@pytest.mark.parametrize("preset", ["local", "slurm"])
def test_a_progress_interval_of_0_is_refused_before_any_job_starts(preset, capsys):
    err = refusal(compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.progress_every_s=0").hydra.launcher, capsys)
    assert "hydra.launcher.progress_every_s=0.0 is not allowed" in err and "a number of seconds > 0" in err


@pytest.mark.parametrize("preset,says", [("local", "this sweep's processes stop too"),
                                         ("slurm", "the jobs already submitted go on running on the cluster")])
def test_a_ctrl_c_while_the_launcher_waits_says_what_becomes_of_the_jobs_and_exits_130(tmp_path, monkeypatch, caplog,
                                                                                       preset, says):
    launcher = launcher_for(f"hydra/launcher={preset}", "experiment=smoke", f"hydra.sweep.dir={tmp_path}")

    def interrupted(self, entries, first):
        raise KeyboardInterrupt  # raised inside submitit's wait loop

    monkeypatch.setattr(type(launcher), "submit", interrupted)
    with caplog.at_level("INFO"), pytest.raises(SystemExit) as stopped:
        launcher.launch([["experiment=smoke", "seed=0"]], 0)
    assert stopped.value.code == 130
    assert f"interrupted (Ctrl-C): {says}" in caplog.text
    assert "sweep step 0/40" in caplog.text  # the sweep's state at the interruption, the last progress line
