"""The report's SAE figure (the paper's Fig. 6): accuracy before and after ablating task-correlated
latents at each probed checkpoint, next to the random-latent control. One function, never reads files.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from .tables import settings_labels

ABLATION_LABELS = {
    "clean": "clean model",
    "reconstruction": "SAE reconstruction",
    "zero_selected": "task-correlated latents zeroed",
    "zero_random": "as many random latents zeroed (control)",
}
NEEDED = ("run_id", "checkpoint_fraction", "latent_group", "ablation", "m", "accuracy")


def plot_sae_ablation(rows: pd.DataFrame, latent_group: str = "all_task", col: str | None = None) -> sns.FacetGrid:
    """Bars of accuracy (mean over m per run, then mean and sd over runs/seeds) per checkpoint.

    rows: `sae_probes` rows (probes/tables.py) of one or more runs, one run per seed; the per-seed
    rows are needed for the sd, so pass the rows, not the summary. latent_group: whose ablation to
    show (`all_task`: every variable's selected latents at once). col: a condition column of rows
    to facet by (for example `task.m` after joining the runs table). Runs probed with different
    settings (column probe_settings) are drawn in separate rows of panels, never averaged together.
    """
    missing = [c for c in (*NEEDED, *([col] if col else [])) if c not in rows.columns]
    if missing:
        raise ValueError(f"plot_sae_ablation needs sae_probes rows with columns {missing}; got {list(rows.columns)}")
    groups = sorted(set(rows.loc[rows.ablation == "zero_selected", "latent_group"]))
    if latent_group not in groups:
        raise ValueError(f"no ablation of latent_group={latent_group!r} in these rows; present: {groups}")
    extra = [col] if col else []
    picked = rows[rows.latent_group.isin(["none", latent_group])]
    row = None
    if "probe_settings" in picked.columns and picked["probe_settings"].nunique(dropna=False) > 1:
        row = "probe settings"
        picked = picked.assign(**{row: settings_labels(picked["probe_settings"])})
        extra.append(row)
    # Mean over m first, so every run counts once per checkpoint whatever its set of m.
    per_run = picked.groupby(["run_id", "checkpoint_fraction", "ablation", *extra], observed=True)["accuracy"].mean()
    per_run = per_run.reset_index()
    per_run["checkpoint"] = [f"{f:.0%} of training" for f in per_run["checkpoint_fraction"]]
    per_run["condition"] = per_run["ablation"].map(ABLATION_LABELS)
    order = [f"{f:.0%} of training" for f in sorted(per_run["checkpoint_fraction"].unique())]
    hue_order = [label for key, label in ABLATION_LABELS.items() if key in set(per_run["ablation"])]
    grid = sns.catplot(
        data=per_run, kind="bar", x="checkpoint", y="accuracy", hue="condition", order=order, hue_order=hue_order,
        col=col, row=row, errorbar="sd", height=3.6, aspect=1.4,
    )
    n_runs = per_run["run_id"].nunique()
    grid.set_axis_labels("checkpoint", "accuracy (mean over m)")
    grid.set(ylim=(0, 1.05))
    grid.figure.suptitle(f"Ablating SAE latents ({latent_group}): mean and sd over seeds ({n_runs} runs)", y=1.03)
    return grid
