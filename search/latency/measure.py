"""A trial's latency and memory: export in the source's format and measure, or predict, or both."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from search.config import LatencyConfig
from search.latency.quiet import measuring_alone


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
