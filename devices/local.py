"""Run one measuring process: fresh interpreter, pinned CPUs, timeout, peak RSS via wait4."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devices.errors import MeasurementError
from devices.profile import DeviceProfile


def available_cpus() -> set[int]:
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def missing_cpus(profile: DeviceProfile) -> list[int]:
    """The CPUs the profile pins to that this process cannot run on."""
    return sorted(set(profile.cpus or []) - available_cpus())


def run_worker(profile: DeviceProfile, model_path: str | Path, input_shape: list[int] | None) -> dict:
    """One fresh process: returns the worker's result; raises MeasurementError."""
    cpus = profile.cpus
    missing = missing_cpus(profile)
    if missing:
        raise MeasurementError("device_unavailable", f"profile {profile.name} pins to CPUs {missing}, which this machine lacks")
    request = {
        "backend": profile.backend,
        "model": str(model_path),
        "threads": profile.threads,
        "warmup_runs": profile.warmup_runs,
        "timed_runs": profile.timed_runs,
        "input_shape": input_shape,
        "cpus": cpus,
        "reference": str(profile.reference.path) if profile.reference else None,
    }
    env = dict(os.environ, OMP_NUM_THREADS=str(profile.threads), PYTHONUNBUFFERED="1")
    # The worker must import devices.worker from this tree even when the caller's cwd differs.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="mnas-measure-") as tmp:
        req_path, res_path, err_path = (Path(tmp) / n for n in ("request.json", "result.json", "stderr.txt"))
        req_path.write_text(json.dumps(request))
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "devices.worker", str(req_path), str(res_path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
            )
        status = _wait(proc.pid, profile.timeout_s)
        proc.returncode = status if status is not None else -9  # reaped here, not by Popen
        if status is None:
            raise MeasurementError("timeout", f"measurement took longer than the profile's {profile.timeout_s:g} s and was stopped")
        if not res_path.is_file():
            tail = err_path.read_text(errors="replace")[-600:].strip()
            if os.WIFSIGNALED(status):
                reason = f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
            else:
                reason = f"exit status {os.WEXITSTATUS(status)}"
            raise MeasurementError("runtime_crash", f"the runtime crashed while loading or running the model ({reason}): {tail}")
        result = json.loads(res_path.read_text())
    if not result.get("ok"):
        raise MeasurementError(result.get("kind", "runtime_error"), result.get("error", "measurement failed"))
    return result


def _wait(pid: int, timeout_s: float):
    """waitpid with a deadline: the exit status, or None after killing the process on timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(0.05, delay * 2)
