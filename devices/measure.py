"""Measure one model file on one device profile: the protocol behind every latency figure.

A measurement is ``repeats`` fresh processes (each: load, ``warmup_runs`` runs, then
``timed_runs`` timed runs). Reported:

* ``latency_ms``: the median of the per-process medians; with a ``reference`` in the
  profile, each timed run is divided by the reference's run timed right after it in the
  same process, and ``latency_ms`` is the median of those ratios times the reference's
  calibrated latency (``reference`` in the result gives the raw median, the reference's
  time now and the machine's speed against its calibration);
* ``p10_ms`` / ``p90_ms``: over all timed runs pooled;
* ``cv``: robust coefficient of variation of the pooled runs (of the ratios, with a
  reference), 1.4826 x MAD / median, so a few preempted runs do not hide a stable median.
  If it exceeds the profile's ``max_cv`` the whole measurement is taken again, up to
  ``max_remeasure`` times; the steadiest is kept and ``stable`` says whether it met the limit;
* ``peak_memory_mb``: the largest peak RSS of a measuring process minus that process's
  RSS after importing the runtime (the model's own cost: weights, arena, buffers);
* ``model_size_mb``: the file's size.
"""

from __future__ import annotations

import datetime
import statistics
import time
from pathlib import Path

import numpy as np

from devices.errors import MeasurementError
from devices.measurement import checked
from devices.profile import DeviceProfile

MAGIC_TFLITE = b"TFL3"


def sniff_format(data: bytes) -> str:
    """'onnx' or 'tflite' from the first bytes; raises for an empty or foreign file."""
    if not data:
        raise MeasurementError("empty_file", "the model file is empty")
    if len(data) >= 8 and data[4:8] == MAGIC_TFLITE:
        return "tflite"
    if data[:1] == b"\x08":  # protobuf field 1 (ir_version), varint: how every ONNX file starts
        return "onnx"
    raise MeasurementError("not_a_model", "the file is neither an ONNX model nor a TFLite flatbuffer")


def robust_cv(times: list[float]) -> float:
    arr = np.asarray(times)
    med = float(np.median(arr))
    return float(1.4826 * np.median(np.abs(arr - med)) / med) if med > 0 else 0.0


def measure_once(profile: DeviceProfile, model_path: Path, input_shape: list[int] | None) -> dict:
    """One full measurement (all repeats) without the CV retry."""
    if profile.kind.remote:
        return _measure_android(profile, model_path, input_shape)
    from devices.local import run_worker

    medians, pooled, peaks, runtime, shape = [], [], [], None, None
    raw_medians, reference_times = [], []
    for _ in range(profile.repeats):
        result = run_worker(profile, model_path, input_shape)
        times = np.asarray(result["times_ms"])
        raw_medians.append(float(np.median(times)))
        if profile.reference is not None:  # each run as a multiple of the reference's run next to it
            reference_times.extend(result["reference_times_ms"])
            times = times / np.asarray(result["reference_times_ms"]) * profile.reference.latency_ms
        medians.append(float(np.median(times)))
        pooled.extend(times.tolist())
        peaks.append(max(0, result["peak_rss_kb"] - result["baseline_kb"]) / 1024)
        runtime, shape = result["runtime"], result["input_shape"]
    figures = {
        "latency_ms": statistics.median(medians) if profile.reference is None else float(np.median(pooled)),
        "p10_ms": float(np.percentile(pooled, 10)),
        "p90_ms": float(np.percentile(pooled, 90)),
        "cv": robust_cv(pooled),
        "process_medians_ms": medians,
        "peak_memory_mb": max(peaks),
        "input_shape": shape,
        "runtime": runtime,
    }
    if profile.reference is not None:
        reference_ms = float(np.median(reference_times))
        figures["reference"] = {"raw_latency_ms": statistics.median(raw_medians), "reference_ms": reference_ms,
                                "calibrated_ms": profile.reference.latency_ms, "speed": profile.reference.latency_ms / reference_ms}
    return figures


def _measure_android(profile: DeviceProfile, model_path: Path, input_shape) -> dict:
    from devices.android import check_device, run_repeat

    if input_shape is not None:
        raise MeasurementError("bad_input_shape", "the android-adb backend measures the model's own static input shape; omit input_shape")
    check_device(profile)
    runs = [run_repeat(profile, model_path) for _ in range(profile.repeats)]
    centre = [r.get("median_ms", r["mean_ms"]) for r in runs]
    mean = statistics.fmean(r["mean_ms"] for r in runs)
    std = statistics.fmean(r.get("std_ms", 0.0) for r in runs)
    return {
        "latency_ms": statistics.median(centre),
        "p10_ms": None,  # benchmark_model does not report these percentiles
        "p90_ms": None,
        "p5_ms": min((r["p5_ms"] for r in runs if "p5_ms" in r), default=None),
        "p95_ms": max((r["p95_ms"] for r in runs if "p95_ms" in r), default=None),
        "cv": std / mean if mean else 0.0,
        "process_medians_ms": centre,
        "peak_memory_mb": max((r.get("peak_memory_mb", 0.0) for r in runs), default=None),
        "input_shape": None,
        "runtime": {"name": "tflite benchmark_model", "version": "on device"},
    }


def measure_file(profile: DeviceProfile, model_path: str | Path, input_shape: list[int] | None = None) -> dict:
    """Measure ``model_path`` on ``profile`` with the CV retry; the service's and the client's entry point."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MeasurementError("not_found", f"model file not found: {model_path}")
    with open(model_path, "rb") as f:
        head = f.read(16)
    fmt = sniff_format(head)
    if fmt != profile.model_format:
        raise MeasurementError("not_a_model", f"device {profile.name} measures {profile.model_format.upper()} models; this file is {fmt.upper()}")
    started = time.perf_counter()
    attempts = []
    for _ in range(1 + profile.max_remeasure):
        attempts.append(measure_once(profile, model_path, input_shape))
        if attempts[-1]["cv"] <= profile.max_cv:
            break
    best = min(attempts, key=lambda a: a["cv"])
    return checked({
        **best,
        "stable": best["cv"] <= profile.max_cv,
        "attempts": len(attempts),
        "model_size_mb": model_path.stat().st_size / 1e6,
        "model_format": fmt,
        "device": {"name": profile.name, "hash": profile.settings_hash(), "backend": profile.backend, "threads": profile.threads, "cpus": profile.cpus},
        "runs": {"warmup": profile.warmup_runs, "timed": profile.timed_runs, "repeats": profile.repeats},
        "measure_seconds": time.perf_counter() - started,
        "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
