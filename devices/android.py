"""Android over adb: push a .tflite and run TFLite's ``benchmark_model`` on the phone.

Each repeat is one ``benchmark_model`` process on the phone, pinned with ``taskset`` to the
profile's CPUs (the big cores). Its summary lines are parsed; benchmark_model reports
mean, std, min, max and, in newer builds, p5/median/p95 of the timed runs, not each run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from devices.errors import MeasurementError
from devices.profile import DeviceProfile

_STATS = re.compile(
    r"count=(?P<count>\d+) first=(?P<first>[\d.e+]+) curr=[\d.e+]+ min=(?P<min>[\d.e+]+) max=(?P<max>[\d.e+]+) "
    r"avg=(?P<avg>[\d.e+]+) std=(?P<std>[\d.e+]+)(?: p5=(?P<p5>[\d.e+]+) median=(?P<median>[\d.e+]+) p95=(?P<p95>[\d.e+]+))?"
)
_SUMMARY = re.compile(r"Inference timings in us: Init: (?P<init>[\d.e+]+), First inference: [\d.e+]+, Warmup \(avg\): [\d.e+]+, Inference \(avg\): (?P<avg>[\d.e+]+)")
_MEMORY = [
    re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<mb>[\d.e+]+)"),
    re.compile(r"Peak memory footprint \(MB\): init=[\d.e+]+ overall=(?P<mb>[\d.e+]+)"),
    re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=[\d.e+]+ overall=(?P<mb>[\d.e+]+)"),
]


def cpu_mask(cpus: list[int] | None) -> str | None:
    """taskset's hex mask for a CPU list ([4, 5] -> '30')."""
    if not cpus:
        return None
    return format(sum(1 << c for c in cpus), "x")


def adb_prefix(profile: DeviceProfile) -> list[str]:
    cmd = [profile.adb.adb]
    if profile.adb.serial:
        cmd += ["-s", profile.adb.serial]
    return cmd


def remote_model_path(profile: DeviceProfile, local: Path) -> str:
    return f"{profile.adb.remote_dir.rstrip('/')}/{local.name}"


def benchmark_command(profile: DeviceProfile, remote_model: str) -> list[str]:
    """The shell command run on the phone for one repeat."""
    cmd = []
    mask = cpu_mask(profile.cpus)
    if mask:
        cmd += ["taskset", mask]
    cmd += [
        profile.adb.benchmark_binary,
        f"--graph={remote_model}",
        f"--num_threads={profile.threads}",
        f"--warmup_runs={profile.warmup_runs}",
        f"--num_runs={profile.timed_runs}",
        f"--use_xnnpack={'true' if profile.adb.use_xnnpack else 'false'}",
        "--report_peak_memory_footprint=true",
    ]
    return cmd


def parse_benchmark_output(text: str) -> dict:
    """Timings (ms) and memory (MB) from benchmark_model's output; raises if there are none."""
    text = text.replace("\r", "")
    stats = [m for m in _STATS.finditer(text)]
    summary = _SUMMARY.search(text)
    if not stats and not summary:
        for line in text.splitlines():
            if "ERROR" in line or "Failed" in line or "failed" in line:
                kind = "unsupported_op" if ("op" in line.lower() and ("custom" in line.lower() or "registration" in line.lower())) else "corrupt_model"
                raise MeasurementError(kind, f"benchmark_model failed: {line.strip()[:300]}")
        raise MeasurementError("runtime_error", "benchmark_model printed no timings")
    result: dict = {}
    if stats:
        timed = stats[-1].groupdict()  # the last stats line is the timed run; the first is the warm-up
        us = {k: float(v) for k, v in timed.items() if v is not None}
        result.update(
            runs=int(us["count"]),
            mean_ms=us["avg"] / 1000,
            std_ms=us["std"] / 1000,
            min_ms=us["min"] / 1000,
            max_ms=us["max"] / 1000,
        )
        if "median" in us:
            result.update(median_ms=us["median"] / 1000, p5_ms=us["p5"] / 1000, p95_ms=us["p95"] / 1000)
    if summary:
        result["init_ms"] = float(summary["init"]) / 1000
        result.setdefault("mean_ms", float(summary["avg"]) / 1000)
    for pattern in _MEMORY:
        m = pattern.search(text)
        if m:
            result["peak_memory_mb"] = float(m["mb"])
            break
    return result


def _adb(profile: DeviceProfile, args: list[str], timeout: float) -> str:
    cmd = adb_prefix(profile) + args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasurementError("timeout", f"adb {' '.join(args[:2])} took longer than {timeout:g} s") from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()[:300]
        if "no devices" in message or "not found" in message or "offline" in message or "unauthorized" in message:
            raise MeasurementError("device_unavailable", f"Android device not reachable: {message}")
        raise MeasurementError("runtime_error", f"adb {' '.join(args[:2])} failed: {message}")
    return proc.stdout + proc.stderr


def check_device(profile: DeviceProfile) -> None:
    """Fail with one clear message when adb or the phone is missing."""
    if shutil.which(profile.adb.adb) is None:
        raise MeasurementError("device_unavailable", f"adb not found ({profile.adb.adb!r}); install Android platform-tools and put adb on PATH")
    state = _adb(profile, ["get-state"], timeout=15).strip()
    if state != "device":
        raise MeasurementError("device_unavailable", f"Android device is in state {state!r}, not 'device'")


def run_repeat(profile: DeviceProfile, model_path: Path) -> dict:
    """Push once per call and run benchmark_model once; returns parsed figures."""
    remote = remote_model_path(profile, model_path)
    _adb(profile, ["shell", "mkdir", "-p", profile.adb.remote_dir], timeout=30)
    _adb(profile, ["push", str(model_path), remote], timeout=120)
    output = _adb(profile, ["shell", " ".join(benchmark_command(profile, remote))], timeout=profile.timeout_s)
    return parse_benchmark_output(output)
