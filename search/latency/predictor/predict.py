"""Predicting from a predictor file: a sum of layer-table entries, corrected; no torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnas.arch import Architecture
from mnas.layers import arch_layers
from search.latency.predictor.features import (
    COST_TERMS,
    DEFAULT_LATENCY_FEATURES,
    DEFAULT_MEMORY_FEATURES,
    FORMAT,
    LATENCY_FEATURES,
    LAYER_KINDS,
    MEMORY_FEATURES,
    VERSION,
    PredictorError,
)
from search.latency.predictor.fitting import _apply, cost_estimate

_LOADED: dict = {}  # (path, mtime) -> Predictor: the last one loaded


# ----- predicting -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Prediction:
    latency_ms: float
    peak_memory_mb: float
    blocks: list[float]  # summed layer figures per stage: stem, blocks 1..n, head (before the whole-model correction)
    off_table: int  # layers predicted by the fallback model

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "peak_memory_mb": self.peak_memory_mb, "blocks_ms": self.blocks, "off_table_layers": self.off_table}


class Predictor:
    def __init__(self, document: dict, source: str = "predictor"):
        self.doc, self.source = document, source
        self.device = document["device"]
        self.num_classes = document["num_classes"]

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """The predictor in ``path``; kept per file and modification time, since an in-process
        evaluator (the supernet's) predicts for thousands of candidates."""
        path = Path(path)
        key = (str(path.resolve()), path.stat().st_mtime_ns if path.is_file() else None)
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = cls._read(path)
        return _LOADED[key]

    @classmethod
    def _read(cls, path: Path) -> Predictor:
        if not path.is_file():
            raise PredictorError(f"predictor file not found: {path}")
        try:
            doc = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise PredictorError(f"{path} is not a predictor file (not valid JSON: {exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PredictorError(f"{path} is not a predictor file (no '{FORMAT}' format marker)")
        if doc.get("version") != VERSION:
            raise PredictorError(f"{path} is predictor format version {doc.get('version')}; this mnas reads version {VERSION}: rebuild it")
        missing = [k for k in ("device", "num_classes", "resolutions") if k not in doc]
        if missing or not doc["resolutions"]:
            raise PredictorError(f"{path} is damaged: missing {', '.join(missing) or 'resolutions'}")
        terms = [*COST_TERMS, *LAYER_KINDS]
        for r, part in doc["resolutions"].items():
            fits = [(part.get("latency_fit"), LATENCY_FEATURES, DEFAULT_LATENCY_FEATURES), (part.get("memory_fit"), MEMORY_FEATURES, DEFAULT_MEMORY_FEATURES)]
            if not all(k in part for k in ("layers", "fallback")) or not isinstance(part["fallback"], dict) or part["fallback"].get("terms") != terms or \
                    not all(isinstance(fit, dict) and fit.get("features", default) in sets for fit, sets, default in fits):
                raise PredictorError(f"{path} is damaged or made by another mnas version (resolution {r}'s tables do not fit): rebuild it")
        return cls(doc, str(path))

    @property
    def resolutions(self) -> list[int]:
        return sorted(int(r) for r in self.doc["resolutions"])

    def check_device(self, name: str, settings_hash: str) -> None:
        """Refuse to stand in for another device (or the same one with other settings)."""
        if settings_hash != self.device["hash"]:
            raise PredictorError(f"{self.source} was built for device {self.device['name']} (settings {self.device['hash']}), "
                                 f"not for {name} (settings {settings_hash}); build one for this device with mnas predictor build")

    def tables(self, resolution: int | None) -> tuple[int, dict]:
        """(resolution, its tables); the first resolution by default, a clear error for one not covered."""
        resolution = resolution or self.resolutions[0]
        part = self.doc["resolutions"].get(str(resolution))
        if part is None:
            raise PredictorError(f"{self.source} covers resolutions {self.resolutions}, not {resolution}")
        return resolution, part

    def predict(self, arch: Architecture, resolution: int | None = None) -> Prediction:
        resolution, part = self.tables(resolution)
        table = part["layers"]
        layers = arch_layers(arch, resolution, self.num_classes)
        stages: dict[int, float] = {}
        figures = []
        off = 0
        for stage, layer in layers:
            entry = table.get(layer.key)
            if entry is None:
                off += 1
                ms = float(cost_estimate(part["fallback"]["rates"], [layer])[0])
            else:
                ms = entry[0]
            stages[stage] = stages.get(stage, 0.0) + ms
            figures.append(ms)
        plain = [layer for _, layer in layers]
        lat_x = LATENCY_FEATURES[part["latency_fit"].get("features", DEFAULT_LATENCY_FEATURES)](figures, plain)
        mem_x = MEMORY_FEATURES[part["memory_fit"].get("features", DEFAULT_MEMORY_FEATURES)](figures, plain)
        latency = float(_apply(part["latency_fit"], np.array(lat_x)))
        memory = float(_apply(part["memory_fit"], np.array(mem_x)))
        blocks = [stages.get(i, 0.0) for i in range(-1, len(arch.blocks) + 1)]
        return Prediction(max(latency, 1e-6), max(memory, 0.0), blocks, off)

    def predict_many(self, archs: list[Architecture], resolution: int | None = None) -> np.ndarray:
        """Latency (ms) of many architectures."""
        return np.array([self.predict(a, resolution).latency_ms for a in archs])
