"""The aggregation stage: run directories -> tables, written atomically into one folder.

    find run directories -> a `runs` row each (state, config, final accuracies)
    -> every reducer on each completed run not in the cache (in --workers processes)
    -> combined per-run tables -> summaries -> parquet (+ CSV for runs and summaries)
    -> aggregation.json last (manifest.py: what the tables were built from)

Runs that are not completed, or whose files turn out unreadable while reducing, stay in `runs`
with their state and reason and are left out of every other table.

Reductions and summaries run with single-threaded BLAS and torch (reductions in worker processes or
here): multi-threaded OpenBLAS is slower on these small eigenproblems (far slower on a busy machine),
torch's OpenMP threads in two workers on two cores spin against each other (the 9-run demo sweep's
commutator tables took 133 s that way, 9 s with one thread each), and one thread everywhere makes
results bitwise identical whatever --workers is, so cached and fresh tables match.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from ..config.schema import AggregateConfig
from ..config.validation import validate_aggregate
from ..launch.cpu_threads import usable_cores
from .cache import RunCache
from .discovery import find_run_dirs, run_id
from .manifest import other_root, runs_signature, write_manifest
from .reducers import typed_frame
from .registry import reducers, summaries, table_versions
from .runs import mark_duplicates, promote_duplicates, read_run, runs_frame
from .tables import write_table

CACHE_DIR = ".cache"
# Below this much input to reduce, starting worker processes (about a second each) costs more than it saves.
POOL_MIN_BYTES = 256 * 2**20


@dataclass
class AggregationResult:
    root: Path
    out: Path
    tables: dict[str, pd.DataFrame]
    computed: int = 0  # runs reduced now
    cached: int = 0  # runs whose results all came from the cache
    seconds: float = 0.0
    csv: list[str] = field(default_factory=list)


def result_options(cfg: AggregateConfig) -> dict:
    """The options that change reducer outputs (part of every cache key)."""
    return {
        "reference": cfg.reference.value, "expanding_windows": cfg.expanding_windows,
        "sliding_width": cfg.sliding_width, "sliding_stride": cfg.sliding_stride, "alignment_k": cfg.alignment_k,
    }


def table_options(cfg: AggregateConfig) -> dict:
    """The options that change the tables (recorded in the manifest): the reducers' and --probes."""
    return {**result_options(cfg), "probes": cfg.probes}


