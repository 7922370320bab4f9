"""The task generator: labels, marker spacing, token classes, reproducibility."""

import itertools
import math

import pytest
import torch

from manifold_sweeps.task.curriculum import Curriculum
from torch.utils._python_dispatch import TorchDispatchMode

from manifold_sweeps.task import generator as task_generator
from manifold_sweeps.task.generator import DISTRACTOR, MARKER, QUERY, VALUE, sample_batch, sample_batches, token_classes
from manifold_sweeps.task.layout import TokenLayout

from .conftest import compose_config


def layout(**kw):
    base = dict(seq_len=32, modulus=8, vocab_size=256, op="add", marker_scheme="indexed", readout="query")
    return TokenLayout(**{**base, **kw})


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("op", ["add", "mul"])
@pytest.mark.parametrize("readout", ["query", "last"])
@pytest.mark.parametrize("scheme", ["indexed", "shared"])
@pytest.mark.parametrize("m", [1, 4, 15])
def test_batches_follow_the_documented_layout(op, readout, scheme, m):
    lay = layout(op=op, readout=readout, marker_scheme=scheme, modulus=7 if op == "mul" else 8)
    if m > lay.max_markers:
        pytest.skip("does not fit this readout")
    b = sample_batch(lay, m, 256, gen())
    tokens, pos = b.tokens, b.marker_positions
    assert tokens.shape == (256, 32) and pos.shape == (256, m)
    # markers in 1..L-2, sorted, at least 2 apart, each followed by its value
    assert pos.min() >= 1 and pos.max() <= lay.body_length - 2
    if m > 1:
        assert (pos.diff(dim=1) >= 2).all()
    marker_tokens = tokens.gather(1, pos)
    expected = lay.first_marker + (torch.arange(m) if scheme == "indexed" else torch.zeros(m, dtype=torch.long))
    assert (marker_tokens == expected).all()
    values = tokens.gather(1, pos + 1)
    assert (values == b.values).all()
    assert values.min() >= (1 if op == "mul" else 0) and values.max() < lay.modulus
    # labels recomputed independently
    for row, label in zip(values.tolist(), b.labels.tolist()):
        want = sum(row) % lay.modulus if op == "add" else math.prod(row) % lay.modulus
        assert label == want
    # token classes: exactly m markers and m values; everything else is a distractor (or the query)
    classes = token_classes(lay, tokens)
    assert ((classes == MARKER).sum(1) == m).all() and ((classes == VALUE).sum(1) == m).all()
    if readout == "query":
        assert (tokens[:, -1] == lay.query_token).all() and ((classes == QUERY).sum(1) == 1).all()
    else:
        assert lay.query_token is None and (classes != QUERY).all()
    distractors = tokens[classes == DISTRACTOR]
    assert distractors.min() >= lay.first_distractor and distractors.max() < lay.vocab_size


def test_distractors_never_hold_value_marker_or_query_tokens_even_for_unused_markers():
    lay = layout()
    b = sample_batch(lay, 1, 4096, gen())
    mask = torch.ones_like(b.tokens, dtype=torch.bool)
    mask.scatter_(1, b.marker_positions, False)
    mask.scatter_(1, b.marker_positions + 1, False)
    mask[:, -1] = False
    assert (b.tokens[mask] >= lay.first_distractor).all()  # markers 2..15 exist but never leak in
    assert lay.first_distractor == 8 + 15 + 1


def test_same_generator_seed_gives_identical_batches_and_another_seed_does_not():
    lay = layout()
    a, b, c = (sample_batch(lay, 3, 64, gen(s)) for s in (5, 5, 6))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.tokens, c.tokens)


def test_per_batch_positions_are_shared_and_per_example_positions_vary():
    lay = layout()
    shared = sample_batch(lay, 3, 64, gen(), per_batch_positions=True).marker_positions
    assert (shared == shared[0]).all()
    varied = sample_batch(lay, 3, 64, gen(), per_batch_positions=False).marker_positions
    assert len({tuple(r) for r in varied.tolist()}) > 32


