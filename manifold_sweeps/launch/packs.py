"""Packed seeds in a Hydra multirun: `hydra.launcher.pack_size=N` with our basic, local and slurm launchers.

Whatever the pack size, a launcher composes and validates every job of the sweep before any work
starts (`validate_sweep`). With pack_size > 1 it then groups the jobs whose configs differ only in
per-run keys (seed, task.m, optimizer.lr, curriculum, ...: `training/packing.py`) into packs of at
most N, and trains each pack in one process (`app.run_pack`: stacked weights, one set per run).
Every job keeps its own output directory, prepared by Hydra's own `run_job` (the directory,
`hydra.runtime.output_dir`, `.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml`), so a packed
run's directory has the format of an unpacked run's.
Logs: `pack_logs.py`. Each pack also gets `<sweep dir>/packs/<number of its first job>/` for its own log.

Everything here imports lazily what Hydra's plugin scan should not pay for (torch, through training).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from hydra.core.utils import JobReturn, JobStatus, env_override, filter_overrides, run_job
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ..config.validation import ConfigError, validate
from ..rundir.lock import RunDirBusy
from ..training.identity import other_run_refusal, recorded_config
from ..training.packing import PER_RUN_KEYS, UNREAD_KEYS, flatten, form_packs, unread_overrides
from .pack_logs import pack_logs

log = logging.getLogger(__name__)

PACKS_DIR = "packs"


@dataclass(frozen=True)
class Job:
    """One job of a sweep, as a launcher gets it: its number (hydra.job.num) and its overrides."""

    num: int
    overrides: tuple[str, ...]

    def describe(self) -> str:
        return f"#{self.num} ({' '.join(filter_overrides(self.overrides))})"


def check_pack_size(pack_size: object) -> None:
    if not isinstance(pack_size, int) or isinstance(pack_size, bool) or pack_size < 1:
        raise ConfigError(
            f"hydra.launcher.pack_size={pack_size} is not allowed; allowed: an integer >= 1 (1: one job per "
            f"process; N: up to N jobs that differ only in {', '.join(PER_RUN_KEYS)} train together)"
        )


def sweep_jobs(job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Job]:
    return [Job(initial_job_idx + i, tuple(overrides)) for i, overrides in enumerate(job_overrides)]


def compose_jobs(
    hydra_context: HydraContext, config: DictConfig, jobs: list[Job], job_id: str | None = None
) -> list[DictConfig]:
    """Each job's config (hydra node included) as Hydra's launchers compose it; hydra.job.id is the
    job's number (the basic launcher's choice) unless job_id says otherwise (submitit's job id)."""
    configs = []
    for job in jobs:
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(job.overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = job.num if job_id is None else job_id
            sweep_config.hydra.job.num = job.num
        configs.append(sweep_config)
    return configs


def task_config(sweep_config: DictConfig) -> DictConfig:
    """The config a task function receives: the job's config without its hydra node (as run_job makes it)."""
    cfg = copy.deepcopy(sweep_config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def job_dir(sweep_config: DictConfig) -> Path:
    """The job's run directory, as Hydra's run_job will name it (sweep dir / subdir)."""
    return Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))


def validate_jobs(jobs: list[Job], sweep_configs: list[DictConfig]) -> list[DictConfig]:
    """Every job's task config, once all are valid and none would land in a directory holding a run
    of another config (a relaunch after `conf/` changed, or with an override its directory name
    leaves out), and no two differ only in keys neither reads (UNREAD_KEYS); else one ConfigError
    naming each bad job, before any job starts, so that Hydra has not yet rewritten any run's
    `.hydra/` files."""
    cfgs = [task_config(c) for c in sweep_configs]
    errors = []
    for job, cfg, sweep_config in zip(jobs, cfgs, sweep_configs):
        try:
            validate(cfg)
        except ConfigError as err:
            errors.append(f"  job {job.describe()}: {err}")
            continue
        run_dir = job_dir(sweep_config)
        if other_run_refusal(cfg, run_dir, None):  # the run's recorded config only then: it names the keys
            errors.append(f"  job {job.describe()}: {other_run_refusal(cfg, run_dir, recorded_config(run_dir))}")
    if not errors:
        _refuse_unread_key_sweeps(jobs, cfgs)
    if errors:
        raise ConfigError(f"{len(errors)} of {len(jobs)} jobs cannot run; nothing was started:\n"
                          + "\n".join(errors))
    return cfgs


def _refuse_unread_key_sweeps(jobs: list[Job], cfgs: list[DictConfig]) -> None:
    """Refuse jobs that differ only in keys none of them reads (UNREAD_KEYS): they would train
    identical runs under different names, which the aggregation would then split into conditions."""
    flats = [flatten(cfg) for cfg in cfgs]
    groups: dict[str, list[int]] = {}
    for i, flat in enumerate(flats):
        rules = [rule for rule in UNREAD_KEYS if rule.unread(flat[rule.by])]
        read = {k: v for k, v in flat.items() if not any(rule.covers(k) for rule in rules)}
        groups.setdefault(json.dumps(read, sort_keys=True, default=str), []).append(i)
    text = [{k: json.dumps(v, default=str) for k, v in flat.items()} for flat in flats]
    differing = [(members, [k for k in text[members[0]] if len({text[i][k] for i in members}) > 1])
                 for members in groups.values()]
    repeated = [(members, keys) for members, keys in differing if keys]
    if not repeated:
        return
    first, keys = repeated[0]
    values = "; ".join(f"{k} [{', '.join(dict.fromkeys(text[i][k] for i in first))}]" for k in keys)
    # a group shares every deciding key, so its first job says which rules left these keys unread
    rules = [rule for rule in UNREAD_KEYS if rule.unread(flats[first[0]][rule.by]) and any(map(rule.covers, keys))]
    which = " and ".join(f"{rule.setting(flats[first[0]])} does not read ({rule.why})" for rule in rules)
    raise ConfigError(
        f"{sum(len(members) for members, _ in repeated)} of {len(jobs)} jobs differ only in {values} "
        f"(e.g. {jobs[first[0]].describe()} and {jobs[first[1]].describe()}), which {which}: they would train "
        f"identical runs; nothing was started. {'. '.join(dict.fromkeys(rule.instead for rule in rules))}"
    )


@contextlib.contextmanager
def refusal_ends_the_command() -> Iterator[None]:
    """A refusal before any job starts ends the command with its message alone and exit code 2,
    instead of Hydra's traceback: a ConfigError names the bad key and what is allowed; RunDirBusy (a
    single run into a directory another process trains) names that process."""
    try:
        yield
    except (ConfigError, RunDirBusy) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def validate_sweep(hydra_context: HydraContext, config: DictConfig, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int) -> tuple[list[Job], list[DictConfig]]:
    """Compose every job and validate_jobs; returns the jobs and their composed configs (hydra node
    included), for a launcher that then runs each job on its own (pack_size=1)."""
    jobs = sweep_jobs(job_overrides, initial_job_idx)
    configs = compose_sweep(hydra_context, config, jobs)
    validate_jobs(jobs, configs)
    return jobs, configs


def compose_sweep(hydra_context: HydraContext, config: DictConfig, jobs: list[Job]) -> list[DictConfig]:
    """compose_jobs for a whole sweep at launch, said first: a long sweep takes seconds to compose."""
    log.info("composing and validating the %d jobs of the sweep before starting any", len(jobs))
    return compose_jobs(hydra_context, config, jobs)


def plan_packs(jobs: list[Job], sweep_configs: list[DictConfig], pack_size: int) -> list[list[int]]:
    """Validate every job (validate_jobs), then pack them: indices into jobs, packs of at most
    pack_size that share every key outside PER_RUN_KEYS."""
    packs = form_packs(validate_jobs(jobs, sweep_configs), pack_size)
    log.info("%d jobs in %d pack(s) of at most %d (jobs that differ only in per-run keys share a pack)",
             len(jobs), len(packs), pack_size)
    for k, pack in enumerate(packs):
        log.info("\tpack %d: %s", k, " ".join(f"#{jobs[i].num}" for i in pack))
    return packs


def in_sweep_order(packs: list[list[int]], returns_per_pack: Sequence[Sequence[JobReturn]]) -> list[JobReturn]:
    """The JobReturns of all packs, in the order of the jobs they came from."""
    by_job = {i: ret for pack, rets in zip(packs, returns_per_pack) for i, ret in zip(pack, rets)}
    return [by_job[i] for i in sorted(by_job)]


def _prepare_only(cfg: DictConfig) -> None:
    """The task function given to Hydra's run_job to set up a packed job without running it."""


def run_pack_jobs(
    hydra_context: HydraContext, sweep_configs: list[DictConfig], job_dir_key: str
) -> list[JobReturn]:
    """Train the jobs of one pack in this process; one JobReturn per job, as run_job gives.

    Training errors become FAILED returns of every job of the pack (a crash stops the whole pack);
    each run's status.json says what happened to it.
    """
    from ..app import run_pack  # imports torch

    # Hydra's own job set-up for every run; its callbacks (on_job_start/end) fire here, before training.
    returns = [
        run_job(hydra_context=hydra_context, task_function=_prepare_only, config=c, job_dir_key=job_dir_key,
                job_subdir_key="hydra.sweep.subdir", configure_logging=False)
        for c in sweep_configs
    ]
    run_dirs = [Path(c.hydra.runtime.output_dir) for c in sweep_configs]
    first = sweep_configs[0]
    pack_dir = Path(str(OmegaConf.select(first, job_dir_key))).absolute() / PACKS_DIR / str(first.hydra.job.num)
    with pack_logs(sweep_configs, pack_dir), env_override(returns[0].hydra_cfg.hydra.job.env_set):
        _log_pack(run_dirs, pack_dir)
        for ret, run_dir in zip(returns, run_dirs):
            for line in unread_overrides(ret.cfg, ret.hydra_cfg.hydra.overrides.task):
                log.warning("%s: %s", run_dir, line)  # the run directory as an argument: its own log keeps it
        try:
            states = run_pack([r.cfg for r in returns], run_dirs)
        except Exception as err:  # as run_job does: the launcher goes on, the sweeper raises it afterwards
            for ret in returns:
                ret.status, ret.return_value = JobStatus.FAILED, err
        else:
            for ret, state in zip(returns, states):
                ret.status, ret.return_value = JobStatus.COMPLETED, state
    return returns


def _log_pack(run_dirs: list[Path], pack_dir: Path) -> None:
    # The run directories as arguments: every run's own log keeps this line (pack_logs.RunLines).
    log.info("training %d job(s) as one pack, whole log in %s; runs:" + " %s" * len(run_dirs),
             len(run_dirs), pack_dir, *run_dirs)
