"""The report folder: figures as valid PNGs with their data, a self-contained HTML page, the same
content in Markdown, and notes instead of errors for what a sweep lacks."""

import base64
import os
import re

import matplotlib.image
import pandas as pd
import pytest

from manifold_sweeps.aggregate.metrics_table import metrics_rows
from manifold_sweeps.report.build import build_report
from manifold_sweeps.report.tables import commutator_summary, fixed_settings, problem_runs, rank_summary, state_counts
from manifold_sweeps.rundir.metrics import MetricsLog

from .report_tables import effective_rank_summary, effective_rank_table, full_sweep, report_data, runs_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    index = build_report(full_sweep(), folder, "outputs/multirun/synthetic")
    return folder, index.read_text(), (folder / "report.md").read_text()


def test_every_linked_figure_exists_and_is_a_valid_png_with_its_data(full_report):
    folder, html, _ = full_report
    links = re.findall(r"href='([^']+)'", html)
    pngs = [link for link in links if link.endswith(".png")]
    assert len(pngs) == 8  # figures 1-8 have data; 9a, 9b and 10 do not
    for png in pngs:
        assert (folder / png).read_bytes()[:8] == PNG_SIGNATURE
        pixels = matplotlib.image.imread(folder / png)
        assert pixels.shape[0] > 400 and pixels.shape[1] > 400  # print resolution, not a thumbnail
    csvs = [link for link in links if link.endswith(".csv")]
    assert [c[:-4] for c in csvs] == [p[:-4] for p in pngs]
    for csv in csvs:
        assert len(pd.read_csv(folder / csv)) > 0
    assert sorted(p.name for p in (folder / "figures").iterdir()) == sorted(os.path.basename(p) for p in pngs + csvs)


def test_the_page_is_self_contained(full_report):
    folder, html, _ = full_report
    assert "http://" not in html and "https://" not in html  # no network, no CDN
    assert "<script" not in html and "<link" not in html and "<style>" in html
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(embedded) == 8
    first_png = re.findall(r"href='(figures/[^']+\.png)'", html)[0]
    assert base64.b64decode(embedded[0]) == (folder / first_png).read_bytes()


def test_markdown_says_what_the_page_says(full_report):
    folder, html, md = full_report
    titles = re.findall(r"<h3>(Figure [^<]+)</h3>", html)
    assert len(titles) == 11
    for title in titles:
        assert f"### {title.replace('&#x27;', chr(39))}" in md
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (folder / image).read_bytes()[:8] == PNG_SIGNATURE
    verdicts = re.findall(r"class='verdict [a-z-]+'>([^<]+)<", html)
    assert len(verdicts) == 11 and verdicts.count("supported") == 7
    for i, verdict in enumerate(verdicts, 1):
        assert re.search(rf"^{i}\. .*\*\*{verdict}\*\*\.", md, re.M)


def test_figures_without_data_are_left_out_with_the_runs_that_would_produce_them(full_report):
    _, html, md = full_report
    for text in (html, md):
        assert "run model=attention_only,standard in one sweep to compare MLP models" in text
        assert "run task=modadd,modmul in one sweep" in text
        assert "python -m manifold_sweeps.probes" in text
        assert "could not be drawn" not in text


def test_a_sweep_without_commutators_metrics_or_seeds_pairs_gets_notes_instead_of_errors(tmp_path):
    runs = runs_table([{"model": "attention_only", "model.mlp_ratio": 0, "task": "modadd", "task.op": "add", "task.modulus": 8},
                       {"model": "standard", "model.mlp_ratio": 4, "task": "modadd", "task.op": "add", "task.modulus": 8},
                       {"model": "attention_only", "model.mlp_ratio": 0, "task": "modmul", "task.op": "mul", "task.modulus": 7}],
                      seeds=(0, 1))
    er = effective_rank_table(runs, lambda run, layer, matrix: 3 + run["model.mlp_ratio"] + (run["task.op"] == "mul"))
    conditions = ["model", "task", "model.mlp_ratio", "task.op", "task.modulus"]
    data = report_data(runs, effective_rank=er, effective_rank_summary=effective_rank_summary(runs, er, conditions))
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "fig3_defect.png").write_bytes(PNG_SIGNATURE)  # left over from an earlier build
    md = (build_report(data, tmp_path, "sweep").parent / "report.md").read_text()
    drawn = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert drawn == ["fig1_r90_by_layer.png", "fig6_r90_expanding.png", "fig9a_r90_mlp.png", "fig9b_r90_op.png"]
    assert md.count("run with commutator.every > 0 for the commutator figures") == 3
    assert "### Figure 7." in md and "no subspace_alignment rows" in md  # 2 seeds, but never aligned
    assert "could not be drawn" not in md and "could not be computed" not in md
    assert "| model | task | layer | matrix | r90 |" in md  # conditions named by their group choices