class _Progress:
    """A line every `every_s` seconds while runs are processed (silent for quick aggregations)."""

    def __init__(self, total: int, every_s: float, log: Callable[[str], None]):
        self.total, self.every_s, self.log = total, every_s, log
        self.t0 = self.last = time.monotonic()
        self.done = self.printed_at = 0

    def advance(self, result: AggregationResult) -> None:
        self.done += 1
        if time.monotonic() - self.last >= self.every_s:
            self.report(result)

    def finish(self, result: AggregationResult) -> None:
        """The closing line, when earlier lines were shown and did not end at 100%."""
        if self.last > self.t0 and self.printed_at != self.done:
            self.report(result)

    def report(self, result: AggregationResult) -> None:
        now = self.last = time.monotonic()
        self.printed_at = self.done
        rate = self.done / max(now - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        self.log(f"runs {self.done}/{self.total} ({100 * self.done / self.total:.0f}%) | {rate:.2f} runs/s | "
                 f"ETA {eta:.0f}s | {result.computed} reduced, {result.cached} from cache")


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    """BLAS and torch's intra-op threads at one inside, torch's setting restored after (threadpoolctl
    does not reach torch's own OpenMP threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def _reduce_job(run_dir: Path, row: dict, cfg: AggregateConfig, cache: RunCache, names: list[str]):
    """Run the named reducers on one run and cache their outputs: (tables, None), or (None, reason) if unreadable."""
    tables: dict[str, pd.DataFrame] = {}
    with _single_threaded():
        try:
            for reducer in (r for r in reducers(cfg) if r.name in names):
                output = reducer.reduce(run_dir, row, cfg)
                cache.store(run_dir, reducer, output)
                tables.update(output.tables)
        except (OSError, ValueError) as err:  # missing or damaged files found while reading them
            return None, f"{type(err).__name__}: {err}"
    return tables, None


def _input_bytes(jobs: list[tuple], cfg: AggregateConfig) -> int:
    size = 0
    for _, run_dir, _, names in jobs:
        for reducer in (r for r in reducers(cfg) if r.name in names):
            size += sum((run_dir / f).stat().st_size for f in reducer.inputs if (run_dir / f).exists())
    return size


def _run_jobs(jobs: list[tuple], cfg: AggregateConfig, cache: RunCache):
    """Yield (job index, _reduce_job result) as jobs finish, in this process or in cfg.workers processes."""
    # The cores this process may use: under SLURM or taskset, fewer than the node has.
    workers = min(cfg.workers, len(jobs), usable_cores())
    if workers <= 1 or _input_bytes(jobs, cfg) < POOL_MIN_BYTES:
        for i, (_, run_dir, row, names) in enumerate(jobs):
            yield i, _reduce_job(run_dir, row, cfg, cache, names)
        return
    # spawn: a fresh interpreter per worker, never a fork of this process's BLAS threads.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_reduce_job, run_dir, row, cfg, cache, names): i
                   for i, (_, run_dir, row, names) in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future.result()


def aggregate(
    paths: list[str | os.PathLike], cfg: AggregateConfig | None = None, log: Callable[[str], None] | None = None
) -> AggregationResult:
    """Aggregate the runs under `paths` into tables in cfg.out (default: `tables/` in the root); returns them."""
    cfg = cfg or AggregateConfig()
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    validate_aggregate(cfg)
    t0, created_at = time.monotonic(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    root, run_dirs = find_run_dirs(paths)
    out = Path(cfg.out) if cfg.out else root / "tables"
    other = other_root(out, root)
    if other:  # sweeps may share an --out (README), but say whose tables are being replaced
        log(f"replacing the tables in {out}, built from the runs under {other}, with those of {root}")
    signature = runs_signature(run_dirs)  # before any run is read
    cache = RunCache(out / CACHE_DIR, result_options(cfg), fresh=cfg.fresh)
    result = AggregationResult(root=root, out=out, tables={})
    progress = _Progress(len(run_dirs), cfg.progress_every_s, log)

    # --- runs rows; cached results; the rest becomes jobs ---------------------------------------
    rows: dict[str, dict] = {}
    dirs: dict[str, Path] = {}
    parts: dict[str, list[tuple[str, pd.DataFrame]]] = {name: [] for r in reducers(cfg) for name in r.tables}
    for run_dir in run_dirs:
        rid = run_id(root, run_dir)
        dirs[rid], rows[rid] = run_dir, read_run(run_dir, rid)
    mark_duplicates(rows)  # only the kept copy of a run is reduced (and, with --probes, probed)
    for rid in dirs:
        if rows[rid]["state"] not in ("completed", "duplicate"):
            progress.advance(result)
    todo = [rid for rid in dirs if rows[rid]["state"] == "completed"]
    while todo:
        jobs = []
        for rid in todo:
            outputs = {r.name: cache.load(dirs[rid], r) for r in reducers(cfg)}
            missing = [name for name, output in outputs.items() if output is None]
            for output in outputs.values():
                for name, frame in (output.tables.items() if output else ()):
                    parts[name].append((rid, frame))
            if missing:
                jobs.append((rid, dirs[rid], rows[rid], missing))
            else:
                result.cached += 1
                progress.advance(result)

        # --- reduce what the cache did not have ----------------------------------------------------
        for i, (tables, reason) in _run_jobs(jobs, cfg, cache):
            rid = jobs[i][0]
            if reason is None:
                result.computed += 1
                for name, frame in tables.items():
                    parts[name].append((rid, frame))
            else:
                rows[rid].update(state="unreadable", reason=reason)
            progress.advance(result)
        # A kept copy found unreadable hands over to the next copy of the same run, if there is one.
        todo = promote_duplicates(rows, [rid for rid in todo if rows[rid]["state"] == "unreadable"])
    for rid in dirs:
        if rows[rid]["state"] == "duplicate":
            progress.advance(result)
    progress.finish(result)

    # --- combine, summarise, write ----------------------------------------------------------------
    completed = {rid for rid, row in rows.items() if row["state"] == "completed"}
    tables = {"runs": runs_frame(list(rows.values()))}
    for reducer in reducers(cfg):
        for name, columns in reducer.tables.items():
            frames = [frame.assign(run_id=rid)[["run_id", *columns]]
                      for rid, frame in sorted(parts[name], key=lambda p: p[0]) if rid in completed]
            empty = typed_frame([], {"run_id": "string", **columns})
            tables[name] = pd.concat(frames, ignore_index=True).astype(empty.dtypes.to_dict()) if frames else empty
    with _single_threaded():
        for summary in summaries(cfg):
            tables[summary.name] = summary.build(tables, lambda rid, reducer: cache.arrays(dirs[rid], reducer), cfg)

    csv = ["runs", *(s.name for s in summaries(cfg))]
    # A manifest without a signature while the tables are being replaced, the full one after them
    # all: tables left half-written read as stale, and keep their options for the rebuild (manifest.py).
    running = sorted(rid for rid, row in rows.items() if row["state"] == "running")
    described = dict(created_at=created_at, root=root, options=table_options(cfg), versions=table_versions(cfg),
                     n_runs=len(run_dirs), running=running)
    write_manifest(out, signature=None, **described)
    for name in sorted(tables, key=lambda name: name == "runs"):
        write_table(out, name, tables[name], csv=name in csv)
    write_manifest(out, signature=signature, **described)  # last: it vouches for the tables
    pruned = cache.prune(run_dirs)
    if pruned:
        log(f"removed {pruned} cache entries of run directories that no longer exist from {cache.folder}")
    result.tables, result.csv, result.seconds = tables, csv, time.monotonic() - t0
    return result
