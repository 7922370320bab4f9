"""Logs of a pack: Hydra's job logging for the pack as a whole, and each run's own log file.

One process trains the pack, so one set of log records. The pack gets Hydra's job logging as a job
would (console, and `<pack dir>/<job name>.log` with every line). Each run directory gets the log
file an unpacked job writes there (same name and format), holding the pack-wide lines (progress,
"training N runs", ...) and the lines about this run, but not those about its pack-mates: a line is
about a run when one of its %-arguments is the run's directory (`log.info("%s completed", run.dir)`,
as the training loop writes them).
"""

from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from omegaconf import DictConfig, read_write


class RunLines(logging.Filter):
    """Passes the records that name this run's directory, or no run of its pack."""

    def __init__(self, run_dir: Path, pack_dirs: list[Path]):
        super().__init__()
        self.run_dir, self.pack_dirs = run_dir, set(pack_dirs)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        named = {a for a in args if isinstance(a, Path)} & self.pack_dirs
        return not named or self.run_dir in named


@contextmanager
def pack_logs(sweep_configs: list[DictConfig], pack_dir: Path) -> Iterator[None]:
    """While entered, log as described above; sweep_configs are the runs' job configs, after Hydra's
    `run_job` set their `hydra.runtime.output_dir`."""
    pack_dir.mkdir(parents=True, exist_ok=True)
    pack_config = copy.deepcopy(sweep_configs[0])
    with read_write(pack_config.hydra.runtime):
        pack_config.hydra.runtime.output_dir = str(pack_dir)
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(pack_config)  # job_logging names its file after hydra.runtime.output_dir
    try:
        configure_log(pack_config.hydra.job_logging, pack_config.hydra.verbose)
    finally:
        HydraConfig.instance().cfg = saved

    root = logging.getLogger()
    run_dirs = [Path(c.hydra.runtime.output_dir) for c in sweep_configs]
    added = []
    for pack_file in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        for run_dir in run_dirs:
            handler = logging.FileHandler(run_dir / Path(pack_file.baseFilename).name, encoding=pack_file.encoding)
            handler.setFormatter(pack_file.formatter)
            handler.setLevel(pack_file.level)
            handler.addFilter(RunLines(run_dir, run_dirs))
            root.addHandler(handler)
            added.append(handler)
    try:
        yield
    finally:
        for handler in added:
            root.removeHandler(handler)
            handler.close()
