"""Packed sweeps from the command line (`hydra.launcher.pack_size`): the run directories and the
aggregation cannot tell them from an unpacked sweep, a relaunch skips finished runs, bad values stop
the sweep before any training, and the `local` launcher runs one process per pack."""

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from manifold_sweeps.aggregate import aggregate
from manifold_sweeps.config.schema import AggregateConfig
from manifold_sweeps.rundir.status import read_status

from .conftest import run_cli

pytestmark = pytest.mark.slow

SWEEP = ("experiment=smoke", "curriculum=single", "seed=0,1", "task.m=1,2")  # jobs #0..#3, seed-major


@pytest.fixture(autouse=True)
def one_thread_per_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # see conftest.one_torch_thread


def run_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(sweep_dir.iterdir()) if (p / ".hydra").is_dir()}


def files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def hydra_yaml(run_dir: Path) -> dict:
    """.hydra/hydra.yaml without what must differ between two sweeps: where they write, the pack size."""
    hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    del hydra["sweep"]["dir"], hydra["runtime"]["output_dir"], hydra["launcher"]["pack_size"]
    hydra["overrides"]["hydra"] = [o for o in hydra["overrides"]["hydra"]
                                   if not o.startswith(("hydra.sweep.dir=", "hydra.launcher.pack_size="))]
    return hydra


def tables(sweep_dir: Path) -> dict[str, pd.DataFrame]:
    result = aggregate([sweep_dir], AggregateConfig(workers=1, progress_every_s=3600.0), log=lambda line: None)
    result.tables["runs"] = result.tables["runs"].drop(columns=["run_dir", "wall_time_s"])
    return result.tables


def test_a_packed_multirun_writes_run_directories_an_unpacked_one_would_and_a_relaunch_skips_them(tmp_path):
    run_cli("-m", *SWEEP, f"hydra.sweep.dir={tmp_path / 'alone'}")
    run_cli("-m", *SWEEP, "hydra.launcher.pack_size=3", f"hydra.sweep.dir={tmp_path / 'packed'}")
    alone, packed = run_dirs(tmp_path / "alone"), run_dirs(tmp_path / "packed")
    assert list(alone) == list(packed) and len(packed) == 4

    for name, run_dir in packed.items():
        assert files(run_dir) == files(alone[name])
        for same in ("config.yaml", "overrides.yaml"):
            assert (run_dir / ".hydra" / same).read_bytes() == (alone[name] / ".hydra" / same).read_bytes()
        assert hydra_yaml(run_dir) == hydra_yaml(alone[name])  # job.id, job.num and runtime.choices included
        status = read_status(run_dir)
        assert status["state"] == "completed" and status.keys() == read_status(alone[name]).keys()

    # two packs, jobs #0-#2 and #3, each with its whole log beside the runs
    assert sorted(p.name for p in (tmp_path / "packed" / "packs").iterdir()) == ["0", "3"]
    assert [read_status(d)["pack_size"] for d in packed.values()] == [3, 3, 3, 1]
    first, second, *_ = packed.values()
    log = (first / "manifold_sweeps.log").read_text()
    assert "training 3 run(s)" in log and f"{first} completed 40 steps" in log
    assert f"{second} completed" not in log  # its pack-mate's own lines stay in the pack-mate's log
    assert f"{second} completed" in (tmp_path / "packed" / "packs" / "0" / "manifold_sweeps.log").read_text()

    # The aggregation cannot tell them apart (on this CPU packed runs are byte-identical to runs trained
    # alone; the tolerance allows for other devices and BLAS builds).
    a, p = tables(tmp_path / "alone"), tables(tmp_path / "packed")
    assert a.keys() == p.keys()
    for name in a:
        pd.testing.assert_frame_equal(p[name], a[name], check_exact=False, rtol=1e-4, atol=1e-5, obj=name)

    before = {name: (d / "trajectory.npy").stat().st_mtime_ns for name, d in packed.items()}
    run_cli("-m", *SWEEP, "hydra.launcher.pack_size=3", f"hydra.sweep.dir={tmp_path / 'packed'}")
    assert {name: (d / "trajectory.npy").stat().st_mtime_ns for name, d in packed.items()} == before
    assert sorted(p.name for p in (tmp_path / "packed" / "packs").iterdir()) == ["0", "3"]  # the same packs
    assert f"{first} is already completed; skipping it" in (first / "manifold_sweeps.log").read_text()


