"""The report's figures, in the issue's order (1-9, then 10: the SAE ablations); each is a FigureSpec: data from the tables, then a plot."""

from . import commutators, probes, rank, training
from .common import FigureSpec


def _order(spec: FigureSpec) -> tuple[int, str]:
    return int(spec.number.rstrip("ab")), spec.number


FIGURES: list[FigureSpec] = sorted([*rank.FIGURES, *training.FIGURES, *commutators.FIGURES, *probes.FIGURES], key=_order)

__all__ = ["FIGURES", "FigureSpec"]
