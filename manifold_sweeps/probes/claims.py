"""The verdict on the paper's claim "SAE latents do not isolate execution" (sections 3.4 and 4.4).

The claim is tested at checkpoints where it means something: the model executes the task (clean
accuracy >= min_accuracy) and the SAE is faithful there (its reconstruction loses at most
max_reconstruction_loss accuracy). At such a checkpoint, zeroing the task-correlated latents drops
accuracy from the reconstruction baseline by `drop`, zeroing as many random latents by `drop_random`:

    supported        drop <= max_drop at every testable checkpoint
    not supported    drop > max_drop and drop - drop_random > max_drop at some testable checkpoint:
                     the task-correlated latents carry the execution
    not tested       no testable checkpoint, or large drops that random latents cause as well

Runs probed with other probe-stage settings (summary column probe_settings: a run re-probed with
probe.sae_l1=0.5) are never averaged together: every settings group is decided on separately, as a
condition is, and the verdict counts them all.
"""

from __future__ import annotations

import pandas as pd

from .tables import settings_labels

CLAIM = "SAE latents do not isolate execution"
SUPPORTED, NOT_SUPPORTED, NOT_TESTED = "supported", "not supported", "not tested by this sweep"
_SUMMARY_COLUMNS = {
    "probe_settings", "step", "checkpoint_fraction", "layer", "latent_group", "ablation", "m", "accuracy_mean",
    "accuracy_sd", "accuracy_min", "accuracy_max", "accuracy_drop_mean", "accuracy_drop_sd", "n_seeds",
    "n_ablated_mean", "sae_r2_mean", "sae_l0_mean", "sae_dead_latents_mean",
}
HOW_TO_TEST = ("train runs that reach high accuracy, with probe checkpoints (probe.checkpoint_fractions), "
               "and probe them (python -m manifold_sweeps.probes SWEEP, or aggregate with --probes)")


def sae_execution_claim(summary: pd.DataFrame, max_drop: float = 0.05, min_accuracy: float = 0.9,
                        max_reconstruction_loss: float = 0.05, latent_group: str = "all_task") -> dict:
    """Verdict from the `sae_probes` summary (tables.sae_probe_summary).

    Returns {"claim", "verdict", "evidence" (the numbers, one line per condition, probe settings and checkpoint),
    "needed" (what would decide it, when not tested), "checkpoints" (those numbers as records)}.
    Accuracies are averaged over m (each m weighs the same).
    """
    picked = summary[summary["latent_group"].isin(["none", latent_group])] if len(summary) else summary
    if not len(picked) or not (picked["ablation"] == "zero_selected").any():
        return {"claim": CLAIM, "verdict": NOT_TESTED, "evidence": "no SAE probe results in this sweep",
                "needed": HOW_TO_TEST, "checkpoints": []}
    conditions = [c for c in summary.columns if c not in _SUMMARY_COLUMNS]
    keys = [*conditions, "probe_settings", "step", "checkpoint_fraction"]
    wide = (picked.groupby([*keys, "ablation"], dropna=False)[["accuracy_mean", "accuracy_drop_mean", "n_seeds"]]
            .mean().unstack("ablation"))

    checkpoints, verdicts = [], []
    for key, row in wide.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        acc, drop = row["accuracy_mean"], row["accuracy_drop_mean"]
        point = {**dict(zip(keys, key)), "clean": acc.get("clean"), "reconstruction": acc.get("reconstruction"),
                 "ablated": acc.get("zero_selected"), "random": acc.get("zero_random"),
                 "drop": drop.get("zero_selected"), "drop_random": drop.get("zero_random"),
                 "n_seeds": int(row["n_seeds"].max())}
        if pd.isna(point["ablated"]) or pd.isna(point["clean"]):
            continue
        faithful = point["clean"] - point["reconstruction"] <= max_reconstruction_loss
        point["testable"] = bool(point["clean"] >= min_accuracy and faithful)
        if not point["testable"]:
            point["outcome"] = "untestable: " + ("clean accuracy below %.2f" % min_accuracy
                                                 if point["clean"] < min_accuracy else "SAE reconstruction not faithful")
        elif point["drop"] <= max_drop:
            point["outcome"] = SUPPORTED
        elif pd.isna(point["drop_random"]) or point["drop"] - point["drop_random"] > max_drop:
            point["outcome"] = NOT_SUPPORTED
        else:
            point["outcome"] = "inconclusive: random latents hurt as much"
        verdicts.append(point["outcome"])
        checkpoints.append(point)

    if NOT_SUPPORTED in verdicts:
        verdict, needed = NOT_SUPPORTED, ""
    elif SUPPORTED in verdicts and not any(v.startswith("inconclusive") for v in verdicts):
        verdict, needed = SUPPORTED, ""
    else:
        verdict, needed = NOT_TESTED, HOW_TO_TEST + (
            "; a sparser or wider SAE (probe.sae_l1, probe.sae_width_ratio) if random latents hurt as much")
    labels = settings_labels(pd.Series([p["probe_settings"] for p in checkpoints], dtype="string"))
    for point, label in zip(checkpoints, labels):
        point["probe"] = label
    n_settings = len(set(labels))
    if n_settings > 1:
        settings = (f"runs probed with {n_settings} different settings ({'; '.join(sorted(set(labels)))}), "
                    "each decided on separately, never averaged together")
    elif checkpoints and pd.isna(checkpoints[0]["probe_settings"]):
        settings = "probe settings unknown (not in these rows: aggregate again)"
    else:
        settings = f"probe settings: {checkpoints[0]['probe_settings'] if checkpoints else 'n/a'}"
    lines = [_line(p, conditions, n_settings > 1) for p in checkpoints]
    evidence = (f"{settings}; zeroing the {latent_group} latents vs the SAE reconstruction, accuracy averaged over m "
                f"(testable: clean >= {min_accuracy:.2f}, reconstruction loss <= {max_reconstruction_loss:.2f}; "
                f"supported if the drop <= {max_drop:.2f}):\n" + "\n".join(lines))
    return {"claim": CLAIM, "verdict": verdict, "evidence": evidence, "needed": needed, "checkpoints": checkpoints}


def _line(p: dict, conditions: list[str], name_settings: bool) -> str:
    where = ", ".join([f"{c}={p[c]}" for c in conditions] + ([f"probe {p['probe']}"] if name_settings else []))
    random = "n/a" if pd.isna(p["random"]) else f"{p['random']:.3f}"
    return (f"- {where + ', ' if where else ''}step {p['step']} ({p['checkpoint_fraction']:.0%}), {p['n_seeds']} seed(s): "
            f"clean {p['clean']:.3f}, reconstruction {p['reconstruction']:.3f}, ablated {p['ablated']:.3f} "
            f"(drop {p['drop']:+.3f}), random control {random}: {p['outcome']}")
