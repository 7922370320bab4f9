"""Checkpoint on a stop signal, then let submitit requeue the job.

submitit handles its checkpoint signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise; SLURM
sends it `signal_delay_s` before the time limit, and clusters send it on preemption) by requeueing the
job and exiting at once, wherever the signal lands. Training must checkpoint first, so `StopSignal`
takes the signal over while training runs: its handler only raises a flag that the training loop
polls as `should_stop`; the loop checkpoints every active run at its current step and returns
`interrupted`; `hand_over()` then calls submitit's own handler, which requeues the same task (same
overrides, so the same run directory) and exits. The requeued job resumes from the checkpoint.

Outside submitit (the basic launcher, a plain `python -m manifold_sweeps`) the checkpoint signal,
SIGTERM (kill, scancel, docker stop) and SIGINT (Ctrl-C) stop training the same way, and the process
exits with 128 + the signal number; a second Ctrl-C does not wait for the checkpoint (KeyboardInterrupt). Under submitit SIGTERM stays submitit's: on preemption SLURM sends it before
the checkpoint signal, and submitit ignores it on purpose. The jobs of a local submitit sweep take
Ctrl-C as a stop too (`default_stop_signals`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Iterator

log = logging.getLogger(__name__)

PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's own variable, read the same way


def checkpoint_signal() -> signal.Signals:
    """The signal submitit treats as 'checkpoint and requeue' (USR2 by default)."""
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2")
    try:
        return signal.Signals["SIG" + name]
    except KeyError:
        raise ValueError(f"{PREEMPT_SIGNAL_ENV}={name} is not a signal name; use one such as USR2 or USR1") from None


def under_submitit() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ


def default_stop_signals() -> list[signal.Signals]:
    """The signals that stop training with a checkpoint here.

    Outside submitit: its checkpoint signal, SIGTERM and SIGINT. Under SLURM: the checkpoint signal
    alone (SIGTERM stays submitit's). Under submitit's local executor, SIGINT too: a Ctrl-C of a local
    sweep reaches every job twice, from the terminal and at once from the job's controller, which kills
    the job a second later; the first asks for a checkpoint, the second is not taken as 'do not wait'.
    """
    if not under_submitit():
        return [checkpoint_signal(), signal.SIGTERM, signal.SIGINT]
    if os.environ["SUBMITIT_EXECUTOR"] == "local":
        return [checkpoint_signal(), signal.SIGINT]
    return [checkpoint_signal()]


class StopSignal:
    """A `should_stop` callable that turns stop signals into a flag, for as long as it is entered.

        with StopSignal() as stop:
            states = train_pack(cfgs, run_dirs, should_stop=stop)
        if "interrupted" in states:
            stop.hand_over()
    """

    def __init__(self, signals: list[signal.Signals] | None = None):
        if signals is None:
            signals = default_stop_signals()
        self.signals = signals
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __call__(self) -> bool:
        return self.received is not None

    def _raise_flag(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the training loop: set the flag and nothing else.
        if self.received is None:
            self.received = signal.Signals(signum)
        elif self.received == signum == signal.SIGINT and not under_submitit():
            raise KeyboardInterrupt  # Ctrl-C again: the user will not wait for the checkpoint

    def __enter__(self) -> StopSignal:
        for sig in self.signals:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # whoever ignores it wants the run to go on
            self._previous[sig] = signal.signal(sig, self._raise_flag)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def hand_over(self) -> None:
        """After training stopped on the signal: pass the signal to whoever handled it before
        (submitit: requeue and exit), or exit with 128 + its number. Does nothing if none came."""
        if self.received is None:
            return
        sig, previous = self.received, self._previous.get(self.received)
        if callable(previous) and previous is not signal.default_int_handler:
            log.warning("stopped on %s with a checkpoint; handing the signal to %s", sig.name,
                        getattr(previous, "__qualname__", previous))
            previous(sig, None)  # submitit: checkpoint() resubmits the same task, requeues it, exits
            return
        log.warning("stopped on %s with a checkpoint; exiting", sig.name)
        sys.exit(128 + sig)


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Ignore SIGINT for the few milliseconds a stop takes to record (the main thread only).

    Where no StopSignal takes SIGINT (the repeated Ctrl-C that already ended a run without waiting,
    a SLURM job, a caller of `train` without one), a KeyboardInterrupt landing while a stop is being
    recorded would leave the run's status.json `running`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
