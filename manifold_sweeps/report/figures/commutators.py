"""Figures of the SGD commutators over training: the normalised defect (3), the projection onto the
execution subspace against random subspaces (4), and the energy inside vs outside it (5).

They read the `commutators` table (one row per run x measurement step x sample; README, "SGD
commutators"). Projections are those onto the causal basis (the snapshots taken so far, as the
paper's code did); at the first measurement there is no basis yet and they are NaN.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from ..data import ReportData
from .common import FigureSpec, facet, log_y, name_facets

OUTSIDE_ENERGY_CLAIM = 0.92  # "more than 92% of commutator energy lies outside the execution subspace"


def _commutators(data: ReportData, columns: list[str]) -> pd.DataFrame:
    rows = data.per_run("commutators")
    if rows.empty:
        return rows
    return rows[["condition", "run_id", "seed", "step", "sample", *columns]].reset_index(drop=True)


def _per_measurement(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Each run's median over the samples of a measurement (the paper reports the median of K samples)."""
    rows = rows.dropna(subset=columns, how="all")
    return rows.groupby(["condition", "run_id", "seed", "step"], as_index=False)[columns].median()


# --- Figure 3: normalised commutator defect D ------------------------------------------------------

def defect_data(data: ReportData) -> pd.DataFrame:
    return _commutators(data, ["defect"])


def plot_defect(data: pd.DataFrame):
    g = sns.relplot(data=data, kind="line", x="step", y="defect", hue="condition", estimator="median",
                    errorbar=("pi", 50), marker="o", markersize=4, height=3, aspect=1.5)
    log_y(g)
    g.set_axis_labels("training step", "normalised defect D")
    return g


# --- Figure 4: rho_exec vs the block-matched random baseline, and their ratio ----------------------

def projection_data(data: ReportData) -> pd.DataFrame:
    rows = _commutators(data, ["rho_exec", "rho_random", "exec_random_ratio"])
    if rows.empty:
        return rows
    per = _per_measurement(rows, ["rho_exec", "rho_random", "exec_random_ratio"])
    long = per.melt(id_vars=["condition", "run_id", "seed", "step"], var_name="quantity", value_name="value")
    long["panel"] = long["quantity"].map({"rho_exec": "rho = |P delta| / |delta|", "rho_random": "rho = |P delta| / |delta|",
                                         "exec_random_ratio": "ratio exec / random"})
    long["quantity"] = long["quantity"].map({"rho_exec": "execution subspace", "rho_random": "random subspaces",
                                             "exec_random_ratio": "exec / random"})
    return long.dropna(subset=["value"]).reset_index(drop=True)


def plot_projection(data: pd.DataFrame):
    col = {"col": "condition"} if data["condition"].nunique() > 1 else {}
    g = sns.relplot(data=data, kind="line", x="step", y="value", hue="quantity",
                    hue_order=["execution subspace", "random subspaces", "exec / random"], row="panel",
                    row_order=["rho = |P delta| / |delta|", "ratio exec / random"], errorbar="sd", marker="o",
                    markersize=4, height=2.6, aspect=1.6, facet_kws={"sharey": "row"}, **col)
    for ax in g.axes[-1]:
        ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)  # no better than random
    g.set_axis_labels("training step", "")
    g.set_titles("{row_name}" + (" | {col_name}" if col else ""))
    return g


# --- Figure 5: commutator energy inside vs outside the execution subspace --------------------------

def energy_data(data: ReportData) -> pd.DataFrame:
    rows = _commutators(data, ["outside_energy"])
    if rows.empty:
        return rows
    per = _per_measurement(rows, ["outside_energy"])
    per["inside_energy"] = 1 - per["outside_energy"]
    long = per.melt(id_vars=["condition", "run_id", "seed", "step"], value_vars=["inside_energy", "outside_energy"],
                    var_name="part", value_name="energy_fraction")
    long["part"] = long["part"].map({"inside_energy": "inside (rho^2)", "outside_energy": "outside (1 - rho^2)"})
    return long.dropna(subset=["energy_fraction"]).reset_index(drop=True)


def plot_energy(data: pd.DataFrame):
    facets = facet(data)
    g = sns.relplot(data=data, kind="line", x="step", y="energy_fraction", hue="part",
                    hue_order=["inside (rho^2)", "outside (1 - rho^2)"], errorbar="sd", marker="o", markersize=4,
                    height=3, aspect=1.4, **facets)
    name_facets(g, facets)
    log_y(g)
    for ax in g.axes.flat:
        ax.axhline(OUTSIDE_ENERGY_CLAIM, color="0.5", linestyle=":", linewidth=1)
    g.set_axis_labels("training step", "share of |delta|^2 (attention matrices)")
    return g


ABSENT = "no commutator measurements: run with commutator.every > 0 for the commutator figures"
FIGURES = [
    FigureSpec(
        "3", "fig3_defect", "Normalised commutator defect over training (paper Fig. 3)",
        "D = |delta| / (|eta g_A| |eta g_B|) for independent batch pairs A, B (delta computed in the numerically "
        "stable form). Line: median over samples and seeds; band: their interquartile range. Log scale.",
        ABSENT, defect_data, plot_defect,
    ),
    FigureSpec(
        "4", "fig4_projection", "Commutators projected onto the execution subspace vs random subspaces (paper Fig. 4-5)",
        "Top: rho_exec = |P delta| / |delta| on the attention-matrix coordinates, P the projector onto the top "
        "principal directions of each matrix's trajectory so far, next to random subspaces with as many "
        "directions in each matrix. Bottom: their ratio (dotted: 1, no better than random). Each run's median "
        "over the samples of a measurement; lines: mean over seeds; bands: sd.",
        ABSENT, projection_data, plot_projection,
    ),
    FigureSpec(
        "5", "fig5_energy", "Commutator energy inside vs outside the execution subspace (paper Fig. 5, corrected)",
        "Share of |delta|^2 inside the execution subspace (rho_exec^2) and outside it (1 - rho_exec^2; the "
        "paper's code reported 1 - rho, which is neither). Dotted: the claim's 92%. Each run's median over the "
        "samples of a measurement; lines: mean over seeds; bands: sd. Log scale.",
        ABSENT, energy_data, plot_energy,
    ),
]
