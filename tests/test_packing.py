"""Packed seeds, without training: which jobs share a pack, validation of a whole sweep before any
work, and the filter that gives each run of a pack its own log lines."""

import logging
from pathlib import Path

import pytest

from manifold_sweeps.config.validation import ConfigError
from manifold_sweeps.launch.pack_logs import RunLines
from manifold_sweeps.launch.packs import Job, in_sweep_order, plan_packs
from manifold_sweeps.training.packing import form_packs, unread_overrides

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


def sweep(*variants: str, shared: tuple[str, ...] = ()) -> list[Job]:
    """One job per variant (space-separated overrides), each with the shared overrides after it."""
    return [Job(i, (*variant.split(), *shared)) for i, variant in enumerate(variants)]


def test_a_sweep_over_curriculum_ms_under_curriculum_single_is_refused():
    jobs = sweep("curriculum.ms=[1]", "curriculum.ms=[1,2]", shared=("curriculum=single",))
    with pytest.raises(ConfigError, match=r"^2 of 2 jobs differ only in curriculum.ms \[\[1\], \[1, 2\]\] "
                                          r"\(e.g. #0 .* and #1 .*\), which curriculum=single does not read \(it "
                                          r"trains task.m\): they would train identical runs; nothing was started. "
                                          r"Sweep task.m instead"):
        plan_packs(jobs, sweep_configs(jobs), 2)


@pytest.mark.parametrize("key, values", [("eta", ("1e-3", "1e-2")), ("samples", ("3", "9")),
                                         ("save_deltas", ("median", "none")), ("precision", ("float32", "float64"))])
def test_a_sweep_over_commutator_settings_with_commutators_off_is_refused(key, values):
    jobs = sweep(*(f"commutator.{key}={v}" for v in values), shared=("commutator.every=0",))
    with pytest.raises(ConfigError, match=rf"^2 of 2 jobs differ only in commutator.{key} .*which commutator.every=0 "
                                          r"does not read \(it measures no commutators\).*Set commutator.every > 0"):
        plan_packs(jobs, sweep_configs(jobs), 2)


@pytest.mark.parametrize("variants, shared, unread_by", [
    (("curriculum.steps_per_stage=5", "curriculum.steps_per_stage=10"), ("curriculum=mixed",), "curriculum=mixed"),
    (("curriculum.reset_optimizer=true", "curriculum.reset_optimizer=false"), ("curriculum=single",),
     "curriculum=single"),
    (("optimizer.momentum=0.0", "optimizer.momentum=0.9"), ("optimizer=adamw",), "optimizer=adamw"),
    (("optimizer.betas=[0.9,0.999]", "optimizer.betas=[0.8,0.99]"), ("optimizer=sgd",), "optimizer=sgd"),
    (("optimizer.eps=1e-8", "optimizer.eps=1e-6"), ("optimizer=sgd",), "optimizer=sgd"),
    (("probe.checkpoint_fractions=[0.5]", "probe.checkpoint_fractions=[1.0]"), ("probe.checkpoint_steps=[20]",),
     r"probe.checkpoint_steps=\[20\]"),
], ids=["steps_per_stage", "reset_optimizer", "momentum", "betas", "eps", "checkpoint_fractions"])
def test_a_sweep_over_another_key_that_the_jobs_settings_leave_unread_is_refused(variants, shared, unread_by):
    jobs = sweep(*variants, shared=shared)
    key = variants[0].split("=")[0]
    with pytest.raises(ConfigError, match=rf"^2 of 2 jobs differ only in {key} .*which {unread_by} does not read "
                                          r".*they would train identical runs; nothing was started"):
        plan_packs(jobs, sweep_configs(jobs), 2)


def test_unread_keys_swept_together_are_named_together_and_each_reason_is_given():
    jobs = sweep("commutator.eta=1e-3 curriculum.ms=[1]", "commutator.eta=1e-2 curriculum.ms=[2]",
                 shared=("curriculum=single", "commutator.every=0"))
    with pytest.raises(ConfigError, match=r"differ only in curriculum.ms \[\[1\], \[2\]\]; commutator.eta "
                                          r"\[0.001, 0.01\] .*which curriculum=single does not read .* and "
                                          r"commutator.every=0 does not read"):
        plan_packs(jobs, sweep_configs(jobs), 2)


def test_a_run_is_warned_of_each_override_its_settings_leave_unread():
    overrides = ["task.m=3", "optimizer.betas=[0.8,0.9]", "commutator.eta=1e-4", "optimizer=sgd", "seed=4",
                 "optimizer.momentum=0.5", "commutator.every=0"]
    cfg = compose_config(*overrides)  # curriculum=mixed: task.m unread; sgd: betas unread, momentum read
    assert unread_overrides(cfg, overrides) == [
        "task.m=3 has no effect: curriculum=mixed does not read it (it trains curriculum.ms)",
        "optimizer.betas=[0.8,0.9] has no effect: optimizer=sgd does not read it (only adamw has betas and eps)",
        "commutator.eta=1e-4 has no effect: commutator.every=0 does not read it (it measures no commutators)",
    ]
    read = ["curriculum=single", "task.m=3", "optimizer.momentum=0.5"]
    assert unread_overrides(compose_config(*read, "optimizer=sgd"), read) == []


@pytest.mark.parametrize("variants, shared", [
    (("curriculum.ms=[1]", "curriculum.ms=[1,2]"), ("curriculum=mixed",)),
    (("curriculum.ms=[1]", "curriculum.ms=[1,2]"), ("curriculum=sequential",)),
    (("curriculum.steps_per_stage=5", "curriculum.steps_per_stage=10"), ("curriculum=sequential",)),
    (("commutator.eta=1e-3", "commutator.eta=1e-2"), ("commutator.every=10",)),
    (("commutator.every=0", "commutator.every=10"), ()),
    (("optimizer.momentum=0.0", "optimizer.momentum=0.9"), ("optimizer=sgd",)),
    (("optimizer.betas=[0.9,0.999]", "optimizer.betas=[0.8,0.99]"), ("optimizer=adamw",)),
    (("probe.checkpoint_fractions=[0.5]", "probe.checkpoint_fractions=[1.0]"), ()),
    (("probe.sae_l1=0.5", "probe.sae_l1=1.0"), ()),  # read by the probe stage, not by training
    (("optimizer=sgd optimizer.eps=1e-6", "optimizer=adamw optimizer.eps=1e-8"), ()),  # one reads eps
], ids=["ms-mixed", "ms-sequential", "steps_per_stage-sequential", "commutator-on", "commutator.every",
        "momentum-sgd", "betas-adamw", "checkpoint_fractions", "probe-stage-key", "optimizers"])
def test_a_sweep_over_keys_that_its_jobs_read_is_not_refused(variants, shared):
    jobs = sweep(*variants, shared=shared)
    assert sorted(i for pack in plan_packs(jobs, sweep_configs(jobs), 2) for i in pack) == [0, 1]


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