def test_a_sweep_where_no_run_completed_still_reports_why(tmp_path):
    runs = runs_table([{"task.m": 1}], seeds=(0, 1)).assign(state=["failed", "diverged"], reason=["boom", "loss is nan"])
    md = (build_report(report_data(runs), tmp_path, "sweep").parent / "report.md").read_text()
    assert "No run completed" in md and "boom" in md and "loss is nan" in md
    assert not list((tmp_path / "figures").glob("*.png"))


def test_summary_tables_are_rounded_with_seeds_counted():
    data = full_sweep()
    ranks = rank_summary(data)
    assert len(ranks) == 2 * 2 * 4  # conditions x layers x matrices, whole trajectory only
    first = ranks.iloc[0]
    assert (first["task.m"], first["layer"], first["matrix"], first["r90"], first["pc1_fraction"], first["seeds"]) == \
        (1, 0, "W_Q", "4.0 ± 0.0", "0.50 ± 0.00", 3)
    commutators = commutator_summary(data)
    assert list(commutators["phase"]) == ["early", "late", "all"] * 2
    assert commutators.iloc[0]["exec_random_ratio"] == "5.40 ± 0.00" and commutators.iloc[0]["seeds"] == 3


def test_the_shared_settings_leave_out_keys_no_run_reads():
    mixed = {"curriculum": "mixed", "curriculum.kind": "mixed", "curriculum.ms": "[1, 2]"}
    single = {"curriculum": "single", "curriculum.kind": "single", "task.m": 2}
    keys = lambda conditions: dict(fixed_settings(report_data(runs_table(conditions))))  # noqa: E731
    # mixed and sequential curricula train curriculum.ms: their task.m is never read
    assert "task.m" not in keys([mixed, mixed | {"curriculum": "sequential", "curriculum.kind": "sequential"}])
    assert keys([mixed])["curriculum.ms"] == "[1, 2]"
    # curriculum=single reads task.m alone
    assert keys([single])["task.m"] == "2" and "curriculum.ms" not in keys([single])
    assert keys([single, mixed])["task.m"] == "2"  # read by the single runs


def test_state_counts_cover_every_state_and_left_out_runs_say_why():
    runs = runs_table([{"task.m": 1}], seeds=range(7))
    runs["state"] = ["completed", "completed", "failed", "diverged", "interrupted", "running", "unreadable"]
    runs["reason"] = [None, None, "x" * 500, "nan loss", "killed", "step 3 of 9", "no status.json"]
    counts = state_counts(runs).set_index("state")["runs"].to_dict()
    assert counts == {"completed": 2, "failed": 1, "diverged": 1, "interrupted": 1, "running": 1, "unreadable": 1, "duplicate": 0,
                      "total": 7}
    left_out = problem_runs(runs)
    assert list(left_out["state"]) == ["failed", "diverged", "interrupted", "running", "unreadable"]
    assert len(left_out["reason"].iloc[0]) <= 160 and left_out["reason"].iloc[0].endswith("...")


def test_metrics_rows_are_the_runs_metrics_in_long_form(tmp_path):
    log = MetricsLog(tmp_path)
    log.add(20, "eval_accuracy", 0.5, m=2)
    log.add(0, "attention_entropy", 2.0, m=1, layer=1)
    log.add(0, "train_loss", 1.0)
    log.add(0, "attention_entropy", 2.1, m=1, layer=0)
    log.flush()
    rows = metrics_rows(tmp_path)
    assert list(rows.columns) == ["step", "metric", "m", "layer", "value"]
    assert list(rows["step"]) == [0, 0, 0, 20] and list(rows["layer"].fillna(-1)) == [0, 1, -1, -1]
    assert metrics_rows(tmp_path / "missing").empty
