"""One trial, the same function for every executor: measure, train on the proxy, evaluate.

Stage 1: compute the architecture's training-free scores (and, with ``proxy.prefilter``, skip
a candidate whose score is below the search's threshold), export the architecture in the
latency source's format, measure latency and memory *before* training (a model the service rejects costs no GPU time), then train on
the stage-1 split and evaluate top-1 on the held-out 10%. Stage 2: train on all training
data for the stage-2 epochs and evaluate on the test split.

``run_trial`` takes a ``TrialSpec`` and never raises: it returns a ``TrialResult``, succeeded
or failed with an error kind. The local executor forks it from a warm server
(``search.trial_process``); ``python -m search.trial SPEC.json RESULT.json`` runs one by
hand; Ray runs it as a task.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from search.config import LatencyConfig
from search.quiet import measuring_alone, pause_while_measuring
from search.spec import ErrorKind, TrialData, TrialResult, TrialSpec

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


def load_trial_data(data: TrialData, stage: int):
    """(train source, eval source, num_classes) for the trial's stage; stage 1 trains on the
    spec's ``train_fraction`` of its split."""
    from mnas.data import fraction_of

    train, held_out, num_classes = _trial_parts(data, stage)
    if stage == 1 and data.train_fraction < 1:
        train = fraction_of(train, data.train_fraction, data.split_seed)
    return train, held_out, num_classes


def _trial_parts(data: TrialData, stage: int):
    from mnas.data import ArraySource, load_dataset

    if data.cache and Path(data.cache, "meta.json").is_file():
        d = Path(data.cache)
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r")  # noqa: E731
        num_classes = json.loads((d / "meta.json").read_text())["num_classes"]
        val = ArraySource(load("x_val"), load("y_val"))
        train = ArraySource(load("x_train"), load("y_train"))
        if stage == 2:
            full = ArraySource(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))
            return full, ArraySource(load("x_test"), load("y_test")), num_classes
        return train, val, num_classes
    dataset = load_dataset(data.spec)
    if stage == 2:
        train, test = dataset.stage2()
        return train, test, dataset.num_classes
    train, val = dataset.stage1(data.split_seed, data.val_fraction)
    return train, val, dataset.num_classes


def measure_latency(latency: LatencyConfig, arch, num_classes: int, alone_in: str | None = None) -> tuple[dict, dict]:
    """Export in the source's format and measure: (the source's answer, timings). With
    ``alone_in``, the measurement itself (not the export) pauses the other trials' training."""
    from mnas.export import export_architecture

    measurer = latency.measurer()
    try:
        fmt = measurer.model_format()
        with tempfile.TemporaryDirectory(prefix="mnas-trial-") as tmp:
            t0 = time.perf_counter()
            path = Path(tmp) / f"model.{fmt}"
            if latency.quantize:  # the deployed model; random calibration sets scales, not the graph (mnas.quantize)
                from mnas.model import build_model
                from mnas.quantize import quantize_model, random_inputs

                model = build_model(arch, latency.num_classes or num_classes)
                quantize_model(model, path, fmt, latency.resolution, latency.quantize, random_inputs(latency.resolution))
            else:
                export_architecture(arch, path, fmt, latency.resolution, latency.num_classes or num_classes)
            export_s = time.perf_counter() - t0
            with measuring_alone(alone_in) if alone_in else contextlib.nullcontext():
                result = {**measurer.measure(path), "quantize": latency.quantize}
    finally:
        measurer.close()
    return result, {"export_s": export_s, "measure_s": result.get("measure_seconds", 0.0)}


def trial_latency(spec: TrialSpec, num_classes: int) -> tuple[dict, dict, float, float]:
    """(record, timings, latency_ms, memory_mb) of the trial's model on the latency source.

    Without a predictor: measured. With one: predicted (scaled by what this search's real
    measurements showed so far), and also measured when the spec says so; the record keeps
    both side by side (``predicted_ms`` and the measurement's ``latency_ms``), and a
    measured figure is the one the reward uses.
    """
    lat = spec.latency
    record, timings, measured = {}, {}, None
    if spec.measure:
        measured, timings = measure_latency(lat, spec.architecture, num_classes, spec.measure_alone_in)
        record.update(measured)
    if lat.predictor:
        from search.predictor import Predictor

        t0 = time.perf_counter()
        predicted = Predictor.load(lat.predictor).predict(spec.architecture, lat.resolution)
        timings["predict_s"] = time.perf_counter() - t0
        record.update(predicted_ms=predicted.latency_ms, predicted_memory_mb=predicted.peak_memory_mb,
                      latency_scale=spec.latency_scale, measured=measured is not None)
        if measured is None:
            return record, timings, predicted.latency_ms * spec.latency_scale, predicted.peak_memory_mb
    return record, timings, measured["latency_ms"], measured["peak_memory_mb"]


