"""`<tables>/aggregation.json`: what a set of tables was built from.

    created_at   when the aggregation began (UTC, ISO 8601), for people
    root         the aggregation root (the single PATH, or the common parent of several), resolved:
                 whose tables these are (`other_root`). Older manifests lack it; their runs table's
                 `run_dir` column then tells
    options      the options that change the tables (reference, windows, alignment_k, probes), so that
                 a rebuild (the report's) reproduces them instead of the defaults
    versions     the version of the code behind each table (`registry.table_versions`): the runs table,
                 every reducer and every summary. Older manifests lack it
    runs         how many run directories were aggregated
    signature    a hash of the run directories as the aggregation found them, before it read any
                 (`runs_signature`); null while the tables are being written
    running      ids of runs that were `running`: their state depends on the clock and on whether their
                 process lives, which no file records, so tables holding them are never up to date

An aggregation first rewrites the manifest with its options and no signature, then the tables, then
the manifest with the signature: tables left half-written by a stopped aggregation read as stale,
and their rebuild keeps the options. The report rebuilds the tables when they are stale
(`stale_reason`): no manifest or no signature, tables built by other versions of the reducers or
summaries (an upgrade of manifold-sweeps; the rebuild reads unchanged reducers' results from the
cache), a running run, or another signature (a run added,
removed or changed since, including while the aggregation was reading it, and files copied with
their old times: `rsync -a` replaces them, new inodes). An aggregation with `--probes` writes into
the runs it probes, so the next check finds its tables stale once; that rebuild comes from the cache.
Tables built from another root are not stale but another sweep's (`other_root`): the report refuses
to rebuild them over unless told to.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from ..config.schema import AggregateConfig, Reference
from ..rundir.atomic import write_text
from .registry import table_versions

MANIFEST_FILE = "aggregation.json"
RUN_FOLDERS = ("checkpoints", "probes")  # the folders of a run directory that hold its data
FORMAT = 1


def write_manifest(out: Path, created_at: str, root: Path, options: dict, versions: dict[str, int],
                   signature: str | None, n_runs: int, running: list[str]) -> None:
    payload = {"format": FORMAT, "created_at": created_at, "root": str(root), "options": options,
               "versions": versions, "runs": n_runs, "signature": signature, "running": running}
    write_text(Path(out) / MANIFEST_FILE, json.dumps(payload, indent=1) + "\n")


def read_manifest(tables_dir: Path) -> dict | None:
    try:
        payload = json.loads((Path(tables_dir) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("format") == FORMAT else None


def other_root(tables_dir: Path, root: Path) -> str | None:
    """The aggregation root of the tables in tables_dir when it is not `root` (resolved); None when it
    is, or when the folder holds no tables (missing, empty, or a manifest without a root whose runs
    table lists a run under `root`)."""
    manifest = read_manifest(tables_dir)
    if manifest is None:
        return None
    if "root" in manifest:
        return manifest["root"] if Path(manifest["root"]) != Path(root) else None
    # Older manifests record no root, but the runs table lists each run's resolved directory.
    try:
        run_dirs = pd.read_parquet(Path(tables_dir) / "runs.parquet", columns=["run_dir"])["run_dir"].tolist()
    except (OSError, ValueError, KeyError):
        return None
    if not run_dirs or any(Path(d).is_relative_to(root) for d in run_dirs):
        return None
    return os.path.commonpath(run_dirs)


def config_from_manifest(manifest: dict | None, out: str) -> AggregateConfig:
    """The AggregateConfig that rebuilds the tables the manifest describes (defaults without one)."""
    options = dict((manifest or {}).get("options") or {})
    if "reference" in options:
        options["reference"] = Reference(options["reference"])
    return AggregateConfig(out=out, **options)


def describe_options(cfg: AggregateConfig) -> str:
    """The table-changing options as the aggregation command's flags would set them."""
    return (f"--reference {cfg.reference.value} --expanding-windows {cfg.expanding_windows} "
            f"--sliding-width {cfg.sliding_width} --sliding-stride {cfg.sliding_stride}"
            + (f" --alignment-k {cfg.alignment_k}" if cfg.alignment_k is not None else "")
            + (" --probes" if cfg.probes else ""))


def runs_signature(run_dirs: list[Path]) -> str:
    """Hash of what the aggregation reads of each run directory, as it is on disk now: the path,
    size, modification time and inode of its top-level files and of everything in `checkpoints/` and
    `probes/`, and the contents of its `.hydra/*.yaml` (which Hydra rewrites, unchanged, whenever a
    relaunch reaches the run). Other folders (tables or a report kept inside a run aggregated alone,
    `.submitit` logs) are not the run's data and are left out."""
    digest = hashlib.sha1()
    for run_dir in sorted(Path(d).resolve() for d in run_dirs):
        digest.update(f"run {run_dir}\n".encode())
        files = [p for p in run_dir.iterdir() if p.is_file()]
        for folder in RUN_FOLDERS:
            files += [p for p in (run_dir / folder).rglob("*") if p.is_file()]
        for path in sorted(files):
            try:
                st = os.stat(path)
            except OSError:  # a file that vanished while listing (a run writing atomically)
                continue
            digest.update(f"{path.relative_to(run_dir)} {st.st_size} {st.st_mtime_ns} {st.st_ino}\n".encode())
        for path in sorted((run_dir / ".hydra").glob("*.yaml")):
            try:
                digest.update(f"{path.relative_to(run_dir)} {hashlib.sha1(path.read_bytes()).hexdigest()}\n".encode())
            except OSError:
                continue
    return digest.hexdigest()


def stale_reason(run_dirs: list[Path], tables_dir: Path) -> str | None:
    """Why the tables in tables_dir do not describe these run directories as they are now; None if they do."""
    tables_dir = Path(tables_dir)
    manifest = read_manifest(tables_dir)
    if manifest is None or not manifest.get("signature") or not (tables_dir / "runs.parquet").exists():
        return "are missing or were left half-written"
    built_by = manifest.get("versions")
    if not built_by:
        return "were built by an older version of manifold-sweeps (one that recorded no table versions)"
    current = table_versions(config_from_manifest(manifest, str(tables_dir)))
    changed = sorted(name for name in {*built_by, *current} if built_by.get(name) != current.get(name))
    if changed:
        return f"were built by another version of manifold-sweeps (tables changed since: {', '.join(changed)})"
    if manifest["running"]:
        return f"hold {len(manifest['running'])} run(s) that were still running"
    if runs_signature(run_dirs) != manifest["signature"]:
        return "are older than the runs (runs added, removed or changed since)"
    return None
