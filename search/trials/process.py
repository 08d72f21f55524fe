"""Trial processes forked from a warm server: the imports are paid once per search, not per trial.

A trial started as ``python -m search.trials.run`` spends ~6 s importing torch and torch._dynamo
(which torch's optimisers and ONNX exporter load on first use) before its first step: on
a CPU search with 1-epoch trials that was ~40% of each trial. Python's ``forkserver`` start
method keeps one server process that has imported those modules and run nothing (no
threads, no CUDA, no OpenMP pool are forked); each trial is a fresh fork of it, in its own
session, with its slot's environment, so a crash, an OOM or a leak still ends with its
trial. Each trial watches the search's pid and ends with it (``search.trials.watchdog.exit_with_parent``);
the server ends after its last trial, so a killed search leaves no process behind.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path

# what every trial imports; importing them must not start threads or touch a GPU
PRELOAD = ["torch", "torch._dynamo", "torch.optim", "torch.onnx", "onnx", "mnas.data", "mnas.export", "mnas.train",
           "mnas.zero_cost", "search.trials.run"]
PACKAGE_ROOT = Path(__file__).resolve().parents[2]

_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


class TrialProcess:
    """A running trial: the part of ``subprocess.Popen`` the executor uses (poll, kill, wait)."""

    def __init__(self, process):
        self._process = process

    def poll(self) -> int | None:
        return self._process.exitcode

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()

    def wait(self) -> int:
        self._process.join()
        return self._process.exitcode


def start_trial(spec_path: Path, result_path: Path, env: dict[str, str], log_path: Path) -> TrialProcess:
    """Fork a trial from the warm server; it runs ``search.trials.run.main`` with this environment,
    its output going to ``log_path``."""
    process = _forkserver().Process(target=_run, args=(str(spec_path), str(result_path), dict(env), str(log_path)), daemon=False)
    process.start()
    return TrialProcess(process)


def _run(spec_path: str, result_path: str, env: dict[str, str], log_path: str) -> None:
    """In the forked trial: its own session, environment, output and working directory, as a
    freshly executed ``python -m search.trials.run`` would have."""
    os.setsid()  # a Ctrl-C in the search's terminal goes to the search, which ends its trials itself
    _name_process(f"mnas-trial-{Path(spec_path).parent.name}")
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    os.chdir(PACKAGE_ROOT)
    from search.trials.run import main

    main([spec_path, result_path])


def _name_process(name: str) -> None:
    """What ps, top and pgrep show for the trial (Linux keeps 15 characters): its command
    line is the server's, the same for every trial."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(15, name.encode()[:15])  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
