"""Training end to end, in process: run directory contents, reproducibility, divergence, resume."""

import fcntl
import os

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from manifold_sweeps.app import resume_groups, run_pack
from manifold_sweeps.config.validation import ConfigError
from manifold_sweeps.rundir.checkpoint import load_checkpoint, save_checkpoint
from manifold_sweeps.rundir.lock import LOCK_NAME, RunDirBusy
from manifold_sweeps.rundir import metrics as metrics_module
from manifold_sweeps.rundir.metrics import load_metrics
from manifold_sweeps.rundir.status import StatusWriter, read_status
from manifold_sweeps.rundir.trajectory import load_trajectory
from manifold_sweeps.training import loop
from manifold_sweeps.training.loop import train, train_pack
from manifold_sweeps.training.packing import config_fingerprint

from .conftest import compose_config, shrink

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def files_of(run_dir):
    return {name: (run_dir / name).read_bytes() for name in ("trajectory.npy", "trajectory_steps.npy")}


def stop_after(n_polls):
    """should_stop that fires on its n-th poll: the loop polls once per step, so at step n-1."""
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] >= n_polls

    return should_stop


def test_smoke_run_writes_a_complete_run_directory(smoke_cfg, tmp_path):
    assert train(smoke_cfg, tmp_path) == "completed"
    status = read_status(tmp_path)
    assert status["state"] == "completed" and status["last_step"] == 40 and status["error"] is None
    assert status["wall_time_s"] > 0 and {"torch", "numpy", "hydra", "python"} <= set(status["versions"])
    assert status["started_at"] and status["ended_at"]
    # a run started from Python gets the config file a Hydra job has
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").task.seq_len == 12

    traj = load_trajectory(tmp_path)
    assert traj.steps.tolist() == [0, 10, 20, 30, 40]
    assert traj.keys()[:4] == [(0, "W_Q"), (0, "W_K"), (0, "W_V"), (0, "W_O")] and len(traj.keys()) == 8
    w = traj.matrix(1, "W_O")
    assert w.shape == (5, 16, 16) and w.dtype == np.float32 and isinstance(w.base, np.memmap)
    # numpy alone reads it too
    raw = np.load(tmp_path / "trajectory.npy", mmap_mode="r")
    assert raw.shape == (5, 2, 4, 16, 16)
    # the last snapshot is the final weights, W_O of layer 1 in the x @ W convention
    final = load_checkpoint(tmp_path)["model"]
    np.testing.assert_array_equal(w[-1], final["blocks.1.attn.W_O"].numpy())
    assert not np.array_equal(w[0], w[-1])

    metrics = load_metrics(tmp_path)
    assert list(metrics.columns) == ["step", "metric", "m", "layer", "value"]
    acc = metrics[metrics.metric == "eval_accuracy"]
    assert sorted(acc.step.unique()) == [0, 20, 40] and sorted(acc.m.unique()) == [1, 2]
    assert acc.value.between(0, 1).all()
    assert sorted(metrics[metrics.metric == "train_loss"].step) == [20, 40]
    ent = metrics[metrics.metric == "attention_entropy"]
    assert len(ent) == 3 * 2 * 2 and sorted(ent.layer.unique()) == [0, 1]
    assert ent.value.between(0, np.log(12)).all()


