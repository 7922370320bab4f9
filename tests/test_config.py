"""Every group option composes and validates; bad values fail early, naming key and allowed range."""

import itertools

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from manifold_sweeps.config.validation import ConfigError, validate
from manifold_sweeps.paths import CONF_DIR

from .conftest import compose_config

GROUPS = ("task", "model", "optimizer", "curriculum", "train")


def options(group):
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_group_has_the_documented_options():
    assert options("task") == ["modadd", "modmul"]
    assert options("model") == ["attention_only", "standard"]
    assert options("optimizer") == ["adamw", "sgd"]
    assert options("curriculum") == ["mixed", "sequential", "single"]
    assert {"paper", "reference_code", "smoke", "demo"} <= set(options("experiment"))


@pytest.mark.parametrize(
    "task,model,optimizer,curriculum",
    list(itertools.product(options("task"), options("model"), options("optimizer"), options("curriculum"))),
)
def test_every_combination_composes_and_validates(task, model, optimizer, curriculum):
    cfg = compose_config(f"task={task}", f"model={model}", f"optimizer={optimizer}", f"curriculum={curriculum}")
    validate(cfg)
    assert cfg.task.op.name == {"modadd": "add", "modmul": "mul"}[task]
    assert (cfg.model.mlp_ratio == 0) == (model == "attention_only")
    assert cfg.optimizer.name.name == optimizer
    assert cfg.curriculum.kind.name == curriculum


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_composes_and_validates(experiment):
    validate(compose_config(f"experiment={experiment}"))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_task_modmul_keeps_its_prime_modulus_under_every_preset(experiment):
    cfg = compose_config(f"experiment={experiment}", "task=modmul")
    assert (cfg.task.op.name, cfg.task.modulus) == ("mul", 7)
    validate(cfg)


def test_paper_preset_is_the_paper_as_written():
    cfg = compose_config("experiment=paper")
    assert (cfg.task.seq_len, cfg.model.d_model, cfg.train.batch_size, cfg.train.snapshot_every) == (32, 128, 64, 100)
    assert (cfg.optimizer.name.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 1e-3, 0.0)
    assert (cfg.train.steps, cfg.curriculum.kind.name, list(cfg.curriculum.ms)) == (20000, "mixed", [1, 2, 3, 4])


def test_reference_code_preset_is_the_code_as_run():
    cfg = compose_config("experiment=reference_code")
    assert (cfg.task.seq_len, cfg.task.vocab_size, cfg.task.modulus) == (16, 256, 8)
    assert (cfg.model.n_layers, cfg.model.n_heads, cfg.model.d_model) == (5, 4, 128)
    assert (cfg.optimizer.name.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adamw", 3e-4, 0.01)
    assert (cfg.train.batch_size, cfg.train.snapshot_every, cfg.train.steps) == (128, 500, 20000)
    assert (cfg.task.readout.name, cfg.task.positions.name) == ("last", "per_batch")


@pytest.mark.parametrize(
    "override,key,allowed",
    [
        ("task.m=16", "task.m", "1..15"),
        ("task.modulus=1", "task.modulus", ">= 2"),
        ("train.steps=0", "train.steps", "positive"),
        ("optimizer.lr=0", "optimizer.lr", "positive"),
        ("optimizer.lr=-0.1", "optimizer.lr", "positive"),
        ("train.batch_size=-4", "train.batch_size", "positive"),
        ("train.snapshot_every=0", "train.snapshot_every", "positive"),
        ("model.n_heads=3", "model.d_model", "multiple of model.n_heads=3"),
        ("task.vocab_size=20", "task.vocab_size", ">= 25"),
        ("curriculum.ms=[1,2,20]", "curriculum.ms", "1..15"),
        ("optimizer.momentum=1.5", "optimizer.momentum", "[0, 1)"),
        # values that used to pass and then failed during training, or trained something else
        ("seed=-1", "seed", ">= 0"),
        ("task.op=mul", "task.modulus", "a prime with task.op=mul"),
        ("train.eval_ms=[]", "train.eval_ms", "a non-empty list"),
        ("commutator.basis_k=300", "commutator.basis_k", "1..256"),
        ("optimizer.lr=1e39", "optimizer.lr", "up to 3.4e+38"),
        ("optimizer.eps=-1", "optimizer.eps", ">= 0"),
        ("curriculum=sequential curriculum.ms=[1,2,3,4] train.steps=3", "train.steps", "at least len(curriculum.ms) = 4"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_range(override, key, allowed):
    single = ["curriculum=single"] if override.startswith("task.m=") else []
    small = ["model.d_model=16"] if key == "commutator.basis_k" else []
    cfg = compose_config(*override.split(), *single, *small)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert f"{key}=" in str(err.value) and allowed in str(err.value)


def test_a_marker_count_below_1_is_refused_even_where_the_curriculum_does_not_read_task_m():
    with pytest.raises(ConfigError, match=r"task.m=0 is not allowed .*allowed: 1..15"):
        validate(compose_config("curriculum=mixed", "task.m=0"))


def test_markers_that_fit_a_short_sequence_are_checked_against_it():
    cfg = compose_config("curriculum=single", "task.seq_len=8", "task.m=3")  # query readout: 1..3 fit
    validate(cfg)
    cfg = compose_config("curriculum=single", "task.seq_len=8", "task.m=4")
    with pytest.raises(ConfigError, match=r"task.m=4 .*allowed: 1..3"):
        validate(cfg)


@pytest.mark.parametrize(
    "override,key",
    [("train.device=tpu", "train.device"), ("task.op=sub", "task.op"), ("task.readout=first", "task.readout")],
)
def test_unknown_choices_are_rejected_at_composition_with_the_allowed_values(override, key):
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_config(override)
    text = str(err.value) + str(err.value.__cause__)
    assert key.split(".")[-1] in text


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigCompositionException):
        compose_config("train.stepz=5")
    # Hydra's error suggests '+train.stepz=5', which adds the key past the schema: refused before any work
    for override, key in (("+train.stepz=5", "train.stepz"), ("+lr=0.1", "lr")):
        with pytest.raises(ConfigError, match=f"{key} is not a config key .*allowed: "):
            validate(compose_config(override))
