"""Runs inside the fresh measuring process: load one model, warm up, time, report.

Invoked as ``python -m devices.worker REQUEST.json RESULT.json`` by devices.local; writes
either {"ok": true, "times_ms": [...], ...} or {"ok": false, "kind": ..., "error": ...}.
Kept free of project imports beyond the standard library, numpy and the runtime, so the
baseline memory it reports is the runtime's own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

MAX_ELEMENTS = 64 * 1024 * 1024  # 256 MB of float32 input


def memory_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in kB.

    Read here rather than from wait4's ru_maxrss in the parent: Linux carries the
    high-water mark across fork and exec, so a child of a large parent (a search that has
    PyTorch loaded) would report the parent's size. VmHWM belongs to the new address space.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # non-Linux fallback


class WorkerError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def check_shape(shape) -> list[int]:
    if not isinstance(shape, list) or not 1 <= len(shape) <= 6:
        raise WorkerError("bad_input_shape", f"input shape must have 1 to 6 dimensions (got {shape})")
    if not all(isinstance(d, int) and d > 0 for d in shape):
        raise WorkerError("bad_input_shape", f"input shape must be positive integers (got {shape})")
    total = 1
    for d in shape:
        total *= d
    if total > MAX_ELEMENTS:
        raise WorkerError("bad_input_shape", f"input shape {shape} has {total:,} elements; the limit is {MAX_ELEMENTS:,}")
    return shape


def resolve_shape(model_shape, requested) -> list[int]:
    """The model's static shape, or the requested one (which must agree with it where static)."""
    if requested is not None:
        shape = check_shape(list(requested))
        if model_shape is not None and len(model_shape) != len(shape):
            raise WorkerError("bad_input_shape", f"input shape {shape} has {len(shape)} dims; the model takes {len(model_shape)}")
        if model_shape is not None:
            for want, got in zip(model_shape, shape):
                if isinstance(want, int) and want > 0 and want != got:
                    raise WorkerError("bad_input_shape", f"input shape {shape} does not match the model's {list(model_shape)}")
        return shape
    if model_shape is None or not all(isinstance(d, int) and d > 0 for d in model_shape):
        raise WorkerError("bad_input_shape", f"the model's input shape {model_shape} is dynamic; pass an input shape")
    return check_shape([int(d) for d in model_shape])


def only_input(inputs: list):
    """The model's one input; models with several inputs are not measured."""
    if len(inputs) != 1:
        raise WorkerError("bad_input_shape", f"the model has {len(inputs)} inputs; only single-input models are measured")
    return inputs[0]


def classify(exc: Exception) -> WorkerError:
    text = str(exc)
    low = text.lower()
    if any(k in low for k in ("not_implemented", "could not find an implementation", "is not a registered function/op", "unresolved custom op", "didn't find op", "unsupported")):
        return WorkerError("unsupported_op", f"the runtime lacks an operator this model uses: {text[:400]}")
    return WorkerError("corrupt_model", f"the runtime cannot load the model: {text[:400]}")


class OnnxRuntimeModel:
    def __init__(self, path: str, threads: int, trace_dir: str | None = None):
        """``trace_dir``: profile every run per operator, the trace written there (devices.profiling)."""
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
            so.profile_file_prefix = os.path.join(trace_dir, "ort")
        try:
            self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise classify(exc) from None
        self.input = only_input(self.session.get_inputs())
        self.runtime = {"name": "onnxruntime", "version": ort.__version__}

    def input_shape(self):
        return [d if isinstance(d, int) else None for d in self.input.shape]

    def prepare(self, shape):
        import numpy as np

        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(self.input.type)
        if dtype is None:
            raise WorkerError("bad_input_shape", f"input type {self.input.type} is not supported")
        self.feed = {self.input.name: np.random.default_rng(0).random(shape).astype(dtype)}

    def run(self):
        self.session.run(None, self.feed)


