"""What every figure shares: its description, and how facets are laid out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..data import ReportData

MATRICES = ["W_Q", "W_K", "W_V", "W_O"]
MAX_COLUMNS = 4  # facets per row before wrapping


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report: how to get its tidy data from the tables, and how to draw it."""

    number: str  # "1", "9a"
    key: str  # file name stem of its PNG and CSV
    title: str
    caption: str  # what is drawn and how the spread is computed
    absent: str  # one line for a sweep without its data: which runs would produce it
    data: Callable[[ReportData], pd.DataFrame]  # tidy data; empty when the sweep lacks it
    plot: Callable[[pd.DataFrame], object]  # a seaborn grid or matplotlib figure; never reads files


def facet(data: pd.DataFrame, column: str = "condition") -> dict:
    """col= and col_wrap= for facets over `column`, or nothing when it has one value."""
    n = data[column].nunique()
    if n <= 1:
        return {}
    return {"col": column, "col_wrap": min(n, MAX_COLUMNS)}


def rows_and_columns(data: pd.DataFrame, row: str, col: str) -> dict:
    """row= and col= for a grid, leaving out a facet variable with one value."""
    kwargs = {}
    if data[row].nunique() > 1:
        kwargs["row"] = row
    if data[col].nunique() > 1:
        kwargs["col"] = col
    return kwargs


def name_facets(grid, facets: dict) -> None:
    """Facet titles without 'variable = ': the condition label alone, 'layer 1' for layers."""

    def part(variable: str, name: str) -> str:
        return f"layer {{{name}}}" if variable == "layer" else f"{{{name}}}"

    row, col = facets.get("row"), facets.get("col")
    if row and col:
        grid.set_titles(f"{part(row, 'row_name')} | {part(col, 'col_name')}")
    elif row:
        grid.set_titles(row_template=part(row, "row_name"))
    elif col:
        grid.set_titles(col_template=part(col, "col_name"))


def log_y(grid) -> None:
    """A log y axis labelled 0.01, 0.5, 2 rather than 10^-2, 5x10^-1, 2x10^0."""
    grid.set(yscale="log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for ax in grid.axes.flat:
        low, high = ax.get_ylim()
        ax.yaxis.set_major_formatter(plain)
        # Within one decade there may be no major tick at all: label the minor ones then.
        ax.yaxis.set_minor_formatter(plain if high / low < 10 else NullFormatter())
