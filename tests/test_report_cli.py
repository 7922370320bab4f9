"""`python -m manifold_sweeps.report SWEEP` end to end: a smoke sweep is aggregated, then reported."""

import os
import subprocess
import sys
import time

import pytest

from manifold_sweeps.paths import REPO_ROOT

from .conftest import run_cli

from manifold_sweeps.aggregate import aggregate, load_table
from manifold_sweeps.config.schema import AggregateConfig, Reference

pytestmark = pytest.mark.slow
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.report", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


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


def test_a_path_without_runs_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.report", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no run directory" in proc.stderr
