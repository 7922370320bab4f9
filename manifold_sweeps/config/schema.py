"""Typed schema of the run configuration.

Hydra merges the YAML groups under `conf/` onto these dataclasses, so an unknown key or a value of
the wrong type (including an Enum value outside its members) is rejected at composition time, before
any job starts. Range checks that a type cannot express live in `validation.py`.

Defaults here are the library defaults; the YAML options in each group set only what defines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from hydra.core.config_store import ConfigStore


class Op(Enum):
    add = "add"
    mul = "mul"


class MarkerScheme(Enum):
    indexed = "indexed"  # the i-th marker of an example is token marker_i (the paper's code)
    shared = "shared"  # every marker is the same token


class Readout(Enum):
    query = "query"  # a dedicated query token at position T-1
    last = "last"  # whatever token sits at T-1 (the paper's code)


class Positions(Enum):
    per_example = "per_example"
    per_batch = "per_batch"  # one draw of marker positions shared by the batch (the paper's code)


class CurriculumKind(Enum):
    single = "single"
    mixed = "mixed"
    sequential = "sequential"


class OptimizerName(Enum):
    sgd = "sgd"
    adamw = "adamw"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class TaskConfig:
    op: Op = Op.add
    seq_len: int = 32  # T
    modulus: int = 8  # C: values are 0..C-1 and the label is their sum (or product) mod C
    vocab_size: int = 256  # every token that is not a value, marker or query token is a distractor
    m: int = 4  # markers per example under curriculum=single
    marker_scheme: MarkerScheme = MarkerScheme.indexed
    readout: Readout = Readout.query
    positions: Positions = Positions.per_example


@dataclass
class ModelConfig:
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 128
    mlp_ratio: int = 0  # 0: attention-only, no MLP parameters exist; k: MLP of width k * d_model
    bias: bool = True  # biases on the attention projections (the paper's code has them)


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adamw
    lr: float = 3e-4
    weight_decay: float = 0.01
    momentum: float = 0.0  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw only
    eps: float = 1e-8  # adamw only
    grad_clip: Optional[float] = None  # max global gradient norm per run; null = off


@dataclass
class CurriculumConfig:
    kind: CurriculumKind = CurriculumKind.mixed
    ms: List[int] = field(default_factory=lambda: [1, 2, 3, 4])  # mixed and sequential
    steps_per_stage: Optional[int] = None  # sequential; null = train.steps split evenly
    reset_optimizer: bool = True  # sequential: fresh optimizer state at each stage (the paper's code)


@dataclass
class TrainConfig:
    steps: int = 6000
    batch_size: int = 64
    snapshot_every: int = 100
    eval_every: int = 250
    eval_examples: int = 512  # per m, fixed for the whole run
    eval_ms: Optional[List[int]] = None  # null = the curriculum's set of m
    checkpoint_every: int = 1000  # steps between full training checkpoints
    progress_every_s: float = 10.0  # seconds between progress lines
    device: Device = Device.auto
    compile: bool = False  # torch.compile forward + backward: ~1.2x per step on CPU, after 10-75 s of compiling


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)
