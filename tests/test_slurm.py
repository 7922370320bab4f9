"""Sweeps on a real SLURM cluster on localhost (launchers/local_cluster): one job array with GPU
requests, failures, arrays split below MaxArraySize, preemption with requeue and resume, a
relaunch through the batch-submitted driver that skips completed runs and resumes a killed one, and
a packed sweep (one array task per pack).

The session fixture starts the cluster (installing the Debian packages if needed, so it needs
root and apt-get) in its own directory and ports, and stops it at the end.
Set MANIFOLD_SWEEPS_SKIP_SLURM=1 to skip these tests.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import submitit
from omegaconf import OmegaConf

from manifold_sweeps.paths import REPO_ROOT
from manifold_sweeps.rundir.checkpoint import load_checkpoint
from manifold_sweeps.rundir.metrics import load_metrics
from manifold_sweeps.rundir.status import effective_state, read_status

pytestmark = pytest.mark.slow

CLUSTER = REPO_ROOT / "launchers" / "local_cluster"
CLUSTER_DIR = Path(tempfile.gettempdir()) / "manifold-sweeps-slurm-tests"
CLUSTER_PORT = "6917"  # not the development cluster's 6817: both may run at once
# Small jobs: one CPU (so one torch thread each) and a time limit well above the checkpoint signal's 120 s.
TEST_LAUNCHER = ("hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=5")
# Long enough to interrupt mid-way; the same computation under two names (progress_every_s changes
# no result), so one job is interrupted and the other is the uninterrupted reference. Commutators
# on, every sample's delta saved: a resumed run must record them as an uninterrupted one does.
LONG_PAIR = ("experiment=smoke", "train.steps=800", "train.snapshot_every=25", "train.eval_every=250",
             "commutator.every=200", "commutator.samples=3", "commutator.save_deltas=all",
             "train.progress_every_s=30,31")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def why_skip() -> str | None:
    if os.environ.get("MANIFOLD_SWEEPS_SKIP_SLURM"):
        return "MANIFOLD_SWEEPS_SKIP_SLURM is set"
    if not sys.platform.startswith("linux"):
        return "the local SLURM cluster runs on Linux only"
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (it starts munged, MariaDB and the SLURM daemons)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_env():
    """Environment of a client of the running test cluster (SLURM_CONF set)."""
    reason = why_skip()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "LOCAL_SLURM_DIR": str(CLUSTER_DIR), "LOCAL_SLURM_PORT": CLUSTER_PORT}
    up = subprocess.run([CLUSTER / "up.sh"], env=env, capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        pytest.fail(f"could not start the local SLURM cluster:\n{up.stdout}\n{up.stderr}")
    print(up.stdout)
    env.update(SLURM_CONF=str(CLUSTER_DIR / "etc" / "slurm.conf"), PYTHONUNBUFFERED="1")
    env.pop("SUBMITIT_EXECUTOR", None)
    yield env
    subprocess.run([CLUSTER / "down.sh"], env=env, timeout=120)


@pytest.fixture
def slurm_client(slurm_env, monkeypatch):
    """Lets this process use scancel and sacct on the test cluster (submitit's job interface too)."""
    monkeypatch.setenv("SLURM_CONF", slurm_env["SLURM_CONF"])
    return slurm_env


def sweep_command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "manifold_sweeps", "-m", *overrides, *TEST_LAUNCHER, f"hydra.sweep.dir={sweep_dir}"]


