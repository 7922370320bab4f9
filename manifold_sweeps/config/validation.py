"""Range checks on a composed config, run before any work starts.

The schema already rejects unknown keys (except those added with Hydra's `+`, refused here), wrong
types and Enum values outside their members. This module checks what types cannot: ranges,
divisibility, and whether the markers fit in the sequence.
Every message names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import functools

from omegaconf import DictConfig, OmegaConf

from ..task.layout import TokenLayout, _name
from .schema import Config


FLOAT32_MAX = 3.4028234663852886e38


class ConfigError(ValueError):
    """A config value outside its allowed range."""


def _fail(key: str, value, allowed: str, why: str = "") -> None:
    reason = f" ({why})" if why else ""
    raise ConfigError(f"{key}={value} is not allowed{reason}; allowed: {allowed}")


def _positive(cfg: DictConfig, key: str, kind=int) -> None:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if value is None or not value > 0:
        _fail(key, value, f"a positive {'integer' if kind is int else 'number'}")


@functools.lru_cache(maxsize=1)
def schema() -> DictConfig:
    """The config schema with its defaults, built once: it takes milliseconds, and a large sweep
    validates every job twice. Merge onto it; never modify it."""
    return OmegaConf.structured(Config)


def _refuse_unknown_keys(cfg: DictConfig, schema: DictConfig, prefix: str = "") -> None:
    """Hydra's `+key=value` (which its own error for a misspelled key suggests) adds a key past the
    schema, and nothing would ever read it: a run that silently ignores what the user asked for."""
    for key in cfg:
        if key not in schema:
            allowed = ", ".join(prefix + str(k) for k in schema)
            raise ConfigError(f"{prefix}{key} is not a config key (added with '+'?), so nothing would read it; "
                              f"allowed: {allowed}")
        if isinstance(cfg[key], DictConfig) and isinstance(schema[key], DictConfig):
            _refuse_unknown_keys(cfg[key], schema[key], f"{prefix}{key}.")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first bad key; return None when the config is usable."""
    _refuse_unknown_keys(cfg, schema())
    task, model, opt, cur, train = cfg.task, cfg.model, cfg.optimizer, cfg.curriculum, cfg.train

    for key in ("train.steps", "train.batch_size", "train.snapshot_every", "train.eval_every",
                "train.eval_examples", "train.checkpoint_every", "model.n_layers", "model.n_heads",
                "model.d_model"):
        _positive(cfg, key)
    _positive(cfg, "optimizer.lr", float)
    if not opt.lr <= FLOAT32_MAX:  # the update multiplies float32 weights by it (inf and nan fail too)
        _fail("optimizer.lr", opt.lr, f"a positive number up to {FLOAT32_MAX:.3g} (float32)")
    _positive(cfg, "train.progress_every_s", float)
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "an integer >= 0", "it seeds numpy's SeedSequence")
    if task.modulus < 2:
        _fail("task.modulus", task.modulus, "an integer >= 2")
    if _name(task.op) == "mul" and not _is_prime(task.modulus):
        _fail("task.modulus", task.modulus, "a prime with task.op=mul (task=modmul sets 7)",
              "products mod a composite collapse onto its divisors: 2 x 4 = 0 mod 8")
    if task.seq_len < 4:
        _fail("task.seq_len", task.seq_len, "an integer >= 4", "one marker, its value and the readout must fit")
    if model.d_model % model.n_heads != 0:
        _fail("model.d_model", model.d_model, f"a multiple of model.n_heads={model.n_heads}")
    if model.mlp_ratio < 0:
        _fail("model.mlp_ratio", model.mlp_ratio, "0 (attention-only) or a positive integer")
    if not 0 <= opt.weight_decay <= FLOAT32_MAX:
        _fail("optimizer.weight_decay", opt.weight_decay, "a number >= 0")
    if not 0 <= opt.eps <= FLOAT32_MAX:
        _fail("optimizer.eps", opt.eps, "a number >= 0")
    if not 0 <= opt.momentum < 1:
        _fail("optimizer.momentum", opt.momentum, "a number in [0, 1)")
    if len(opt.betas) != 2 or not all(0 <= b < 1 for b in opt.betas):
        _fail("optimizer.betas", list(opt.betas), "two numbers in [0, 1)")
    if opt.grad_clip is not None and not opt.grad_clip > 0:
        _fail("optimizer.grad_clip", opt.grad_clip, "null (off) or a positive number")

    layout = TokenLayout.from_config(task)
    fit = layout.max_markers
    where = f"with task.seq_len={task.seq_len} and task.readout={layout.readout}"
    if fit < 1:
        _fail("task.seq_len", task.seq_len, "a length that fits one marker and its value", where)
    if layout.n_distractors < 1:
        need = layout.first_distractor
        _fail("task.vocab_size", task.vocab_size, f"an integer >= {need + 1}",
              f"{layout.modulus} values + {layout.n_marker_tokens} marker tokens"
              f"{' + 1 query token' if layout.query_token is not None else ''} leave no distractor token")

    kind = _name(cur.kind)
    if kind == "single":
        if not 1 <= task.m <= fit:
            _fail("task.m", task.m, f"1..{fit}", f"markers must be non-adjacent and each followed by its value, {where}")
    else:
        if task.m < 1:  # unread here (task.m is curriculum=single's), but never a marker count
            _fail("task.m", task.m, f"1..{fit}", "the number of markers per example")
        if len(cur.ms) == 0:
            _fail("curriculum.ms", list(cur.ms), "a non-empty list of marker counts")
        for m in cur.ms:
            if not 1 <= m <= fit:
                _fail("curriculum.ms", list(cur.ms), f"values in 1..{fit}", f"m={m} does not fit {where}")
    if kind == "sequential" and cur.steps_per_stage is None and train.steps < len(cur.ms):
        _fail("train.steps", train.steps, f"at least len(curriculum.ms) = {len(cur.ms)} with a sequential curriculum",
              "every stage must get a step")
    if kind == "sequential" and cur.steps_per_stage is not None:
        if cur.steps_per_stage < 1:
            _fail("curriculum.steps_per_stage", cur.steps_per_stage, "null (split train.steps evenly) or a positive integer")
        if cur.steps_per_stage * len(cur.ms) > train.steps:
            _fail("curriculum.steps_per_stage", cur.steps_per_stage,
                  f"at most train.steps / len(curriculum.ms) = {train.steps // len(cur.ms)}",
                  "every stage must fit in training")
    if train.eval_ms is not None:
        if len(train.eval_ms) == 0:
            _fail("train.eval_ms", [], f"null (the curriculum's m) or a non-empty list of values in 1..{fit}")
        for m in train.eval_ms:
            if not 1 <= m <= fit:
                _fail("train.eval_ms", list(train.eval_ms), f"null or values in 1..{fit}", f"m={m} does not fit {where}")
    _validate_commutator(cfg.commutator, model.d_model)
    _validate_probe(cfg)


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, int(n ** 0.5) + 1))


