"""The report's content as plain data, rendered twice: to HTML (render_html.py) and Markdown (render_markdown.py).

Keeping the content apart from its rendering guarantees index.html and report.md say the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import pandas as pd

from .claims import Verdict


@dataclass
class Paragraph:
    text: str


@dataclass
class Facts:
    """A short list of 'key: value' lines."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    title: str
    frame: pd.DataFrame  # display strings
    caption: str = ""


@dataclass
class Figure:
    number: str
    title: str
    caption: str
    png: str  # path relative to the report folder
    csv: str


@dataclass
class LeftOut:
    """A figure this sweep has no data for."""

    number: str
    title: str
    note: str


@dataclass
class Claims:
    verdicts: list[Verdict]


Block = Union[Paragraph, Facts, Table, Figure, LeftOut, Claims]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
