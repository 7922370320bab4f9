"""Packed seeds, without training: which jobs share a pack, validation of a whole sweep before any
work, and the filter that gives each run of a pack its own log lines."""

import logging
from pathlib import Path

import pytest

from manifold_sweeps.config.validation import ConfigError
from manifold_sweeps.launch.pack_logs import RunLines
from manifold_sweeps.launch.packs import Job, in_sweep_order, plan_packs
from manifold_sweeps.training.packing import form_packs

from .conftest import compose_config
from .test_launchers import compose_hydra


def test_packs_group_jobs_by_their_non_per_run_keys_then_cut_each_group_into_chunks():
    # Jobs alternate between two widths; seed, m, lr and the curriculum are per-run keys.
    overrides = [("model.d_model=16", "seed=0"), ("model.d_model=32", "seed=0"),
                 ("model.d_model=16", "seed=1", "optimizer.lr=0.01"), ("model.d_model=32", "seed=1"),
                 ("model.d_model=16", "seed=2", "curriculum=single", "task.m=1"), ("model.d_model=32", "seed=2"),
                 ("model.d_model=16", "seed=3", "curriculum=sequential")]
    cfgs = [compose_config("experiment=smoke", *o) for o in overrides]
    assert form_packs(cfgs, 2) == [[0, 2], [4, 6], [1, 3], [5]]
    assert form_packs(cfgs, 3) == [[0, 2, 4], [6], [1, 3, 5]]
    assert form_packs(cfgs, 1) == [[i] for i in (0, 2, 4, 6, 1, 3, 5)]
    assert form_packs(cfgs, 20) == [[0, 2, 4, 6], [1, 3, 5]]
    # keys that change how a run is carried out must be shared too: the loop reads them from the first run
    cfgs = [compose_config("experiment=smoke", f"train.checkpoint_every={n}") for n in (10, 20, 10)]
    assert form_packs(cfgs, 4) == [[0, 2], [1]]


def sweep_configs(jobs):
    """Each job's config with its hydra node, as a launcher composes it."""
    return [compose_hydra("experiment=smoke", *job.overrides) for job in jobs]


def test_every_job_is_validated_before_any_pack_forms_and_each_bad_one_is_named():
    jobs = [Job(5 + i, ("curriculum=single", f"task.m={m}")) for i, m in enumerate((1, 9, 2, 7))]
    configs = sweep_configs(jobs)
    with pytest.raises(ConfigError) as info:
        plan_packs(jobs, configs, 2)
    message = str(info.value)
    assert message.startswith("2 of 4 jobs cannot run; nothing was started")
    assert "job #6 (curriculum=single task.m=9): task.m=9 is not allowed" in message
    assert "job #8 (curriculum=single task.m=7): task.m=7 is not allowed" in message
    assert "allowed: 1..5" in message and "#5" not in message


def test_a_sweep_over_task_m_under_a_curriculum_that_does_not_read_it_is_refused():
    jobs = [Job(i, (f"seed={i // 2}", f"task.m={1 + i % 2}")) for i in range(4)]  # the default: curriculum=mixed
    with pytest.raises(ConfigError, match=r"4 of 4 jobs differ only in task.m \[1, 2\] .*curriculum=mixed does not "
                                          r"read.*Add curriculum=single"):
        plan_packs(jobs, sweep_configs(jobs), 2)
    single = [Job(j.num, (*j.overrides, "curriculum=single")) for j in jobs]
    assert plan_packs(single, sweep_configs(single), 2) == [[0, 1], [2, 3]]
    # m alongside another swept key that the curriculum does read is still refused per group
    mixed_ms = [Job(i, (f"curriculum.ms=[{1 + i // 2}]", f"task.m={1 + i % 2}")) for i in range(4)]
    with pytest.raises(ConfigError, match="4 of 4 jobs differ only in task.m"):
        plan_packs(mixed_ms, sweep_configs(mixed_ms), 2)


def test_packs_index_the_jobs_and_their_returns_come_back_in_sweep_order():
    jobs = [Job(i, (f"seed={i % 3}", f"model.d_model={16 * (1 + i // 3)}")) for i in range(6)]
    packs = plan_packs(jobs, sweep_configs(jobs), 2)
    assert packs == [[0, 1], [2], [3, 4], [5]]
    returns = [[f"return of job {i}" for i in pack] for pack in packs]
    assert in_sweep_order(packs, returns) == [f"return of job {i}" for i in range(6)]


def record(message, *args):
    return logging.LogRecord("manifold_sweeps.training.loop", logging.INFO, __file__, 1, message, args, None)


def test_a_runs_log_keeps_pack_wide_lines_and_its_own_but_not_its_pack_mates():
    a, b, other = Path("/sweep/seed=1"), Path("/sweep/seed=10"), Path("/elsewhere/seed=1")
    keep_a = RunLines(a, [a, b])
    assert keep_a.filter(record("step 20/40 (50.0%) | 9.1 steps/s"))
    assert keep_a.filter(record("%s completed %d steps", a, 40))
    assert not keep_a.filter(record("%s completed %d steps", b, 40))  # not fooled by the shared prefix
    assert keep_a.filter(record("pack of 2:" + " %s" * 2, a, b))  # names this run among others
    assert keep_a.filter(record("%s is outside the pack", other))
    assert RunLines(b, [a, b]).filter(record("%s diverged: %s", b, "non-finite loss"))