def validate_aggregate(cfg) -> None:
    """Range checks on an AggregateConfig (keys named as the command's flags)."""
    if not cfg.expanding_windows >= 1:
        _fail("--expanding-windows", cfg.expanding_windows, "a positive integer (10: windows ending at 10%, 20%, ...)")
    for key, value in (("--sliding-width", cfg.sliding_width), ("--sliding-stride", cfg.sliding_stride)):
        if not 0 < value <= 1:
            _fail(key, value, "a fraction of training in (0, 1]")
    if cfg.alignment_k is not None and not cfg.alignment_k >= 1:
        _fail("--alignment-k", cfg.alignment_k, "a positive integer, or leave it out to use each run's r90")
    if not cfg.workers >= 1:
        _fail("--workers", cfg.workers, "a positive integer (processes reducing runs in parallel)")
    if not cfg.progress_every_s > 0:
        _fail("--progress-every-s", cfg.progress_every_s, "a positive number of seconds")


def _validate_commutator(com: DictConfig, d_model: int) -> None:
    if com.every < 0:
        _fail("commutator.every", com.every, "0 (off) or a positive number of steps")
    for key in ("samples", "basis_k", "random_trials"):
        if com[key] < 1:
            _fail(f"commutator.{key}", com[key], "a positive integer")
    if com.basis_k > d_model ** 2:
        _fail("commutator.basis_k", com.basis_k, f"1..{d_model ** 2} (model.d_model^2, the dimension of one matrix)")
    if not com.eta > 0:
        _fail("commutator.eta", com.eta, "a positive number")


def _validate_probe(cfg: DictConfig) -> None:
    probe, steps = cfg.probe, cfg.train.steps
    for f in probe.checkpoint_fractions:
        if not 0 < f <= 1:
            _fail("probe.checkpoint_fractions", list(probe.checkpoint_fractions), "fractions of train.steps in (0, 1]")
    if probe.checkpoint_steps is not None:
        for s in probe.checkpoint_steps:
            if not 0 <= s <= steps:
                _fail("probe.checkpoint_steps", list(probe.checkpoint_steps), f"null or steps in 0..{steps} (train.steps)")
    if not 0 <= probe.layer < cfg.model.n_layers:
        _fail("probe.layer", probe.layer, f"0..{cfg.model.n_layers - 1} (a block of model.n_layers={cfg.model.n_layers})")
    for key in ("probe.sae_width_ratio", "probe.sae_steps", "probe.sae_batch_size", "probe.sae_examples_per_m",
                "probe.latents_per_variable"):
        _positive(cfg, key)
    _positive(cfg, "probe.sae_lr", float)
    if probe.sae_l1 < 0:
        _fail("probe.sae_l1", probe.sae_l1, "a number >= 0")
    if probe.random_trials < 0:
        _fail("probe.random_trials", probe.random_trials, "an integer >= 0 (0 = no random-latent control)")
