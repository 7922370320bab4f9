"""The launcher presets compose, and the SLURM launcher checks settings and splits large sweeps (no cluster)."""

import os
import re
import stat
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.types import HydraContext
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hydra_plugins.manifold_sweeps_launcher import slurm_launcher
from hydra_plugins.manifold_sweeps_launcher.slurm_launcher import cluster_max_array_size
from manifold_sweeps.launch.packs import Job
from manifold_sweeps.paths import CONF_DIR


def compose_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def base_class(launcher, name: str) -> type:
    """The launcher's base class of that qualified name. Hydra's plugin scan re-executes plugin modules,
    so a class imported before Hydra first composed may not be the one a launcher derives from."""
    return next(c for c in type(launcher).__mro__ if f"{c.__module__}.{c.__qualname__}" == name)


def launcher_for(*overrides: str, task_function=None):
    """The launcher of a multirun set up as Hydra sets it up (config and context), with no cluster."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        context = HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=Callbacks(cfg))
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=context, task_function=task_function, config=cfg)
    return launcher


def test_the_default_launcher_runs_jobs_as_hydras_basic_one_does_composing_each_job_once(tmp_path, monkeypatch):
    assert compose_hydra().hydra.launcher == {
        "_target_": "hydra_plugins.manifold_sweeps_launcher.in_process_launcher.InProcessLauncher", "pack_size": 1}
    composed = []
    seen = {}

    def task(cfg):
        hc = HydraConfig.get()
        seen[kind].append((OmegaConf.to_container(cfg), hc.job.num, hc.job.id, hc.overrides.task,
                           Path(hc.runtime.output_dir).relative_to(tmp_path / kind).as_posix()))
        return cfg.seed

    for kind in ("ours", "hydras"):
        seen[kind] = []
        launcher = launcher_for("experiment=smoke", f"hydra.sweep.dir={tmp_path / kind}", task_function=task)
        if kind == "hydras":
            ours, launcher = launcher, base_class(launcher, "hydra._internal.core_plugins.basic_launcher.BasicLauncher")()
            launcher.setup(hydra_context=ours.hydra_context, task_function=task, config=ours.config)
        loader = type(launcher.hydra_context.config_loader)
        real = loader.load_sweep_config
        monkeypatch.setattr(loader, "load_sweep_config", lambda self, *a, **k: composed.append(kind) or real(self, *a, **k))
        returns = launcher.launch([["seed=0"], ["seed=1"]], 3)
        monkeypatch.setattr(loader, "load_sweep_config", real)
        assert [r.return_value for r in returns] == [0, 1]
    # what every job and its directory get is what Hydra's basic launcher gives them
    assert [s[1:] for s in seen["ours"]] == [(3, "3", ["seed=0"], "seed=0"), (4, "4", ["seed=1"], "seed=1")]
    assert seen["ours"] == seen["hydras"]
    for job in ("seed=0", "seed=1"):
        for name in ("config.yaml", "overrides.yaml"):
            assert (tmp_path / "ours" / job / ".hydra" / name).read_text() == (tmp_path / "hydras" / job / ".hydra" / name).read_text()
    # but each job is composed once (for the validation, whose configs then run), as Hydra's launcher does
    assert composed.count("ours") == composed.count("hydras") == 2


def test_the_default_launcher_starts_nothing_unless_every_job_is_valid(tmp_path, capsys):
    ran = []
    launcher = launcher_for("experiment=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}", task_function=ran.append)
    with pytest.raises(SystemExit) as info:  # the message alone, exit code 2: no traceback
        launcher.launch([["seed=0"], ["curriculum=single", "task.m=99"]], 3)
    assert info.value.code == 2
    assert ("error: 1 of 2 jobs cannot run; nothing was started:\n  job #4 (curriculum=single task.m=99)"
            in capsys.readouterr().err)
    assert ran == [] and not (tmp_path / "sweep").exists()


def test_the_default_launcher_starts_nothing_when_jobs_differ_only_in_keys_none_of_them_reads(tmp_path, capsys):
    ran = []
    launcher = launcher_for("experiment=smoke", f"hydra.sweep.dir={tmp_path / 'sweep'}", task_function=ran.append)
    with pytest.raises(SystemExit) as info:  # as Hydra hands out `-m curriculum=single 'curriculum.ms=[1],[1,2]'`
        launcher.launch([["curriculum=single", f"curriculum.ms={ms}"] for ms in ("[1]", "[1,2]")], 0)
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith(
        "error: 2 of 2 jobs differ only in curriculum.ms [[1], [1, 2]] (e.g. #0 (curriculum=single curriculum.ms=[1]) "
        "and #1 (curriculum=single curriculum.ms=[1,2])), which curriculum=single does not read (it trains task.m): "
        "they would train identical runs; nothing was started.")
    assert ran == [] and not (tmp_path / "sweep").exists()


def test_the_slurm_preset_asks_for_one_gpu_and_requeues_and_every_field_can_be_overridden():
    launcher = compose_hydra("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_ == "hydra_plugins.manifold_sweeps_launcher.slurm_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.cpus_per_task >= 1 and launcher.mem_gb > 0
    assert launcher.max_num_timeout > 0 and launcher.additional_parameters == {"requeue": True}
    assert launcher.timeout_min * 60 > launcher.signal_delay_s > 0
    assert launcher.partition is None and launcher.account is None and launcher.max_array_size is None
    assert launcher.name == "manifold_sweeps"

    launcher = compose_hydra(
        "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.account=proj",
        "hydra.launcher.qos=high", "hydra.launcher.constraint=a100", "hydra.launcher.gpus_per_node=2",
        "hydra.launcher.timeout_min=30", "hydra.launcher.max_array_size=500",
        "+hydra.launcher.additional_parameters.mail-type=END", "hydra.launcher.setup=[module load cuda]",
    ).hydra.launcher
    assert (launcher.partition, launcher.account, launcher.qos, launcher.constraint) == ("gpu", "proj", "high", "a100")
    assert (launcher.gpus_per_node, launcher.timeout_min, launcher.max_array_size) == (2, 30, 500)
    assert launcher.additional_parameters == {"requeue": True, "mail-type": "END"}
    assert list(launcher.setup) == ["module load cuda"]


def test_the_slurm_preset_rejects_unknown_fields_and_wrong_types():
    with pytest.raises(ConfigCompositionException, match="gpus_per_nod"):
        compose_hydra("hydra/launcher=slurm", "hydra.launcher.gpus_per_nod=1")
    with pytest.raises(ConfigCompositionException, match="timeout_min"):
        compose_hydra("hydra/launcher=slurm", "hydra.launcher.timeout_min=soon")


def test_the_local_preset_uses_submitits_local_executor():
    launcher = compose_hydra("hydra/launcher=local", "hydra.launcher.timeout_min=10").hydra.launcher
    assert launcher._target_ == "hydra_plugins.manifold_sweeps_launcher.local_launcher.LocalLauncher"
    assert base_class(instantiate(launcher), "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher")
    assert launcher.timeout_min == 10 and launcher.cpus_per_task is None and launcher.pack_size == 1


def refusal(launcher_cfg, capsys) -> str:
    """What instantiating the launcher prints: a refused setting ends the command with the message alone
    and exit code 2, not inside Hydra's instantiation error."""
    with pytest.raises(SystemExit) as info:
        instantiate(launcher_cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hydra.launcher.") and "Error in call to target" not in err
    return err


@pytest.mark.parametrize("preset", ["in_process", "local", "slurm"])
def test_every_launcher_takes_a_pack_size_and_refuses_one_below_1(preset, capsys):
    assert compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.pack_size=20").hydra.launcher.pack_size == 20
    with pytest.raises(ConfigCompositionException, match="pack_size"):
        compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.pack_size=many")
    err = refusal(compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.pack_size=0").hydra.launcher, capsys)
    assert re.search(r"hydra.launcher.pack_size=0 is not allowed; allowed: an integer >= 1", err)


@pytest.mark.parametrize(
    "override,message",
    [
        ("hydra.launcher.timeout_min=1", r"signal_delay_s=120 is not allowed .*allowed: 0 <= seconds <= 59 "),
        # an hour's limit, signalled 10 s in: submitit would requeue it as preempted, again and again
        ("hydra.launcher.signal_delay_s=3590", r"signal_delay_s=3590 is not allowed \(submitit would take the "
                                               r"checkpoint signal for a preemption.*allowed: 0 <= seconds <= 720 "),
        ("hydra.launcher.max_num_timeout=-1", r"max_num_timeout=-1 is not allowed"),
        ("hydra.launcher.array_parallelism=0", r"array_parallelism=0 is not allowed"),
        ("hydra.launcher.max_array_size=0", r"max_array_size=0 is not allowed .*null \(ask the cluster\)"),
    ],
)
def test_launcher_settings_that_would_break_runs_are_refused_before_submission(override, message, capsys):
    assert re.search(message, refusal(compose_hydra("hydra/launcher=slurm", override).hydra.launcher, capsys))


@pytest.mark.parametrize("preset", ["local", "slurm"])
def test_a_cpus_per_task_below_1_is_refused_before_any_job_starts(preset, capsys):
    err = refusal(compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.cpus_per_task=0").hydra.launcher, capsys)
    assert re.search(r"hydra.launcher.cpus_per_task=0 is not allowed .*allowed: null \(.+\) or an integer >= 1", err)


def submitted_waves(launcher, monkeypatch) -> list:
    """Stand in for hydra-submitit's submission (no processes): [(entries, first job number, threads of its
    tasks)] for each call, in order."""
    waves = []
    base = base_class(launcher, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher")
    monkeypatch.setattr(base, "launch", lambda self, entries, first: waves.append(
        ([list(e) for e in entries], first, self.threads)) or [])
    return waves


def test_the_local_launcher_runs_at_most_max_parallel_processes_at_once_in_waves(tmp_path, monkeypatch, caplog):
    """submitit's local executor starts every job it is given at once: a large sweep would exhaust memory."""
    from manifold_sweeps.launch import cpu_threads

    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 2)
    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", f"hydra.sweep.dir={tmp_path}")
    waves = submitted_waves(launcher, monkeypatch)
    with caplog.at_level("INFO"):
        launcher.launch([[f"seed={i}"] for i in range(5)], 10)
    # one process per core by default; a wave of one gets both cores
    assert waves == [([["seed=0"], ["seed=1"]], 10, 1), ([["seed=2"], ["seed=3"]], 12, 1), ([["seed=4"]], 14, 2)]
    assert "5 processes in 3 waves of at most 2" in caplog.text and "wave 3 of 3: 1 process(es)" in caplog.text

    waves.clear()  # packs: one process each; a pack's task number is its index in launcher.packs
    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", "hydra.launcher.pack_size=2",
                            "hydra.launcher.max_parallel=3", f"hydra.sweep.dir={tmp_path}")
    launcher.launch([[f"seed={i}"] for i in range(7)], 0)
    assert [(len(entries), first, threads) for entries, first, threads in waves] == [(3, 0, 1), (1, 3, 2)]
    assert [[job.num for job in pack] for pack in launcher.packs] == [[0, 1], [2, 3], [4, 5], [6]]


def test_a_local_process_that_dies_without_a_result_does_not_cancel_the_later_waves(tmp_path, monkeypatch):
    from manifold_sweeps.launch import cpu_threads

    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 1)
    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", f"hydra.sweep.dir={tmp_path}")
    started = []

    def launch(self, entries, first):
        started.append(first)
        if first == 0:
            raise RuntimeError("job 0 died")  # what submitit raises for a job killed without a result
        return [f"result {first}"]

    base = base_class(launcher, "hydra_plugins.hydra_submitit_launcher.submitit_launcher.BaseSubmititLauncher")
    monkeypatch.setattr(base, "launch", launch)
    with pytest.raises(RuntimeError, match="job 0 died"):
        launcher.launch([[f"seed={i}"] for i in range(3)], 0)
    assert started == [0, 1, 2]


def test_a_max_parallel_below_1_is_refused_before_any_job_starts(capsys):
    err = refusal(compose_hydra("hydra/launcher=local", "hydra.launcher.max_parallel=0").hydra.launcher, capsys)
    assert re.search(r"hydra.launcher.max_parallel=0 is not allowed .*allowed: null \(one per core\) or an "
                     r"integer >= 1", err)


@pytest.mark.parametrize(
    "preset,overrides,n_jobs,expected",
    [
        ("local", [], 2, 4),  # 8 cores, two processes at once
        ("local", [], 3, 2),
        ("local", ["hydra.launcher.max_parallel=20"], 20, 1),  # more processes than cores: one thread each, never 0
        ("local", ["hydra.launcher.pack_size=2"], 4, 4),  # two packs
        ("local", ["hydra.launcher.cpus_per_task=3"], 2, 3),
        ("slurm", [], 2, 4),  # the preset's cpus_per_task, what SLURM reserves
        ("slurm", ["hydra.launcher.cpus_per_task=null"], 2, None),  # PyTorch's default, within the task's CPUs
    ],
)
def test_each_submitit_job_trains_with_its_share_of_the_cpus(tmp_path, monkeypatch, preset, overrides, n_jobs,
                                                             expected):
    """PyTorch gives every process all the machine's cores: jobs side by side then fight over them (two
    2-thread runs on 2 cores ran 12x slower each than one alone)."""
    import submitit
    import torch
    from hydra.core.singleton import Singleton

    from manifold_sweeps.launch import cpu_threads

    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 8)
    launcher = launcher_for(f"hydra/launcher={preset}", "experiment=smoke", *overrides, f"hydra.sweep.dir={tmp_path}")
    if preset == "slurm":
        monkeypatch.setattr(slurm_launcher, "cluster_max_array_size", lambda: 1001)
    waves = submitted_waves(launcher, monkeypatch)
    launcher.launch([[f"seed={i}"] for i in range(n_jobs)], 0)
    assert [threads for _, _, threads in waves] == [expected]

    monkeypatch.setattr(submitit, "JobEnvironment", lambda: type("Env", (), {"job_id": "7"})())
    seen = []
    launcher.task_function = lambda cfg: seen.append(torch.get_num_threads())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(5)  # neither the default nor any expected count
        if launcher.packs is None:
            launcher(["seed=0"], "hydra.sweep.dir", 0, "job_id_for_0", Singleton.get_state())
        else:
            from hydra_plugins.manifold_sweeps_launcher import _submitit_packing

            monkeypatch.setattr(_submitit_packing, "run_pack_jobs",
                                lambda context, configs, key: seen.append(torch.get_num_threads()))
            launcher(["pack of 2:", "#0", "#1"], "hydra.sweep.dir", 0, "job_id_for_0", Singleton.get_state())
    finally:
        torch.set_num_threads(before)
    assert seen == [5 if expected is None else expected]


