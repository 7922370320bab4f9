"""The probe stage over run directories: find runs, probe each completed run's model checkpoints,
write its tables atomically into `<run>/probes/`, and skip runs whose tables are up to date.

Files in `<run>/probes/`:
    sae_probes.parquet, sae_latents.parquet   the tables (tables.py)
    sae_step_XXXXXX.pt                         the SAE of each checkpoint (state_dict, + step, layer)
    probe.json                                 what the tables were computed from: the probe config,
                                               the checkpoint steps, the evaluation set; written last
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config.schema import ProbeConfig
from ..config.validation import ConfigError, schema, validate
from ..rundir.atomic import atomic_path, write_text, write_torch
from ..rundir.model_checkpoints import load_model_checkpoint, saved_checkpoint_steps
from ..rundir.status import STATUS_FILE, read_status
from ..training.device import resolve_device
from ..training.packing import TRAINING_PROBE_KEYS
from .probe import datasets, probe_checkpoint
from .tables import (ADDED_ON_LOADING, LATENT_COLUMNS, LATENTS_FILE, META_FILE, PROBE_COLUMNS, PROBES_DIR, PROBES_FILE,
                     read_meta, frame, load_sae_probes, result_settings)

log = logging.getLogger(__name__)

# The keys this stage reads; TRAINING_PROBE_KEYS (which checkpoints training keeps) are training's.
PROBE_STAGE_KEYS = tuple(f.name for f in fields(ProbeConfig) if f"probe.{f.name}" not in TRAINING_PROBE_KEYS)
FORMAT = 1  # bump when the tables' meaning changes: older tables are then recomputed


@dataclass
class Outcome:
    run_dir: Path
    state: str  # probed | up_to_date | skipped
    reason: str = ""


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Run directories (holding status.json) at or below each path, sorted, without repeats."""
    found = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if (path / STATUS_FILE).exists():
            found.add(path.resolve())
        else:
            found.update(p.parent.resolve() for p in path.rglob(STATUS_FILE))
    return sorted(found)


def _merged(saved: dict, overrides: list[str]) -> DictConfig:
    """The saved config, typed by the schema, with the overrides merged one at a time (an error names
    the override: a key the probe config lacks, or a value of the wrong type)."""
    bad = [o for o in overrides if not o.startswith("probe.") or "=" not in o]
    if bad:
        raise ConfigError(f"the probe stage takes only probe.KEY=VALUE overrides; got {bad}")
    training = [o for o in overrides if o.split("=", 1)[0] in TRAINING_PROBE_KEYS]
    if training:  # the stage probes every checkpoint the run saved: these would be recorded, not used
        raise ConfigError(f"{training[0]} is not allowed in the probe stage: {' and '.join(TRAINING_PROBE_KEYS)} "
                          "choose which checkpoints training saves, and the stage probes every saved one; "
                          "allowed: " + ", ".join(f"probe.{k}" for k in PROBE_STAGE_KEYS))
    cfg = OmegaConf.merge(schema(), saved)
    for override in overrides:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([override]))
        except OmegaConfBaseException as err:
            keys = ", ".join(f"probe.{k}" for k in PROBE_STAGE_KEYS)
            raise ConfigError(f"{override} is not allowed ({str(err).splitlines()[0]}); allowed: {keys}, "
                              "each with a value of its type") from None
    return cfg


def probe_config(saved: dict, overrides: Iterable[str] = ()) -> DictConfig:
    """The run's saved config, typed by the schema, with `probe.*` overrides applied and validated."""
    cfg = _merged(saved, list(overrides))
    validate(cfg)
    return cfg


def check_overrides(overrides: Iterable[str]) -> None:
    """Refuse, before any run is touched, overrides that no run could take: unknown keys, training's
    keys, values of the wrong type, a probe.device this machine lacks. Ranges depend on each run
    (probe.layer on its model.n_layers): probe_config checks those per run."""
    cfg = _merged(OmegaConf.to_container(schema()), list(overrides))
    resolve_device(cfg.probe.device, "probe.device")


def _same_results(saved: dict | None, wanted: dict) -> bool:
    """Whether the saved probe.json describes the results `wanted` asks for (result_settings: where
    they were computed, probe.device, aside)."""
    def what(meta: dict) -> dict:
        return {**meta, "probe": result_settings(meta)}
    return result_settings(saved) is not None and what(saved) == what(wanted)


def last_probe_overrides(run_dir: str | os.PathLike) -> list[str]:
    """The probe-stage settings the run's current tables were computed with (probe.json), as
    overrides: [] when it has none of this format. probe.device is left to this machine."""
    meta = read_meta(Path(run_dir))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return []
    return [f"probe.{k}={json.dumps(v)}" for k, v in (result_settings(meta) or {}).items()]


