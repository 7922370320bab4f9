"""The `runs` table: one row per run directory found, whatever its state.

Columns: run_id, state, reason, seed, the Hydra group choices (`experiment`, `task`, `model`,
`optimizer`, `curriculum`, `train`: from `.hydra/hydra.yaml`), final_accuracy_m<m> (eval accuracy
at the last evaluation, per m), wall_time_s, last_step, total_steps, n_snapshots, every config value
flattened to a dotted column (`task.m`, `model.n_layers`, ...; lists as JSON text), run_dir.

state is one of completed, failed, diverged, running, interrupted, unreadable. status.json decides
the first five (a `running` run whose process is gone or whose heartbeat is stale is
`interrupted`); `unreadable` is a run whose files are missing or damaged (no status.json, no
config, a truncated trajectory or metrics file). Only completed runs enter the statistics.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import yaml

from ..rundir.metrics import METRICS_FILE, load_metrics
from ..rundir.status import effective_state, read_status
from ..rundir.trajectory import load_trajectory

STATES = ("completed", "failed", "diverged", "running", "interrupted", "unreadable", "duplicate")
CONFIG_FILE = os.path.join(".hydra", "config.yaml")
HYDRA_FILE = os.path.join(".hydra", "hydra.yaml")
# Columns that describe how a run went rather than which experiment it is.
OUTCOME_COLUMNS = ("run_id", "run_dir", "state", "reason", "seed", "wall_time_s", "last_step", "total_steps", "n_snapshots",
                   "config_fingerprint")
OUTCOME_PREFIXES = ("final_accuracy_",)
# Config keys that change how a run is carried out, not what it computes.
NOT_CONDITIONS = ("train.progress_every_s", "train.checkpoint_every")


def condition_columns(runs: pd.DataFrame) -> list[str]:
    """The config columns (values and group choices) that vary across `runs`, except seed: what defines a condition."""
    return [
        c for c in runs.columns
        if c not in OUTCOME_COLUMNS and c not in NOT_CONDITIONS and not c.startswith(OUTCOME_PREFIXES)
        and runs[c].nunique(dropna=False) > 1
    ]


def _flatten(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    # Lists become JSON text: hashable, so they can define conditions, and one parquet type.
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else node}


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # the C parser: 10x OmegaConf.load
    pass


# YAML 1.1 reads 1e-08 (no dot) as text; OmegaConf, which wrote these files, reads it as a float.
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _load_yaml(path: Path) -> dict | None:
    """The file's mapping, or None when it is missing or not valid YAML."""
    try:
        loaded = yaml.load(path.read_text(), Loader=_YamlLoader)
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _group_choices(run_dir: Path) -> dict[str, object]:
    hydra = _load_yaml(run_dir / HYDRA_FILE) or {}
    choices = ((hydra.get("hydra") or {}).get("runtime") or {}).get("choices") or {}
    return {group: choice for group, choice in choices.items() if not group.startswith("hydra/")}


def _final_accuracies(run_dir: Path, completed_steps: int | None = None) -> dict[str, float]:
    """Accuracy per m at the last evaluation. With completed_steps (a completed run, which evaluates at
    its last step), metrics without that evaluation are lost or cut short: ValueError."""
    if completed_steps is not None and not (run_dir / METRICS_FILE).exists():
        raise ValueError(f"{METRICS_FILE} is missing")
    metrics = load_metrics(run_dir)
    accuracy = metrics[metrics["metric"] == "eval_accuracy"].sort_values("step", kind="stable")
    if completed_steps is not None and (accuracy.empty or int(accuracy["step"].max()) != int(completed_steps)):
        last = int(accuracy["step"].max()) if len(accuracy) else None
        raise ValueError(f"{METRICS_FILE} has its last evaluation at step {last}, but the run completed {completed_steps} steps")
    last = accuracy.groupby("m").last()["value"]
    return {f"final_accuracy_m{int(m)}": float(v) for m, v in last.items()}


def _reason(status: dict | None, state: str) -> str | None:
    if status is None:
        return "status.json is missing or unreadable"
    if state == "unreadable":
        return f"status.json has no known state (state={status.get('state')!r})"
    progress = f"step {status.get('last_step')} of {status.get('total_steps')}"
    if state in ("failed", "diverged"):
        return status.get("error") or f"{state} at {progress}"
    if state == "running":
        return f"still running: {progress}, heartbeat {status.get('updated_at')}"
    if state == "interrupted":
        if status.get("state") == "running":
            return f"stopped at {progress} without finishing: its process is gone or its heartbeat is stale (last {status.get('updated_at')})"
        if status.get("checkpoint_step") is None:
            return f"interrupted at {progress} before its first checkpoint; relaunching the run starts it again"
        return (f"interrupted at {progress}; relaunching the run resumes it from its checkpoint at step "
                f"{status['checkpoint_step']}")
    return None