def run_sweep(env, sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(sweep_dir, *overrides), cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def start_sweep():
    """Starts a sweep driver in the background; a driver still running when the test ends is killed."""
    drivers = []

    def start(env, sweep_dir: Path, *overrides: str) -> subprocess.Popen:
        drivers.append(subprocess.Popen(sweep_command(sweep_dir, *overrides), cwd=REPO_ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        return drivers[-1]

    yield start
    for driver in drivers:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()


def run_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()}


def slurm_id(run_dir: Path) -> str:
    """The SLURM job id ("array_task" for array tasks) that ran the run, as Hydra recorded it."""
    return str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def sacct(env, job_id: str, expected_rows: int, *flags: str, timeout_s: float = 60) -> list[tuple[str, str, str]]:
    """(job id, state, allocated TRES) per job or array task in sacct's order, once there are
    `expected_rows` rows and all are finished: accounting lags the jobs by about a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,AllocTRES", *flags],
                             env=env, capture_output=True, text=True, check=True).stdout
        rows = [tuple(line.split("|")) for line in out.splitlines() if line]
        if len(rows) == expected_rows and all(state.split()[0] in TERMINAL | {"REQUEUED"} for _, state, _ in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct -j {job_id} {' '.join(flags)}: "
                                 f"expected {expected_rows} finished rows, got {rows}")
        time.sleep(0.5)


def wait_until(condition, what: str, proc: subprocess.Popen | None = None, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def snapshots(run_dir: Path) -> int:
    try:
        return len(np.load(run_dir / "trajectory_steps.npy"))
    except (OSError, ValueError):
        return 0


def result_files(run_dir: Path) -> dict[str, bytes]:
    names = ("trajectory.npy", "trajectory_steps.npy", "commutators.parquet", "commutator_deltas.npy",
             "commutator_deltas_index.npy")
    return {name: (run_dir / name).read_bytes() for name in names}


def test_a_gpu_sweep_runs_as_one_array_of_the_expected_tasks_and_every_run_completes(slurm_env, tmp_path):
    proc = run_sweep(slurm_env, tmp_path, "experiment=smoke", "curriculum=single", "seed=0,1", "task.m=1,2")
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(tmp_path)
    assert list(runs) == [f"curriculum=single,experiment=smoke,seed={s},task.m={m}" for s in (0, 1) for m in (1, 2)]
    assert {name: read_status(d)["state"] for name, d in runs.items()} == dict.fromkeys(runs, "completed")

    ids = [slurm_id(d) for d in runs.values()]
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_{i}" for i in range(4)]  # one array, tasks in sweep order
    assert [read_status(d)["slurm_job_id"] for d in runs.values()] == ids
    rows = sacct(slurm_env, array, 4)
    assert [(job, state) for job, state, _ in rows] == [(f"{array}_{i}", "COMPLETED") for i in range(4)]
    assert all("gres/gpu=1" in tres for _, _, tres in rows), rows  # each task held one (fake) GPU


def test_a_packed_sweep_runs_one_array_task_per_pack_and_every_run_completes(slurm_env, tmp_path):
    # two widths cannot share a pack: packs of at most 2 are seeds {0, 1} and {2} of each width
    proc = run_sweep(slurm_env, tmp_path, "experiment=smoke", "curriculum=single", "seed=0,1,2",
                     "model.d_model=16,32", "hydra.launcher.pack_size=2")
    assert proc.returncode == 0, proc.stderr
    runs = run_dirs(tmp_path)
    assert len(runs) == 6
    assert {name: read_status(d)["state"] for name, d in runs.items()} == dict.fromkeys(runs, "completed")

    def pack_of(name: str) -> tuple[str, bool]:
        return name.split("model.d_model=")[1].split(",")[0], "seed=2" in name

    tasks: dict[tuple[str, bool], set[str]] = {}
    for name, run_dir in runs.items():
        tasks.setdefault(pack_of(name), set()).add(slurm_id(run_dir))
    assert all(len(ids) == 1 for ids in tasks.values()), tasks  # a pack's runs share their array task
    ids = sorted(ids.pop() for ids in tasks.values())
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_{i}" for i in range(4)]  # one array, one task per pack
    assert [state for _, state, _ in sacct(slurm_env, array, 4)] == ["COMPLETED"] * 4
    assert sorted(p.name for p in (tmp_path / "packs").iterdir()) == sorted(
        str(job_num(d)) for name, d in runs.items() if "seed=1" not in name)  # each pack's log, named by its first job


def job_num(run_dir: Path) -> int:
    return int(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.num)


def test_the_papers_sweep_of_120_runs_is_submitted_as_one_job_array(slurm_client, start_sweep, tmp_path):
    # Held, so nothing runs: only the submission is checked, then the array is cancelled.
    driver = start_sweep(slurm_client, tmp_path, "seed=range(20)", "task.m=range(1,7)", "curriculum=single",
                         "+hydra.launcher.additional_parameters.hold=true")
    tasks: list[list[str]] = []

    def submitted() -> bool:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%F|%K|%b"], capture_output=True, text=True).stdout
        tasks[:] = [line.split("|") for line in out.splitlines() if line]
        return len(tasks) >= 120

    try:
        wait_until(submitted, "120 array tasks are queued", driver, timeout_s=120)
    finally:
        for array in {t[0] for t in tasks}:
            subprocess.run(["scancel", array], check=False)
        driver.terminate()
        driver.wait(timeout=60)
    assert len({array for array, _, _ in tasks}) == 1, tasks[:3]
    assert sorted(int(index) for _, index, _ in tasks) == list(range(120))
    assert all("gpu:1" in gres for _, _, gres in tasks), tasks[:3]


def test_a_sweep_above_the_array_limit_splits_and_a_failing_job_leaves_the_others_completed(slurm_env, tmp_path):
    # A bad value would stop the sweep before submission; a GPU the node lacks fails the job when it starts.
    proc = run_sweep(slurm_env, tmp_path, "experiment=smoke", "train.device=cpu,auto,cuda",
                     "hydra.launcher.max_array_size=2")
    assert proc.returncode != 0
    runs = run_dirs(tmp_path)
    states = {name.split(",")[-1]: read_status(d) for name, d in runs.items()}
    assert {k: s["state"] for k, s in states.items()} == {"train.device=cpu": "completed",
                                                           "train.device=auto": "completed",
                                                           "train.device=cuda": "failed"}
    assert "train.device=cuda is not available" in states["train.device=cuda"]["error"]

    by_device = {name.split(",")[-1]: d for name, d in runs.items()}
    first, second, third = (slurm_id(by_device[f"train.device={x}"]) for x in ("cpu", "auto", "cuda"))  # jobs #0..#2
    array = first.split("_")[0]
    assert (first, second) == (f"{array}_0", f"{array}_1") and "_" not in third  # an array of 2, then a single job
    assert [state for _, state, _ in sacct(slurm_env, array, 2)] == ["COMPLETED"] * 2
    # SLURM saw a job that ended normally: the run's status.json is what says it failed.
    assert [state for _, state, _ in sacct(slurm_env, third, 1)] == ["COMPLETED"]


def test_a_preempted_job_checkpoints_is_requeued_and_resumes_to_an_uninterrupted_runs_files(
    slurm_client, start_sweep, tmp_path
):
    driver = start_sweep(slurm_client, tmp_path, *LONG_PAIR, "train.checkpoint_every=100000")
    wait_until(lambda: len(run_dirs(tmp_path)) == 2, "both jobs started", driver)
    reference, preempted = run_dirs(tmp_path).values()
    wait_until(lambda: snapshots(preempted) >= 3, "the job is past its third snapshot", driver)
    job = submitit.SlurmJob(folder=tmp_path / ".submitit" / "%j", job_id=slurm_id(preempted))
    job._interrupt()  # submitit's own preemption: SIGTERM, then the checkpoint signal
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 0, output

    status = read_status(preempted)
    assert status["state"] == "completed" and status["attempts"] == 2, status
    assert 50 <= status["resumed_at_step"] < 800  # a checkpoint written on the signal, not a periodic one
    assert read_status(reference)["attempts"] == 1
    history = sacct(slurm_client, job.job_id, 2, "--duplicates")
    assert [state for _, state, _ in history] == ["REQUEUED", "COMPLETED"]
    assert result_files(preempted) == result_files(reference)
    assert load_metrics(preempted).equals(load_metrics(reference))


def test_a_preempted_pack_checkpoints_every_run_is_requeued_as_the_same_pack_and_resumes(
    slurm_client, start_sweep, tmp_path
):
    # progress_every_s is not a per-run key: two packs of seeds {0, 1}, the same computation twice
    driver = start_sweep(slurm_client, tmp_path, *LONG_PAIR, "seed=0,1", "train.checkpoint_every=100000",
                         "hydra.launcher.pack_size=2")
    wait_until(lambda: len(run_dirs(tmp_path)) == 4, "both packs started", driver)
    runs = run_dirs(tmp_path)
    preempted = [d for name, d in runs.items() if "progress_every_s=30," in name]
    reference = [d for d in runs.values() if d not in preempted]
    assert len(preempted) == len(reference) == 2 and slurm_id(preempted[0]) == slurm_id(preempted[1])
    wait_until(lambda: snapshots(preempted[0]) >= 3, "the pack is past its third snapshot", driver)
    job = submitit.SlurmJob(folder=tmp_path / ".submitit" / "%j", job_id=slurm_id(preempted[0]))
    job._interrupt()  # submitit's own preemption: SIGTERM, then the checkpoint signal
    output = driver.communicate(timeout=600)[0]
    assert driver.returncode == 0, output

    first, second = (read_status(d) for d in preempted)
    assert first["state"] == second["state"] == "completed" and first["attempts"] == second["attempts"] == 2
    assert 50 <= first["resumed_at_step"] == second["resumed_at_step"] < 800  # one checkpoint step for the pack
    assert [state for _, state, _ in sacct(slurm_client, job.job_id, 2, "--duplicates")] == ["REQUEUED", "COMPLETED"]
    for resumed, uninterrupted in zip(sorted(preempted), sorted(reference)):
        assert resumed.name.replace("progress_every_s=30", "progress_every_s=31") == uninterrupted.name
        assert result_files(resumed) == result_files(uninterrupted)
        assert load_metrics(resumed).equals(load_metrics(uninterrupted))


def test_a_relaunch_through_the_batch_driver_skips_completed_runs_and_resumes_a_killed_one(
    slurm_client, start_sweep, tmp_path
):
    overrides = (*LONG_PAIR, "train.checkpoint_every=100")
    driver = start_sweep(slurm_client, tmp_path, *overrides)
    wait_until(lambda: len(run_dirs(tmp_path)) == 2, "both jobs started", driver)
    finished, killed = run_dirs(tmp_path).values()
    wait_until(lambda: (read_status(killed) or {}).get("checkpoint_step", 0) >= 100, "a periodic checkpoint", driver)
    # No warning, no checkpoint: SIGKILL to the run's process, as a node failure or the OOM killer would.
    # (`scancel --signal=KILL` cancels the step: SIGTERM, which submitit ignores, and SIGKILL only KillWait
    # = 5 s later, time enough for a run on an idle machine to finish its 800 steps.)
    os.kill(read_status(killed)["pid"], signal.SIGKILL)
    # The run stays `running` in its status.json; its process is gone, so it reads as interrupted.
    wait_until(lambda: effective_state(read_status(killed)) == "interrupted", "the killed run reads as interrupted")
    assert read_status(killed)["state"] == "running"
    killed_at = load_checkpoint(killed)["step"]
    wait_until(lambda: read_status(finished)["state"] == "completed", "the other run completed", driver)
    driver.terminate()  # as if the login shell died; submitit would wait 15 s for the killed job's result
    driver.wait(timeout=60)
    untouched = {name: (finished / name).stat().st_mtime_ns for name in ("trajectory.npy", "status.json")}

    submit = subprocess.run([REPO_ROOT / "launchers" / "submit_sweep.sh", "--time=10", "--",
                             *overrides, *TEST_LAUNCHER, f"hydra.sweep.dir={tmp_path}"],
                            env={**slurm_client, "PYTHON": sys.executable}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, submit.stderr
    driver_job = submit.stdout.split("submitted the sweep driver as job ")[1].split()[0]
    assert f"driver log:      {tmp_path}/driver_{driver_job}.log" in submit.stdout
    driver_state = sacct(slurm_client, driver_job, 1, timeout_s=600)[0][1]
    assert driver_state == "COMPLETED", (tmp_path / f"driver_{driver_job}.log").read_text()

    assert {name: (finished / name).stat().st_mtime_ns for name in untouched} == untouched
    status = read_status(killed)
    assert status["state"] == "completed" and status["attempts"] == 2
    assert status["resumed_at_step"] == killed_at and killed_at % 100 == 0
    assert result_files(killed) == result_files(finished)
    assert load_metrics(killed).equals(load_metrics(finished))
