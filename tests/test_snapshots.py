"""The snapshot writer thread: off the training loop, in order, errors raised, checkpoints and
commutator measurements wait for it."""

import threading
import time
from functools import partial

import numpy as np
import pytest
import torch

from manifold_sweeps.rundir.checkpoint import load_checkpoint
from manifold_sweeps.rundir.commutators import COMMUTATORS_FILE
from manifold_sweeps.rundir.status import read_status
from manifold_sweeps.rundir.trajectory import TrajectoryWriter, load_trajectory
from manifold_sweeps.training.loop import train
from manifold_sweeps.training.background_writer import BackgroundWriter
from manifold_sweeps.training.snapshots import ResidentSnapshots, write_snapshot

from .conftest import compose_config
from .test_training import stop_after

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class GatedTrajectory:
    """A trajectory whose writes wait for `gate`, recording what it was given."""

    def __init__(self):
        self.gate, self.rows, self.started = threading.Event(), [], threading.Event()

    def append(self, step, matrices):
        self.started.set()
        assert self.gate.wait(timeout=30), "the gate was never opened"
        self.rows.append((step, matrices.copy()))


def snapshot(value: float, runs: int = 2) -> torch.Tensor:
    return torch.full((runs, 1, 4, 2, 2), value)


def test_submit_returns_while_the_row_is_written_and_wait_returns_once_it_is():
    writer, target = BackgroundWriter(), GatedTrajectory()
    try:
        writer.submit(partial(write_snapshot, 0, snapshot(1.0), [(1, target)]))  # returns with the write blocked behind the gate
        assert target.started.wait(timeout=30) and target.rows == []
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (writer.wait(), done.set()))
        waiter.start()
        assert not done.wait(timeout=0.2)  # still writing
        target.gate.set()
        waiter.join(timeout=30)
        assert done.is_set() and [s for s, _ in target.rows] == [0]
        np.testing.assert_array_equal(target.rows[0][1], np.full((1, 4, 2, 2), 1.0))
    finally:
        target.gate.set()
        writer.close()


def test_one_snapshot_waits_behind_the_one_being_written_and_a_third_blocks_the_loop():
    writer, target = BackgroundWriter(), GatedTrajectory()
    try:
        writer.submit(partial(write_snapshot, 0, snapshot(0.0), [(0, target)]))
        assert target.started.wait(timeout=30)
        writer.submit(partial(write_snapshot, 1, snapshot(1.0), [(0, target)]))  # queued
        third = threading.Thread(target=writer.submit, args=(partial(write_snapshot, 2, snapshot(2.0), [(0, target)]),))
        third.start()
        third.join(timeout=0.2)
        assert third.is_alive()  # bounded memory: the loop waits for the disk
        target.gate.set()
        third.join(timeout=30)
        writer.wait()
        assert [s for s, _ in target.rows] == [0, 1, 2]
        assert [float(m.flat[0]) for _, m in target.rows] == [0.0, 1.0, 2.0]
    finally:
        target.gate.set()
        writer.close()


def test_a_failed_write_is_raised_by_the_next_wait_and_submit_and_later_rows_are_not_written(tmp_path):
    trajectory = TrajectoryWriter(tmp_path, [0, 10, 20], n_layers=1, d_model=2)
    writer = BackgroundWriter()
    try:
        writer.submit(partial(write_snapshot, 10, snapshot(1.0), [(0, trajectory)]))  # step 0 was planned first
        with pytest.raises(RuntimeError, match="writing to a run directory failed: snapshot at step 10 was not planned"):
            writer.wait()
        with pytest.raises(RuntimeError, match="writing to a run directory failed"):
            writer.submit(partial(write_snapshot, 0, snapshot(2.0), [(0, trajectory)]))
    finally:
        writer.close()
    assert trajectory.count == 0 and len(load_trajectory(tmp_path)) == 0


def test_a_run_whose_snapshot_cannot_be_written_fails_with_the_reason(tmp_path, monkeypatch):
    def full_disk(self, step, matrices):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TrajectoryWriter, "append", full_disk)
    with pytest.raises(RuntimeError, match="writing to a run directory failed"):
        train(compose_config("experiment=smoke"), tmp_path)
    status = read_status(tmp_path)
    assert status["state"] == "failed" and "No space left on device" in status["error"]


