"""Training: one run, or P runs packed in one process with stacked weights.

`train(cfg, run_dir)` is the plain entry point; `train_pack(cfgs, run_dirs)` trains several runs
whose configs differ only in keys that leave tensor shapes alone (see `packing.py`). Either way each
run writes its own run directory (format in `manifold_sweeps/rundir/`) and ends in one state:
completed, diverged, failed or interrupted.

Per step s (weights after s updates), in this order:
    checkpoint (every train.checkpoint_every) -> snapshot -> evaluation -> SGD commutators (every
    commutator.every) -> stop at train.steps -> optimizer reset at a sequential stage boundary
    -> forward/backward/update
A checkpoint at s is taken before s's snapshot and evaluation, so a resumed run redoes them
identically and its files match an uninterrupted run's. Snapshots and commutator records are
written to disk by a writer thread while training goes on (background_writer.py); checkpoints wait
for it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import logging
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..commutator.probe import CommutatorProbe
from ..config.validation import ConfigError, validate
from ..model.transformer import ModelShape, Transformer
from ..preemption import ctrl_c_held
from ..rundir.atomic import write_text
from ..rundir.checkpoint import load_checkpoint, save_checkpoint
from ..rundir.lock import hold_run_dirs
from ..rundir.metrics import MetricsLog
from ..rundir.model_checkpoints import planned_checkpoint_steps, save_model_checkpoint
from ..rundir.status import HEARTBEAT_S, StatusWriter, library_versions, now_iso, read_status
from ..rundir.trajectory import TrajectoryWriter
from ..seeding import generator, stream_seed
from ..task.curriculum import Curriculum
from ..task.generator import sample_batches
from ..task.layout import TokenLayout, _name
from .allocator import keep_freed_memory
from .device import device_model, resolve_device
from .evaluation import build_eval_set, evaluate
from .optimizers import PackedOptimizer, clip_grad_norm_per_run
from .identity import other_run_refusal
from .packing import check_packable, config_fingerprint
from .progress import Progress
from .background_writer import BackgroundWriter
from .snapshots import ResidentSnapshots, write_snapshot

log = logging.getLogger(__name__)


def snapshot_steps(total: int, every: int) -> list[int]:
    """Step 0, every `every` steps, and the last step."""
    return sorted(set(range(0, total + 1, every)) | {total})


def is_eval_step(step: int, total: int, every: int) -> bool:
    return step % every == 0 or step == total


@dataclass
class Run:
    """Everything one run of a pack owns besides its slice of the stacked weights."""

    index: int
    cfg: DictConfig
    dir: Path
    layout: TokenLayout
    curriculum: Curriculum
    data_gen: torch.Generator  # training batches, on the training device
    schedule_gen: torch.Generator  # which m each batch has (mixed), on the CPU
    per_batch_positions: bool  # task.positions == per_batch
    status: StatusWriter
    trajectory: TrajectoryWriter | None = None
    metrics: MetricsLog | None = None
    eval_set: dict = field(default_factory=dict)
    state: str = "running"
    wall_before: float = 0.0  # wall time of earlier attempts (resumed runs)
    resumed_loss: tuple[float, int] = (0.0, 0)  # train-loss accumulator (sum, count) at the checkpoint

    @property
    def active(self) -> bool:
        return self.state == "running"


def train(cfg: DictConfig, run_dir: str | os.PathLike, should_stop: Callable[[], bool] | None = None) -> str:
    """Train one run into run_dir; returns its final state."""
    return train_pack([cfg], [run_dir], should_stop)[0]


def train_pack(
    cfgs: list[DictConfig], run_dirs: list[str | os.PathLike], should_stop: Callable[[], bool] | None = None
) -> list[str]:
    """Train runs packed together; returns each run's final state.

    should_stop is polled every step; when it returns True every active run is checkpointed at the
    current step and ends `interrupted` (preemption). A run already `completed` or `diverged` with
    the same config is skipped; one with a checkpoint resumes from it; one that another process is
    training raises RunDirBusy before this one writes anything (rundir/lock.py).
    """
    run_dirs = [Path(d) for d in run_dirs]
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
    # Before anything is written: a run another process is training is left to it (RunDirBusy).
    with hold_run_dirs(run_dirs):
        check_runs(cfgs, run_dirs)
        check_packable(cfgs)

        states = [_finished_state(d) for d in run_dirs]
        todo = [i for i, s in enumerate(states) if s is None]
        for i, s in enumerate(states):
            if s is not None:
                log.info("%s is already %s; skipping it", run_dirs[i], s)
        if todo:
            with _ordered_compiled_kernels(cfgs[0]):
                for i, state in zip(todo, _train_active([cfgs[i] for i in todo], [run_dirs[i] for i in todo],
                                                        should_stop)):
                    states[i] = state
    return states


def check_runs(cfgs: list[DictConfig], run_dirs: list[Path]) -> None:
    """Refuse, before any run trains, the runs that cannot train here: bad values, a device that is
    missing, a directory holding a run of another config, a checkpoint from another kind of device.
    Every run is checked (each refused directory gets its own files back), then one ConfigError names
    them all. A refusal is recorded in the run's status unless the directory holds another run or a
    finished one."""
    errors = []
    for cfg, run_dir in zip(cfgs, run_dirs):
        try:
            _ensure_config_file(cfg, run_dir)
            # First: a directory holding another config's run gets its files back whatever else is wrong.
            _check_same_run(cfg, run_dir)
            validate(cfg)
            device = resolve_device(cfg.train.device)  # where the job runs: a login node may have no GPU
            _check_resume_device(cfg, run_dir, device)
        except ConfigError as err:
            if _is_own_unfinished_run(cfg, run_dir):
                StatusWriter(run_dir).update(state="failed", error=str(err), ended_at=now_iso())
            errors.append(str(err))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{len(errors)} of {len(cfgs)} runs cannot train here; none was started:\n"
                          + "\n".join(f"  {e}" for e in errors))


@contextlib.contextmanager
def _ordered_compiled_kernels(cfg: DictConfig) -> Iterator[None]:
    """With train.compile: PyTorch's deterministic mode while training.

    Inductor adds some gradients (the embedding's) with atomic adds in whatever order the threads
    come (CPU) or as Triton atomics (GPU), and on a GPU picks reduction configs by timing them; in
    deterministic mode it generates ordered code and fixed configs instead, so compiled runs stay
    byte-identical for a seed and resume to the same files. warn_only: an op without a deterministic
    kernel warns rather than stopping the run. cuBLAS needs its workspace setting for deterministic
    results, and reads it when its first handle is made, so it is set before any CUDA work (unless
    the user set it). The mode is restored afterwards. (Checked on the CPU; not yet run on a GPU.)
    """
    if not cfg.train.compile:
        yield
        return
    if resolve_device(cfg.train.device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


# Final states: training is deterministic, so a relaunch would only repeat them.
FINISHED = ("completed", "diverged")


def _finished_state(run_dir: Path) -> str | None:
    status = read_status(run_dir)
    return status["state"] if status and status.get("state") in FINISHED else None


def _ensure_config_file(cfg: DictConfig, run_dir: Path) -> None:
    """Runs started through the Python API (not a Hydra job) get the `.hydra/config.yaml` that
    Hydra writes for its jobs: analysis reads a run's config from there, however it was launched."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        write_text(path, OmegaConf.to_yaml(cfg, resolve=True))


def _is_own_unfinished_run(cfg: DictConfig, run_dir: Path) -> bool:
    """Whether a launch refused before training may record itself as failed in run_dir: not over a
    finished run (relaunched, say, on a node without the GPU it asks for) nor over a run of another
    config, whose status stays that run's."""
    if _finished_state(run_dir) is not None:
        return False
    try:
        return other_run_refusal(cfg, run_dir, None) is None
    except OmegaConfBaseException:  # a config too broken to fingerprint is not this run's
        return False


def _check_same_run(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to resume or skip a run directory that holds a run of another config.

    A single Hydra run (`hydra.run.dir=...`) has already rewritten the directory's `.hydra/` files
    with the refused job's when it gets here; the task function puts them back (app.py). Launchers
    refuse such jobs before setting them up.
    """
    if other_run_refusal(cfg, run_dir, None) is None:
        return
    checkpoint = load_checkpoint(run_dir)
    trained = OmegaConf.create(checkpoint["config"]) if checkpoint and "config" in checkpoint else None
    raise ConfigError(other_run_refusal(cfg, run_dir, trained))


def _check_resume_device(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    """Refuse to resume a checkpoint on another kind of device than the one it was written on.

    The batches come from a generator on the training device: CPU and CUDA generators are different
    streams with different states, so a run continues only on the kind it began on. train.device is
    part of the run's config, so the way out is the same command where it resolves as before.
    """
    if _finished_state(run_dir) is not None:
        return
    saved = load_checkpoint(run_dir)
    began_on = saved["rng"].get("data_device", device.type) if saved else device.type
    if began_on != device.type:
        where = "on a node with a GPU" if began_on == "cuda" else "where no GPU is visible (CUDA_VISIBLE_DEVICES=)"
        raise ConfigError(
            f"{run_dir}: its checkpoint (step {saved['step']}) was written training on {began_on}, and its data "
            f"stream continues only there, but train.device={_name(cfg.train.device)} trains on {device.type} here; "
            f"relaunch the same command {where}"
        )


def _train_active(cfgs: list[DictConfig], run_dirs: list[Path], should_stop) -> list[str]:
    should_stop = should_stop or (lambda: False)
    cfg0 = cfgs[0]
    device = resolve_device(cfg0.train.device)
    keep_freed_memory()
    total, P = int(cfg0.train.steps), len(cfgs)
    batch_size = int(cfg0.train.batch_size)
    t_start = time.monotonic()

    try:
        runs = [
            Run(
                index=p,
                cfg=cfg,
                dir=run_dir,
                layout=TokenLayout.from_config(cfg.task),
                curriculum=Curriculum(cfg.curriculum, cfg.task.m, total),
                data_gen=generator(cfg.seed, "train/data", device),
                schedule_gen=generator(cfg.seed, "train/schedule"),
                per_batch_positions=_name(cfg.task.positions) == "per_batch",
                status=StatusWriter(run_dir),
            )
            for p, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs))
        ]
    except Exception as err:  # no Run to record it yet: every run directory says why
        for run_dir in run_dirs:
            StatusWriter(run_dir).update(state="failed", error=f"{type(err).__name__}: {err}",
                                         traceback=traceback.format_exc(), ended_at=now_iso())
        raise

    try:
        shape = ModelShape.from_config(cfg0)
        model = Transformer(shape, n_runs=P)
        for run in runs:
            model.init_run_(run.index, stream_seed(run.cfg.seed, "init"))
        model.to(device)
        params = list(model.parameters())
        opt = PackedOptimizer(params, [c.optimizer for c in cfgs])
        clip = [c.optimizer.grad_clip for c in cfgs]
        max_norms = torch.tensor([float("inf") if c is None else float(c) for c in clip], device=device)
        clipping = any(c is not None for c in clip)
        mats = list(model.attention_matrices().values())
        forward_backward = torch.compile(forward_backward_eager) if cfg0.train.compile else forward_backward_eager
        planned = snapshot_steps(total, int(cfg0.train.snapshot_every))
        probe_steps = [planned_checkpoint_steps(r.cfg.probe, total) for r in runs]  # kept model-only weights

        start = _resume(runs, model, opt)
        for run in runs:
            run.trajectory = TrajectoryWriter(run.dir, planned, shape.n_layers, shape.d_model)
            run.trajectory.truncate(sum(1 for s in planned if s < start))
            run.metrics = MetricsLog(run.dir, keep_before_step=start)
            eval_ms = list(run.cfg.train.eval_ms) if run.cfg.train.eval_ms is not None else run.curriculum.m_set
            run.eval_set = build_eval_set(
                run.layout, eval_ms, int(run.cfg.train.eval_examples), int(run.cfg.seed), batch_size,
                run.per_batch_positions, device,
            )
            run.status.update(
                state="running",
                total_steps=total,
                last_step=start,
                started_at=run.status.fields.get("started_at", now_iso()),
                resumed_at_step=start if start else None,
                attempts=int(run.status.fields.get("attempts", 0)) + 1,
                host=socket.gethostname(),
                pid=os.getpid(),
                slurm_job_id=_slurm_job_id(),
                device=str(device),
                device_model=device_model(device),
                cpu_threads=torch.get_num_threads(),
                pack_size=P,
                versions=library_versions(),
                config_fingerprint=config_fingerprint(run.cfg),
                error=None,
                traceback=None,
                ended_at=None,
                wall_time_s=run.wall_before,
            )
        commutators, resident = None, None
        if int(cfg0.commutator.every):
            commutators = CommutatorProbe([r.cfg for r in runs], [r.dir for r in runs], device, start)
            resident = ResidentSnapshots.for_pack(len(planned), P, shape.n_layers, shape.d_model, device)
            if resident is not None:
                for run in runs:
                    resident.load(run.index, run.trajectory.data[: run.trajectory.count])
                log.info("snapshots kept on %s for the commutator measurements (%.1f GB)", device,
                         resident.rows.nbytes / 1e9)
        log.info("training %d run(s) on %s (%d CPU thread(s)) from step %d to %d (%d parameters per run)",
                 P, device, torch.get_num_threads(), start, total, sum(p[0].numel() for p in params))
    except BaseException as err:
        _fail(runs, err, t_start)
        raise

    # Per-run accumulators live on the device: the loop reads them only at sync points.
    loss_sum = torch.tensor([r.resumed_loss[0] for r in runs], device=device)
    loss_count = runs[0].resumed_loss[1]
    nonfinite = torch.zeros(P, dtype=torch.bool, device=device)
    progress = Progress(total, start, float(cfg0.train.progress_every_s), log)
    # Read once: a config lookup costs microseconds, and the loop below runs for every step.
    checkpoint_every, eval_every = int(cfg0.train.checkpoint_every), int(cfg0.train.eval_every)
    planned_row = {s: i for i, s in enumerate(planned)}
    writer = BackgroundWriter()
    step = start
    try:
        while True:
            # --- checkpoint: the state after `step` updates -----------------------------------------
            if step > start and step % checkpoint_every == 0:
                _check_divergence(runs, nonfinite, step, params)
                _checkpoint(runs, model, opt, step, loss_sum, loss_count, t_start, writer)
            if should_stop():
                _check_divergence(runs, nonfinite, step, params)
                _checkpoint(runs, model, opt, step, loss_sum, loss_count, t_start, writer)
                for run in runs:
                    if run.active:
                        run.state = "interrupted"
                        run.status.update(state="interrupted", last_step=step, wall_time_s=_wall(run, t_start))
                # Paths inside the text, not as arguments: a line naming a run as an argument goes to that
                # run's log alone (launch/pack_logs.py), and this one is about the whole pack.
                log.warning(f"stop requested: checkpointed at step {step}; {_resume_hint(runs[0].dir)}")
                break
            # --- snapshot and evaluation ----------------------------------------------------------
            if step in planned_row:
                _check_divergence(runs, nonfinite, step, params)
                out = resident.row(planned_row[step]) if resident is not None else None
                weights = torch.stack([w.detach() for w in mats], dim=1, out=out)  # a copy: (P, L*4, d, d)
                writer.submit(functools.partial(
                    write_snapshot, step, weights.view(P, shape.n_layers, 4, shape.d_model, shape.d_model),
                    [(run.index, run.trajectory) for run in runs if run.active]))
            # --- model-only checkpoints for the probe stage: kept, unlike checkpoint.pt. Like the
            # snapshot, the one at a resume step is taken after resuming, so a resumed run has them all.
            if any(step in s for s in probe_steps):
                _check_divergence(runs, nonfinite, step, params)
                for run in runs:
                    if run.active and step in probe_steps[run.index]:
                        save_model_checkpoint(run.dir, step, model.run_state(run.index), shape, run.cfg)
            if is_eval_step(step, total, eval_every):
                _check_divergence(runs, nonfinite, step, params)
                train_loss = (loss_sum / max(loss_count, 1)).tolist()
                for run, results in zip(runs, evaluate(model, [r.eval_set for r in runs])):
                    if not run.active:
                        continue
                    # Finite weights can still overflow the logits: such a run has diverged too, and
                    # its NaN metrics are not written.
                    if not all(math.isfinite(v) for res in results for v in (res["eval_loss"], *res["attention_entropy"])):
                        _diverge(run, step, f"the evaluation became non-finite (NaN or inf) at step {step}")
                        continue
                    if loss_count:
                        run.metrics.add(step, "train_loss", train_loss[run.index])
                    for res in results:
                        run.metrics.add(step, "eval_loss", res["eval_loss"], m=res["m"])
                        run.metrics.add(step, "eval_accuracy", res["eval_accuracy"], m=res["m"])
                        for layer, h in enumerate(res["attention_entropy"]):
                            run.metrics.add(step, "attention_entropy", h, m=res["m"], layer=layer)
                loss_sum.zero_()
                loss_count = 0
            # --- SGD commutators: own batches ("commutator/step=<s>" streams), weights left untouched,
            # so training is byte-identical with them on or off; the causal basis reads the snapshots
            # taken so far -------------------------------------------------------------------------
            if commutators is not None and commutators.due(step):
                _check_divergence(runs, nonfinite, step, params)
                if resident is not None:  # every active run has every snapshot planned up to here
                    taken = bisect.bisect_right(planned, step)
                    so_far = [resident.of_run(r.index, taken) if r.active else None for r in runs]
                else:
                    writer.wait()  # the causal basis reads every snapshot so far from the files
                    so_far = [r.trajectory.data[: r.trajectory.count] if r.active else None for r in runs]
                commutators.measure(step, model, so_far, writer.submit)
            if step >= total or not any(r.active for r in runs):
                break
            # --- schedule: optimizer resets at sequential stage boundaries -------------------------
            resets = [r.index for r in runs if r.curriculum.reset_optimizer and r.curriculum.is_stage_start(step)]
            if resets:
                opt.reset_runs(resets)
            # --- forward / backward / update ------------------------------------------------------
            tokens, labels = sample_batches(  # (P, B, T), (P, B)
                [r.layout for r in runs], [r.curriculum.draw_m(step, r.schedule_gen) for r in runs], batch_size,
                [r.data_gen for r in runs], [r.per_batch_positions for r in runs],
            )
            losses = forward_backward(model, tokens, labels)
            if clipping:
                clip_grad_norm_per_run(params, max_norms)
            opt.step()
            for p in params:
                p.grad = None
            nonfinite |= ~torch.isfinite(losses)
            loss_sum += losses
            loss_count += 1
            step += 1
            # --- progress -------------------------------------------------------------------------
            if progress.maybe_report(step, lambda: _progress_extra(runs, loss_sum, loss_count)):
                _check_divergence(runs, nonfinite, step, None)  # records no weights
                for run in runs:
                    if run.active:
                        run.status.heartbeat(last_step=step, wall_time_s=_wall(run, t_start))
                        run.metrics.flush_if_older(HEARTBEAT_S)

        # --- finish -------------------------------------------------------------------------------
        if step >= total:
            _check_divergence(runs, nonfinite, step, params)
            _checkpoint(runs, model, opt, step, loss_sum, loss_count, t_start, writer)
            for run in runs:
                if run.active:
                    run.state = "completed"
                    run.status.update(state="completed", last_step=step, ended_at=now_iso(), wall_time_s=_wall(run, t_start))
                    log.info("%s completed %d steps in %.1f s", run.dir, step, _wall(run, t_start))
        for run in runs:
            run.metrics.flush()
        writer.wait()
    except BaseException as err:
        _fail(runs, err, t_start, step)
        raise
    finally:
        writer.close()
    return [run.state for run in runs]


def forward_backward_eager(model: Transformer, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every run's mean loss on its batch (P,), with the runs' gradients accumulated."""
    logits = model(tokens)  # (P, B, C)
    losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")  # (P*B,)
    losses = losses.view(tokens.shape[0], -1).mean(1)  # (P,)
    # Summing over runs gives each run exactly its own gradient: runs share no weights.
    losses.sum().backward()
    return losses.detach()


def _resume_hint(run_dir: Path) -> str:
    """How to resume: a new launch would get a new timestamped directory and start from scratch."""
    if not HydraConfig.initialized():
        return f"training into {run_dir} again resumes it"
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return f"the same command with hydra.sweep.dir={run_dir.parent} resumes it"
    return f"the same command with hydra.run.dir={run_dir} resumes it"


def _progress_extra(runs: list[Run], loss_sum: torch.Tensor, loss_count: int) -> str:
    active = [r.index for r in runs if r.active]
    text = f"loss {float(loss_sum[active].mean()) / max(loss_count, 1):.4f}" if active and loss_count else "loss -"
    if len(runs) > 1:
        text += f" | runs active {len(active)}/{len(runs)}"
    return text


def _slurm_job_id() -> str | None:
    """The id sacct and scontrol know the job by: "<array>_<task>" for an array task."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def _wall(run: Run, t_start: float) -> float:
    return run.wall_before + time.monotonic() - t_start


def _check_divergence(runs: list[Run], nonfinite: torch.Tensor, step: int, params: list[torch.Tensor] | None) -> None:
    """Stop runs whose loss went NaN or infinite since the last check (one host sync), and, given the
    parameters, runs whose weights did: the update after the last finite loss can itself overflow,
    and a snapshot, evaluation or checkpoint at this step would then record NaN. A progress line
    records no weights and passes None: the weight pass costs about a step's optimizer update."""
    if params is not None:
        P = nonfinite.shape[0]
        # One sum per run and tensor: NaN or inf if any weight is (or if they sum past float32, which
        # trained weights never do); a reduction each, not a boolean copy of every weight.
        sums = torch.stack([p.detach().view(P, -1).sum(1) for p in params])  # (n_tensors, P)
        nonfinite = nonfinite | ~torch.isfinite(sums).all(0)
    bad = nonfinite.tolist()
    for run in runs:
        if run.active and bad[run.index]:
            _diverge(run, step, f"the training loss or the weights became non-finite (NaN or inf) before step {step}")


def _diverge(run: Run, step: int, what: str) -> None:
    run.state = "diverged"
    msg = f"{what}; lower optimizer.lr (now {run.cfg.optimizer.lr}) or set optimizer.grad_clip"
    log.error("%s diverged: %s", run.dir, msg)
    run.metrics.flush()
    run.status.update(state="diverged", last_step=step, error=msg, ended_at=now_iso())


def _checkpoint(runs, model, opt, step, loss_sum, loss_count, t_start, writer: BackgroundWriter) -> None:
    writer.wait()  # the checkpoint records each trajectory's length, and resuming keeps the records before it
    for run in runs:
        if not run.active:
            continue
        run.metrics.flush()
        save_checkpoint(
            run.dir,
            {
                "step": step,
                "model": model.run_state(run.index),
                "optimizer": opt.run_state(run.index),
                "rng": {"data": run.data_gen.get_state(), "schedule": run.schedule_gen.get_state(),
                        "data_device": run.data_gen.device.type},
                "trajectory_count": run.trajectory.count,
                "train_loss": {"sum": float(loss_sum[run.index]), "count": loss_count},
                "wall_time_s": _wall(run, t_start),
                "config": OmegaConf.to_container(run.cfg, resolve=True, enum_to_str=True),
                "device_model": device_model(run.data_gen.device),
            },
        )
        run.status.update(last_step=step, wall_time_s=_wall(run, t_start), checkpoint_step=step)


def _resume(runs: list[Run], model: Transformer, opt: PackedOptimizer) -> int:
    """Load every run's checkpoint (all or none); returns the step to continue from."""
    saved = [load_checkpoint(run.dir) for run in runs]
    if all(s is None for s in saved):
        return 0
    steps = {s["step"] if s else None for s in saved}
    if len(steps) != 1:
        raise ConfigError(
            "runs packed together must resume from checkpoints at the same step, found "
            + ", ".join(f"{r.dir}: {s['step'] if s else 'none'}" for r, s in zip(runs, saved))
        )
    for run, s in zip(runs, saved):
        model.load_run_state(run.index, s["model"])
        opt.load_run_state(run.index, s["optimizer"])
        run.data_gen.set_state(s["rng"]["data"])
        run.schedule_gen.set_state(s["rng"]["schedule"])
        run.wall_before = float(s["wall_time_s"])
        run.resumed_loss = (s["train_loss"]["sum"], s["train_loss"]["count"])
    step = steps.pop()
    log.info("resuming from checkpoint at step %d", step)
    here = device_model(runs[0].data_gen.device)
    elsewhere = sorted({s["device_model"] for s in saved if s.get("device_model", here) != here})
    if elsewhere:
        # Kernels differ between processor models (vector widths, GPU architectures), and with them
        # the last bits of every sum: the resumed run is the same computation, not the same bytes.
        log.warning("resuming on %s from a checkpoint written on %s: the run continues to float tolerance, "
                    "not byte-identical to an uninterrupted run on one machine", here, ", ".join(elsewhere))
    return step


def _fail(runs: list[Run], err: BaseException, t_start: float, step: int | None = None) -> None:
    """Record why the runs stopped; a KeyboardInterrupt or SystemExit counts as interrupted."""
    state = "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "failed"
    stopped = [run for run in runs if run.active]
    # Every status first, with Ctrl-C held back (ctrl_c_held): small files, and what a relaunch and the
    # aggregation read. Another Ctrl-C may still cut the metrics write short.
    with ctrl_c_held():
        for run in stopped:
            run.state = state
            fields = dict(state=state, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(),
                          ended_at=now_iso(), wall_time_s=_wall(run, t_start))
            if step is not None:
                fields["last_step"] = step
            try:
                run.status.update(**fields)
            except Exception:  # the original error matters more than a failed status write
                log.exception("could not record the failure of %s", run.dir)
    for run in stopped:
        try:
            if run.metrics is not None:
                run.metrics.flush()
        except Exception:
            log.exception("could not write the metrics of %s", run.dir)
