"""`python -m manifold_sweeps.bench [--quick] [--only NAME ...] [--out DIR]` (`make bench`).

Runs the registered benchmark modules one after the other on this machine, each in a fresh child
process (so one module's threads, memory high-water mark or crash never touch the next), and
writes DIR/bench.json (machine, load, every module's figures) and DIR/bench.md (the same as a
table). Both files are rewritten after every module, so an interrupted run keeps what it measured.
A module that fails is reported with its error and the others still run; the exit status is then 1.

A benchmark module exposes `run(quick: bool = False) -> dict`: a flat dict of named figures
(numbers or short strings, units in the key names), self-contained (it makes and removes its own
data); quick=True is a tiny version that checks it works in seconds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from ..launch.cpu_threads import usable_cores
from ..rundir.atomic import write_text
from ..rundir.status import now_iso

# Run in this order; each name is a module of this package.
MODULES = ("training", "packed", "snapshots", "commutator", "aggregation", "probes", "sweep")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: a busy machine explains slow figures."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# Benchmarks{' (quick)' if report['quick'] else ''}",
        "",
        f"{report['started_at']} to {report.get('finished_at', '(unfinished)')}; {m['cpu']}, {m['cores']} cores, "
        f"torch {m['torch']} ({m['torch_threads']} threads), GPU: {m['gpu'] or 'none'}; "
        f"load average at start {report['load_average_start']}, at end {report.get('load_average_end')}",
        "",
        "| module | figure | value |",
        "| --- | --- | --- |",
    ]
    for name, figures in report["modules"].items():
        for key, value in figures.items():
            lines.append(f"| {name} | {key} | {value} |")
    return "\n".join(lines) + "\n"


def run_in_child(name: str, quick: bool) -> dict:
    """Run one module in a fresh interpreter (its progress lines pass through); its figures, or its error."""
    with tempfile.TemporaryDirectory(prefix="manifold-bench-") as tmp:
        figures_file = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", __package__, "--only", name, "--figures-to", str(figures_file)]
        proc = subprocess.run(command + (["--quick"] if quick else []))
        if figures_file.exists():
            return json.loads(figures_file.read_text())
    return {"error": f"the benchmark process exited with status {proc.returncode} before reporting"}


def run_here(name: str, quick: bool, figures_to: Path) -> int:
    """Child mode: run one module in this process and write its figures (or its error) as JSON."""
    try:
        figures = importlib.import_module(f"{__package__}.{name}").run(quick=quick)
        bad = [k for k, v in figures.items() if not isinstance(v, (int, float, str, type(None)))]
        if bad:
            raise TypeError(f"{name}.run() must return a flat dict of numbers or strings; not flat: {bad}")
    except Exception as err:  # reported in the table; the other modules still run
        traceback.print_exc()
        figures = {"error": f"{type(err).__name__}: {err}"}
    write_text(figures_to, json.dumps(figures) + "\n")
    return 1 if "error" in figures else 0


def write(report: dict, out: Path) -> None:
    write_text(out / "bench.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "bench.md", markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m manifold_sweeps.bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="tiny versions that check every benchmark works")
    parser.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME", help=f"run only these of {MODULES}")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench"), help="where bench.json and bench.md go")
    parser.add_argument("--figures-to", type=Path, help=argparse.SUPPRESS)  # child mode: one module, its figures here
    args = parser.parse_args(argv)
    if args.figures_to:
        return run_here(args.only[0], args.quick, args.figures_to)

    names = [n for n in MODULES if not args.only or n in args.only]
    report = {"quick": args.quick, "started_at": now_iso(), "machine": machine(),
              "load_average_start": load_average(), "modules": {}, "wall_s": {}}
    failed = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}{' (quick)' if args.quick else ''}", flush=True)
        t0 = time.perf_counter()
        figures = run_in_child(name, args.quick)
        if "error" in figures:
            failed.append(name)
        report["modules"][name] = figures
        report["wall_s"][name] = round(time.perf_counter() - t0, 1)
        print(f"[{i}/{len(names)}] {name} done in {report['wall_s'][name]} s", flush=True)
        write(report, args.out)
    report.update(finished_at=now_iso(), load_average_end=load_average())
    write(report, args.out)
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
