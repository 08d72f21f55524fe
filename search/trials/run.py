"""One trial, the same function for every executor: measure, train on the proxy, evaluate.

Stage 1: compute the architecture's training-free scores (and, with ``proxy.prefilter``, skip
a candidate whose score is below the search's threshold), export the architecture in the
latency source's format, measure latency and memory *before* training (a model the service
rejects costs no GPU time), then train on the stage-1 split and evaluate top-1 on the held-out
10%. Stage 2: train on all training data for the stage-2 epochs and evaluate on the test split.

``run_trial`` takes a ``TrialSpec`` and never raises: it returns a ``TrialResult``, succeeded
or failed with an error kind. The local executor forks it from a warm server
(``search.trials.process``); ``python -m search.trials.run SPEC.json RESULT.json`` runs one by
hand; Ray runs it as a task.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from mnas.files import write_atomic
from search.latency.measure import measure_latency
from search.latency.quiet import pause_while_measuring
from search.trials.curves import CurveWriter
from search.trials.data import load_trial_data
from search.trials.spec import ErrorKind, TrialResult, TrialSpec
from search.trials.watchdog import exit_with_parent


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
        lat = trial_latency(spec, num_classes)
        latency, timings, costs, latency_ms, memory_mb = lat.record, dict(lat.timings), lat.costs, lat.latency_ms, lat.memory_mb
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


@dataclass(frozen=True)
class TrialLatency:
    """What a trial's latency source said: the figures the reward uses, the full record (the
    measurement, the prediction beside it), the time each step took, and the model's size."""

    latency_ms: float | None = None
    memory_mb: float | None = None
    record: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)


def trial_latency(spec: TrialSpec, num_classes: int) -> TrialLatency:
    """The trial's model on the latency source (none without one: stage 2, proxy studies).

    Without a predictor: measured. With one: predicted (scaled by what this search's real
    measurements showed so far), and also measured when the spec says so; the record keeps
    both side by side (``predicted_ms`` and the measurement's ``latency_ms``), and a
    measured figure is the one the reward uses.
    """
    lat = spec.latency
    if lat is None:
        return TrialLatency()
    record, timings, measured = {}, {}, None
    if spec.measure:
        measured, timings = measure_latency(lat, spec.architecture, num_classes, spec.measure_alone_in)
        record.update(measured)
    if lat.predictor:
        from search.latency.predictor import Predictor

        t0 = time.perf_counter()
        predicted = Predictor.load(lat.predictor).predict(spec.architecture, lat.resolution)
        timings["predict_s"] = time.perf_counter() - t0
        record.update(predicted_ms=predicted.latency_ms, predicted_memory_mb=predicted.peak_memory_mb,
                      latency_scale=spec.latency_scale, measured=measured is not None)
    costs = measured_costs(spec, num_classes)
    if measured is None:  # predicted only (a predictor, and this trial not picked for measuring)
        return TrialLatency(predicted.latency_ms * spec.latency_scale, predicted.peak_memory_mb, record, timings, costs)
    return TrialLatency(measured["latency_ms"], measured["peak_memory_mb"], record, timings, costs)


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


def classify_failure(exc: Exception) -> ErrorKind:
    from latency_service.client import LatencyServiceError
    from mnas.train import NonFiniteLoss
    from search.latency.predictor import PredictorError

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


def main(argv: list[str] | None = None) -> None:
    """``SPEC.json RESULT.json``; the trial ends with the search named by MNAS_SEARCH_PID (or its parent)."""
    spec_path, result_path = argv or sys.argv[1:3]
    exit_with_parent(int(os.environ.get("MNAS_SEARCH_PID", os.getppid())))
    write_atomic(result_path, run_trial(TrialSpec.from_json(Path(spec_path).read_text())).to_json())


if __name__ == "__main__":
    main()
