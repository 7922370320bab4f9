"""`python -m manifold_sweeps.report PATH [PATH ...]`: the report of a sweep, aggregating it first when needed.

PATH is what the aggregation takes: a sweep directory, a run directory, or a folder of sweeps. The
tables are rebuilt (python -m manifold_sweeps.aggregate, with the options they were last built with)
when missing or stale (`aggregate/manifest.py`), or on --rebuild; the report lands in report/ beside
them and the path of its index.html is printed. Tables built from another aggregation root (a
mistyped --tables naming another sweep's) are refused without --rebuild, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import pandas as pd

from ..aggregate import aggregate, condition_columns, load_table
from ..aggregate.discovery import NoRunsError, find_run_dirs
from ..aggregate.manifest import config_from_manifest, describe_options, other_root, read_manifest, stale_reason
from .build import build_report
from .data import ReportData


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m manifold_sweeps.report",
        description="Write the report of a sweep (figures, tables and the paper's claims checked against the data) "
        "as report/index.html and report/report.md, aggregating the sweep first when its tables are missing or stale.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a sweep directory, a run directory, or a folder searched recursively for runs")
    parser.add_argument("--tables", metavar="DIR",
                        help="the aggregation's tables (default: tables/ inside the single PATH, or the common parent)")
    parser.add_argument("--out", metavar="DIR", help="the report folder (default: report/ beside tables/)")
    parser.add_argument("--rebuild", action="store_true",
                        help="aggregate PATH into the tables folder even when its tables are up to date, or are "
                        "another sweep's (which are otherwise refused): they are replaced")
    return parser.parse_args(argv)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_tables(tables_dir: Path) -> dict[str, pd.DataFrame]:
    return {path.stem: load_table(tables_dir, path.stem) for path in sorted(tables_dir.glob("*.parquet"))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        root, run_dirs = find_run_dirs(args.paths)
    except NoRunsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tables_dir = Path(args.tables) if args.tables else root / "tables"
    out = Path(args.out) if args.out else tables_dir.parent / "report"
    other = other_root(tables_dir, root)
    # tables/ inside PATH count as PATH's own whatever they record: a sweep moved or copied with its tables.
    if other and not args.rebuild and tables_dir.resolve() != root / "tables":
        print(f"error: the tables in {tables_dir} are those of the runs under {other}, not of PATH's runs under "
              f"{root}: point --tables at PATH's own tables (default {root / 'tables'}) or at an empty or new "
              f"folder, or pass --rebuild to replace them with tables of {root}", file=sys.stderr)
        return 2
    stale = "are rebuilt on request (--rebuild)" if args.rebuild else stale_reason(run_dirs, tables_dir)
    if stale:
        # With the options the tables were last built with (`make aggregate ARGS=...`), not the defaults.
        cfg = config_from_manifest(read_manifest(tables_dir), str(tables_dir))
        progress(f"tables in {tables_dir} {stale}: aggregating first ({describe_options(cfg)})")
        aggregate(args.paths, cfg, log=progress)
    tables = load_tables(tables_dir)
    runs = tables.pop("runs")
    data = ReportData(runs, condition_columns(runs[runs["state"] == "completed"]), tables,
                      aggregation=read_manifest(tables_dir) or {})

    matplotlib.use("Agg")  # files only: no display needed
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    index = build_report(data, out, source=str(root), progress=progress)
    print(index.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
