"""Which runs may share one process (packed training), and a fingerprint of what a run computes.

Runs can be packed when their configs agree on every key except those listed in PER_RUN_KEYS:
those change a run's data, schedule or optimizer scalars, never a tensor shape or the loop.
`form_packs` cuts a sweep into such packs (`hydra.launcher.pack_size`). UNREAD_KEYS: the keys
a run's other settings leave unread (the launchers refuse sweeps over them alone; a run given one
is warned, `unread_overrides`; the report leaves them out of the shared settings).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Sequence

from omegaconf import DictConfig, OmegaConf

from ..config.validation import ConfigError

# Dotted prefixes: a key is per-run if it equals one of these or lies under one.
PER_RUN_KEYS = (
    "seed",
    "task.m",
    "task.op",
    "task.marker_scheme",
    "task.readout",
    "task.positions",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "optimizer.betas",
    "optimizer.eps",
    "optimizer.grad_clip",
    "curriculum",
    "train.eval_ms",
    # Training reads only probe.checkpoint_* (which steps to keep), per run; the rest belongs to the
    # probe stage, which reads it from each run's own checkpoints.
    "probe",
)
# The probe keys training reads; every other probe key changes only the probe stage's results.
TRAINING_PROBE_KEYS = ("probe.checkpoint_fractions", "probe.checkpoint_steps")
# Keys that change how a run is carried out but not what it computes.
NON_RESULT_KEYS = ("train.progress_every_s", "train.checkpoint_every")


def flatten(cfg: DictConfig) -> dict[str, object]:
    """{"task.m": 4, ...} with Enum values as their names."""
    out: dict[str, object] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return out


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def check_packable(cfgs: list[DictConfig]) -> None:
    if len(cfgs) < 2:
        return
    first = flatten(cfgs[0])
    for cfg in cfgs[1:]:
        other = flatten(cfg)
        for key in sorted(set(first) | set(other)):
            if _under(key, PER_RUN_KEYS):
                continue
            if first.get(key) != other.get(key):
                raise ConfigError(
                    f"runs packed together must share {key} (got {first.get(key)!r} and {other.get(key)!r}); "
                    f"only these may differ: {', '.join(PER_RUN_KEYS)}"
                )


def pack_key(cfg: DictConfig) -> str:
    """Every value outside PER_RUN_KEYS, as text: runs with equal keys may share a pack."""
    shared = {k: v for k, v in flatten(cfg).items() if not _under(k, PER_RUN_KEYS)}
    return json.dumps(shared, sort_keys=True, default=str)


def form_packs(cfgs: list[DictConfig], pack_size: int) -> list[list[int]]:
    """Indices into cfgs, in packs of at most pack_size runs that may train together.

    Runs are grouped by `pack_key` (groups in the order of their first run, runs in their given
    order), then each group is cut into consecutive chunks: the same sweep always gives the same packs.
    """
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(pack_key(cfg), []).append(i)
    return [members[start:start + pack_size] for members in groups.values()
            for start in range(0, len(members), pack_size)]


def differences(a: DictConfig, b: DictConfig) -> dict[str, tuple[object, object]]:
    """{dotted key: (value in a, value in b)} for every key whose value differs (None where absent)."""
    fa, fb = flatten(a), flatten(b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if k not in fa or k not in fb or fa[k] != fb[k]}


def is_probe_stage_key(key: str) -> bool:
    return _under(key, ("probe",)) and not _under(key, TRAINING_PROBE_KEYS)


def config_fingerprint(cfg: DictConfig) -> str:
    """Short hash of every config value that changes what the run computes."""
    items = {k: v for k, v in flatten(cfg).items() if not _under(k, NON_RESULT_KEYS)}
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class UnreadKeys:
    """Keys (dotted, or prefixes of keys) that no run reads while its value of `by` makes `unread`
    true; `by` itself always counts as read, so a prefix may cover it."""

    keys: tuple[str, ...]
    by: str
    unread: Callable[[object], bool]
    why: str  # why that setting leaves the keys unread
    instead: str  # what to sweep instead

    def covers(self, key: str) -> bool:
        return key != self.by and _under(key, self.keys)

    def setting(self, flat: dict[str, object]) -> str:
        value = flat[self.by]
        return f"{GROUP_CHOICES.get(self.by, self.by)}={value if isinstance(value, str) else json.dumps(value)}"


# The key that picks a config group's option is named after the group: curriculum=mixed.
GROUP_CHOICES = {"curriculum.kind": "curriculum", "optimizer.name": "optimizer"}

# What training cannot see (task/curriculum.py, training/optimizers.py, training/loop.py,
# rundir/model_checkpoints.py): a sweep over these alone trains the same run under several names.
# probe.* keys other than checkpoint_* are not here: the probe stage reads them (is_probe_stage_key).
UNREAD_KEYS = (
    UnreadKeys(("task.m",), "curriculum.kind", lambda kind: kind != "single", "it trains curriculum.ms",
               "Add curriculum=single, or sweep curriculum.ms instead"),
    UnreadKeys(("curriculum.ms",), "curriculum.kind", lambda kind: kind == "single", "it trains task.m",
               "Sweep task.m instead, or add curriculum=mixed or curriculum=sequential"),
    UnreadKeys(("curriculum.steps_per_stage", "curriculum.reset_optimizer"), "curriculum.kind",
               lambda kind: kind != "sequential", "only curriculum=sequential has stages",
               "Add curriculum=sequential to sweep the stages"),
    UnreadKeys(("commutator",), "commutator.every", lambda every: every == 0, "it measures no commutators",
               "Set commutator.every > 0 to sweep the commutator settings"),
    UnreadKeys(("optimizer.momentum",), "optimizer.name", lambda name: name != "sgd", "only sgd has momentum",
               "Add optimizer=sgd to sweep optimizer.momentum"),
    UnreadKeys(("optimizer.betas", "optimizer.eps"), "optimizer.name", lambda name: name != "adamw",
               "only adamw has betas and eps", "Add optimizer=adamw to sweep optimizer.betas and optimizer.eps"),
    UnreadKeys(("probe.checkpoint_fractions",), "probe.checkpoint_steps", lambda steps: steps is not None,
               "explicit steps replace the fractions",
               "Sweep probe.checkpoint_steps, or set it to null to sweep the fractions"),
)


def unread_overrides(cfg: DictConfig, overrides: Sequence[str]) -> list[str]:
    """A warning for each override (`task.m=3`) of a key that cfg's own settings leave unread
    (UNREAD_KEYS): the run trains as if it had not been given."""
    flat = flatten(cfg)
    lines = []
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        for rule in UNREAD_KEYS:
            if key in flat and rule.covers(key) and rule.unread(flat[rule.by]):
                lines.append(f"{key}={value} has no effect: {rule.setting(flat)} does not read it ({rule.why})")
    return lines
