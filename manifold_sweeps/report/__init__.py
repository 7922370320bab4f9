"""The report stage: aggregation tables -> figures, tables and the paper's claims checked against the data.

    python -m manifold_sweeps.report PATH      # report/index.html (self-contained) and report/report.md

    data.py            ReportData: the tables, the completed runs and their condition labels
    figures/           one FigureSpec per figure (tidy data from the tables, then a seaborn plot)
    claims.py          one pure function per claim of the paper -> Verdict, with explicit thresholds
    tables.py          the summary tables, rounded, seeds counted
    document.py        the content as plain data, rendered by render_html.py and render_markdown.py
    build.py           writes the report folder
"""

from .build import build_report
from .data import ReportData

__all__ = ["ReportData", "build_report"]