def test_marker_placements_are_uniform_over_all_valid_placements():
    lay = layout(seq_len=8, readout="last")  # positions 1..6, m=2: 10 placements with gap >= 2
    valid = [c for c in itertools.combinations(range(1, 7), 2) if c[1] - c[0] >= 2]
    pos = sample_batch(lay, 2, 20000, gen()).marker_positions
    counts = {c: 0 for c in valid}
    for row in pos.tolist():
        counts[tuple(row)] += 1
    assert sum(counts.values()) == 20000  # nothing outside the valid set
    expected = 20000 / len(valid)
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 30  # 9 degrees of freedom: p < 0.0005 for a fair sampler


def test_mul_labels_use_every_nonzero_residue_of_a_prime_modulus():
    lay = layout(op="mul", modulus=7)
    labels = sample_batch(lay, 4, 4096, gen()).labels
    assert set(labels.tolist()) == set(range(1, 7))


def test_a_packs_batches_are_each_runs_own_batch_drawn_alone():
    # runs of one pack may differ in m, marker scheme, readout, op and placement mode
    layouts = [layout(), layout(marker_scheme="shared"), layout(), layout(readout="last", op="mul", modulus=7), layout()]
    ms, per_batch = [3, 3, 1, 2, 3], [False, False, False, True, False]
    gens, alone_gens = [gen(p) for p in range(5)], [gen(p) for p in range(5)]
    for _ in range(3):  # successive steps: every run's stream advances exactly as it does alone
        tokens, labels = sample_batches(layouts, ms, 16, gens, per_batch)
        alone = [sample_batch(*args) for args in zip(layouts, ms, [16] * 5, alone_gens, per_batch)]
        assert torch.equal(tokens, torch.stack([b.tokens for b in alone]))
        assert torch.equal(labels, torch.stack([b.labels for b in alone]))


def test_marker_slots_do_not_depend_on_the_batches_drawn_with_them_even_for_tied_keys():
    lay = layout()
    keys = torch.rand(6, 4, 26, generator=gen())
    keys[2, 1] = 0.25
    keys[2, 1, 5:12] = 0.75  # seven tied largest keys for m = 3: the first three slots win
    values, tokens = torch.randint(0, 8, (6, 4, 3)), torch.randint(20, 256, (6, 4, 32))
    together, _ = task_generator._assemble(lay, 3, keys, values, tokens.clone())
    alone, _ = task_generator._assemble(lay, 3, keys[2:3], values[2:3], tokens[2:3].clone())
    assert torch.equal(together[2], alone[0]) and together[2, 1].tolist() == [1 + 5, 1 + 6 + 1, 1 + 7 + 2]


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_packs_batches_cost_three_draws_per_run_and_one_assembly_per_kind_of_batch():
    lay = layout()
    with _CountOps() as one:
        sample_batches([lay], [3], 16, [gen()], [False])
    with _CountOps() as many:
        sample_batches([lay] * 40, [3] * 40, 16, [gen(p) for p in range(40)], [False] * 40)
    # per run: its three draws (and a view to stack each); the assembly happens once for all runs
    assert many.count - one.count <= 39 * 6 + 3
    with _CountOps() as mixed:
        sample_batches([lay] * 40, [1 + p % 4 for p in range(40)], 16, [gen(p) for p in range(40)], [False] * 40)
    assert mixed.count < many.count + 4 * one.count


def test_curricula_schedule_m_as_documented():
    cfg = compose_config("curriculum=sequential", "train.steps=400")
    cur = Curriculum(cfg.curriculum, cfg.task.m, 400)
    assert [cur.distribution(s) for s in (0, 99, 100, 250, 399)] == [[1], [1], [2], [3], [4]]
    assert [s for s in range(400) if cur.is_stage_start(s)] == [100, 200, 300] == cur.stage_starts()
    cfg = compose_config("curriculum=sequential", "curriculum.steps_per_stage=150", "train.steps=400")
    assert Curriculum(cfg.curriculum, cfg.task.m, 400).stage_starts() == [150, 300]  # the 4th stage is never reached
    cfg = compose_config("curriculum=mixed")
    cur = Curriculum(cfg.curriculum, cfg.task.m, 1000)
    g = gen()
    draws = [cur.draw_m(s, g) for s in range(2000)]
    assert set(draws) == {1, 2, 3, 4} and all(350 < draws.count(m) < 650 for m in (1, 2, 3, 4))
    assert cur.stage_starts() == []
    cfg = compose_config("curriculum=single", "task.m=3")
    assert Curriculum(cfg.curriculum, cfg.task.m, 100).m_set == [3]
