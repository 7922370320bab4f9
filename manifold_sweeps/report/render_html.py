"""The report as one self-contained HTML page (index.html).

It opens from disk and survives being attached to a message: the CSS is inline and every figure is
embedded as a base64 PNG, so the page needs neither a server nor the network nor its folder. Each
figure also links its PNG file (print resolution) and its data (CSV) in figures/, which work when
the page is opened inside the report folder. All text is escaped.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import pandas as pd

from .claims import Outcome
from .document import Claims, Document, Facts, Figure, LeftOut, Paragraph, Table

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; }
.note { color: #666; font-style: italic; }
.verdict { font-weight: bold; white-space: nowrap; padding: .1em .4em; border-radius: 3px; }
.supported { background: #dff0d8; color: #2b5a1e; }
.not-supported { background: #f6dcdc; color: #7a1f1f; }
.not-tested { background: #eeeeee; color: #555; }
.rule { font-size: .85em; color: #555; }
"""
VERDICT_CLASS = {Outcome.supported: "supported", Outcome.not_supported: "not-supported", Outcome.not_tested: "not-tested"}


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if pd.isna(v) else str(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _claims(block: Claims) -> str:
    rows = []
    for i, v in enumerate(block.verdicts, 1):
        needed = f"<div class='rule'><b>Needed:</b> {escape(v.needed)}.</div>" if v.needed else ""
        rows.append(
            f"<tr><td>{i}</td><td><b>{escape(v.claim)}</b><br><span class='rule'>{escape(v.source)}</span></td>"
            f"<td><span class='verdict {VERDICT_CLASS[v.outcome]}'>{escape(v.verdict)}</span></td>"
            f"<td>{escape(v.evidence).replace(chr(10), '<br>')}<div class='rule'><b>Rule:</b> {escape(v.rule)}</div>{needed}</td></tr>"
        )
    head = "<tr><th>#</th><th>claim</th><th>verdict</th><th>evidence and rule</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _block(block, folder: Path) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Facts):
        items = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        caption = f"<p class='rule'>{escape(block.caption)}</p>" if block.caption else ""
        table = html_table(block.frame) if not block.frame.empty else "<p class='note'>(no rows)</p>"
        return f"<h3>{escape(block.title)}</h3>{caption}{table}"
    if isinstance(block, Figure):
        data = base64.b64encode((folder / block.png).read_bytes()).decode("ascii")
        return (
            f"<figure id='figure-{escape(block.number)}'><h3>Figure {escape(block.number)}. {escape(block.title)}</h3>"
            f"<img alt='Figure {escape(block.number)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{escape(block.caption)} <a href='{escape(block.png)}'>PNG</a> · "
            f"<a href='{escape(block.csv)}'>data (CSV)</a></figcaption></figure>"
        )
    if isinstance(block, LeftOut):
        return (f"<h3>Figure {escape(block.number)}. {escape(block.title)}</h3>"
                f"<p class='note'>Left out: {escape(block.note)}.</p>")
    if isinstance(block, Claims):
        return _claims(block)
    raise TypeError(f"unknown block {type(block).__name__}")


def render_html(document: Document, folder: Path) -> str:
    """The page; `folder` is the report folder the figures' relative paths start from."""
    body = [f"<h1>{escape(document.title)}</h1>"]
    anchors = [f"section-{i}" for i in range(len(document.sections))]
    body.append("<nav>" + " · ".join(f"<a href='#{a}'>{escape(s.title)}</a>" for a, s in zip(anchors, document.sections)) + "</nav>")
    for anchor, section in zip(anchors, document.sections):
        body.append(f"<h2 id='{anchor}'>{escape(section.title)}</h2>")
        body += [_block(block, folder) for block in section.blocks]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(document.title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
