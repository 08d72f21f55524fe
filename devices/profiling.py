"""Where the time goes: per-operator times from the runtime's own profiler.

onnxruntime profiles with the same session settings as a measurement (threads, sequential
execution, full graph optimisation, no spinning), in a fresh process pinned to the
profile's CPUs: ``warmup`` runs, then ``runs`` profiled ones. The trace's kernel events
give each executed node's time; the median per node over the profiled runs is reported.
With a reference model in the profile, each run is followed by a run of the reference, as
in a measurement: the model then starts from the caches a measurement leaves it, and every
time is scaled by (reference's calibrated latency / its median time here), so profiles taken
minutes apart on a drifting machine are in the same units as the profile's measurements.
Node names keep the exporter's module paths (``/blocks/blocks.2/blocks.2.0/conv_pw/Conv``),
which is how callers map them back to the network's parts.

Run as ``python -m devices.profiling REQUEST.json RESULT.json`` (by ``profile_model``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devices.errors import MeasurementError
from devices.profile import DeviceProfile


def profile_model(profile: DeviceProfile, model_path: str | Path, runs: int = 30, warmup: int = 10) -> dict:
    """Per-node medians (ms) and the whole run's median, for an ONNX model on an onnxruntime profile."""
    if not profile.kind.profiles_per_operator:
        raise MeasurementError("unsupported", f"per-operator profiling runs on onnxruntime profiles; {profile.name} uses {profile.backend}")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise MeasurementError("not_found", f"model file not found: {model_path}")
    with tempfile.TemporaryDirectory(prefix="mnas-profile-") as tmp:
        request = {"model": str(model_path), "threads": profile.threads, "cpus": profile.cpus, "runs": runs, "warmup": warmup,
                   "trace_dir": tmp, "reference": str(profile.reference.path) if profile.reference else None,
                   "reference_ms": profile.reference.latency_ms if profile.reference else None}
        req, res = Path(tmp, "request.json"), Path(tmp, "result.json")
        req.write_text(json.dumps(request))
        proc = subprocess.run([sys.executable, "-m", "devices.profiling", str(req), str(res)], capture_output=True, text=True,
                              timeout=profile.timeout_s * 4, cwd=str(Path(__file__).resolve().parents[1]))
        if not res.is_file():
            raise MeasurementError("crash", f"the profiling process ended without a result: {proc.stderr[-800:]}")
        result = json.loads(res.read_text())
    if not result.get("ok"):
        raise MeasurementError(result.get("kind", "crash"), result.get("error", "profiling failed"))
    return result


def _run(request: dict) -> dict:
    from devices.worker import OnnxRuntimeModel, WorkerError, load_reference, resolve_shape

    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    try:  # the measurement's session settings (devices.worker), profiled
        model = OnnxRuntimeModel(request["model"], request["threads"], trace_dir=request["trace_dir"])
        model.prepare(resolve_shape(model.input_shape(), None))
        reference = load_reference(request["reference"], request["threads"]) if request.get("reference") else None
    except WorkerError as exc:
        return {"ok": False, "kind": exc.kind, "error": str(exc)}
    reference_times = []
    for i in range(request["warmup"] + request["runs"]):
        model.run()
        if reference is not None:
            start = time.perf_counter_ns()
            reference.run()
            if i >= request["warmup"]:
                reference_times.append((time.perf_counter_ns() - start) / 1e6)
    scale = request["reference_ms"] / statistics.median(reference_times) if reference is not None else 1.0
    trace = json.loads(Path(model.session.end_profiling()).read_text())
    nodes: dict[str, dict] = {}
    runs = []
    for event in trace:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs.append(event["dur"] / 1000)
        elif event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            entry = nodes.setdefault(name, {"op": event.get("args", {}).get("op_name", "?"), "times": []})
            entry["times"].append(event["dur"] / 1000)
    skip = request["warmup"]
    table = [{"node": name, "op": e["op"], "ms": statistics.median(e["times"][skip:] or e["times"]) * scale} for name, e in nodes.items()]
    return {"ok": True, "nodes": table, "run_ms": statistics.median(runs[skip:] or runs) * scale, "runs": request["runs"],
            "scale": scale, "runtime": model.runtime}


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    try:
        result = _run(request)
    except Exception as exc:  # reported to the caller as one clear error
        result = {"ok": False, "kind": "crash", "error": f"{type(exc).__name__}: {exc}"}
    tmp = Path(sys.argv[2]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