@pytest.mark.parametrize("launcher,pack_size", [("in_process", 1), ("in_process", 2), ("local", 1)])
def test_a_bad_value_in_a_sweep_stops_it_before_any_run_starts(tmp_path, launcher, pack_size):
    proc = run_cli("-m", "experiment=smoke", "curriculum=single", "task.m=1,9", f"hydra/launcher={launcher}",
                   f"hydra.launcher.pack_size={pack_size}", f"hydra.sweep.dir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "job #1 (experiment=smoke curriculum=single task.m=9): task.m=9 is not allowed" in proc.stderr
    assert "allowed: 1..5" in proc.stderr
    assert not list(tmp_path.rglob("status.json"))  # not even the good job started


def test_the_local_launcher_runs_one_process_per_pack(tmp_path):
    proc = run_cli("-m", "experiment=smoke", "seed=0,1,2", "hydra/launcher=local", "hydra.launcher.pack_size=2",
                   f"hydra.sweep.dir={tmp_path}")
    # the launching process's last progress line: the whole sweep, read from the runs' status files
    assert "sweep step 120/120 (100.0%)" in proc.stdout + proc.stderr
    assert "3 run(s): 3 completed" in proc.stdout + proc.stderr
    runs = run_dirs(tmp_path)
    assert [read_status(d)["state"] for d in runs.values()] == ["completed"] * 3
    job_ids = [yaml.safe_load((d / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"] for d in runs.values()]
    pids = [read_status(d)["pid"] for d in runs.values()]
    assert job_ids[0] == job_ids[1] != job_ids[2] and pids[0] == pids[1] != pids[2]  # packs #0-#1 and #2
    # two processes at once share this machine's cores (PyTorch's default would give each all of them)
    assert [read_status(d)["cpu_threads"] for d in runs.values()] == [max(1, len(os.sched_getaffinity(0)) // 2)] * 3
    assert sorted(p.name for p in (tmp_path / ".submitit").iterdir() if p.name not in ("%j", "composed")) == \
        sorted(set(job_ids))
    # beside submitit's folders, the jobs' configs as composed at submission: one folder for this launch
    [launch] = (tmp_path / ".submitit" / "composed").iterdir()
    assert sorted(p.name for p in launch.iterdir()) == ["0.pkl", "1.pkl", "2.pkl"]


def test_the_local_launcher_runs_more_jobs_than_max_parallel_in_waves_as_make_demo_does(tmp_path):
    proc = run_cli("-m", "experiment=smoke", "seed=0,1,2", "hydra/launcher=local", "hydra.launcher.max_parallel=2",
                   "hydra.launcher.progress_every_s=1", f"hydra.sweep.dir={tmp_path}")
    out = proc.stdout + proc.stderr
    assert "3 processes in 2 waves of at most 2" in out and "wave 2 of 2: 1 process(es)" in out
    runs = run_dirs(tmp_path)
    assert [read_status(d)["state"] for d in runs.values()] == ["completed"] * 3
    pids = [read_status(d)["pid"] for d in runs.values()]
    assert len(set(pids)) == 3  # a process per job
    # the last wave's one process gets every core; the first wave's two share them
    cores = len(os.sched_getaffinity(0))
    assert [read_status(d)["cpu_threads"] for d in runs.values()] == [max(1, cores // 2)] * 2 + [cores]
    assert "sweep step 120/120 (100.0%)" in out and "3 run(s): 3 completed" in out
