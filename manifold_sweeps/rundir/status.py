"""`status.json`: the run's state machine, written atomically on every change and as a heartbeat.

States: running -> completed | failed | diverged | interrupted. A run killed hard (SIGKILL, node
failure) stays `running` with a stale `updated_at`; `effective_state` reports it as interrupted.
Aggregation trusts this file, never the launcher's own bookkeeping.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .atomic import write_text

STATUS_FILE = "status.json"
STATES = ("running", "completed", "failed", "diverged", "interrupted")
# A running run refreshes updated_at at least this often (progress lines, checkpoints, evals).
HEARTBEAT_S = 60.0
STALE_AFTER_S = 15 * 60.0


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in ("manifold_sweeps", "torch", "numpy", "hydra", "omegaconf", "pandas"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "unknown")
    return versions


def read_status(run_dir: str | os.PathLike) -> dict | None:
    """The parsed status, or None when the file is missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def effective_state(status: dict | None, now: float | None = None) -> str:
    """The state to report: `running` whose heartbeat went stale (or whose process on this host is
    gone) is `interrupted`; a missing status is `unreadable`."""
    if status is None or status.get("state") not in STATES:
        return "unreadable"
    state = status["state"]
    if state != "running":
        return state
    if status.get("host") == socket.gethostname() and status.get("pid"):
        if not _pid_alive(int(status["pid"])):
            return "interrupted"
    beat = status.get("updated_unix")
    if beat is not None and (now or time.time()) - float(beat) > STALE_AFTER_S:
        return "interrupted"
    return "running"


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # An exited process can linger as a zombie ('Z'), which kill(pid, 0) reports as alive.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


class StatusWriter:
    """Holds the current status of one run and rewrites status.json atomically on update."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / STATUS_FILE
        self.fields: dict = read_status(run_dir) or {}
        self._last_write = 0.0

    def update(self, **fields) -> None:
        self.fields.update(fields)
        self.fields["updated_at"] = now_iso()
        self.fields["updated_unix"] = time.time()
        write_text(self.path, json.dumps(self.fields, indent=2, default=str) + "\n")
        self._last_write = time.monotonic()

    def heartbeat(self, **fields) -> None:
        """Update only if the last write is older than HEARTBEAT_S (cheap to call every log line)."""
        if time.monotonic() - self._last_write >= HEARTBEAT_S:
            self.update(**fields)
