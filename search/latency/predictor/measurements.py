"""Measurements of layers and whole models for a build: measured through the source once, kept in SQLite."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from mnas.arch import Architecture
from mnas.layers import LayerConfig
from search.latency.predictor.features import PredictorError


# ----- measurements, cached -------------------------------------------------------------------
class MeasurementCache:
    """(device hash, item key) -> the source's answer, in SQLite; what makes a build resumable."""

    def __init__(self, path: str | Path):
        self.db = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        self.db.execute("CREATE TABLE IF NOT EXISTS measurements (device TEXT, key TEXT, result TEXT NOT NULL, PRIMARY KEY (device, key))")

    def get(self, device: str, key: str) -> dict | None:
        row = self.db.execute("SELECT result FROM measurements WHERE device = ? AND key = ?", (device, key)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, device: str, key: str, result: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO measurements VALUES (?, ?, ?)", (device, key, json.dumps(result)))

    def close(self) -> None:
        self.db.close()


PROFILED_RUNS, PROFILE_WARMUP = 20, 10  # per profiled whole model: per-node medians over 20 runs


class Measurer:
    """Exports a layer or a model and measures it on the source, through the cache."""

    def __init__(self, source, cache: MeasurementCache):
        self.source, self.cache = source, cache
        device = source.devices()[0]
        self.device = {"name": device["name"], "hash": device["hash"]}
        self.format = source.model_format()
        self.runtime: dict = {}
        self.fresh = 0

    def _cached(self, key: str, suffix: str, export, compute) -> dict:
        """The cached answer for ``key``; else the item exported to a temporary ``m.SUFFIX`` file,
        ``compute(path)``, cached."""
        hit = self.cache.get(self.device["hash"], key)
        if hit is None:
            with tempfile.TemporaryDirectory(prefix="mnas-predictor-") as tmp:
                hit = compute(export(Path(tmp) / f"m.{suffix}"))
            self.cache.put(self.device["hash"], key, hit)
            self.fresh += 1
        return hit

    def _measure(self, key: str, export) -> dict:
        def measured(path) -> dict:
            result = self.source.measure(path)
            return {"latency_ms": result["latency_ms"], "memory_mb": result["peak_memory_mb"], "runtime": result.get("runtime", {})}

        hit = self._cached(key, self.format, export, measured)
        self.runtime = self.runtime or hit["runtime"]
        return hit

    def layer(self, layer: LayerConfig) -> dict:
        from mnas.export import export_model
        from mnas.model import build_layer

        shape = (1, layer.cin, layer.size, layer.size)
        return self._measure("layer:" + layer.key, lambda p: export_model(build_layer(layer), p, self.format, input_shape=shape))

    def model(self, arch: Architecture, resolution: int, num_classes: int) -> dict:
        from mnas.export import export_architecture

        key = f"model:{resolution}:{num_classes}:{arch.canonical()}"
        return self._measure(key, lambda p: export_architecture(arch, p, self.format, resolution, num_classes))

    @property
    def profiler(self):
        """The device profile whose runtime profiles per operator here (onnxruntime, in-process), else None."""
        profile = getattr(self.source, "profile", None)
        return profile if profile is not None and profile.kind.profiles_per_operator else None

    def in_model(self, arch: Architecture, resolution: int, num_classes: int) -> list[float]:
        """Each layer's time inside the whole model (ms, ``arch_layers`` order), from the runtime's
        profiler in the measurement's conditions (``devices.profiling``)."""
        from devices.errors import MeasurementError
        from devices.profiling import profile_model
        from mnas.export import export_architecture
        from search.latency.profiling import layer_times

        def profiled(path) -> dict:
            try:
                result = profile_model(self.profiler, path, runs=PROFILED_RUNS, warmup=PROFILE_WARMUP)
            except MeasurementError as exc:
                raise PredictorError(f"profiling a whole model on {self.device['name']} failed: {exc}") from None
            return {"layers_ms": layer_times(arch, result["nodes"], resolution, num_classes)}

        key = f"profile:{resolution}:{num_classes}:{arch.canonical()}"
        return self._cached(key, "onnx", lambda p: export_architecture(arch, p, "onnx", resolution, num_classes), profiled)["layers_ms"]
