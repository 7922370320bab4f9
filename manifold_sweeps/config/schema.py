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


class Precision(Enum):
    float32 = "float32"
    float64 = "float64"


class SaveDeltas(Enum):
    median = "median"  # per measurement, the delta of the sample with the median defect D
    all = "all"
    none = "none"


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
class CommutatorConfig:
    """SGD commutators measured during training (manifold_sweeps/commutator/, README "SGD commutators")."""

    every: int = 500  # steps between measurements (step 0, every, 2*every, ...); 0 = off
    samples: int = 9  # K independent batch pairs (A, B) per measurement
    eta: float = 1e-3  # plain gradient step of the commutator (the paper's eq. 4-5), not the training optimizer
    precision: Precision = Precision.float64  # of the gradient evaluations; float32 rounds theta0 - eta g once trained
    basis_k: int = 3  # principal directions per attention matrix in the execution basis
    random_trials: int = 10  # random block-matched subspaces averaged into the baseline
    save_deltas: SaveDeltas = SaveDeltas.median  # attention-matrix part of delta, for the whole-trajectory basis


@dataclass
class ProbeConfig:
    """Sparse-autoencoder probing (manifold_sweeps/probes/): checkpoints saved in training, SAE knobs."""

    # Model-only checkpoints for the probe stage, as fractions of train.steps (rounded to a step): the
    # paper's early / mid / late. Ignored when checkpoint_steps is set; [] with null steps saves none.
    checkpoint_fractions: List[float] = field(default_factory=lambda: [0.1, 0.4, 1.0])
    checkpoint_steps: Optional[List[int]] = None  # explicit steps 0..train.steps; replaces the fractions
    layer: int = 0  # probe the residual stream after block `layer` (0 = after the first block)
    sae_width_ratio: int = 8  # SAE latents = ratio * d_model
    sae_l1: float = 1.0  # lambda of eq. 8, for activations scaled to variance 1 per dimension on average
    sae_steps: int = 1000  # Adam updates of each SAE
    sae_lr: float = 1e-3
    sae_batch_size: int = 512  # activation vectors (positions) per SAE update
    sae_examples_per_m: int = 256  # sequences per m whose activations (every position) train the SAE
    latents_per_variable: int = 3  # top latents (by |correlation|) selected for each task variable
    random_trials: int = 5  # random-latent control ablations per latent group
    device: Device = Device.auto


@dataclass
class Config:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    commutator: CommutatorConfig = field(default_factory=CommutatorConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    seed: int = 0


class Reference(Enum):
    mean = "mean"  # snapshots centred on the window's mean (the paper's eq. 1)
    displacement = "displacement"  # W_t - W_0 uncentred (the companion paper)


@dataclass
class AggregateConfig:
    """Options of `python -m manifold_sweeps.aggregate` (flags of the same names, `--sliding-width`...)."""

    out: Optional[str] = None  # null: tables/ inside the single PATH, or inside the common parent of several
    reference: Reference = Reference.mean
    expanding_windows: int = 10  # expanding windows end at 1/N, 2/N, ..., N/N of training
    sliding_width: float = 0.2  # sliding window width, as a fraction of training
    sliding_stride: float = 0.1  # step between sliding window starts, as a fraction of training
    alignment_k: Optional[int] = None  # subspace dimension for subspace_alignment; null: each run's r90
    fresh: bool = False  # ignore cached per-run results and recompute every run
    probes: bool = False  # also probe runs with SAEs (manifold_sweeps/probes) into sae_probes tables
    workers: int = 2  # processes reducing runs in parallel (the development machine has 2 cores)
    progress_every_s: float = 5.0  # seconds between progress lines


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=Config)