def _check_readable(run_dir: Path, row: dict) -> None:
    """Raise OSError/ValueError naming the file when a completed run's data are missing or damaged."""
    trajectory = load_trajectory(run_dir)  # raises on a truncated trajectory.npy
    row["n_snapshots"] = len(trajectory)
    total = row.get("total_steps")
    if len(trajectory) == 0 or (total is not None and int(trajectory.steps[-1]) != int(total)):
        last = int(trajectory.steps[-1]) if len(trajectory) else None
        raise ValueError(f"trajectory_steps.npy ends at step {last}, but the run completed {total} steps")
    row.update(_final_accuracies(run_dir, total))


def read_run(run_dir: Path, run_id: str, now: float | None = None) -> dict:
    """The run's row of the `runs` table (plain Python values)."""
    status = read_status(run_dir)
    state = effective_state(status, now)
    row: dict[str, object] = {"run_id": run_id, "state": state, "reason": _reason(status, state)}
    config = _load_yaml(run_dir / CONFIG_FILE)
    status = status or {}
    row["seed"] = config.get("seed") if config else None
    row.update(_group_choices(run_dir))
    row.update(wall_time_s=status.get("wall_time_s"), last_step=status.get("last_step"),
               total_steps=status.get("total_steps"), n_snapshots=None,
               config_fingerprint=status.get("config_fingerprint"))
    if config is None:
        if state != "unreadable":
            row["reason"] = f"{CONFIG_FILE} is missing or unreadable ({state} run)"
        row["state"] = "unreadable"
    else:
        row.update(_flatten(config))
    if row["state"] == "completed":
        try:
            _check_readable(run_dir, row)
        except (OSError, ValueError) as err:
            row.update(state="unreadable", reason=f"{type(err).__name__}: {err}")
    else:
        try:  # how far a stopped run got is still worth listing
            row.update(_final_accuracies(run_dir))
        except (OSError, ValueError):
            pass
    row["run_dir"] = str(run_dir)
    return row


def mark_duplicates(rows: dict[str, dict]) -> None:
    """Completed runs with one config_fingerprint (the same config and seed: a sweep launched twice
    into a folder of sweeps, a copied run) repeat one experiment; counting each would count a seed
    twice. The first by run id stays `completed` (the one reduced), the others become `duplicate`."""
    first: dict[str, str] = {}
    for rid in sorted(rows):
        row, fingerprint = rows[rid], rows[rid].get("config_fingerprint")
        if row["state"] != "completed" or not fingerprint:
            continue
        if fingerprint in first:
            row.update(state="duplicate", reason=_duplicate_reason(first[fingerprint], fingerprint))
        else:
            first[fingerprint] = rid


def promote_duplicates(rows: dict[str, dict], lost: list[str]) -> list[str]:
    """The kept copies in `lost` turned out unreadable: the next copy of each (by run id) is kept
    instead. Returns the promoted run ids, to be reduced."""
    promoted = []
    for rid in lost:
        fingerprint = rows[rid].get("config_fingerprint")
        copies = sorted(r for r, row in rows.items()
                        if row["state"] == "duplicate" and fingerprint and row.get("config_fingerprint") == fingerprint)
        if copies:
            rows[copies[0]].update(state="completed", reason=None)
            for other in copies[1:]:
                rows[other]["reason"] = _duplicate_reason(copies[0], fingerprint)
            promoted.append(copies[0])
    return promoted


def _duplicate_reason(kept: str, fingerprint: str) -> str:
    return f"the same config and seed as {kept} (config_fingerprint {fingerprint}): counted once"


def _column_dtype(values: pd.Series) -> str | None:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return None
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "Int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float64"
    return "string"


# Bump whenever the runs table's columns or values change for the same run directories: tables built
# by another version read as stale (aggregate/manifest.py).
RUNS_TABLE_VERSION = 1


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    """The `runs` table: one dtype per column from its values (integers stay integers next to nulls)."""
    frame = pd.DataFrame(rows, dtype=object)
    order = ["run_id", "state", "reason", "seed"]
    order += [c for c in frame.columns if c not in order and "." not in c and c not in OUTCOME_COLUMNS
              and not c.startswith(OUTCOME_PREFIXES)]  # group choices
    order += sorted((c for c in frame.columns if c.startswith(OUTCOME_PREFIXES)), key=lambda c: (len(c), c))
    order += [c for c in OUTCOME_COLUMNS if c in frame.columns and c not in order and c != "run_dir"]
    order += [c for c in frame.columns if "." in c] + ["run_dir"]
    frame = frame[order]
    for column in frame.columns:
        dtype = _column_dtype(frame[column])
        values = frame[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        if dtype == "string":
            values = values.map(lambda v: None if v is None else str(v))
        frame[column] = values.astype(dtype or "string")
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)