@pytest.mark.parametrize("preset", ["local", "slurm"])
def test_a_time_limit_under_a_minute_is_refused_before_any_job_starts(preset, capsys):
    err = refusal(compose_hydra(f"hydra/launcher={preset}", "hydra.launcher.timeout_min=0").hydra.launcher, capsys)
    assert re.search(r"hydra.launcher.timeout_min=0 is not allowed .*allowed: a whole number of minutes >= 1", err)


def fake_scontrol(tmp_path, monkeypatch, output: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_the_array_size_limit_is_read_from_the_cluster(tmp_path, monkeypatch):
    fake_scontrol(tmp_path, monkeypatch, "MailProg = /bin/mail\nMaxArraySize            = 77\nMaxJobCount = 10000")
    assert cluster_max_array_size() == 77


def test_without_scontrol_the_array_size_limit_is_slurms_default(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cluster_max_array_size() == 1001


@pytest.mark.parametrize(
    "max_array_size,cluster_limit,expected", [(None, 3, [3, 3, 1]), (2, 1001, [2, 2, 2, 1]), (None, 1001, [7])]
)
def test_a_sweep_larger_than_the_array_limit_goes_out_as_several_arrays(
    tmp_path, monkeypatch, max_array_size, cluster_limit, expected
):
    submitted = []

    def record(self, job_overrides, initial_job_idx):
        submitted.append((list(job_overrides), initial_job_idx))
        return [f"return of job {initial_job_idx + i}" for i in range(len(job_overrides))]

    monkeypatch.setattr(slurm_launcher, "cluster_max_array_size", lambda: cluster_limit)
    launcher = slurm_launcher_for(tmp_path, f"hydra.launcher.max_array_size={max_array_size or 'null'}")
    monkeypatch.setattr(base_class(launcher, SUBMITIT_SLURM), "launch", record)

    sweep = [[f"seed={s}"] for s in range(7)]
    returns = launcher.launch(sweep, initial_job_idx=5)
    assert [len(batch) for batch, _ in submitted] == expected
    assert [first for _, first in submitted] == [5 + sum(expected[:i]) for i in range(len(expected))]
    assert [o for batch, _ in submitted for o in batch] == sweep
    assert returns == [f"return of job {5 + i}" for i in range(7)]


def slurm_launcher_for(tmp_path, *overrides: str):
    # A sweep directory of the test's own: launching writes the jobs' composed configs there.
    return launcher_for("hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", *overrides)


SUBMITIT_SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def test_a_packed_sweep_goes_out_as_one_array_task_per_pack_split_at_the_array_limit(tmp_path, monkeypatch):
    submitted = []

    def record(self, entries, initial_job_idx):
        submitted.append((list(entries), initial_job_idx))
        # a pack's task returns one JobReturn per job of the pack
        return [[f"return of job {job.num}" for job in self.packs[initial_job_idx + i]] for i in range(len(entries))]

    launcher = slurm_launcher_for(tmp_path, "hydra.launcher.pack_size=2", "hydra.launcher.max_array_size=3")
    monkeypatch.setattr(base_class(launcher, SUBMITIT_SLURM), "launch", record)
    sweep = [["experiment=smoke", f"model.d_model={d}", f"seed={s}"] for s in range(3) for d in (16, 32)]
    returns = launcher.launch(sweep, initial_job_idx=4)

    assert launcher.packs == [[Job(4, tuple(sweep[0])), Job(6, tuple(sweep[2]))], [Job(8, tuple(sweep[4]))],
                              [Job(5, tuple(sweep[1])), Job(7, tuple(sweep[3]))], [Job(9, tuple(sweep[5]))]]
    # four array tasks (one per pack, numbered by pack), in arrays of at most 3; the labels are only logged
    assert [(len(entries), first) for entries, first in submitted] == [(3, 0), (1, 3)]
    assert submitted[0][0][0] == ["pack of 2:", "#4", "#6"]
    assert returns == [f"return of job {4 + i}" for i in range(6)]  # in sweep order


def test_a_packed_sweep_with_a_bad_job_is_refused_before_anything_is_submitted(tmp_path, monkeypatch, capsys):
    launcher = slurm_launcher_for(tmp_path, "hydra.launcher.pack_size=2")
    monkeypatch.setattr(base_class(launcher, SUBMITIT_SLURM), "launch", lambda *args: pytest.fail("submitted"))
    with pytest.raises(SystemExit):
        launcher.launch([["experiment=smoke", "curriculum=single", f"task.m={m}"] for m in (1, 9)], 0)
    assert "job #1 (experiment=smoke curriculum=single task.m=9): task.m=9" in capsys.readouterr().err


@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_sweep_says_it_is_composing_its_jobs_before_the_wait(tmp_path, capsys, pack_size):
    launcher = launcher_for("experiment=smoke", f"hydra.launcher.pack_size={pack_size}", f"hydra.sweep.dir={tmp_path}")
    with pytest.raises(SystemExit):  # the second job is refused: nothing trains
        launcher.launch([["seed=0"], ["seed=-1"]], 0)
    captured = capsys.readouterr()
    assert "composing and validating the 2 jobs of the sweep before starting any" in captured.out + captured.err


@pytest.mark.parametrize("pack_size", [1, 2])
def test_a_submitit_job_runs_the_config_composed_at_submission(tmp_path, monkeypatch, pack_size):
    """Edits to conf/ while jobs wait in the queue must not reach them (nor a requeued job, whose run
    would then be refused as another config): the job does not compose its config again."""
    import submitit
    from hydra.core.singleton import Singleton

    from hydra_plugins.manifold_sweeps_launcher import _submitit_packing

    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", f"hydra.launcher.pack_size={pack_size}",
                            f"hydra.sweep.dir={tmp_path}")
    monkeypatch.setattr(type(launcher), "submit", lambda self, entries, first: [])  # no queue: the job is called below
    launcher.launch([["seed=0"], ["seed=1"]], 0)
    first = (launcher.composed_dir, launcher.packs)
    # A relaunch into the same sweep with other jobs (a grown sweep) keeps its configs apart
    launcher.launch([["seed=20"], ["seed=21"]], 0)
    folders = sorted((tmp_path / ".submitit" / "composed").iterdir())
    assert len(folders) == 2 and all(sorted(p.name for p in f.iterdir()) == ["0.pkl", "1.pkl"] for f in folders)
    launcher.composed_dir, launcher.packs = first  # a task of the first launch, still queued, carries its own

    loader = type(launcher.hydra_context.config_loader)
    monkeypatch.setattr(loader, "load_sweep_config", lambda *a, **k: pytest.fail("the job composed its config again"))
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: type("Env", (), {"job_id": "42_0"})())
    seen = []
    if pack_size == 1:
        launcher.task_function = lambda cfg: seen.append(cfg.seed)
        ret = launcher(["seed=1"], "hydra.sweep.dir", 1, "job_id_for_1", Singleton.get_state())
        assert seen == [1] and ret.hydra_cfg.hydra.job.id == "42_0" and ret.hydra_cfg.hydra.job.num == 1
        assert (tmp_path / "seed=1" / ".hydra" / "config.yaml").exists()
    else:
        monkeypatch.setattr(_submitit_packing, "run_pack_jobs",
                            lambda context, configs, key: seen.extend((c.seed, c.hydra.job.id) for c in configs))
        launcher(["pack of 2:", "#0", "#1"], "hydra.sweep.dir", 0, "job_id_for_0", Singleton.get_state())
        assert seen == [(0, "42_0"), (1, "42_0")]


def test_a_job_whose_composed_config_is_gone_composes_it_again_and_says_so(tmp_path, monkeypatch, caplog):
    import submitit
    from hydra.core.singleton import Singleton

    launcher = launcher_for("hydra/launcher=local", "experiment=smoke", f"hydra.sweep.dir={tmp_path}")
    monkeypatch.setattr(type(launcher), "submit", lambda self, entries, first: [])
    launcher.launch([["seed=0"], ["seed=1"]], 0)
    assert Path(launcher.composed_dir).is_absolute()  # found from whatever directory the job starts in
    (Path(launcher.composed_dir) / "1.pkl").unlink()
    monkeypatch.setattr(submitit, "JobEnvironment", lambda: type("Env", (), {"job_id": "7"})())
    seen = []
    launcher.task_function = lambda cfg: seen.append(cfg.seed)
    with caplog.at_level("WARNING"):
        launcher(["seed=1"], "hydra.sweep.dir", 1, "job_id_for_1", Singleton.get_state())
    assert seen == [1] and "1.pkl, this job's config as composed at submission, is gone" in caplog.text
