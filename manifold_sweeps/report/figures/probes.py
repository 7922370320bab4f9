"""Figure 10: the SAE ablations (the paper's Fig. 6), drawn by the probe stage's own plotting function.

It reads the `sae_probes` table (probes/tables.py), which exists only for sweeps whose runs were
probed (python -m manifold_sweeps.probes SWEEP, or aggregate --probes).
"""

from __future__ import annotations

import pandas as pd

from ..data import ReportData
from .common import FigureSpec

LATENT_GROUP = "all_task"  # every task variable's selected latents, zeroed at once


def sae_data(data: ReportData) -> pd.DataFrame:
    rows = data.per_run("sae_probes")
    if rows.empty or not ((rows["latent_group"] == LATENT_GROUP) & (rows["ablation"] == "zero_selected")).any():
        return pd.DataFrame()
    # reindex: tables aggregated before probe_settings existed lack it (null: one unknown setting).
    return rows.reindex(columns=["condition", "run_id", "seed", "probe_settings", "step", "checkpoint_fraction", "m",
                                 "latent_group", "ablation", "accuracy"]).reset_index(drop=True)


def plot_sae(data: pd.DataFrame):
    # Imported here: the probe package is needed only for sweeps that hold probe results.
    from ...probes.figure import plot_sae_ablation

    # plot_sae_ablation names its own hue column `condition`: the sweep's conditions facet as `setting`.
    data = data.rename(columns={"condition": "setting"})
    return plot_sae_ablation(data, LATENT_GROUP, col="setting" if data["setting"].nunique() > 1 else None)


FIGURES = [
    FigureSpec(
        "10", "fig10_sae_ablation", "Ablating task-correlated SAE latents at early, mid and late checkpoints (paper Fig. 6)",
        "Held-out accuracy (mean over m) of the clean model, of the model with the residual stream after the probe layer "
        "replaced by its SAE reconstruction, with the latents that correlate most with the task variables zeroed, and "
        "with as many random latents zeroed (control). Bars: mean over seeds; whiskers: sd. Runs probed with different "
        "probe settings are drawn in separate rows of panels.",
        "no SAE probe results: probe the runs (python -m manifold_sweeps.probes SWEEP, or aggregate with --probes)",
        sae_data, plot_sae,
    ),
]
