"""Figures of the trajectories' effective rank: by layer (1), over expanding windows (6), cross-seed
alignment (7), and MLP vs attention-only and add vs mul (9).

Each figure is a pair: `*_data(ReportData)` picks and reshapes the columns of the aggregation's
tables (every column name the figure uses is here), `plot_*(tidy frame)` draws it with seaborn.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from ..data import MLP_KEYS, OP_KEYS, ReportData, mlp_variant, op_variant
from .common import MATRICES, FigureSpec, facet, name_facets, rows_and_columns

PAPER_R90 = (3, 5)  # the paper's Fig. 1 range
COLLAPSE_BAND = (20, 30)  # percent of training: the paper's "first 20-30%"


def _whole_r90(data: ReportData) -> pd.DataFrame:
    er = data.per_run("effective_rank")
    if er.empty:
        return er
    er = er[er["window"] == "whole"].dropna(subset=["r90"])
    return er.assign(r90=er["r90"].astype("float64"))


# --- Figure 1: r90 per layer and matrix ------------------------------------------------------------

def r90_by_layer_data(data: ReportData) -> pd.DataFrame:
    er = _whole_r90(data)
    if er.empty:
        return er
    return er[["condition", "run_id", "seed", "layer", "matrix", "r90"]].reset_index(drop=True)


def plot_r90_by_layer(data: pd.DataFrame):
    facets = facet(data)
    g = sns.catplot(data=data, kind="bar", x="layer", y="r90", hue="matrix", hue_order=MATRICES,
                    errorbar="sd", capsize=0.15, err_kws={"linewidth": 1}, height=3, aspect=1.3, **facets)
    for ax in g.axes.flat:
        ax.axhspan(*PAPER_R90, color="0.88", zorder=0)
    g.set_axis_labels("layer", "r90 (whole trajectory)")
    name_facets(g, facets)
    return g


# --- Figure 6: r90 over expanding windows ----------------------------------------------------------

def r90_expanding_data(data: ReportData) -> pd.DataFrame:
    er = data.per_run("effective_rank")
    if er.empty:
        return er
    er = er[er["window"] == "expanding"].dropna(subset=["r90"])
    er = er.assign(r90=er["r90"].astype("float64"), training_percent=100 * er["window_end_fraction"])
    return er[["condition", "run_id", "seed", "layer", "matrix", "training_percent", "n_snapshots", "r90"]].reset_index(drop=True)


def plot_r90_expanding(data: pd.DataFrame):
    facets = rows_and_columns(data, "condition", "layer")
    g = sns.relplot(data=data, kind="line", x="training_percent", y="r90", hue="matrix", hue_order=MATRICES,
                    errorbar="sd", marker="o", markersize=4, height=2.8, aspect=1.3, **facets)
    for ax in g.axes.flat:
        ax.axvspan(*COLLAPSE_BAND, color="0.88", zorder=0)
    g.set(xlim=(0, 102))
    g.set_axis_labels("training seen (% of steps)", "r90 of the window")
    name_facets(g, facets)
    return g


# --- Figure 7: cross-seed subspace alignment against random subspaces ------------------------------

def alignment_data(data: ReportData) -> pd.DataFrame:
    if not data.has("subspace_alignment"):
        return pd.DataFrame()
    pairs = data.join_runs(data.tables["subspace_alignment"], on="run_id_a")
    pairs = pairs[["condition", "layer", "matrix", "seed_a", "seed_b", "k_a", "k_b", "mean_squared_cosine", "random_expectation"]]
    long = pairs.melt(id_vars=["condition", "layer", "matrix", "seed_a", "seed_b", "k_a", "k_b"],
                      value_vars=["mean_squared_cosine", "random_expectation"], var_name="quantity", value_name="cos2")
    long["quantity"] = long["quantity"].map({"mean_squared_cosine": "seed pairs", "random_expectation": "random subspaces"})
    return long.reset_index(drop=True)


def plot_alignment(data: pd.DataFrame):
    facets = rows_and_columns(data, "condition", "layer")
    g = sns.catplot(data=data, kind="point", x="matrix", order=MATRICES, y="cos2", hue="quantity",
                    hue_order=["seed pairs", "random subspaces"], errorbar="sd", dodge=0.3, linestyle="none",
                    markersize=5, height=2.8, aspect=1.2, **facets)
    g.set(yscale="log")
    for ax in g.axes.flat:
        ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)  # identical subspaces
    g.set_axis_labels("", "mean cos² of principal angles")
    name_facets(g, facets)
    return g


# --- Figure 9: attention-only vs MLP models, addition vs multiplication ----------------------------

def _variant_r90(data: ReportData, variant: pd.Series, keys: tuple[str, ...]) -> pd.DataFrame:
    """Per run and matrix, r90 averaged over layers (models of different depth stay comparable), by variant."""
    runs = data.variants(variant, keys)
    if runs["variant"].nunique() < 2:
        return pd.DataFrame()
    er = _whole_r90(data)
    if er.empty:
        return er
    per_run = er.groupby(["run_id", "matrix"], as_index=False)["r90"].mean()
    per_run = per_run.merge(runs[["run_id", "seed", "variant", "others"]], on="run_id")
    return per_run[["others", "variant", "run_id", "seed", "matrix", "r90"]]


def mlp_r90_data(data: ReportData) -> pd.DataFrame:
    return _variant_r90(data, mlp_variant(data.completed), MLP_KEYS)


def op_r90_data(data: ReportData) -> pd.DataFrame:
    return _variant_r90(data, op_variant(data.completed), OP_KEYS)


def plot_variant_r90(data: pd.DataFrame):
    facets = facet(data, "others")
    g = sns.catplot(data=data, kind="bar", x="matrix", order=MATRICES, y="r90", hue="variant", errorbar="sd",
                    capsize=0.15, err_kws={"linewidth": 1}, height=3, aspect=1.2, **facets)
    g.set_axis_labels("", "r90 (whole trajectory, mean over layers)")
    name_facets(g, facets)
    return g


FIGURES = [
    FigureSpec(
        "1", "fig1_r90_by_layer", "Effective rank of each attention matrix, per layer (paper Fig. 1)",
        "r90: the number of principal components holding 90% of the variance of a matrix's snapshot "
        "trajectory over the whole run (the paper's eq. 1-2, full spectrum). Bars: mean over seeds; whiskers: sd. "
        "Grey band: the paper's range 3-5.",
        "no completed run has an effective_rank table: aggregate the sweep (python -m manifold_sweeps.aggregate)",
        r90_by_layer_data, plot_r90_by_layer,
    ),
    FigureSpec(
        "6", "fig6_r90_expanding", "When does the collapse happen? r90 over expanding windows of training",
        "r90 of the trajectory up to 10%, 20%, ... of training. A curve that flattens early means the "
        "trajectory stopped adding dimensions. Lines: mean over seeds; bands: sd. Grey band: the paper's "
        "'first 20-30% of training'.",
        "no expanding windows in the effective_rank table: aggregate with --expanding-windows > 1",
        r90_expanding_data, plot_r90_expanding,
    ),
    FigureSpec(
        "7", "fig7_alignment", "Do seeds find the same subspace? Cross-seed alignment against random subspaces",
        "For every pair of seeds of a condition: mean squared cosine of the principal angles between their "
        "top-r90 whole-trajectory subspaces (1 = the same subspace), next to its value for random subspaces "
        "of the same dimensions. Points: mean over seed pairs; whiskers: sd. Log scale.",
        "no subspace_alignment rows: they need 2 or more seeds per condition (e.g. 'seed=range(3)'), aggregated",
        alignment_data, plot_alignment,
    ),
    FigureSpec(
        "9a", "fig9a_r90_mlp", "Attention-only vs MLP models: r90",
        "r90 of each attention matrix (whole trajectory, mean over layers) for attention-only models and models "
        "with an MLP in every block, with the other conditions held fixed per panel. Bars: mean over runs; whiskers: sd.",
        "this sweep has one kind of model: run model=attention_only,standard in one sweep to compare MLP models",
        mlp_r90_data, plot_variant_r90,
    ),
    FigureSpec(
        "9b", "fig9b_r90_op", "Addition vs multiplication: r90",
        "r90 of each attention matrix (whole trajectory, mean over layers) for modular addition and "
        "multiplication, with the other conditions held fixed per panel. Bars: mean over runs; whiskers: sd.",
        "this sweep has one operation: run task=modadd,modmul in one sweep to compare addition with multiplication",
        op_r90_data, plot_variant_r90,
    ),
]

