"""`python -m manifold_sweeps.report SWEEP` end to end: a smoke sweep is aggregated, then reported."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifold_sweeps.paths import REPO_ROOT

from .conftest import run_cli

from manifold_sweeps.aggregate import aggregate, load_table
from manifold_sweeps.aggregate.manifest import read_manifest
from manifold_sweeps.bench.aggregation import write_synthetic_sweep
from manifold_sweeps.config.schema import AggregateConfig, Reference
from manifold_sweeps.report.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.report", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.slow
def test_the_report_of_a_smoke_sweep_aggregates_first_then_only_when_runs_change(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("-m", "experiment=smoke", "curriculum=single", "seed=0,1", "task.m=1,2", f"hydra.sweep.dir={sweep}")
    first = report(str(sweep))
    index = sweep / "report" / "index.html"
    assert first.stdout.strip() == str(index.resolve())
    assert "aggregating first" in first.stderr and (sweep / "tables" / "runs.parquet").exists()
    html = index.read_text()
    for png in ("fig1_r90_by_layer", "fig2_entropy", "fig6_r90_expanding", "fig7_alignment", "fig8_accuracy"):
        assert (sweep / "report" / "figures" / f"{png}.png").read_bytes()[:8] == PNG_SIGNATURE
        assert f"figures/{png}.png" in html
    assert "could not be drawn" not in html and "could not be computed" not in html
    assert "run model=attention_only,standard in one sweep" in html  # no MLP models in this sweep
    assert "did not learn the task" in html  # smoke runs learn nothing: their claims stay untested

    assert "aggregating first" not in report(str(sweep)).stderr  # tables are fresh
    status = next(sweep.glob("*/status.json"))
    later = time.time() + 5
    os.utime(status, (later, later))
    assert "aggregating first" in report(str(sweep)).stderr

    # Tables built with other options are rebuilt with those options, and the report says which.
    aggregate([sweep], AggregateConfig(reference=Reference.displacement, progress_every_s=3600.0))
    os.utime(status, (later + 5, later + 5))
    rebuilt = report(str(sweep))
    assert "aggregating first (--reference displacement" in rebuilt.stderr
    assert set(load_table(sweep / "tables", "effective_rank")["reference"]) == {"displacement"}
    assert "--reference displacement" in (sweep / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_path_without_runs_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.report", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no run directory" in proc.stderr


def synthetic_sweep(folder: Path, n_seeds: int = 2, seed: int = 0) -> Path:
    """A small completed sweep written directly (no training): its report takes seconds."""
    write_synthetic_sweep(folder, n_seeds=n_seeds, n_conditions=1, n_snapshots=11, n_layers=2, d_model=6, seed=seed)
    return folder


def quick_report(*args, capsys) -> tuple[int, str]:
    """The report command in this process (exit code, stderr)."""
    code = main([*map(str, args)])
    return code, capsys.readouterr().err


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_tables_of_another_sweep_are_refused_and_left_untouched_unless_rebuilt_on_request(tmp_path, capsys):
    one, two = synthetic_sweep(tmp_path / "one"), synthetic_sweep(tmp_path / "two", seed=1)
    assert quick_report(two, capsys=capsys)[0] == 0
    before = files(two)
    assert "tables/aggregation.json" in before and "report/index.html" in before
    refusal = (f"error: the tables in {two / 'tables'} are those of the runs under {two.resolve()}, not of PATH's runs "
               f"under {one.resolve()}: point --tables at PATH's own tables (default {one.resolve() / 'tables'}) or at "
               f"an empty or new folder, or pass --rebuild to replace them with tables of {one.resolve()}\n")
    assert quick_report(one, "--tables", two / "tables", capsys=capsys) == (2, refusal)
    assert quick_report(one, "--tables", two / "tables", "--out", tmp_path / "r", capsys=capsys) == (2, refusal)
    assert files(two) == before and not (one / "tables").exists() and not (tmp_path / "r").exists()

    # Tables written before the manifest recorded its root: their runs table names the runs' folders.
    manifest = read_manifest(two / "tables")
    del manifest["root"]
    (two / "tables" / "aggregation.json").write_text(json.dumps(manifest))
    before = files(two)
    assert quick_report(one, "--tables", two / "tables", capsys=capsys) == (2, refusal)
    assert files(two) == before

    code, err = quick_report(one, "--tables", two / "tables", "--rebuild", capsys=capsys)
    assert code == 0 and "are rebuilt on request (--rebuild): aggregating first" in err
    assert f"replacing the tables in {two / 'tables'}, built from the runs under {two.resolve()}" in err
    runs = load_table(two / "tables", "runs")
    assert all(Path(d).parent == one.resolve() for d in runs["run_dir"])
    assert read_manifest(two / "tables")["root"] == str(one.resolve())


def test_tables_of_an_older_version_are_rebuilt_before_the_report(tmp_path, capsys):
    sweep = synthetic_sweep(tmp_path / "sweep")
    aggregate([sweep], AggregateConfig(workers=1, progress_every_s=3600.0))
    manifest = read_manifest(sweep / "tables")
    del manifest["versions"]  # as written before table versions were recorded
    (sweep / "tables" / "aggregation.json").write_text(json.dumps(manifest))
    code, err = quick_report(sweep, capsys=capsys)
    assert code == 0 and ("were built by an older version of manifold-sweeps (one that recorded no table "
                          "versions): aggregating first") in err
    assert read_manifest(sweep / "tables")["versions"]
    code, err = quick_report(sweep, capsys=capsys)
    assert code == 0 and "aggregating first" not in err


def test_stale_missing_or_moved_tables_of_the_same_sweep_are_still_rebuilt(tmp_path, capsys):
    sweep, elsewhere = synthetic_sweep(tmp_path / "sweep"), tmp_path / "elsewhere"
    aggregate([sweep], AggregateConfig(out=str(elsewhere), workers=1, progress_every_s=3600.0))
    synthetic_sweep(tmp_path / "more", n_seeds=3)
    shutil.copytree(tmp_path / "more" / "seed=2,task.m=1", sweep / "seed=2,task.m=1")
    code, err = quick_report(sweep, "--tables", elsewhere, capsys=capsys)
    assert code == 0 and f"tables in {elsewhere} are older than the runs (runs added, removed or changed since)" in err
    assert len(load_table(elsewhere, "runs")) == 3 and (tmp_path / "report" / "index.html").exists()

    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "new"):
        code, err = quick_report(sweep, "--tables", folder, capsys=capsys)
        assert code == 0 and "are missing or were left half-written: aggregating first" in err
        assert len(load_table(folder, "runs")) == 3

    # A sweep moved with its tables/: they record the old root, but lie where the sweep's own tables go.
    aggregate([sweep], AggregateConfig(workers=1, progress_every_s=3600.0))
    moved = tmp_path / "moved"
    sweep.rename(moved)
    code, err = quick_report(moved, capsys=capsys)
    assert code == 0 and "are older than the runs" in err
    assert read_manifest(moved / "tables")["root"] == str(moved.resolve())