def _meta(cfg: DictConfig, steps: list[int]) -> dict:
    return {
        "format": FORMAT,
        "probe": OmegaConf.to_container(cfg.probe, resolve=True, enum_to_str=True),
        "checkpoint_steps": steps,
        "eval": {"examples": int(cfg.train.eval_examples),
                 "ms": None if cfg.train.eval_ms is None else list(cfg.train.eval_ms)},
    }


def probe_run(run_dir: str | os.PathLike, overrides: Iterable[str] = (), force: bool = False) -> Outcome:
    """Probe one run's checkpoints into `<run>/probes/` unless its tables are up to date."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    state = status.get("state") if status else "unreadable"
    if state != "completed":
        return Outcome(run_dir, "skipped", f"run state is {state}; only completed runs are probed")
    steps = saved_checkpoint_steps(run_dir)
    if not steps:
        return Outcome(run_dir, "skipped", "no model checkpoints in checkpoints/ (set probe.checkpoint_fractions "
                                           "or probe.checkpoint_steps when training)")
    first = load_model_checkpoint(run_dir, steps[0])
    cfg = probe_config(first["config"], overrides)
    meta = _meta(cfg, steps)
    if not force and _same_results(read_meta(run_dir), meta):
        return Outcome(run_dir, "up_to_date")

    device = resolve_device(cfg.probe.device, "probe.device")  # before anything of the run's is touched
    out = run_dir / PROBES_DIR
    (out / META_FILE).unlink(missing_ok=True)  # tables being rewritten are not up to date for anyone
    eval_set = datasets(cfg, int(cfg.train.eval_examples), "eval", device)
    total, seed, layer = int(cfg.train.steps), int(cfg.seed), int(cfg.probe.layer)
    probe_rows, latent_rows = [], []
    for i, step in enumerate(steps):
        t0 = time.monotonic()
        log.info("%s: checkpoint %d/%d (step %d)", run_dir, i + 1, len(steps), step)
        payload = first if step == steps[0] else load_model_checkpoint(run_dir, step)
        result = probe_checkpoint(payload, cfg, device, eval_set)
        common = {"seed": seed, "step": step, "layer": layer}
        recon = {r["m"]: r["accuracy"] for r in result.ablations if r["ablation"] == "reconstruction"}
        for row in result.ablations:
            probe_rows.append({
                **common, "checkpoint_fraction": step / total, **row,
                "accuracy_drop": recon[row["m"]] - row["accuracy"],
                "sae_width": result.sae.n_latents, "sae_l1": float(cfg.probe.sae_l1), **result.quality,
            })
        latent_rows += [{**common, **row} for row in result.latents]
        # CPU tensors, so the file loads on a machine without the GPU it was trained on.
        state = {k: v.cpu() for k, v in result.sae.state_dict().items()}
        write_torch(out / f"sae_step_{step:06d}.pt", {"step": step, "layer": layer, "state_dict": state})
        log.info("%s: step %d probed in %.1f s", run_dir, step, time.monotonic() - t0)

    for name, rows, columns in ((PROBES_FILE, probe_rows, PROBE_COLUMNS), (LATENTS_FILE, latent_rows, LATENT_COLUMNS)):
        with atomic_path(out / name) as tmp:
            table = frame(rows, columns).drop(columns=[c for c in ADDED_ON_LOADING if c in columns])
            table.to_parquet(tmp, index=False)
    write_text(out / META_FILE, json.dumps(meta, indent=2) + "\n")
    return Outcome(run_dir, "probed")


def sae_probe_rows(run_dir: str | os.PathLike, run_id: str | None = None, overrides: Iterable[str] | None = None,
                   force: bool = False) -> pd.DataFrame:
    """The run's `sae_probes` rows, probing it first when its tables are missing or stale.

    For the aggregation's `--probes`: run_id is the aggregation's id of the run (default: the run
    directory). Without overrides, the settings of the run's last probing are kept (results a user
    computed with `probe.*` overrides stay; they are recomputed with the same settings only when the
    checkpoints or the tables' format changed). A run that cannot be probed (not completed, no
    checkpoints) gives no rows.
    """
    if overrides is None:
        overrides = last_probe_overrides(run_dir)
    outcome = probe_run(run_dir, overrides, force)
    if outcome.state == "skipped":
        log.info("%s: no probes (%s)", run_dir, outcome.reason)
        return frame([], PROBE_COLUMNS)
    return load_sae_probes(run_dir, run_id)