def test_same_config_and_seed_give_byte_identical_files_and_another_seed_does_not(smoke_cfg, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train(shrink(compose_config("experiment=smoke"), seed=seed), tmp_path / name)
    a, b, c = (files_of(tmp_path / n) for n in "abc")
    assert a == b and a["trajectory.npy"] != c["trajectory.npy"]
    assert load_metrics(tmp_path / "a").equals(load_metrics(tmp_path / "b"))
    # The kept model checkpoints too (checkpoint.pt holds wall times, so it differs by design).
    kept = {n: {p.name: p.read_bytes() for p in sorted((tmp_path / n / "checkpoints").glob("*.pt"))} for n in "ab"}
    assert kept["a"] and kept["a"] == kept["b"]


def test_a_diverging_run_stops_with_state_diverged_and_a_clear_message(tmp_path):
    cfg = compose_config("experiment=smoke", "optimizer=sgd", "optimizer.lr=1e12", "train.steps=200")
    assert train(cfg, tmp_path) == "diverged"
    status = read_status(tmp_path)
    assert status["state"] == "diverged" and status["last_step"] < 200
    assert train(cfg, tmp_path) == "diverged" and read_status(tmp_path) == status  # a relaunch skips it
    assert "non-finite" in status["error"] and "optimizer.lr" in status["error"]
    traj = load_trajectory(tmp_path)
    assert len(traj) < 21 and np.isfinite(traj.matrix(0, "W_Q")).all()  # only finite snapshots are kept


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_run_diverging_between_checks_records_no_non_finite_snapshot_or_metric(tmp_path, optimizer):
    # Evaluating and snapshotting every step: the update after the last finite loss can itself
    # overflow the weights, which the next snapshot and evaluation would otherwise record.
    cfg = compose_config("experiment=smoke", f"optimizer={optimizer}", "optimizer.lr=1e3", "train.steps=60",
                         "train.eval_every=1", "train.snapshot_every=1")
    assert train(cfg, tmp_path) == "diverged"
    status = read_status(tmp_path)
    assert "non-finite" in status["error"] and status["last_step"] < 60
    metrics = load_metrics(tmp_path)
    assert len(metrics) and np.isfinite(metrics["value"]).all()
    traj = load_trajectory(tmp_path)
    assert all(np.isfinite(traj.matrix(layer, name)).all() for layer, name in traj.keys())


@pytest.mark.parametrize(
    "overrides,n_polls",
    [
        ((), 16),  # stops at step 15, between snapshots 10 and 20
        ((), 21),  # stops at 20, a snapshot, evaluation and checkpoint step
        (("train.checkpoint_every=10",), 26),
        (("curriculum=sequential", "train.checkpoint_every=10"), 23),
        (("optimizer=sgd", "optimizer.momentum=0.9", "train.checkpoint_every=10"), 33),
    ],
)
def test_an_interrupted_run_resumes_to_the_same_files(tmp_path, overrides, n_polls):
    cfg = compose_config("experiment=smoke", *overrides)
    train(cfg, tmp_path / "whole")
    assert train(cfg, tmp_path / "split", should_stop=stop_after(n_polls)) == "interrupted"
    status = read_status(tmp_path / "split")
    assert status["state"] == "interrupted" and status["last_step"] == n_polls - 1
    assert train(cfg, tmp_path / "split") == "completed"
    assert read_status(tmp_path / "split")["attempts"] == 2
    assert files_of(tmp_path / "whole") == files_of(tmp_path / "split")
    assert load_metrics(tmp_path / "whole").equals(load_metrics(tmp_path / "split"))


def test_a_run_checkpointed_on_a_gpu_asks_for_the_gpu_instead_of_resuming_with_another_data_stream(tmp_path):
    cfg = compose_config("experiment=smoke", "train.device=cpu")
    assert train(cfg, tmp_path, should_stop=stop_after(16)) == "interrupted"
    saved = load_checkpoint(tmp_path)
    assert saved["rng"]["data_device"] == "cpu"
    # The same checkpoint as a GPU node would have written it (CUDA generators keep a 16-byte state).
    saved["rng"] = {**saved["rng"], "data_device": "cuda", "data": torch.zeros(16, dtype=torch.uint8)}
    del saved["format"]
    save_checkpoint(tmp_path, saved)
    cfg = compose_config("experiment=smoke", "train.device=auto")  # a GPU run's usual setting, on a CPU-only node
    saved["config"]["train"]["device"] = "auto"
    save_checkpoint(tmp_path, saved)
    StatusWriter(tmp_path).update(config_fingerprint=config_fingerprint(cfg))
    with pytest.raises(ConfigError, match=r"written training on cuda.*train.device=auto trains on cpu here; "
                                          r"relaunch the same command on a node with a GPU"):
        train(cfg, tmp_path)
    status = read_status(tmp_path)
    assert status["state"] == "failed" and "on a node with a GPU" in status["error"]
    assert status.get("traceback") is None and status["attempts"] == 1  # refused before another attempt began
    assert load_checkpoint(tmp_path)["step"] == 15  # kept, for a relaunch on a GPU


def test_a_failure_while_setting_up_the_runs_is_recorded_in_every_run_directory(tmp_path, monkeypatch):
    def broken_generator(seed, name, device=None):
        raise RuntimeError("no entropy")

    monkeypatch.setattr(loop, "generator", broken_generator)
    cfgs = [compose_config("experiment=smoke", f"seed={s}") for s in (0, 1)]
    with pytest.raises(RuntimeError, match="no entropy"):
        train_pack(cfgs, [tmp_path / "a", tmp_path / "b"])
    for name in "ab":
        status = read_status(tmp_path / name)
        assert status["state"] == "failed" and status["error"] == "RuntimeError: no entropy" and status["traceback"]


def test_a_resumed_attempt_clears_the_last_attempts_failure(tmp_path, monkeypatch):
    cfg = compose_config("experiment=smoke", "train.checkpoint_every=10")
    real = loop.sample_batches
    calls = {"n": 0}

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 25:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", crash_once)
    with pytest.raises(RuntimeError):
        train(cfg, tmp_path)
    failed = read_status(tmp_path)
    assert failed["state"] == "failed" and failed["traceback"] and failed["ended_at"]
    resumed = {}
    monkeypatch.setattr(loop, "sample_batches", lambda *a, **k: resumed.setdefault("status", read_status(tmp_path)) and real(*a, **k))
    assert train(cfg, tmp_path) == "completed"
    running = resumed["status"]
    assert running["state"] == "running" and running["resumed_at_step"] == 20
    assert running.get("error") is None and running.get("traceback") is None and running.get("ended_at") is None
    assert read_status(tmp_path).get("traceback") is None


@pytest.mark.parametrize("crash_at_batch", [7, 25, 33])
def test_a_crashed_run_resumes_from_its_last_checkpoint_to_the_same_files(tmp_path, monkeypatch, crash_at_batch):
    cfg = compose_config("experiment=smoke", "train.checkpoint_every=10", "train.progress_every_s=0.001")
    train(cfg, tmp_path / "whole")
    real, calls = loop.sample_batches, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == crash_at_batch:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "sample_batches", crashing)
    with pytest.raises(RuntimeError):
        train(cfg, tmp_path / "split")
    assert read_status(tmp_path / "split")["state"] == "failed"
    monkeypatch.setattr(loop, "sample_batches", real)
    assert train(cfg, tmp_path / "split") == "completed"
    last_checkpoint = (crash_at_batch - 1) // 10 * 10  # batch n is drawn for step n-1
    assert read_status(tmp_path / "split")["resumed_at_step"] == (last_checkpoint or None)
    assert files_of(tmp_path / "whole") == files_of(tmp_path / "split")
    assert load_metrics(tmp_path / "whole").equals(load_metrics(tmp_path / "split"))


