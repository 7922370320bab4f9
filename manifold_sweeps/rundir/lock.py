"""One training process per run directory: `.lock`, held while a process trains the run.

A sweep relaunched while some of its jobs still run (or two packs given one run) would otherwise
have two processes writing one run directory. The lock is an advisory `flock` on `<run dir>/.lock`,
which the kernel releases when the holder exits however it exits (SIGKILL, node failure), so a
requeued or relaunched job never waits on a dead one. The file keeps the last holder's host and pid,
for the message a second process gets. File systems without flock support (Lustre mounted without
`flock`) get a warning and no lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def hold_run_dirs(run_dirs: Sequence[Path]) -> Iterator[None]:
    """Hold every run directory's lock for the block; RunDirBusy (naming the holder) if one is taken,
    after releasing those already held, so nothing has been written."""
    fds: list[int] = []
    try:
        for run_dir in run_dirs:
            path = Path(run_dir) / LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirBusy(
                        f"{run_dir} is being trained by another process ({_holder(path)}); this job leaves it "
                        "alone. Relaunch once that process has ended: it resumes the run from its checkpoint."
                    ) from None
                log.warning("cannot lock %s (%s): two processes could train this run at once", path, err)
                continue
            fds.append(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"host {socket.gethostname()}, pid {os.getpid()}\n".encode())
        yield
    finally:
        for fd in fds:
            os.close(fd)  # releases the lock
