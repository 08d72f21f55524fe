"""The measurement backends, one registration each: the profile's ``backend:`` names one, and
validation, the model format, the health check and the measuring path all read it here.

A local backend runs the model in a fresh worker process on this machine (``devices.worker``
holds its model class under the same name); a remote one measures on a device (Android over
adb: ``devices.android``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    name: str
    model_format: str  # the file it measures: onnx or tflite
    runtime_module: str | None  # the Python runtime a local backend needs; None: it runs on a device
    profiles_per_operator: bool = False  # devices.profiling can time each node of a model

    @property
    def remote(self) -> bool:
        return self.runtime_module is None


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    BACKENDS[backend.name] = backend


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


register_backend(Backend("onnxruntime", "onnx", "onnxruntime", profiles_per_operator=True))
register_backend(Backend("litert", "tflite", "ai_edge_litert"))
register_backend(Backend("android-adb", "tflite", None))