def test_checkpoints_and_commutators_see_every_snapshot_taken_before_them_however_slow_the_disk(tmp_path, monkeypatch):
    cfg = compose_config("experiment=smoke", "train.snapshot_every=5", "train.checkpoint_every=10",
                         "commutator.every=10", "commutator.samples=2")
    train(cfg, tmp_path / "fast")
    real = TrajectoryWriter.append

    def slow(self, step, matrices):
        time.sleep(0.05)  # many steps of this tiny model
        real(self, step, matrices)

    monkeypatch.setattr(TrajectoryWriter, "append", slow)
    assert train(cfg, tmp_path / "slow", should_stop=stop_after(28)) == "interrupted"
    assert load_checkpoint(tmp_path / "slow")["trajectory_count"] == 6  # steps 0, 5, ..., 25: the one at 25 written while steps 25-26 trained
    assert train(cfg, tmp_path / "slow") == "completed"
    for name in ("trajectory.npy", "trajectory_steps.npy", COMMUTATORS_FILE):
        assert (tmp_path / "fast" / name).read_bytes() == (tmp_path / "slow" / name).read_bytes(), name
    assert load_checkpoint(tmp_path / "slow")["trajectory_count"] == 9  # steps 0, 5, ..., 40
    assert load_trajectory(tmp_path / "slow").steps.tolist() == list(range(0, 41, 5))


@pytest.mark.parametrize("n_polls", [None, 28])  # whole, and interrupted at step 27 then resumed
def test_commutators_from_snapshots_kept_on_the_device_match_those_read_from_the_files(tmp_path, monkeypatch, n_polls):
    """On a GPU with room the snapshots stay resident for the commutator basis (never on a CPU, whose
    page cache holds the files); forced here on the CPU, every file is byte for byte the same."""
    cfg = compose_config("experiment=smoke", "train.snapshot_every=5", "train.checkpoint_every=10",
                         "commutator.every=10", "commutator.samples=2", "commutator.save_deltas=all")
    assert not ResidentSnapshots.fits(torch.device("cpu"), 1)
    train(cfg, tmp_path / "files")
    stored = []
    real_row = ResidentSnapshots.row

    def row(self, i):
        stored.append(i)
        return real_row(self, i)

    monkeypatch.setattr(ResidentSnapshots, "fits", staticmethod(lambda device, nbytes: True))
    monkeypatch.setattr(ResidentSnapshots, "row", row)
    if n_polls:
        assert train(cfg, tmp_path / "resident", should_stop=stop_after(n_polls)) == "interrupted"
        stored.clear()
    assert train(cfg, tmp_path / "resident") == "completed"
    # a resumed run's earlier snapshots come from its files; later ones are the resident rows themselves
    assert stored == list(range(6 if n_polls else 0, 9))
    for name in ("trajectory.npy", "trajectory_steps.npy", COMMUTATORS_FILE, "commutator_deltas.npy"):
        assert (tmp_path / "files" / name).read_bytes() == (tmp_path / "resident" / name).read_bytes(), name


def test_the_probe_hands_its_files_to_the_writer_and_the_loop_writes_them_on_its_writer_thread(tmp_path, monkeypatch):
    from manifold_sweeps.commutator.probe import CommutatorProbe
    from manifold_sweeps.model.transformer import ModelShape, Transformer
    from manifold_sweeps.rundir.commutators import CommutatorLog, DeltaWriter, load_commutators, load_deltas

    cfg = compose_config("experiment=smoke", "commutator.every=10", "commutator.samples=2")
    model = Transformer(ModelShape.from_config(cfg))
    model.init_run_(0, 0)
    snapshots = np.random.default_rng(0).standard_normal((3, 2, 4, 16, 16)).astype(np.float32)
    handed = []
    CommutatorProbe([cfg], [tmp_path / "probe"], torch.device("cpu")).measure(10, model, [snapshots], handed.append)
    assert len(handed) == 1 and load_commutators(tmp_path / "probe").empty  # nothing written yet
    handed[0]()
    assert load_commutators(tmp_path / "probe").step.tolist() == [10, 10]
    index, _ = load_deltas(tmp_path / "probe")  # save_deltas=median: one sample of the measurement
    assert index[:, 0].tolist() == [10]

    threads = set()
    for cls, name in ((CommutatorLog, "flush"), (DeltaWriter, "append"), (TrajectoryWriter, "append")):
        real = getattr(cls, name)

        def on_thread(self, *args, real=real, name=f"{cls.__name__}.{name}"):
            threads.add((name, threading.current_thread().name))
            return real(self, *args)

        monkeypatch.setattr(cls, name, on_thread)
    assert train(cfg, tmp_path / "run") == "completed"
    assert threads == {("CommutatorLog.flush", "run-file-writer"), ("DeltaWriter.append", "run-file-writer"),
                       ("TrajectoryWriter.append", "run-file-writer")}
