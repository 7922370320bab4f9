"""The figures' data and drawing: conditions named sensibly, means and sds over seeds, one plot per figure."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from manifold_sweeps.report.data import condition_labels, informative_columns
from manifold_sweeps.report.figures import FIGURES
from manifold_sweeps.report.figures.rank import mlp_r90_data, plot_r90_by_layer, r90_by_layer_data
from manifold_sweeps.report.figures.training import accuracy_data, entropy_data, plot_accuracy

from .report_tables import effective_rank_table, full_sweep, metrics_table, report_data, runs_table


def test_every_figure_of_the_issue_is_there_once():
    assert [f.number for f in FIGURES] == ["1", "2", "3", "4", "5", "6", "7", "8", "9a", "9b", "10"]
    assert len({f.key for f in FIGURES}) == len(FIGURES)
    assert all(f.absent and f.caption for f in FIGURES)


def test_condition_labels_name_the_group_choice_not_the_keys_it_implies():
    runs = runs_table([{"model": "attention_only", "model.mlp_ratio": 0, "task.m": 1},
                       {"model": "standard", "model.mlp_ratio": 4, "task.m": 1},
                       {"model": "standard", "model.mlp_ratio": 4, "task.m": 2}], seeds=(0,))
    columns = informative_columns(runs, ["task.m", "model.mlp_ratio", "model"])
    assert columns == ["model", "task.m"]
    assert list(condition_labels(runs, columns)) == ["model=attention_only, task.m=1", "model=standard, task.m=1",
                                                      "model=standard, task.m=2"]
    assert list(condition_labels(runs, [])) == ["all runs"] * 3


def test_figure_1_draws_the_mean_over_seeds_with_sd_whiskers():
    runs = runs_table([{"task.m": 1}], seeds=(0, 1, 2))
    er = effective_rank_table(runs, lambda run, layer, matrix: 3 + run["seed"])  # seeds: 3, 4, 5
    frame = r90_by_layer_data(report_data(runs, effective_rank=er))
    assert len(frame) == 3 * 2 * 4 and set(frame.columns) >= {"condition", "seed", "layer", "matrix", "r90"}
    grid = plot_r90_by_layer(frame)
    try:
        ax = grid.axes.flat[0]
        heights = [bar.get_height() for container in ax.containers for bar in container]
        assert len(heights) == 2 * 4  # layers x matrices
        assert np.allclose(heights, 4.0)  # mean of 3, 4, 5
        whiskers = [(np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines]
        assert len(whiskers) == 2 * 4 and np.allclose(whiskers, [(3.0, 5.0)] * 8)  # mean -+ sd (sd = 1)
    finally:
        plt.close(grid.figure)


def test_metric_figures_drop_task_m_from_panels_when_each_run_evaluates_its_own_m():
    data = full_sweep()
    entropy = entropy_data(data)
    assert set(entropy["condition"]) == {"all runs"} and set(entropy["m"]) == {1, 2}
    # Runs trained on different m but evaluated on the same m keep task.m in their label.
    runs = runs_table([{"task.m": 1}, {"task.m": 2}]).assign(**{"curriculum.kind": "mixed", "curriculum.ms": "[1, 2]"})
    shared = report_data(runs, metrics=metrics_table(runs, lambda *a: 2.0, lambda *a: 0.5))
    accuracy = accuracy_data(shared)
    assert set(accuracy["condition"]) == {"task.m=1", "task.m=2"} and set(accuracy["m"]) == {1, 2}
    assert np.allclose(accuracy["chance"], 1 / 8)


def test_the_accuracy_figure_marks_where_each_sequential_stage_begins_and_nothing_under_mixed():
    runs = runs_table([{"curriculum": "sequential", "curriculum.kind": "sequential", "curriculum.ms": "[1, 2, 3]"},
                       {"curriculum": "mixed", "curriculum.kind": "mixed", "curriculum.ms": "[1, 2, 3]"}])
    # train.steps = 1000 over three stages: 333 steps each, the last running on to the end.
    frame = accuracy_data(report_data(runs, metrics=metrics_table(runs, lambda *a: 2.0, lambda *a: 0.5)))
    starts = frame.groupby("condition")["stage_starts"].unique()
    assert list(starts["curriculum=sequential"]) == ["333 666"] and list(starts["curriculum=mixed"]) == [""]
    grid = plot_accuracy(frame)
    try:
        def dashed(ax):
            return sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")

        assert dashed(grid.axes_dict["curriculum=sequential"]) == [333, 666]
        assert dashed(grid.axes_dict["curriculum=mixed"]) == []
        alone = plot_accuracy(frame[frame["condition"] == "curriculum=sequential"])  # one panel, no facets
        assert dashed(alone.ax) == [333, 666]
        plt.close(alone.figure)
    finally:
        plt.close(grid.figure)


def test_variant_figures_average_layers_per_run_and_need_both_variants():
    runs = runs_table([{"model": "attention_only", "model.mlp_ratio": 0}, {"model": "standard", "model.mlp_ratio": 4}])
    er = effective_rank_table(runs, lambda run, layer, matrix: 4 + 2 * layer + run["model.mlp_ratio"])
    frame = mlp_r90_data(report_data(runs, effective_rank=er))
    assert len(frame) == 6 * 4  # runs x matrices: one value per run, layers averaged
    by_variant = frame.groupby("variant")["r90"].mean()
    assert by_variant.to_dict() == pytest.approx({"attention only": 5.0, "attention + MLP": 9.0})
    one_kind = runs_table([{"task.m": 1}])
    assert mlp_r90_data(report_data(one_kind, effective_rank=effective_rank_table(one_kind, lambda *a: 4))).empty


@pytest.mark.parametrize("spec", FIGURES, ids=lambda f: f.number)
def test_every_figure_without_its_tables_has_no_data(spec):
    assert spec.data(report_data(runs_table([{"task.m": 1}]))).empty
