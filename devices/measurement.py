"""What a measurement answers, typed once: the device side produces it, the service returns it
(its OpenAPI page documents it) and the client checks it, so every latency a search records has
the same fields and units wherever it was measured."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MeasuredDevice(BaseModel):
    """The device (profile) that measured: its name and the hash of its settings."""

    model_config = ConfigDict(extra="allow")
    name: str
    hash: str
    backend: str | None = None
    threads: int | None = None


class Measurement(BaseModel):
    """One model measured on one device: the median latency over timed runs (the figure a
    search uses), its spread, peak memory, and the conditions it was taken in. Sources add
    their own details (per-process medians, the reference's figures, which service answered)."""

    model_config = ConfigDict(extra="allow")
    latency_ms: float = Field(gt=0, description="median latency in milliseconds (calibrated where the profile has a reference)")
    cv: float = Field(ge=0, description="robust coefficient of variation of the timed runs (1.4826 x MAD / median)")
    p10_ms: float | None = None
    p90_ms: float | None = None
    peak_memory_mb: float | None = Field(default=None, description="the measuring process's peak resident memory while it ran the model")
    model_size_mb: float | None = None
    model_format: str | None = Field(default=None, description="onnx or tflite")
    device: MeasuredDevice
    stable: bool | None = Field(default=None, description="cv within the profile's max_cv after its re-measurements")
    cached: bool = Field(default=False, description="answered from the result cache (same model file, same device settings)")
    measured_at: str | None = None


def checked(result: dict) -> dict:
    """A measurement as a plain dict, after checking it has the fields and units above (a
    ValidationError names the field that is missing or out of range)."""
    return Measurement.model_validate(result).model_dump(mode="json")
