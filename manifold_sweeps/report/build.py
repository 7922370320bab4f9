"""Build the report folder from the tables: figures/ (PNG + CSV per figure), index.html and report.md.

    report/
      index.html      self-contained page (CSS inline, figures embedded)
      report.md       the same content in Markdown, figures linked relatively
      figures/        fig<N>_<name>.png (print resolution) and fig<N>_<name>.csv (the tidy data drawn)

Every file is written atomically; figure files of an earlier build that this one did not draw are
removed, so the folder always matches its index.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt

from ..aggregate.manifest import config_from_manifest, describe_options
from ..rundir.atomic import atomic_path, write_text
from .claims import CLAIMS, Outcome, Verdict
from .data import ReportData
from .document import Claims, Document, Facts, Figure, LeftOut, Paragraph, Section, Table
from .figures import FIGURES, FigureSpec
from .render_html import render_html
from .render_markdown import render_markdown
from .tables import commutator_summary, conditions_table, fixed_settings, problem_runs, rank_summary, state_counts

log = logging.getLogger(__name__)
DPI = 200  # print resolution
FIGURES_DIR = "figures"
INDEX = "index.html"
MARKDOWN = "report.md"


def draw_figure(spec: FigureSpec, data: ReportData, folder: Path) -> Figure | LeftOut:
    """Draw one figure into folder/figures (PNG + CSV), or say why it is left out."""
    frame = spec.data(data)
    if frame.empty:
        return LeftOut(spec.number, spec.title, spec.absent)
    png, csv = f"{FIGURES_DIR}/{spec.key}.png", f"{FIGURES_DIR}/{spec.key}.csv"
    grid = spec.plot(frame)
    figure = getattr(grid, "figure", grid)
    try:
        with atomic_path(folder / png) as tmp:
            figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
    with atomic_path(folder / csv) as tmp:
        frame.to_csv(tmp, index=False)
    return Figure(spec.number, spec.title, spec.caption, png, csv)


def _figures(data: ReportData, folder: Path, progress: Callable[[str], None]) -> list[Figure | LeftOut]:
    blocks = []
    for i, spec in enumerate(FIGURES, 1):
        t0 = time.monotonic()
        try:
            block = draw_figure(spec, data, folder)
        except Exception as err:  # one figure's failure must not cost the whole report; its note says why
            log.error("figure %s failed:\n%s", spec.number, traceback.format_exc())
            block = LeftOut(spec.number, spec.title, f"could not be drawn ({type(err).__name__}: {err})")
        state = "drawn" if isinstance(block, Figure) else "left out"
        progress(f"figure {spec.number} ({i}/{len(FIGURES)}): {state} in {time.monotonic() - t0:.1f} s")
        blocks.append(block)
    return blocks


def _verdicts(data: ReportData) -> list[Verdict]:
    verdicts = []
    for claim in CLAIMS:
        try:
            verdicts.append(claim(data))
        except Exception as err:  # as for figures: say so in the report, never a silent verdict
            log.error("claim %s failed:\n%s", claim.__name__, traceback.format_exc())
            verdicts.append(Verdict(claim.__name__, "", Outcome.not_tested, f"could not be computed ({type(err).__name__}: {err})",
                                    "", "a fix of the report code"))
    return verdicts


def _sweep_section(data: ReportData, source: str) -> Section:
    runs, completed = data.runs, data.completed
    counts = state_counts(runs).set_index("state")["runs"]
    facts = [
        ("source", source),
        ("built", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
         + f" by python -m manifold_sweeps.report {source} (run it again to rebuild)"),
        ("runs", f"{len(runs)} found, {len(completed)} completed (the others are left out of every statistic; see 'Runs')"),
        ("conditions", ", ".join(data.label_columns) + f" vary: {completed['condition'].nunique()} condition(s)"
         if data.label_columns else "one condition (only the seed varies)"),
    ]
    if not completed.empty:
        seeds = completed.groupby("condition").size()
        facts.append(("seeds per condition", f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()} to {seeds.max()}"))
    options = data.aggregation.get("options")
    if options:
        facts.append(("aggregation", describe_options(config_from_manifest(data.aggregation, out=""))
                      + f" (tables built {data.aggregation.get('created_at')})"))
    facts += [(key, value) for key, value in fixed_settings(data)]
    blocks = [Facts(facts)]
    if int(counts.get("completed", 0)) == 0:
        blocks.append(Paragraph("No run completed: there is nothing to analyse yet. The states below say why."))
    else:
        blocks.append(Table("Conditions", conditions_table(data), "Seeds: completed runs per condition. Final accuracy: "
                            "held-out accuracy per m at the end of training, mean ± sd over seeds."))
    return Section("This sweep", blocks)


def _claims_section(data: ReportData) -> Section:
    intro = Paragraph(
        "Each claim of the paper is decided from this sweep's tables by an explicit rule (shown with each verdict): "
        "'supported' or 'not supported' when the sweep holds the runs the claim is about, 'not tested by this sweep' "
        "when it does not, with what would be needed. Claims about the paper's main setting use its attention-only "
        "runs on modular addition; comparisons use only runs that share every other condition. Means and sds are over "
        "the seeds of a condition. A verdict says what these runs show, nothing more: small or short runs can differ "
        "from the paper's 20k-step, 20-seed setting."
    )
    return Section("The paper's claims, checked against this sweep", [intro, Claims(_verdicts(data))])


def _tables_section(data: ReportData) -> Section:
    blocks = [
        Table("Effective rank (whole trajectory)", rank_summary(data),
              "Mean ± sd over seeds per condition, layer and matrix; seeds: runs counted. r90/r95/r99: components for "
              "90/95/99% of the variance; participation_ratio: (sum l)^2 / sum l^2; pc1_fraction: share of the first component."),
    ]
    commutators = commutator_summary(data)
    if not commutators.empty:
        blocks.append(Table("SGD commutators", commutators,
                            "Per condition and phase (early: first 20% of measurements, late: last 20%): each run's median "
                            "over samples, then mean ± sd over seeds. Causal execution basis."))
    else:
        blocks.append(Paragraph("No commutator summary: run with commutator.every > 0 to measure SGD commutators."))
    blocks.append(Table("Runs by state", state_counts(data.runs)))
    left_out = problem_runs(data.runs)
    if not left_out.empty:
        blocks.append(Table("Runs left out of the statistics", left_out))
    return Section("Tables", blocks)


def build_document(data: ReportData, folder: Path, source: str, progress: Callable[[str], None]) -> Document:
    figures = _figures(data, folder, progress)
    return Document(
        title=f"manifold-sweeps report: {Path(source).name or source}",
        sections=[
            _sweep_section(data, source),
            _claims_section(data),
            Section("Figures", [Paragraph(
                "Lines and bars are means over the seeds of a condition; bands and whiskers are their sd, unless a "
                "caption says otherwise. Each figure links its PNG and the CSV of the rows it draws (one per run and point)."
            ), *figures]),
            _tables_section(data),
        ],
    )


def _remove_stale_figures(folder: Path, document: Document) -> None:
    kept = {b.png for s in document.sections for b in s.blocks if isinstance(b, Figure)}
    kept |= {b.csv for s in document.sections for b in s.blocks if isinstance(b, Figure)}
    for path in (folder / FIGURES_DIR).glob("fig*"):
        if f"{FIGURES_DIR}/{path.name}" not in kept:
            path.unlink()


def build_report(data: ReportData, folder: str | Path, source: str,
                 progress: Callable[[str], None] = lambda line: None) -> Path:
    """Write the report into `folder`; returns the path of its index.html."""
    folder = Path(folder)
    (folder / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    document = build_document(data, folder, source, progress)
    _remove_stale_figures(folder, document)
    write_text(folder / MARKDOWN, render_markdown(document))
    write_text(folder / INDEX, render_html(document, folder))
    return folder / INDEX
