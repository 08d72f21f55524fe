"""One trial, the same function for every executor: measure, train on the proxy, evaluate.

Stage 1: export the architecture in the latency source's format, measure latency and
memory *before* training (a model the service rejects costs no GPU time), then train on
the stage-1 split and evaluate top-1 on the held-out 10%. Stage 2: train on all training
data for the stage-2 epochs and evaluate on the test split.

``run_trial`` never raises: it returns {"status": "succeeded", ...} or {"status": "failed",
"error_kind": ..., "error": ...}. Run as ``python -m search.trial SPEC.json RESULT.json``
by the local executor, or as a Ray task.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

DATA_FILES = ("x_train.npy", "y_train.npy", "x_val.npy", "y_val.npy", "x_test.npy", "y_test.npy")


def cache_trial_data(dataset, val_fraction: float, split_seed: int, directory: Path) -> Path | None:
    """Write the stage-1/stage-2 arrays once as plain .npy, so each trial maps them in a blink."""
    from mnas.data import ArraySource

    if not isinstance(dataset.train, ArraySource):
        return None  # image folders are read lazily by each trial
    directory.mkdir(parents=True, exist_ok=True)
    if all((directory / f).is_file() for f in DATA_FILES):
        return directory
    train, val = dataset.stage1(split_seed, val_fraction)
    return write_trial_arrays(train, val, dataset.test, dataset.num_classes, dataset.classes, directory)


def write_trial_arrays(train, val, test, num_classes: int, classes: list[str], directory: Path) -> Path:
    """The trial data cache's files: x_/y_ .npy per part, then meta.json (which marks it complete)."""
    directory.mkdir(parents=True, exist_ok=True)
    for part, source in {"train": train, "val": val, "test": test}.items():
        for name, arr in (("x", source.x), ("y", source.y)):
            tmp = directory / f"{name}_{part}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, directory / f"{name}_{part}.npy")
    (directory / "meta.json").write_text(json.dumps({"num_classes": num_classes, "classes": classes}))
    return directory


def load_trial_data(spec: dict):
    """(train source, eval source, num_classes) for the trial's stage."""
    from mnas.data import ArraySource, load_dataset

    cache = spec.get("data_cache")
    stage2 = spec.get("stage", 1) == 2
    if cache and Path(cache, "meta.json").is_file():
        d = Path(cache)
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r")  # noqa: E731
        num_classes = json.loads((d / "meta.json").read_text())["num_classes"]
        val = ArraySource(load("x_val"), load("y_val"))
        train = ArraySource(load("x_train"), load("y_train"))
        if stage2:
            full = ArraySource(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
            return full, ArraySource(load("x_test"), load("y_test")), num_classes
        return train, val, num_classes
    proxy = spec["proxy"]
    dataset = load_dataset(proxy["data"])
    if stage2:
        train, test = dataset.stage2()
        return train, test, dataset.num_classes
    train, val = dataset.stage1(proxy.get("split_seed", 0), proxy.get("val_fraction", 0.1))
    return train, val, dataset.num_classes


def measure_latency(spec: dict, arch, num_classes: int) -> tuple[dict, dict]:
    from latency_service.client import make_measurer
    from mnas.export import export_architecture

    lat = spec["latency"]
    measurer = make_measurer(url=lat.get("url"), device=lat.get("device"), token=os.environ.get(lat.get("token_env", "MNAS_LATENCY_TOKEN")))
    try:
        fmt = measurer.model_format()
        with tempfile.TemporaryDirectory(prefix="mnas-trial-") as tmp:
            t0 = time.perf_counter()
            path = export_architecture(arch, Path(tmp) / f"model.{fmt}", fmt, lat.get("resolution", 224), lat.get("num_classes") or num_classes)
            export_s = time.perf_counter() - t0
            result = measurer.measure(path)
    finally:
        measurer.close()
    return result, {"export_s": export_s, "measure_s": result.get("measure_seconds", 0.0)}


def run_trial(spec: dict) -> dict:
    started = time.perf_counter()
    try:
        import torch

        from mnas.arch import Architecture
        from mnas.train import TrainConfig, train_model

        if spec.get("torch_threads"):
            torch.set_num_threads(int(spec["torch_threads"]))
        arch = Architecture.from_dict(spec["architecture"])
        train_src, eval_src, num_classes = load_trial_data(spec)
        latency, timings = ({}, {})
        if spec.get("stage", 1) == 1 and spec.get("latency"):  # benchmarks time training alone
            latency, timings = measure_latency(spec, arch, num_classes)
        proxy = {k: v for k, v in spec["proxy"].items() if k not in ("data", "val_fraction", "split_seed")}
        if spec.get("epochs"):
            proxy["epochs"] = spec["epochs"]
        cfg = TrainConfig(**proxy, seed=spec.get("seed", 0))
        out_dir = spec.get("checkpoint_dir")
        metrics = train_model(arch, train_src, eval_src, num_classes, cfg, out_dir=out_dir)
        metrics.pop("architecture", None)
        timings["train_s"] = metrics["train_seconds"] + metrics["eval_seconds"]
        timings["total_s"] = time.perf_counter() - started
        return {
            "status": "succeeded",
            "accuracy": metrics["top1"],
            "latency_ms": latency.get("latency_ms"),
            "memory_mb": latency.get("peak_memory_mb"),
            "metrics": {"train": metrics, "latency": latency, "timings": timings},
        }
    except Exception as exc:  # a trial's failure must never take the search down
        return {"status": "failed", "error_kind": classify_failure(exc), "error": _describe(exc), "seconds": time.perf_counter() - started}


def classify_failure(exc: Exception) -> str:
    from latency_service.client import LatencyServiceError
    from mnas.train import NonFiniteLoss

    if isinstance(exc, LatencyServiceError):
        return "latency"
    if isinstance(exc, NonFiniteLoss):
        return "nan_loss"
    if type(exc).__name__ == "OutOfMemoryError" or "CUDA out of memory" in str(exc):
        return "cuda_oom"  # only this trial's process had it: the others on the GPU keep going
    if isinstance(exc, MemoryError) or "DefaultCPUAllocator: not enough memory" in str(exc):
        return "oom"
    return "error"


def _describe(exc: Exception) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return f"{type(exc).__name__}: {exc}\n{tb}"


def exit_with_parent(parent: int) -> None:
    """End this trial if the search that started it dies (e.g. SIGKILL), so no orphan keeps a GPU.

    On Linux the kernel does it (PR_SET_PDEATHSIG); elsewhere a thread watches the parent.
    """
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(3)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    spec_path, result_path = sys.argv[1], sys.argv[2]
    parent = int(os.environ.get("MNAS_SEARCH_PID", os.getppid()))
    exit_with_parent(parent)
    write_result(result_path, run_trial(json.loads(Path(spec_path).read_text())))


def write_result(path: str | Path, result: dict) -> None:
    """Write a worker's result atomically: the parent sees the whole file or none."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
