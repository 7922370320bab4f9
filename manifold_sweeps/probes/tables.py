"""The probe tables: `sae_probes` and `sae_latents` (per run, in `<run>/probes/`), their loaders, and
the `sae_probes` summary over seeds.

`sae_probes`: one row per checkpoint x latent group x ablation x m (long form: m is a key, so a
table of runs with different sets of m stays rectangular):

    run_id                (added on loading: the aggregation's id, or the run directory)
    probe_settings        (added on loading, from the run's probe.json) the probe-stage settings the
                          rows were computed with, as canonical text ("key=value, ..." sorted by key;
                          probe.device and training's probe.checkpoint_* keys left out); null when the
                          run has no readable probe.json
    seed, step, checkpoint_fraction (step / train.steps), layer (the probe layer), m
    latent_group          a task variable (m, is_marker, ..., label), `all_task` (the union of their
                          selected latents) or `none` (clean and reconstruction rows)
    ablation              clean | reconstruction | zero_selected | zero_random
    n_ablated             latents zeroed; latents (zero_selected: their ids, comma-separated)
    mean_abs_correlation  zero_selected of one variable: mean |r| of its selected latents
    n_trials              zero_random: control trials averaged into accuracy; else 1
    accuracy              on the run's held-out examples of that m
    accuracy_drop         the reconstruction's accuracy minus this row's (same step and m)
    n_examples
    sae_width, sae_l1, sae_r2, sae_l0, sae_dead_latents, sae_final_loss  (the checkpoint's SAE,
                          measured on the held-out activations)

`sae_latents`: one row per checkpoint x task variable x rank: seed, step, layer, variable, rank,
latent, correlation (Pearson, signed; ranked by |r|).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..training.packing import TRAINING_PROBE_KEYS

PROBES_DIR = "probes"
PROBES_FILE = "sae_probes.parquet"
LATENTS_FILE = "sae_latents.parquet"
META_FILE = "probe.json"

PROBE_COLUMNS = {
    "run_id": "string", "probe_settings": "string", "seed": "int64", "step": "int64", "checkpoint_fraction": "float64",
    "layer": "int64", "m": "int64", "latent_group": "string", "ablation": "string", "n_ablated": "int64",
    "latents": "string", "mean_abs_correlation": "float64", "n_trials": "int64", "accuracy": "float64",
    "accuracy_drop": "float64", "n_examples": "int64", "sae_width": "int64", "sae_l1": "float64", "sae_r2": "float64",
    "sae_l0": "float64", "sae_dead_latents": "int64", "sae_final_loss": "float64",
}
LATENT_COLUMNS = {
    "run_id": "string", "seed": "int64", "step": "int64", "layer": "int64", "variable": "string", "rank": "int64",
    "latent": "int64", "correlation": "float64",
}
ABLATIONS = ("clean", "reconstruction", "zero_selected", "zero_random")
# Not in a run's own file: added on loading (probe_settings from probe.json).
ADDED_ON_LOADING = ("run_id", "probe_settings")
# probe.device says where results were computed, not what; training's keys say which checkpoints exist (step).
_NOT_SETTINGS = {"device", *(key.split(".", 1)[1] for key in TRAINING_PROBE_KEYS)}
SUMMARY_KEYS = ("step", "checkpoint_fraction", "layer", "latent_group", "ablation", "m")


def frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def result_settings(meta) -> dict | None:
    """The probe-stage settings in a probe.json (`meta`) that change the results; None without them."""
    probe = meta.get("probe") if isinstance(meta, dict) else None
    if not isinstance(probe, dict):
        return None
    return {key: value for key, value in probe.items() if key not in _NOT_SETTINGS}


def probe_settings_text(meta) -> str | None:
    """result_settings as canonical text; None without them."""
    settings = result_settings(meta)
    if settings is None:
        return None
    return ", ".join(f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in sorted(settings.items()))


def settings_labels(settings: pd.Series) -> pd.Series:
    """probe_settings texts shortened to the key=value pairs in which they differ ("" when all are the
    same; "unknown" for null: rows loaded without a probe.json)."""
    parsed = {s: dict(pair.split("=", 1) for pair in s.split(", ")) if s else {} for s in set(settings.dropna())}
    keys = sorted({k for pairs in parsed.values() for k in pairs})
    differing = [k for k in keys if len({pairs.get(k) for pairs in parsed.values()}) > 1]
    labels = {s: ", ".join(f"{k}={pairs.get(k, 'n/a')}" for k in differing) for s, pairs in parsed.items()}
    if settings.isna().any():  # known settings next to unknown ones: name them in full
        labels = {s: label or s for s, label in labels.items()}
    return pd.Series(["unknown" if pd.isna(s) else labels[s] for s in settings], index=settings.index,
                     dtype="string")


def read_meta(run_dir) -> dict | None:
    try:
        return json.loads((Path(run_dir) / PROBES_DIR / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def _load(run_dir, name: str, columns: dict[str, str], run_id: str | None) -> pd.DataFrame:
    path = Path(run_dir) / PROBES_DIR / name
    if not path.exists():
        return frame([], columns)
    table = pd.read_parquet(path)
    table.insert(0, "run_id", run_id if run_id is not None else str(run_dir))
    if "probe_settings" in columns:
        table["probe_settings"] = probe_settings_text(read_meta(run_dir))
    return table[list(columns)].astype(columns)


def load_sae_probes(run_dir: str | os.PathLike, run_id: str | None = None) -> pd.DataFrame:
    """The run's `sae_probes` rows (empty, with the columns, when it has not been probed), with the
    probe-stage settings they were computed with (probe_settings)."""
    return _load(run_dir, PROBES_FILE, PROBE_COLUMNS, run_id)


def load_sae_latents(run_dir: str | os.PathLike, run_id: str | None = None) -> pd.DataFrame:
    return _load(run_dir, LATENTS_FILE, LATENT_COLUMNS, run_id)


def sae_probe_summary(rows: pd.DataFrame, runs: pd.DataFrame, condition_columns) -> pd.DataFrame:
    """Mean, sd, min and max over seeds of the `sae_probes` rows.

    rows: `sae_probes` rows of many runs; runs: one row per run with `run_id` and the condition
    columns (the aggregation's `runs` table); condition_columns: the config columns that define a
    condition (every column that varies across runs except the seed). Only runs present in both are
    summarised. One row per condition x probe_settings x step x layer x latent group x ablation x m,
    with accuracy_{mean,sd,min,max}, accuracy_drop_{mean,sd}, n_seeds, and the SAE measures' means:
    runs probed with other settings (a run re-probed with probe.sae_l1=0.5) are never averaged together.
    Rows without a probe_settings column (tables aggregated before it existed) count as unknown (null).
    """
    conditions = list(condition_columns)
    missing = [c for c in ["run_id", *conditions] if c not in runs.columns]
    if missing:
        raise KeyError(f"the runs table lacks the column(s) {missing}; it has {list(runs.columns)}")
    if "probe_settings" not in rows.columns:
        rows = rows.assign(probe_settings=pd.Series(pd.NA, index=rows.index, dtype="string"))
    merged = rows.drop(columns=[c for c in conditions if c in rows.columns]).merge(
        runs[["run_id", *conditions]], on="run_id", how="inner")
    keys = [*conditions, "probe_settings", *SUMMARY_KEYS]
    summary = merged.groupby(keys, dropna=False, sort=True).agg(
        accuracy_mean=("accuracy", "mean"), accuracy_sd=("accuracy", "std"), accuracy_min=("accuracy", "min"),
        accuracy_max=("accuracy", "max"), accuracy_drop_mean=("accuracy_drop", "mean"),
        accuracy_drop_sd=("accuracy_drop", "std"), n_seeds=("run_id", "nunique"), n_ablated_mean=("n_ablated", "mean"),
        sae_r2_mean=("sae_r2", "mean"), sae_l0_mean=("sae_l0", "mean"), sae_dead_latents_mean=("sae_dead_latents", "mean"),
    )
    return summary.reset_index()
