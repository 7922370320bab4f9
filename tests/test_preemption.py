"""A stop signal checkpoints the run, ends it `interrupted`, then goes on to its previous owner
(submitit) or exits 128 + signal; the resumed run's files equal an uninterrupted run's. No SLURM."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from manifold_sweeps.app import run_pack
from manifold_sweeps.preemption import StopSignal, checkpoint_signal
from manifold_sweeps.rundir.metrics import load_metrics
from manifold_sweeps.rundir.status import read_status
from manifold_sweeps.training import loop
from manifold_sweeps.training.loop import train
from manifold_sweeps.paths import REPO_ROOT

from .conftest import compose_config


def run_files(run_dir):
    return {name: (run_dir / name).read_bytes() for name in ("trajectory.npy", "trajectory_steps.npy")}


def signal_at_batch(monkeypatch, n, sig):
    """Send `sig` to this process while the batches of step n-1 are drawn: the loop stops at step n."""
    real, calls = loop.sample_batches, {"n": 0}

    def sampling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", sampling)


@pytest.fixture(autouse=True)
def one_torch_thread():
    # Smoke runs are too small to gain from threads, and on a busy machine OpenMP threads spin for cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def outside_submitit(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)


def test_the_checkpoint_signal_stops_training_with_a_checkpoint_then_goes_to_submitits_handler(
    tmp_path, monkeypatch, outside_submitit
):
    cfg = compose_config("experiment=smoke")
    train(cfg, tmp_path / "whole")

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    received = []
    submitits = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))  # stands in for submitit
    try:
        signal_at_batch(monkeypatch, 16, signal.SIGUSR2)  # between the snapshots at 10 and 20
        with StopSignal() as stop:
            assert stop.signals == [signal.SIGUSR2]  # under submitit SIGTERM stays submitit's
            assert train(cfg, tmp_path / "split", should_stop=stop) == "interrupted"
        assert received == []  # the signal reached training only
        status = read_status(tmp_path / "split")
        assert status["state"] == "interrupted" and status["last_step"] == status["checkpoint_step"] == 16
        stop.hand_over()
        assert received == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, submitits)

    monkeypatch.undo()
    assert train(cfg, tmp_path / "split") == "completed"
    assert read_status(tmp_path / "split")["resumed_at_step"] == 16
    assert run_files(tmp_path / "whole") == run_files(tmp_path / "split")
    assert load_metrics(tmp_path / "whole").equals(load_metrics(tmp_path / "split"))


def test_a_signalled_pack_checkpoints_every_run_at_one_step_hands_over_and_resumes_to_the_same_files(
    tmp_path, monkeypatch, outside_submitit
):
    cfgs = [compose_config("experiment=smoke", "curriculum=single", f"seed={s}", f"task.m={m}", f"optimizer.lr={lr}")
            for s, m, lr in ((0, 1, 3e-4), (1, 2, 1e-3), (2, 2, 3e-4))]
    whole, split = ([tmp_path / name / str(i) for i in range(3)] for name in ("whole", "split"))
    assert run_pack(cfgs, whole) == ["completed"] * 3

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    received = []
    submitits = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))  # stands in for submitit
    try:
        signal_at_batch(monkeypatch, 16, signal.SIGUSR2)  # while the pack draws its batches for step 15
        assert run_pack(cfgs, split) == ["interrupted"] * 3
        assert received == [signal.SIGUSR2]  # handed over once, after every run checkpointed
    finally:
        signal.signal(signal.SIGUSR2, submitits)
    for run_dir in split:
        status = read_status(run_dir)
        assert status["state"] == "interrupted" and status["last_step"] == status["checkpoint_step"] == 16

    monkeypatch.undo()
    assert run_pack(cfgs, split) == ["completed"] * 3  # the requeued pack
    for reference, resumed in zip(whole, split):
        assert read_status(resumed)["resumed_at_step"] == 16 and read_status(resumed)["attempts"] == 2
        assert run_files(reference) == run_files(resumed)
        assert load_metrics(reference).equals(load_metrics(resumed))


def test_outside_submitit_sigterm_stops_training_and_exits_with_128_plus_the_signal(
    tmp_path, monkeypatch, outside_submitit
):
    cfg = compose_config("experiment=smoke")
    before = signal.getsignal(signal.SIGTERM)
    signal_at_batch(monkeypatch, 5, signal.SIGTERM)
    with StopSignal() as stop:
        assert set(stop.signals) == {signal.SIGUSR2, signal.SIGTERM, signal.SIGINT}
        assert train(cfg, tmp_path, should_stop=stop) == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # restored on exit
    with pytest.raises(SystemExit) as info:
        stop.hand_over()
    assert info.value.code == 128 + signal.SIGTERM
    assert read_status(tmp_path)["checkpoint_step"] == 5


def test_a_signal_after_trainings_last_poll_still_ends_the_job(tmp_path, monkeypatch, outside_submitit):
    cfg = compose_config("experiment=smoke")
    real = loop.evaluate

    def evaluate_then_signal(model, eval_sets):  # the final evaluation, after the loop's last poll
        results = real(model, eval_sets)
        if loop_step["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        loop_step["n"] += 1
        return results

    loop_step = {"n": 0}  # evaluations at steps 0, 20 and 40 (the last)
    monkeypatch.setattr(loop, "evaluate", evaluate_then_signal)
    with pytest.raises(SystemExit) as info:
        run_pack([cfg], [tmp_path])
    assert info.value.code == 128 + signal.SIGTERM
    assert read_status(tmp_path)["state"] == "completed"  # the run itself had finished


def test_no_signal_no_hand_over_and_an_ignored_signal_is_left_ignored(tmp_path, outside_submitit):
    with StopSignal() as stop:
        assert train(compose_config("experiment=smoke"), tmp_path, should_stop=stop) == "completed"
    stop.hand_over()  # nothing happens: no signal came
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with StopSignal():
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_the_checkpoint_signal_follows_submitits_environment_variable(monkeypatch):
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert checkpoint_signal() == signal.SIGUSR1
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "LUNCH")
    with pytest.raises(ValueError, match="SUBMITIT_PREEMPT_SIGNAL=LUNCH is not a signal name"):
        checkpoint_signal()


def snapshot_count(run_dir) -> int:
    try:
        return len(np.load(run_dir / "trajectory_steps.npy"))
    except (OSError, ValueError):
        return 0


def test_a_second_ctrl_c_does_not_wait_for_the_checkpoint(tmp_path, monkeypatch, outside_submitit):
    real, calls = loop.sample_batches, {"n": 0}

    def sampling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # the first asks for a checkpoint at the next poll, the second will not wait
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", sampling)
    with StopSignal() as stop, pytest.raises(KeyboardInterrupt):
        train(compose_config("experiment=smoke", "train.checkpoint_every=1000"), tmp_path, should_stop=stop)
    status = read_status(tmp_path)
    assert status["state"] == "interrupted" and status.get("checkpoint_step") is None
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_ctrl_c_of_a_local_submitit_sweep_checkpoints_each_job_though_its_controller_repeats_it(tmp_path,
                                                                                                    monkeypatch):
    """The terminal's SIGINT and, at once, the job's controller's: the run still checkpoints where it is."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    real, calls = loop.sample_batches, {"n": 0}

    def sampling(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", sampling)
    with StopSignal() as stop:
        assert stop.signals == [signal.SIGUSR2, signal.SIGINT]  # SIGTERM stays submitit's
        assert train(compose_config("experiment=smoke", "train.checkpoint_every=1000"), tmp_path,
                     should_stop=stop) == "interrupted"
    status = read_status(tmp_path)
    assert status["state"] == "interrupted" and status["last_step"] == status["checkpoint_step"] == 5
    with pytest.raises(SystemExit) as info:
        stop.hand_over()
    assert info.value.code == 128 + signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT (Ctrl-C)"])
def test_a_stop_signal_to_a_local_run_checkpoints_it_and_the_same_command_resumes_it(tmp_path, sig):
    args = ["experiment=smoke", "train.steps=600", "train.snapshot_every=25", "train.checkpoint_every=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("SUBMITIT_EXECUTOR", None)

    def command(run_dir):
        return [sys.executable, "-m", "manifold_sweeps", *args, f"hydra.run.dir={run_dir}"]

    subprocess.run(command(tmp_path / "whole"), cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    split = tmp_path / "split"
    proc = subprocess.Popen(command(split), cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while snapshot_count(split) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output

    status = read_status(split)
    stopped_at = status["checkpoint_step"]
    assert status["state"] == "interrupted" and 0 < stopped_at == status["last_step"] < 600, status
    assert f"stopped on {sig.name} with a checkpoint" in output and "Traceback" not in output
    assert f"the same command with hydra.run.dir={split} resumes it" in output and "hydra.sweep.dir" not in output

    subprocess.run(command(split), cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    status = read_status(split)
    assert status["state"] == "completed" and status["resumed_at_step"] == stopped_at and status["attempts"] == 2
    assert run_files(tmp_path / "whole") == run_files(split)
    assert load_metrics(tmp_path / "whole").equals(load_metrics(split))
