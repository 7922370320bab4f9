"""`python -m manifold_sweeps.aggregate PATH [PATH ...]`: reduce saved runs to tables (see --help)."""

from __future__ import annotations

import argparse
import sys

from ..config.schema import AggregateConfig, Reference
from ..config.validation import ConfigError
from .discovery import NoRunsError
from .runs import STATES
from .stage import AggregationResult, aggregate

DEFAULTS = AggregateConfig()


def parse_args(argv: list[str] | None) -> tuple[list[str], AggregateConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m manifold_sweeps.aggregate",
        description="Reduce saved run directories (a run, a sweep, or a folder of sweeps) to parquet tables: "
        "runs, metrics, effective_rank, effective_rank_summary, subspace_alignment, commutators, commutator_summary "
        "(and sae_probes, sae_probe_summary with --probes).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a run directory, a sweep directory, or a folder searched recursively for runs")
    parser.add_argument("--out", default=DEFAULTS.out,
                        help="folder for the tables (default: tables/ inside the single PATH, or inside the common parent)")
    parser.add_argument("--reference", choices=[r.value for r in Reference], default=DEFAULTS.reference.value,
                        help="mean: centre snapshots on the window mean (the paper's eq. 1); "
                        "displacement: W_t - W_0 uncentred (default: %(default)s)")
    parser.add_argument("--expanding-windows", type=int, default=DEFAULTS.expanding_windows, metavar="N",
                        help="expanding windows end at 1/N, ..., N/N of training (default: %(default)s)")
    parser.add_argument("--sliding-width", type=float, default=DEFAULTS.sliding_width, metavar="F",
                        help="sliding window width, a fraction of training (default: %(default)s)")
    parser.add_argument("--sliding-stride", type=float, default=DEFAULTS.sliding_stride, metavar="F",
                        help="step between sliding windows, a fraction of training (default: %(default)s)")
    parser.add_argument("--alignment-k", type=int, default=DEFAULTS.alignment_k, metavar="K",
                        help="subspace dimension for subspace_alignment (default: each run's r90)")
    parser.add_argument("--workers", type=int, default=DEFAULTS.workers, metavar="N",
                        help="processes reducing runs in parallel (default: %(default)s)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached per-run results and reduce every run again")
    parser.add_argument("--probes", action="store_true",
                        help="also probe every completed run with sparse autoencoders (trains them where missing) "
                        "into the sae_probes and sae_probe_summary tables")
    parser.add_argument("--progress-every-s", type=float, default=DEFAULTS.progress_every_s, metavar="S",
                        help="seconds between progress lines (default: %(default)s)")
    args = vars(parser.parse_args(argv))
    paths = args.pop("paths")
    args["reference"] = Reference(args["reference"])
    return paths, AggregateConfig(**args)


def format_summary(result: AggregationResult) -> str:
    runs = result.tables["runs"]
    counts = runs["state"].value_counts()
    lines = [
        f"{len(runs)} run(s) found under {result.root}",
        "  " + ", ".join(f"{state} {int(counts.get(state, 0))}" for state in STATES),
        f"  {result.computed} reduced now, {result.cached} from the cache, in {result.seconds:.1f} s",
    ]
    left_out = runs[runs["state"] != "completed"]
    if len(left_out):
        lines.append(f"left out of the statistics ({len(left_out)}):")
        lines += [f"  {r.run_id}: {r.state}: {r.reason}" for r in left_out.itertuples()]
    names = ", ".join(result.tables)
    lines.append(f"tables written to {result.out}: {names} (parquet; CSV copies of {', '.join(result.csv)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    paths, cfg = parse_args(argv)
    try:
        result = aggregate(paths, cfg)
    except (ConfigError, NoRunsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
