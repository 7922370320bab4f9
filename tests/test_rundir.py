"""Run-directory files: atomic writes, the trajectory format, status states."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from manifold_sweeps.rundir.atomic import atomic_path, write_text
from manifold_sweeps.rundir.metrics import METRICS_FILE, MetricsLog, load_metrics
from manifold_sweeps.rundir.status import STALE_AFTER_S, StatusWriter, effective_state, read_status
from manifold_sweeps.rundir.trajectory import Trajectory, TrajectoryWriter


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_atomically_written_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_text(tmp_path / "f.txt", "x")
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_trajectory_rows_become_visible_only_once_written(tmp_path):
    w = TrajectoryWriter(tmp_path, [0, 5, 10], n_layers=1, d_model=3)
    assert len(Trajectory(tmp_path)) == 0
    w.append(0, np.ones((1, 4, 3, 3), np.float32))
    t = Trajectory(tmp_path)
    assert t.steps.tolist() == [0] and t.matrix(0, "W_V").shape == (1, 3, 3)
    with pytest.raises(ValueError, match="not planned"):
        w.append(10, np.ones((1, 4, 3, 3), np.float32))


def test_a_truncated_trajectory_is_unreadable(tmp_path):
    w = TrajectoryWriter(tmp_path, [0, 5], n_layers=1, d_model=8)
    w.append(0, np.ones((1, 4, 8, 8), np.float32))
    path = tmp_path / "trajectory.npy"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError):
        Trajectory(tmp_path)


def test_states_of_runs_that_stopped_without_saying_so(tmp_path):
    assert effective_state(read_status(tmp_path)) == "unreadable"
    StatusWriter(tmp_path).update(state="running", host=socket.gethostname(), pid=os.getpid())
    assert effective_state(read_status(tmp_path)) == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    StatusWriter(tmp_path).update(state="running", host=socket.gethostname(), pid=dead.pid)
    assert effective_state(read_status(tmp_path)) == "interrupted"
    status = {"state": "running", "host": "elsewhere", "pid": 1, "updated_unix": 1000.0}
    assert effective_state(status, now=1000.0 + STALE_AFTER_S / 2) == "running"
    assert effective_state(status, now=1000.0 + STALE_AFTER_S * 2) == "interrupted"
    (tmp_path / "status.json").write_text("{not json")
    assert effective_state(read_status(tmp_path)) == "unreadable"


def test_metrics_are_rewritten_only_with_new_rows_and_a_resume_drops_the_later_ones(tmp_path):
    log = MetricsLog(tmp_path)
    for step in (0, 10, 20):
        log.add(step, "eval_loss", 1.0 / (step + 1), m=1)
    log.flush()
    inode = os.stat(tmp_path / METRICS_FILE).st_ino
    log.flush()  # nothing new: the file stays as it is
    assert os.stat(tmp_path / METRICS_FILE).st_ino == inode

    log.add(30, "eval_loss", 0.5, m=1)
    log.flush_if_older(3600)  # written less than an hour ago: not yet
    assert load_metrics(tmp_path).step.tolist() == [0, 10, 20]
    log.flush_if_older(0)
    assert load_metrics(tmp_path).step.tolist() == [0, 10, 20, 30]

    resumed = MetricsLog(tmp_path, keep_before_step=20)  # from a checkpoint at step 20
    resumed.flush()  # no rows added, but the file still holds steps 20 and 30
    assert load_metrics(tmp_path).step.tolist() == [0, 10]
