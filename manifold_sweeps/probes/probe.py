"""Probe one checkpoint: train an SAE on the residual stream after `probe.layer`, select the latents
that correlate with task variables, and ablate them (and random controls) through the rest of the
network.

Data, all at every position:
    SAE training   probe.sae_examples_per_m fresh sequences per m, from the run's stream
                   `probe/sae_data/m=<m>` (never the evaluation examples)
    evaluation     the run's own held-out evaluation set (train.eval_examples per m, streams
                   `eval/m=<m>`): SAE quality, correlations and accuracies are measured on it, so the
                   clean accuracy equals the run's eval_accuracy at that step
Random streams: `probe/sae/step=<s>` (SAE init and minibatches), `probe/random_latents/step=<s>/
group=<g>` (the control latents).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from ..task.curriculum import Curriculum
from ..task.layout import TokenLayout, _name
from ..training.evaluation import build_eval_set
from ..seeding import generator
from .ablation import CHUNK, Variant, ablation_accuracy, random_controls
from .activations import model_from_checkpoint, residual_stream
from .sae import QualityAccumulator, SAESettings, SparseAutoencoder, train_sae
from .selection import CorrelationAccumulator, top_latents
from .variables import VARIABLES, task_variables

log = logging.getLogger(__name__)

ALL_TASK = "all_task"  # the union of every variable's selected latents


@dataclass
class CheckpointProbe:
    ablations: list[dict]  # one per latent group x ablation x m
    latents: list[dict]  # one per variable x rank: the selected latents and their correlations
    quality: dict  # sae_r2, sae_l0, sae_dead_latents, sae_final_loss
    sae: SparseAutoencoder


def run_ms(cfg: DictConfig) -> list[int]:
    """The m a run is evaluated on: train.eval_ms, else every m of its curriculum."""
    if cfg.train.eval_ms is not None:
        return sorted(int(m) for m in cfg.train.eval_ms)
    return Curriculum(cfg.curriculum, cfg.task.m, int(cfg.train.steps)).m_set


def datasets(cfg: DictConfig, n_examples: int, stream: str, device) -> dict:
    layout = TokenLayout.from_config(cfg.task)
    per_batch = _name(cfg.task.positions) == "per_batch"
    return build_eval_set(layout, run_ms(cfg), n_examples, int(cfg.seed), int(cfg.train.batch_size), per_batch,
                          device, stream=stream)


def probe_checkpoint(payload: dict, cfg: DictConfig, device, eval_set: dict | None = None) -> CheckpointProbe:
    """payload: a model checkpoint (rundir/model_checkpoints.py); cfg: the run's config with its
    probe block. eval_set (as build_eval_set returns) may be passed to share it between checkpoints."""
    probe, step, seed = cfg.probe, int(payload["step"]), int(cfg.seed)
    layer = int(probe.layer)
    layout = TokenLayout.from_config(cfg.task)
    model = model_from_checkpoint(payload, device)
    eval_set = eval_set if eval_set is not None else datasets(cfg, int(cfg.train.eval_examples), "eval", device)

    # --- SAE on fresh sequences' activations ---------------------------------------------------------
    sae_data = datasets(cfg, int(probe.sae_examples_per_m), "probe/sae_data", device)
    x_train = torch.cat([residual_stream(model, tokens, layer) for tokens, _ in sae_data.values()])  # (N, d)
    settings = SAESettings(
        n_latents=int(probe.sae_width_ratio) * model.shape.d_model, l1=float(probe.sae_l1),
        steps=int(probe.sae_steps), lr=float(probe.sae_lr), batch_size=int(probe.sae_batch_size),
    )
    sae, final_loss = train_sae(x_train, settings, generator(seed, f"probe/sae/step={step}"),
                                float(cfg.train.progress_every_s))
    sae.eval()

    # --- quality and correlations on the held-out set --------------------------------------------------
    quality = QualityAccumulator(settings.n_latents, device)
    corr = CorrelationAccumulator(len(VARIABLES), settings.n_latents, device)
    with torch.no_grad():
        for tokens, labels in eval_set.values():
            for start in range(0, len(tokens), CHUNK):  # bounds the (examples * T) x n_latents h held at once
                tk, lb = tokens[start : start + CHUNK], labels[start : start + CHUNK]
                x = residual_stream(model, tk, layer)
                x_hat, h = sae(x)
                quality.add(x, x_hat, h)
                corr.add(h, *task_variables(layout, tk, lb))
    quality_measures = {**quality.result(), "sae_final_loss": final_loss}
    correlations = corr.result()  # (K, n)

    # --- latent groups: top latents per variable, their union, random controls -------------------------
    selected = top_latents(correlations, int(probe.latents_per_variable))
    latent_rows, groups = [], {}
    for name, (idx, r) in zip(VARIABLES, selected):
        for rank, (latent, value) in enumerate(zip(idx.tolist(), r.tolist())):
            latent_rows.append({"variable": name, "rank": rank, "latent": latent, "correlation": value})
        if len(idx):
            groups[name] = idx
    if groups:
        groups[ALL_TASK] = torch.cat(list(groups.values())).unique()
    variants = [Variant("none", "clean"), Variant("none", "reconstruction")]
    for name, idx in groups.items():
        variants.append(Variant(name, "zero_selected", tuple(idx.tolist())))
        gen = generator(seed, f"probe/random_latents/step={step}/group={name}")
        variants += random_controls(name, idx.to(device), quality.fired, int(probe.random_trials), gen)

    # --- ablations through the rest of the network ----------------------------------------------------
    mean_abs_corr = {name: float(correlations[VARIABLES.index(name)][idx].abs().mean())
                     for name, idx in groups.items() if name != ALL_TASK}
    rows = []
    for m, (tokens, labels) in eval_set.items():
        acc = ablation_accuracy(model, sae, layer, tokens, labels, variants)
        by_key: dict[tuple[str, str], list[tuple[Variant, float]]] = {}
        for v, a in zip(variants, acc):
            by_key.setdefault((v.latent_group, v.ablation), []).append((v, a))
        for (group, ablation), items in by_key.items():
            v0 = items[0][0]
            rows.append({
                "m": m, "latent_group": group, "ablation": ablation,
                "n_ablated": len(v0.latents),
                "latents": ",".join(map(str, v0.latents)) if ablation == "zero_selected" else "",
                "mean_abs_correlation": mean_abs_corr.get(group, float("nan")) if ablation == "zero_selected"
                else float("nan"),
                "n_trials": len(items),
                "accuracy": sum(a for _, a in items) / len(items),
                "n_examples": len(tokens),
            })
    log.info("step %d: SAE R^2 %.3f, L0 %.1f, dead %d/%d; %d latent groups", step, quality_measures["sae_r2"],
             quality_measures["sae_l0"], quality_measures["sae_dead_latents"], settings.n_latents, len(groups))
    return CheckpointProbe(rows, latent_rows, quality_measures, sae)
