"""`python -m manifold_sweeps.report SWEEP` end to end: a smoke sweep is aggregated, then reported."""

import os
import subprocess
import sys
import time

import pytest

from manifold_sweeps.paths import REPO_ROOT

from .conftest import run_cli

try:  # the aggregation stage (issue 3) is merged separately; this test runs once it is
    from manifold_sweeps.aggregate import aggregate  # noqa: F401
    HAS_AGGREGATION = True
except ImportError:
    HAS_AGGREGATION = False

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not HAS_AGGREGATION, reason="needs the aggregation stage")]
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


def test_a_path_without_runs_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "manifold_sweeps.report", str(tmp_path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "no run directory" in proc.stderr