def test_a_completed_run_is_skipped_and_a_different_config_is_refused(smoke_cfg, tmp_path):
    train(smoke_cfg, tmp_path)
    before = (tmp_path / "trajectory.npy").stat().st_mtime_ns
    config_yaml = (tmp_path / ".hydra" / "config.yaml").read_text()
    assert train(smoke_cfg, tmp_path) == "completed"
    assert (tmp_path / "trajectory.npy").stat().st_mtime_ns == before
    other = shrink(compose_config("experiment=smoke"), seed=9, optimizer__lr=0.5)
    # (A Hydra job's .hydra/ files, rewritten before the job runs, are put back by the task function:
    # tests/test_cli.py.)
    with pytest.raises(ConfigError, match=r"different config .*differs in optimizer.lr \(0.0003 -> 0.5\), seed \(0 -> 9\); "
                                          r"use a new output directory"):
        train(other, tmp_path)
    # The run keeps its record: its state, and the config it was trained with.
    assert read_status(tmp_path)["state"] == "completed"
    assert OmegaConf.create((tmp_path / ".hydra" / "config.yaml").read_text()) == OmegaConf.create(config_yaml)
    assert (tmp_path / "trajectory.npy").stat().st_mtime_ns == before
    # ... also when the refused config is itself invalid
    invalid = shrink(compose_config("experiment=smoke"), seed=-1)
    with pytest.raises(ConfigError, match="different config"):
        train(invalid, tmp_path)
    assert OmegaConf.create((tmp_path / ".hydra" / "config.yaml").read_text()) == OmegaConf.create(config_yaml)


