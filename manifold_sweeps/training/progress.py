"""Progress lines for long loops: rate, ETA and a lazily read value, at most every `every_s` seconds.

Plain log lines rather than a redrawn bar, so SLURM log files stay readable.
"""

from __future__ import annotations

import logging
import time
from typing import Callable


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, total: int, start: int, every_s: float, logger: logging.Logger, unit: str = "steps"):
        self.total, self.start, self.every_s, self.log, self.unit = total, start, every_s, logger, unit
        self.t0 = time.monotonic()
        self.last = self.t0

    def maybe_report(self, done: int, extra: Callable[[], str] | None = None, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return False
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        pct = 100.0 * done / max(self.total, 1)
        line = f"{self.unit[:-1] if self.unit.endswith('s') else self.unit} {done}/{self.total} ({pct:.1f}%) | {rate:.1f} {self.unit}/s"
        line += f" | ETA {format_duration(eta) if eta != float('inf') else '?'}"
        if extra is not None:
            line += f" | {extra()}"
        self.log.info(line)
        return True