def run_trial(spec: TrialSpec) -> TrialResult:
    """Measure (stage 1), train, evaluate. Never raises: a failure is a failed result."""
    started = time.perf_counter()
    try:
        import torch

        from mnas.train import train_model

        if spec.torch_threads:
            torch.set_num_threads(spec.torch_threads)
        train_src, eval_src, num_classes = load_trial_data(spec.data, spec.stage)
        zero_cost = trial_zero_cost(spec, train_src, num_classes) if spec.stage == 1 else {}
        if spec.prefilter_below is not None and zero_cost.get(spec.prefilter_score, float("inf")) < spec.prefilter_below:
            return TrialResult(status="prefiltered", metrics={"zero_cost": zero_cost, "prefilter": {
                "score": spec.prefilter_score, "below": spec.prefilter_below}}, seconds=time.perf_counter() - started)
        latency, timings, costs = {}, {}, {}
        latency_ms = memory_mb = None
        if spec.latency is not None:
            latency, timings, latency_ms, memory_mb = trial_latency(spec, num_classes)
            costs = measured_costs(spec, num_classes)
        pause = pause_while_measuring(spec.measure_alone_in) if spec.measure_alone_in else None
        on_epoch = None
        if spec.curve_path:
            curve = CurveWriter(spec.curve_path, latency_ms=latency_ms, memory_mb=memory_mb)
            on_epoch = curve.epoch
        metrics = train_model(spec.architecture, train_src, eval_src, num_classes, spec.train, out_dir=spec.checkpoint_dir,
                              init_weights=spec.init_weights,
                              before_step=pause, on_epoch=on_epoch)
        metrics.pop("architecture", None)
        timings["train_s"] = metrics["train_seconds"] + metrics["eval_seconds"]
        timings["total_s"] = time.perf_counter() - started
        return TrialResult(
            status="succeeded", accuracy=metrics["top1"], latency_ms=latency_ms, memory_mb=memory_mb,
            metrics={"train": metrics, "latency": latency, "timings": timings, "costs": costs, "zero_cost": zero_cost},
            seconds=timings["total_s"],
        )
    except Exception as exc:  # a trial's failure must never take the search down
        return TrialResult.failure(classify_failure(exc), _describe(exc), time.perf_counter() - started)


def measured_costs(spec: TrialSpec, num_classes: int) -> dict:
    """Params and MACs of the model as measured (width 1.0, the latency resolution), so that
    reports need no torch to show its size."""
    from mnas.costs import arch_costs

    return {**arch_costs(spec.architecture, spec.latency.resolution, spec.latency.num_classes or num_classes),
            "resolution": spec.latency.resolution}


def trial_zero_cost(spec: TrialSpec, train_src, num_classes: int) -> dict:
    """The training-free scores of the trial's architecture (mnas.zero_cost) as it will train;
    a score that cannot be computed is recorded as its error, never fails the trial."""
    from mnas.train import resolve_device
    from mnas.zero_cost import zero_cost_scores

    try:
        return zero_cost_scores(spec.architecture, train_src, num_classes, spec.train, resolve_device(spec.train.device))
    except Exception as exc:  # noqa: BLE001 - a diagnostic, not the trial's result
        return {"error": f"{type(exc).__name__}: {exc}"}


class CurveWriter:
    """A trial's learning curve as JSON lines, flushed as it trains: first its latency and memory,
    then one line per epoch; the search reads it to stop hopeless trials (search.early_stopping)."""

    def __init__(self, path: str | Path, latency_ms: float | None, memory_mb: float | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"latency_ms": latency_ms, "memory_mb": memory_mb}) + "\n")

    def epoch(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_curve(path: str | Path) -> tuple[dict, list[dict]]:
    """(header, epochs so far) of a curve file; a line still being written is left for later."""
    path = Path(path)
    if not path.is_file():
        return {}, []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    return (records[0], records[1:]) if records else ({}, [])


def classify_failure(exc: Exception) -> ErrorKind:
    from latency_service.client import LatencyServiceError
    from mnas.train import NonFiniteLoss
    from search.predictor import PredictorError

    if isinstance(exc, (LatencyServiceError, PredictorError)):
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
    """End this trial when the search that started it dies (e.g. SIGKILL), so no orphan keeps a GPU.

    A thread waits on a pidfd of the search (Linux; elsewhere it polls the pid each second).
    The search is not always this process's parent: a trial forked from the warm server
    (``search.trial_process``) has the server as its parent, and the server lives as long as
    its trials. Where the search is the parent, the kernel's PR_SET_PDEATHSIG also covers the
    time before the thread starts.
    """
    import select
    import signal
    import threading

    if parent == os.getppid():
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:  # the search died before this trial got here
        os._exit(3)
    except (AttributeError, OSError):
        pidfd = None

    def watch():
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the search has ended
            os._exit(3)
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """``SPEC.json RESULT.json``; the trial ends with the search named by MNAS_SEARCH_PID (or its parent)."""
    spec_path, result_path = argv or sys.argv[1:3]
    exit_with_parent(int(os.environ.get("MNAS_SEARCH_PID", os.getppid())))
    write_atomic(result_path, run_trial(TrialSpec.from_json(Path(spec_path).read_text())).to_json())


def write_atomic(path: str | Path, text: str) -> None:
    """Write a worker's result atomically: the parent sees the whole file or none."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