def test_every_refused_run_of_a_pack_is_named_and_keeps_its_files_and_no_group_trains_first(tmp_path):
    cfgs = [compose_config("experiment=smoke", f"seed={s}") for s in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    assert train_pack(cfgs, dirs) == ["completed", "completed"]
    kept = {d: (d / ".hydra" / "config.yaml").read_text() for d in dirs}
    others = [shrink(compose_config("experiment=smoke", f"seed={s}"), optimizer__lr=0.5) for s in (0, 1)]
    with pytest.raises(ConfigError, match=r"(?s)2 of 2 runs cannot train here; none was started:.*/a already "
                                          r"holds.*/b already holds"):
        train_pack(others, dirs)
    assert {d: (d / ".hydra" / "config.yaml").read_text() for d in dirs} == kept
    # A pack whose runs resume from different steps trains in groups: a refused run in a later group
    # stops the pack before the first group trains.
    resumable = compose_config("experiment=smoke", "seed=2", "train.checkpoint_every=10")
    assert train(resumable, tmp_path / "c", should_stop=stop_after(16)) == "interrupted"
    with pytest.raises(ConfigError, match="/c already holds a run with a different config"):
        run_pack([compose_config("experiment=smoke", "seed=3"), shrink(resumable, optimizer__lr=0.5)],
                 [tmp_path / "d", tmp_path / "c"])
    assert read_status(tmp_path / "d") is None and not (tmp_path / "d" / "trajectory.npy").exists()


def test_a_finished_run_relaunched_where_its_device_is_missing_stays_finished(smoke_cfg, tmp_path):
    gpu_cfg = shrink(compose_config("experiment=smoke"), train__device="cuda")
    train(smoke_cfg, tmp_path)
    # As if it had completed on a GPU node with train.device=cuda, now relaunched on one without.
    StatusWriter(tmp_path).update(config_fingerprint=config_fingerprint(gpu_cfg))
    with pytest.raises(ConfigError, match="train.device=cuda is not available"):
        train(gpu_cfg, tmp_path)
    assert read_status(tmp_path)["state"] == "completed"
    # A directory without a run of its own records the refusal.
    with pytest.raises(ConfigError, match="train.device=cuda is not available"):
        train(shrink(compose_config("experiment=smoke"), train__device="cuda"), tmp_path / "new")
    assert read_status(tmp_path / "new")["state"] == "failed"


def test_bad_input_fails_before_training_and_is_recorded(tmp_path):
    cfg = compose_config("experiment=smoke", "curriculum=single", "task.m=9")
    with pytest.raises(ConfigError, match=r"task.m=9 .*allowed: 1..5"):
        train(cfg, tmp_path)
    assert read_status(tmp_path)["state"] == "failed" and not (tmp_path / "trajectory.npy").exists()


def try_lock(run_dir) -> bool:
    """Whether another open of the run's lock file could take it now (flock locks are per open file)."""
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_run_directory_is_locked_while_it_trains_and_a_second_process_leaves_it_alone(smoke_cfg, tmp_path):
    cfg = shrink(smoke_cfg, train__steps=6)
    seen = []
    train(cfg, tmp_path / "a", should_stop=lambda: seen.append(try_lock(tmp_path / "a")) or False)
    assert seen and not any(seen)  # held at every step
    assert try_lock(tmp_path / "a")  # and released at the end

    # A pack with one run another process holds: nothing is written to either run.
    (tmp_path / "b").mkdir()
    fd = os.open(tmp_path / "b" / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"host elsewhere, pid 4242\n")
        with pytest.raises(RunDirBusy, match=r"b is being trained by another process \(host elsewhere, pid 4242\)"):
            train_pack([cfg, cfg], [tmp_path / "c", tmp_path / "b"])
        assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [LOCK_NAME]
        assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [LOCK_NAME]
        assert try_lock(tmp_path / "c")  # the lock it took first was given back
    finally:
        os.close(fd)
    assert train_pack([cfg, cfg], [tmp_path / "c", tmp_path / "b"]) == ["completed"] * 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_gpu_the_machine_lacks_fails_the_run_and_is_recorded(tmp_path):
    """Checked where the job runs (a SLURM login node has no GPU either), and recorded like a bad value."""
    cfg = compose_config("experiment=smoke", "train.device=cuda")
    with pytest.raises(ConfigError, match="train.device=cuda is not available"):
        train(cfg, tmp_path)
    status = read_status(tmp_path)
    assert status["state"] == "failed" and "allowed here: auto, cpu" in status["error"]


def test_progress_lines_rewrite_the_metrics_at_most_once_a_heartbeat_and_checkpoints_keep_them_current(tmp_path, monkeypatch):
    """A rewrite of metrics.parquet grows with the run (13 ms per run late in `paper`): a pack does not
    redo it for every run on every progress line, only once per heartbeat interval when rows are new."""
    writes = []
    real = metrics_module._frame
    monkeypatch.setattr(metrics_module, "_frame", lambda rows: (writes.append(len(rows)), real(rows))[1])
    cfg = compose_config("experiment=smoke", "train.progress_every_s=0.0001")  # a progress line every step
    assert train(cfg, tmp_path) == "completed"
    # 8 rows per evaluation (2 m x loss, accuracy, 2 entropies) plus train_loss from the second on. The
    # first progress line writes eval 0's; the checkpoint at 20 comes before that step's evaluation
    # and finds nothing new; step 40's periodic checkpoint writes eval 20's, the final one eval 40's.
    assert writes == [8, 17, 26]
    assert sorted(load_metrics(tmp_path).step.unique()) == [0, 20, 40]


def test_a_crash_is_recorded_as_failed_with_its_error(smoke_cfg, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("evaluation exploded")

    monkeypatch.setattr(loop, "evaluate", broken)
    with pytest.raises(RuntimeError):
        train(smoke_cfg, tmp_path)
    status = read_status(tmp_path)
    assert status["state"] == "failed" and "evaluation exploded" in status["error"]
    assert "Traceback" in status["traceback"]


def test_every_run_of_a_pack_is_recorded_interrupted_when_a_second_ctrl_c_follows_the_first(tmp_path, monkeypatch):
    """No StopSignal here takes SIGINT (as in a SLURM job, or after the Ctrl-C that ended a run without
    waiting). The first Ctrl-C lands in a metrics write during training, the second (a real SIGINT) while
    the stop is being recorded, and a third in the metrics write that follows the statuses."""
    import os
    import signal

    from manifold_sweeps.rundir.metrics import MetricsLog

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    real_format_exc = loop.traceback.format_exc

    def second_ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        return real_format_exc()

    monkeypatch.setattr(MetricsLog, "flush", interrupted)
    monkeypatch.setattr(loop.traceback, "format_exc", second_ctrl_c)
    cfgs = [compose_config("experiment=smoke", f"seed={s}") for s in (0, 1)]
    with pytest.raises(KeyboardInterrupt):
        train_pack(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert [read_status(tmp_path / name)["state"] for name in "ab"] == ["interrupted", "interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards


def test_packed_runs_match_the_same_runs_trained_alone(tmp_path):
    cfgs = [compose_config("experiment=smoke", f"seed={s}", f"optimizer.lr={lr}") for s, lr in ((0, 3e-4), (1, 1e-3))]
    assert train_pack(cfgs, [tmp_path / "p0", tmp_path / "p1"]) == ["completed", "completed"]
    for i, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone{i}")
        packed, alone = load_trajectory(tmp_path / f"p{i}"), load_trajectory(tmp_path / f"alone{i}")
        np.testing.assert_allclose(packed.matrix(1, "W_Q"), alone.matrix(1, "W_Q"), rtol=1e-4, atol=1e-5)
        m_p, m_a = load_metrics(tmp_path / f"p{i}"), load_metrics(tmp_path / f"alone{i}")
        np.testing.assert_allclose(m_p.value, m_a.value, rtol=1e-4, atol=1e-5)


def test_packing_refuses_runs_with_different_shapes(tmp_path):
    cfgs = [compose_config("experiment=smoke"), compose_config("experiment=smoke", "model.d_model=32")]
    with pytest.raises(ConfigError, match="model.d_model"):
        train_pack(cfgs, [tmp_path / "a", tmp_path / "b"])


def test_a_diverging_run_in_a_pack_stops_alone_and_its_pack_mate_trains_on(tmp_path):
    cfgs = [compose_config("experiment=smoke", "optimizer=sgd", f"optimizer.lr={lr}", "train.steps=100")
            for lr in (1e12, 0.01)]
    assert train_pack(cfgs, [tmp_path / "bad", tmp_path / "good"]) == ["diverged", "completed"]
    bad, good = read_status(tmp_path / "bad"), read_status(tmp_path / "good")
    assert bad["last_step"] < 100 and "non-finite" in bad["error"]
    assert good["last_step"] == 100 and good["error"] is None
    # the pack-mate is unaffected: it matches the same run trained alone
    train(cfgs[1], tmp_path / "alone")
    np.testing.assert_allclose(load_trajectory(tmp_path / "good").matrix(0, "W_V"),
                               load_trajectory(tmp_path / "alone").matrix(0, "W_V"), rtol=1e-4, atol=1e-5)
    assert len(load_trajectory(tmp_path / "good")) == 11


def test_changing_one_runs_seed_changes_only_that_run_of_the_pack(tmp_path):
    for name, seeds in (("a", (0, 1)), ("b", (0, 2))):
        cfgs = [compose_config("experiment=smoke", f"seed={s}") for s in seeds]
        train_pack(cfgs, [tmp_path / name / "first", tmp_path / name / "second"])
    # Runs share no weights, batches or random streams: the first run's files stay byte-identical.
    assert files_of(tmp_path / "a" / "first") == files_of(tmp_path / "b" / "first")
    assert load_metrics(tmp_path / "a" / "first").equals(load_metrics(tmp_path / "b" / "first"))
    a, b = (files_of(tmp_path / name / "second")["trajectory.npy"] for name in "ab")
    assert a != b


def test_a_pack_whose_runs_stopped_at_different_steps_resumes_each_from_its_own_checkpoint(tmp_path):
    cfgs = [compose_config("experiment=smoke", f"seed={s}") for s in range(4)]
    whole = [tmp_path / "whole" / str(i) for i in range(4)]
    split = [tmp_path / "split" / str(i) for i in range(4)]
    for cfg, run_dir in zip(cfgs, whole):
        train(cfg, run_dir)
    # As after a relaunch with another pack_size: runs stopped at steps 15 and 25, one completed, one new.
    assert train(cfgs[0], split[0], should_stop=stop_after(16)) == "interrupted"
    assert train(cfgs[1], split[1], should_stop=stop_after(26)) == "interrupted"
    assert train(cfgs[2], split[2]) == "completed"
    completed_at = (split[2] / "trajectory.npy").stat().st_mtime_ns
    assert resume_groups(split) == [[0], [1], [2], [3]]

    assert run_pack(cfgs, split) == ["completed"] * 4
    assert [read_status(d)["resumed_at_step"] for d in split] == [15, 25, None, None]
    assert (split[2] / "trajectory.npy").stat().st_mtime_ns == completed_at  # skipped
    for reference, resumed in zip(whole, split):
        assert files_of(reference) == files_of(resumed)
        assert load_metrics(reference).equals(load_metrics(resumed))
    assert resume_groups(split) == [[0, 1, 2, 3]]  # all at the last step now


@pytest.mark.slow
def test_a_compiled_run_matches_the_eager_run_repeats_byte_for_byte_and_resumes(tmp_path):
    cfg = compose_config("experiment=smoke", "train.compile=true", "train.checkpoint_every=10")
    train(cfg, tmp_path / "c1")
    train(cfg, tmp_path / "c2")
    assert train(cfg, tmp_path / "split", should_stop=stop_after(26)) == "interrupted"
    assert train(cfg, tmp_path / "split") == "completed"
    train(compose_config("experiment=smoke"), tmp_path / "eager")
    assert files_of(tmp_path / "c1") == files_of(tmp_path / "c2") == files_of(tmp_path / "split")
    assert not torch.are_deterministic_algorithms_enabled()  # restored after training
    compiled, eager = load_trajectory(tmp_path / "c1"), load_trajectory(tmp_path / "eager")
    np.testing.assert_allclose(compiled.matrix(1, "W_Q"), eager.matrix(1, "W_Q"), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(load_metrics(tmp_path / "c1").value, load_metrics(tmp_path / "eager").value,
                               rtol=1e-4, atol=1e-5)


def test_a_run_resumed_on_another_processor_model_says_it_is_not_byte_identical(smoke_cfg, tmp_path, caplog):
    here = loop.device_model(torch.device("cpu"))
    assert train(smoke_cfg, tmp_path, should_stop=stop_after(16)) == "interrupted"
    saved = load_checkpoint(tmp_path)
    assert saved["device_model"] == here and read_status(tmp_path)["device_model"] == here
    save_checkpoint(tmp_path, {**saved, "device_model": "Another CPU (AVX2)"})  # as if requeued onto another node type
    with caplog.at_level("WARNING", logger=loop.__name__):
        assert train(smoke_cfg, tmp_path) == "completed"
    assert (f"resuming on {here} from a checkpoint written on Another CPU (AVX2): the run continues to float "
            "tolerance") in caplog.text
    caplog.clear()
    # Resumed on the same model: nothing to say.
    assert train(smoke_cfg, tmp_path / "same", should_stop=stop_after(16)) == "interrupted"
    with caplog.at_level("WARNING", logger=loop.__name__):
        assert train(smoke_cfg, tmp_path / "same") == "completed"
    assert "resuming on" not in caplog.text
