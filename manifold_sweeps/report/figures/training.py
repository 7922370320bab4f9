"""Figures of the training metrics over training: attention entropy (2) and accuracy per m (8).

Both read the `metrics` table: each run's metrics.parquet in long form (step, metric, m, layer, value).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import seaborn as sns

from ...task.curriculum import Curriculum
from ..data import ReportData
from .common import FigureSpec, facet, name_facets, rows_and_columns

PALETTE = "flare"  # ordered m: light to dark, every line visible on white


def _metric(data: ReportData, metric: str, value_name: str) -> pd.DataFrame:
    metrics = data.per_run("metrics")
    if metrics.empty:
        return metrics
    rows = metrics[metrics["metric"] == metric].rename(columns={"value": value_name})
    rows = rows.assign(m=rows["m"].astype("int64"))
    # Under curriculum=single a run evaluates its own task.m: the hue m already names it, so the panels
    # need not (a run evaluated on other m keeps task.m in its label).
    if "task.m" in rows.columns and (rows["m"] == rows["task.m"]).all():
        rows = data.relabel(rows, drop=("task.m",))
    return rows


# --- Figure 2: attention entropy of the readout row ------------------------------------------------

def entropy_data(data: ReportData) -> pd.DataFrame:
    rows = _metric(data, "attention_entropy", "entropy")
    if rows.empty:
        return rows
    rows = rows.assign(layer=rows["layer"].astype("int64"))
    return rows[["condition", "run_id", "seed", "step", "m", "layer", "entropy"]].reset_index(drop=True)


def plot_entropy(data: pd.DataFrame):
    facets = rows_and_columns(data, "condition", "layer")
    g = sns.relplot(data=data, kind="line", x="step", y="entropy", hue="m", palette=PALETTE, legend="full",
                    errorbar="sd", height=2.8, aspect=1.3, **facets)
    g.set_axis_labels("training step", "attention entropy (nats)")
    name_facets(g, facets)
    return g


# --- Figure 8: accuracy per m over training --------------------------------------------------------

def _curriculum(run: pd.Series) -> Curriculum:
    """The run's curriculum, rebuilt from its runs-table columns by the class the training loop uses."""
    steps_per_stage = run.get("curriculum.steps_per_stage")
    cfg = SimpleNamespace(kind=run["curriculum.kind"], ms=json.loads(run["curriculum.ms"]), reset_optimizer=False,
                          steps_per_stage=None if pd.isna(steps_per_stage) else int(steps_per_stage))
    return Curriculum(cfg, int(run["task.m"]), int(run["train.steps"]))


def accuracy_data(data: ReportData) -> pd.DataFrame:
    """Accuracy rows, with `stage_starts`: the steps where a sequential run's stages begin, space-separated
    (empty for the other curricula), so the figure can mark them."""
    rows = _metric(data, "eval_accuracy", "accuracy")
    if rows.empty:
        return rows
    starts = {run["run_id"]: " ".join(map(str, _curriculum(run).stage_starts())) for _, run in data.completed.iterrows()}
    rows = rows.assign(chance=1.0 / rows["task.modulus"].astype("float64"), stage_starts=rows["run_id"].map(starts))
    return rows[["condition", "run_id", "seed", "curriculum.kind", "step", "m", "accuracy", "chance",
                 "stage_starts"]].reset_index(drop=True)


def plot_accuracy(data: pd.DataFrame):
    facets = facet(data)
    g = sns.relplot(data=data, kind="line", x="step", y="accuracy", hue="m", palette=PALETTE, legend="full",
                    errorbar="sd", height=2.8, aspect=1.3, **facets)
    name_facets(g, facets)
    if data["chance"].nunique() == 1:
        for ax in g.axes.flat:
            ax.axhline(data["chance"].iloc[0], color="0.5", linestyle=":", linewidth=1)
    # A sequential run's stage boundaries: where a falling curve of an earlier m means forgetting.
    panels = data.groupby(facets["col"]) if facets else [(None, data)]
    for key, panel in panels:
        ax = g.axes_dict[key] if facets else g.ax
        for step in sorted({int(s) for starts in panel["stage_starts"].dropna() for s in starts.split()}):
            ax.axvline(step, color="0.3", linestyle="--", linewidth=0.8)
    g.set(ylim=(0, 1.02))
    g.set_axis_labels("training step", "held-out accuracy")
    return g


FIGURES = [
    FigureSpec(
        "2", "fig2_entropy", "Attention entropy of the readout position over training (paper Fig. 2)",
        "Entropy (nats) of the readout position's attention row, mean over heads and held-out examples, per "
        "layer and number of markers m. Lines: mean over seeds; bands: sd.",
        "no attention_entropy in the metrics table: aggregate with the metrics table (runs write it every train.eval_every steps)",
        entropy_data, plot_entropy,
    ),
    FigureSpec(
        "8", "fig8_accuracy", "Held-out accuracy per m over training, per curriculum",
        "Accuracy on each m's fixed held-out set. Under curriculum=sequential the stages train the m of "
        "curriculum.ms in order, so a falling curve for an earlier m is forgetting; under mixed every batch "
        "draws its m afresh. Lines: mean over seeds; bands: sd; dotted: chance (1/C); dashed: the start of each "
        "sequential stage after the first.",
        "no eval_accuracy in the metrics table: aggregate with the metrics table",
        accuracy_data, plot_accuracy,
    ),
]
