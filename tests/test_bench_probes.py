"""The probe-stage benchmark runs (quick) and returns its named figures; no timing is asserted."""

import pytest

from manifold_sweeps.bench import probes


@pytest.mark.slow
def test_the_quick_probe_benchmark_returns_its_figures():
    figures = probes.run(quick=True)
    assert figures["probes_smoke_checkpoints"] == 2
    assert figures["probes_smoke_run_wall_s"] > 0 and figures["probes_smoke_run_cpu_s"] > 0
    assert figures["probes_smoke_peak_rss_mib"] > 10
    assert all(isinstance(v, (int, float, str)) for v in figures.values())
