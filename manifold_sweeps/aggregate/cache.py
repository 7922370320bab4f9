"""Per-run cache of reducer outputs, so that re-aggregating a grown sweep only reduces new or changed runs.

One file per run and reducer in `<tables>/.cache/`, written atomically: its key, then the results,
as two pickles, so the key is read without the results. The key holds the run
directory, the reducer's name and version, the options that change results, and for every file the
reducer reads: the hash of its contents for the small `.json` and `.yaml` files (Hydra rewrites a
run's `.hydra/` files, unchanged, whenever a relaunch reaches the run, even one it skips), the size,
modification time (ns) and inode for the others. A changed file changes the key, and the run is
reduced again. A cache file that cannot be read counts as absent.
Entries of run directories that no longer exist are deleted after each aggregation (`prune`), so a
cache shared by sweeps whose runs get deleted does not grow without end.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Iterable

from ..rundir.atomic import atomic_path
from .reducers import ALWAYS_READ, Reducer, RunOutput

FORMAT = 3  # 2: the key before the results, as a pickle of its own; 3: small text files keyed by content
CONTENT_KEYED = (".json", ".yaml")


def file_stats(run_dir: Path, names: tuple[str, ...]) -> dict[str, list[int] | str | None]:
    stats: dict[str, list[int] | str | None] = {}
    for name in names:
        try:
            if name.endswith(CONTENT_KEYED):
                stats[name] = hashlib.sha1((run_dir / name).read_bytes()).hexdigest()
            else:
                st = os.stat(run_dir / name)
                stats[name] = [st.st_size, st.st_mtime_ns, st.st_ino]
        except OSError:
            stats[name] = None
    return stats


class RunCache:
    def __init__(self, folder: Path, options: dict, fresh: bool = False):
        self.folder, self.options, self.fresh = Path(folder), options, fresh

    @staticmethod
    def _digest(run_dir: Path) -> str:
        return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:20]

    def path(self, run_dir: Path, reducer: str) -> Path:
        return self.folder / f"{self._digest(run_dir)}.{reducer}.pkl"

    def key(self, run_dir: Path, reducer: Reducer) -> dict:
        return {
            "format": FORMAT,
            "run_dir": str(run_dir.resolve()),
            "reducer": reducer.name,
            "version": reducer.version,
            "options": self.options,
            "files": file_stats(run_dir, ALWAYS_READ + reducer.inputs),
        }

    def _read(self, path: Path, results: bool = True, expected_key: dict | None = None) -> dict | None:
        """{"key": ...}, and "tables" and "arrays" when results are asked for; None if the file is
        unreadable or its key is not expected_key (when given: the results are then not read)."""
        try:
            with open(path, "rb") as f:
                entry = {"key": pickle.load(f)}
                if expected_key is not None and entry["key"] != expected_key:
                    return None
                if results:
                    entry.update(pickle.load(f))
                return entry
        except Exception:  # a cache must never stop an aggregation: unreadable means absent
            return None

    def load(self, run_dir: Path, reducer: Reducer) -> RunOutput | None:
        if self.fresh:
            return None
        entry = self._read(self.path(run_dir, reducer.name), expected_key=self.key(run_dir, reducer))
        return None if entry is None else RunOutput(entry["tables"], entry["arrays"])

    def store(self, run_dir: Path, reducer: Reducer, output: RunOutput) -> None:
        with atomic_path(self.path(run_dir, reducer.name)) as tmp:
            with open(tmp, "wb") as f:
                pickle.dump(self.key(run_dir, reducer), f, protocol=pickle.HIGHEST_PROTOCOL)
                pickle.dump({"tables": output.tables, "arrays": output.arrays}, f, protocol=pickle.HIGHEST_PROTOCOL)

    def arrays(self, run_dir: Path, reducer: str) -> dict:
        entry = self._read(self.path(run_dir, reducer))
        if entry is None:
            raise FileNotFoundError(f"no cached {reducer} results for {run_dir} in {self.folder}")
        return entry["arrays"]

    def prune(self, current: Iterable[Path]) -> int:
        """Delete the entries of run directories that are gone (and unreadable entries); returns how
        many. Entries of the `current` runs are kept unread; of the others only the key is read, for the
        run directory it names, so another sweep's entries in a shared `--out` survive while its runs
        exist."""
        keep = {self._digest(run_dir) for run_dir in current}
        removed = 0
        for path in self.folder.glob("*.pkl"):
            if path.name.split(".", 1)[0] in keep:
                continue
            entry = self._read(path, results=False)
            key = entry["key"] if entry is not None else None
            run_dir = key.get("run_dir") if isinstance(key, dict) else None
            if run_dir is None or not Path(run_dir).is_dir():
                path.unlink(missing_ok=True)
                removed += 1
        return removed
