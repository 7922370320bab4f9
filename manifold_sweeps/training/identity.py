"""Whether a run directory already holds a run of another config, and the refusal that says so.

A run's identity is its `config_fingerprint` (packing.py), recorded in its `status.json` when it first
trains. Launchers ask before any job starts, while the directory's `.hydra/` files still describe its
run (Hydra rewrites them for every job it sets up); training asks again, where the run's own config
comes from its checkpoint. Nothing here imports torch: launchers use it at submission.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..rundir.status import read_status
from .packing import config_fingerprint, differences, is_probe_stage_key

CONFIG_FILE = Path(".hydra") / "config.yaml"


def recorded_config(run_dir: Path) -> DictConfig | None:
    """The config in the run directory's `.hydra/config.yaml`, if it is the one its status records."""
    status = read_status(run_dir)
    try:
        cfg = OmegaConf.load(Path(run_dir) / CONFIG_FILE)
        same = bool(status) and config_fingerprint(cfg) == status.get("config_fingerprint")
    except (OSError, ValueError, OmegaConfBaseException):  # unreadable, or interpolations only Hydra resolves
        return None
    return cfg if same else None


def other_run_refusal(cfg: DictConfig, run_dir: Path, trained: DictConfig | None) -> str | None:
    """The refusal when run_dir holds a run of another config than cfg (None when it holds none or
    this one). trained: that run's config if known, to name the keys that differ."""
    status = read_status(run_dir)
    fingerprint = config_fingerprint(cfg)
    if not status or status.get("config_fingerprint") in (None, fingerprint):
        return None
    detail, advice = "", "use a new output directory"
    if trained is not None and config_fingerprint(trained) == status["config_fingerprint"]:
        changed = differences(trained, cfg)
        shown = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in list(changed.items())[:8])
        detail = f"; it differs in {shown}{', ...' if len(changed) > 8 else ''}"
        if changed and all(is_probe_stage_key(k) for k in changed):
            advice = (f"probe settings other than probe.checkpoint_* are the probe stage's: "
                      f"python -m manifold_sweeps.probes {run_dir} {' '.join(f'{k}=...' for k in changed)} --force")
    return (f"{run_dir} already holds a run with a different config (status.json config_fingerprint "
            f"{status['config_fingerprint']} vs {fingerprint}){detail}; {advice}")