class LiteRtModel:
    def __init__(self, path: str, threads: int):
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter

            self.runtime = {"name": "ai-edge-litert", "version": getattr(ai_edge_litert, "__version__", "unknown")}
        except ImportError:  # a device with only the old runtime
            import tflite_runtime
            from tflite_runtime.interpreter import Interpreter

            self.runtime = {"name": "tflite-runtime", "version": tflite_runtime.__version__}
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=threads)
        except Exception as exc:
            raise classify(exc) from None
        self.detail = only_input(self.interpreter.get_input_details())

    def input_shape(self):
        sig = self.detail.get("shape_signature")
        shape = list(sig if sig is not None and len(sig) else self.detail["shape"])
        return [int(d) if d > 0 else None for d in shape]

    def prepare(self, shape):
        import numpy as np

        try:
            if list(self.detail["shape"]) != shape:
                self.interpreter.resize_tensor_input(self.detail["index"], shape)
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise classify(exc) from None
        data = np.random.default_rng(0).random(shape).astype(self.detail["dtype"])
        self.interpreter.set_tensor(self.detail["index"], data)

    def run(self):
        self.interpreter.invoke()


MODELS = {"onnxruntime": OnnxRuntimeModel, "litert": LiteRtModel}  # the local backends of devices.backends, by name


def measure(request: dict) -> dict:
    import numpy  # noqa: F401  (part of the baseline)

    model_cls = MODELS[request["backend"]]
    # Import the runtime before reading the baseline, so peak - baseline is the model's cost.
    if request["backend"] == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:
            import tflite_runtime.interpreter  # noqa: F401
    baseline_kb = memory_kb("VmRSS")
    t0 = time.perf_counter()
    model = model_cls(request["model"], request["threads"])
    shape = resolve_shape(model.input_shape(), request.get("input_shape"))
    model.prepare(shape)
    reference, peak_kb = None, None
    try:
        for _ in range(request["warmup_runs"]):
            model.run()
        if request.get("reference"):
            # The candidate's peak memory is read before the reference is loaded, so it stays
            # the candidate's own; then both are warmed again, since loading moved the caches.
            model.run()
            peak_kb = memory_kb("VmHWM")
            reference = load_reference(request["reference"], request["threads"])
            for _ in range(request["warmup_runs"]):
                model.run()
                reference.run()
        times, reference_times = [], []
        for _ in range(request["timed_runs"]):
            start = time.perf_counter_ns()
            model.run()
            times.append((time.perf_counter_ns() - start) / 1e6)
            if reference is not None:  # run by run, so both see the same machine speed
                start = time.perf_counter_ns()
                reference.run()
                reference_times.append((time.perf_counter_ns() - start) / 1e6)
    except WorkerError:
        raise
    except Exception as exc:
        raise classify(exc) from None
    return {
        "ok": True,
        "times_ms": times,
        **({"reference_times_ms": reference_times} if reference is not None else {}),
        "baseline_kb": baseline_kb,
        "peak_rss_kb": peak_kb if peak_kb is not None else memory_kb("VmHWM"),
        "input_shape": shape,
        "runtime": model.runtime,
        "load_and_run_s": time.perf_counter() - t0,
    }


def load_reference(path: str, threads: int) -> OnnxRuntimeModel:
    """The profile's reference model (always ONNX, run by onnxruntime), ready to run."""
    try:
        reference = OnnxRuntimeModel(path, threads)
        reference.prepare(resolve_shape(reference.input_shape(), None))
    except WorkerError as exc:
        raise WorkerError("reference_failed", f"the profile's reference model {path} cannot run: {exc}") from None
    return reference


def main() -> None:
    request_path, result_path = sys.argv[1], sys.argv[2]
    with open(request_path) as f:
        request = json.load(f)
    if request.get("cpus"):  # pin first, before the runtime starts its threads
        os.sched_setaffinity(0, request["cpus"])
    try:
        result = measure(request)
    except WorkerError as exc:
        result = {"ok": False, "kind": exc.kind, "error": str(exc)}
    except MemoryError:
        result = {"ok": False, "kind": "out_of_memory", "error": "the measuring process ran out of memory"}
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
