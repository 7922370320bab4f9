"""`python -m manifold_sweeps.probes PATH [PATH ...] [probe.KEY=VALUE ...] [--force]`

PATH is a run directory, a sweep directory or any folder holding runs (searched recursively).
Probes every completed run's model checkpoints and writes `<run>/probes/` (README, "SAE probes").
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config.validation import ConfigError
from .stage import check_overrides, find_run_dirs, probe_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m manifold_sweeps.probes", description=__doc__.split("\n\n")[1])
    parser.add_argument("items", nargs="+", metavar="PATH|probe.KEY=VALUE",
                        help="run or sweep directories, and probe.* overrides (e.g. probe.sae_l1=0.5)")
    parser.add_argument("--force", action="store_true", help="recompute runs whose probe tables are up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    # Run directories of a sweep hold "=" too (seed=3,task.m=2): an existing path is a path.
    overrides = [a for a in args.items if "=" in a and not Path(a).exists()]
    paths = [a for a in args.items if a not in overrides]
    stray = [a for a in overrides if not a.startswith("probe.")]
    if stray:
        parser.error(f"neither an existing directory nor a probe.KEY=VALUE override: {', '.join(stray)}")
    if not paths:
        parser.error("give at least one run or sweep directory")
    try:
        check_overrides(overrides)
    except ConfigError as err:
        parser.error(str(err))
    try:
        run_dirs = find_run_dirs(paths)
    except FileNotFoundError as err:
        parser.error(str(err))
    if not run_dirs:
        parser.error(f"no run directories (holding status.json) under {', '.join(paths)}")

    counts: dict[str, int] = {}
    for i, run_dir in enumerate(run_dirs, 1):
        print(f"[{i}/{len(run_dirs)}] {run_dir}", flush=True)
        try:
            outcome = probe_run(run_dir, overrides, args.force)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
        if outcome.reason:
            print(f"  {outcome.state}: {outcome.reason}", flush=True)
    print(f"{len(run_dirs)} run(s): " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    print("tables: <run>/probes/sae_probes.parquet and sae_latents.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
