"""Which numbers of markers m a run trains on at each step.

- single: every batch has task.m markers.
- mixed: each batch's m is drawn uniformly from curriculum.ms (one m per batch, as in the paper's code).
- sequential: stages over curriculum.ms in order, steps_per_stage each (null: train.steps split
  evenly); the last stage runs on to the end of training.
"""

from __future__ import annotations

import torch

from .layout import _name


class Curriculum:
    def __init__(self, curriculum_cfg, task_m: int, total_steps: int):
        self.kind = _name(curriculum_cfg.kind)
        if self.kind == "single":
            self.ms = [int(task_m)]
        else:
            self.ms = [int(m) for m in curriculum_cfg.ms]
        self.reset_optimizer = bool(curriculum_cfg.reset_optimizer) and self.kind == "sequential"
        sps = curriculum_cfg.steps_per_stage
        self.steps_per_stage = int(sps) if sps is not None else max(1, total_steps // len(self.ms))
        self.total_steps = int(total_steps)
        self._starts = frozenset(self.stage_starts())

    @property
    def m_set(self) -> list[int]:
        """Every m this run ever trains on, sorted."""
        return sorted(set(self.ms))

    def stage(self, step: int) -> int:
        if self.kind != "sequential":
            return 0
        return min(step // self.steps_per_stage, len(self.ms) - 1)

    def distribution(self, step: int) -> list[int]:
        """The m values a batch at `step` is drawn from (uniformly)."""
        if self.kind == "sequential":
            return [self.ms[self.stage(step)]]
        return self.ms

    def draw_m(self, step: int, generator: torch.Generator) -> int:
        choices = self.distribution(step)
        if len(choices) == 1:
            return choices[0]
        return choices[int(torch.randint(len(choices), (1,), generator=generator))]

    def stage_starts(self) -> list[int]:
        """The first step of every sequential stage after the first that training reaches."""
        if self.kind != "sequential":
            return []
        return [k * self.steps_per_stage for k in range(1, len(self.ms)) if k * self.steps_per_stage < self.total_steps]

    def is_stage_start(self, step: int) -> bool:
        """True at the first step of every sequential stage after the first (one of stage_starts)."""
        return step in self._starts
