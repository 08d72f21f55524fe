"""Measure alone: in a CPU search, a trial's latency measurement pauses the others' training.

MnasNet-A1 at 224 px on ``x86-ort-1t``, while a 2-slot search trained on the same 2 cores,
once measured 6-9% slower with a CV of 5.5-9% (idle: 1.8-2.8%); on 2026-11-24 its median
held but the CV rose from 2.2% to 5.8% and 4 of 5 measurements missed the profile's 5%
limit, and with this pause: CV 3.1%, 5 of 5 within it (benchmarks/measure_under_load.py).
So a trial that measures in-process holds the experiment's measurement lock (one
measurement at a time) and raises a flag file; every trial that is training checks the
flag before each step and waits while it stands. Training pauses for the measurement's
length (~0.4 s per demo trial); the figure is taken on an otherwise idle machine.

A flag left by a killed process is recognised by its pid and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

FLAG, LOCK = "measuring.flag", "measuring.lock"
SETTLE_S = 0.2  # for the other trials to finish the step they are in


@contextlib.contextmanager
def measuring_alone(directory: str | Path):
    directory = Path(directory)
    with open(directory / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        flag = directory / FLAG
        flag.write_text(str(os.getpid()))
        try:
            time.sleep(SETTLE_S)
            yield
        finally:
            flag.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pause_while_measuring(directory: str | Path) -> Callable[[], None]:
    """A ``before_step`` hook: returns at once unless another process is measuring."""
    flag = Path(directory) / FLAG
    me = os.getpid()

    def pause() -> None:
        while True:
            try:
                pid = int(flag.read_text())
            except (OSError, ValueError):  # no flag (or one being written: caught at the next step)
                return
            if pid == me:
                return
            if not _alive(pid):
                flag.unlink(missing_ok=True)
                return
            time.sleep(0.01)

    return pause
