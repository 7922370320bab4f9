"""The report as Markdown (report.md): the same content as index.html, figures linked relatively."""

from __future__ import annotations

import pandas as pd

from .document import Claims, Document, Facts, Figure, LeftOut, Paragraph, Table


def _cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _block(block) -> str:
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Facts):
        return "\n".join(f"- **{key}**: {value}" for key, value in block.items)
    if isinstance(block, Table):
        parts = [f"**{block.title}**"]
        if block.caption:
            parts.append(block.caption)
        parts.append(markdown_table(block.frame) if not block.frame.empty else "_(no rows)_")
        return "\n\n".join(parts)
    if isinstance(block, Figure):
        return (f"### Figure {block.number}. {block.title}\n\n![Figure {block.number}]({block.png})\n\n"
                f"{block.caption} Data: [{block.csv}]({block.csv}).")
    if isinstance(block, LeftOut):
        return f"### Figure {block.number}. {block.title}\n\n_Left out: {block.note}._"
    if isinstance(block, Claims):
        rows = pd.DataFrame([{"#": i, "claim": v.claim, "verdict": v.verdict} for i, v in enumerate(block.verdicts, 1)])
        details = []
        for i, v in enumerate(block.verdicts, 1):
            evidence = v.evidence.replace("\n", " ")
            line = f"{i}. **{v.claim}** ({v.source}): **{v.verdict}**. {evidence} _Rule:_ {v.rule}"
            if v.needed:
                line += f" _Needed:_ {v.needed}."
            details.append(line)
        return markdown_table(rows) + "\n\n" + "\n".join(details)
    raise TypeError(f"unknown block {type(block).__name__}")


def render_markdown(document: Document) -> str:
    parts = [f"# {document.title}"]
    for section in document.sections:
        parts.append(f"## {section.title}")
        parts += [_block(block) for block in section.blocks]
    return "\n\n".join(parts) + "\n"
