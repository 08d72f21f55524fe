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
    if profile.backend != "onnxruntime":
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


def _session(path: str, threads: int, trace_dir: str | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    if trace_dir:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(trace_dir, "ort"))
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _feed(session) -> dict | None:
    import numpy as np

    inp = session.get_inputs()[0]
    if not all(isinstance(d, int) for d in inp.shape):
        return None
    return {inp.name: np.random.default_rng(0).random(inp.shape).astype(np.float32)}


def _run(request: dict) -> dict:
    import onnxruntime as ort

    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    try:
        session = _session(request["model"], request["threads"], request["trace_dir"])
    except Exception as exc:
        return {"ok": False, "kind": "corrupt_model", "error": f"the runtime cannot load the model: {str(exc)[:400]}"}
    feed = _feed(session)
    if feed is None:
        return {"ok": False, "kind": "bad_input_shape", "error": f"the model's input shape {session.get_inputs()[0].shape} is dynamic"}
    reference = _session(request["reference"], request["threads"], None) if request.get("reference") else None
    reference_feed = _feed(reference) if reference else None
    reference_times = []
    for i in range(request["warmup"] + request["runs"]):
        session.run(None, feed)
        if reference is not None:
            start = time.perf_counter_ns()
            reference.run(None, reference_feed)
            if i >= request["warmup"]:
                reference_times.append((time.perf_counter_ns() - start) / 1e6)
    scale = request["reference_ms"] / statistics.median(reference_times) if reference is not None else 1.0
    trace = json.loads(Path(session.end_profiling()).read_text())
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
            "scale": scale, "runtime": {"name": "onnxruntime", "version": ort.__version__}}


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
