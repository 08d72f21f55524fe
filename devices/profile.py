"""Device profiles: how to measure on one target (YAML, validated with pydantic)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devices.backends import Backend, backend
from devices.errors import ProfileError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
REFERENCE_DIR = Path(__file__).resolve().parent / "references"


class AdbSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str | None = Field(default=None, description="adb -s SERIAL; None = the only device attached")
    adb: str = "adb"
    benchmark_binary: str = "/data/local/tmp/benchmark_model"
    remote_dir: str = "/data/local/tmp/mnas"
    use_xnnpack: bool = True


def shipped_reference(model: str) -> Path | None:
    """devices/references/MODEL.onnx when MODEL names a shipped reference, else None."""
    named = REFERENCE_DIR / f"{model}.onnx"
    return named if named.is_file() else None


def reference_file(model: str) -> Path:
    """A reference model by shipped name or as a path: the one rule profiles and calibrate use."""
    return shipped_reference(model) or Path(model)


class ReferenceSettings(BaseModel):
    """A fixed model timed alternately with every candidate, in the same process.

    A shared or virtual machine's speed drifts by tens of percent over minutes; the ratio of
    two models timed run by run does not. With a reference, latency_ms = the median of the
    candidate/reference ratios x ``latency_ms`` below (the reference's own latency on this
    machine, from ``mnas-latency calibrate``), so figures taken minutes or hours apart agree.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="mnasnet-a1-64", description="an ONNX file, or the name of one in devices/references/")
    latency_ms: float = Field(gt=0, description="the reference's latency on this machine, idle (mnas-latency calibrate)")

    @property
    def path(self) -> Path:
        return reference_file(self.model)


class DeviceProfile(BaseModel):
    """What a measurement on this device means; its hash keys the result cache."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    backend: str = Field(description="a registered backend (devices.backends): onnxruntime, litert, android-adb")
    threads: int = Field(default=1, ge=1, le=256)
    cpus: list[int] | None = Field(default=None, description="CPU ids to pin the measuring process to")
    warmup_runs: int = Field(default=20, ge=0, le=10_000)
    timed_runs: int = Field(default=50, ge=3, le=100_000)
    repeats: int = Field(default=3, ge=1, le=50, description="fresh processes per measurement; latency = median of their medians")
    max_cv: float = Field(default=0.05, gt=0, description="measure again when the robust CV exceeds this")
    max_remeasure: int = Field(default=2, ge=0, le=10)
    timeout_s: float = Field(default=120, gt=0, description="per measuring process")
    adb: AdbSettings | None = None
    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="devices of the same kind served as one: a request for the pool goes to a free member")
    precisions: list[Literal["float32", "int8", "dynamic"]] = Field(
        default=["float32", "int8", "dynamic"], min_length=1,
        description="model precisions the device runs; a search whose latency.quantize is not listed is refused")
    reference: ReferenceSettings | None = Field(
        default=None, description="time a fixed model alternately with each candidate and report their ratio (drift-free)")

    @field_validator("backend")
    @classmethod
    def _registered(cls, value: str) -> str:
        return backend(value).name

    @property
    def kind(self) -> Backend:
        """The backend's registration: model format, runtime, where it measures."""
        return backend(self.backend)

    @model_validator(mode="after")
    def _adb_needs_settings(self) -> DeviceProfile:
        if self.backend == "android-adb" and self.adb is None:
            self.adb = AdbSettings()
        return self

    @model_validator(mode="after")
    def _reference_runs_here(self) -> DeviceProfile:
        if self.reference is None:
            return self
        if self.kind.remote:
            raise ValueError(f"a reference model is timed in the measuring process, which {self.backend} (on a device) does not have")
        if not self.reference.path.is_file():
            raise ValueError(f"reference model {self.reference.model!r} is neither a file nor one of {sorted(p.stem for p in REFERENCE_DIR.glob('*.onnx'))}")
        return self

    def settings_hash(self) -> str:
        """Hash of everything that changes a measurement (not the description or the precisions)."""
        return _digest(self._measuring_settings(exclude={"description", "precisions", "pool"}))

    def _measuring_settings(self, exclude: set[str]) -> dict:
        """The settings as hashed: a reference by its file's content, not its path (and
        absent when there is none, so profiles without one keep their hashes)."""
        data = self.model_dump(exclude=exclude | {"reference"})
        if self.reference is not None:
            content = hashlib.sha256(self.reference.path.read_bytes()).hexdigest()[:16]
            data["reference"] = {"model_sha256": content, "latency_ms": self.reference.latency_ms}
        return data

    def kind_hash(self) -> str:
        """Hash of what makes two devices measure alike: the settings without the name, the
        CPUs pinned to and the adb serial (which tell identical devices apart)."""
        data = self._measuring_settings(exclude={"name", "description", "precisions", "pool", "cpus"})
        if data.get("adb"):
            data["adb"].pop("serial", None)
        return _digest(data)

    @property
    def model_format(self) -> str:
        return self.kind.model_format


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_profile(path: str | Path) -> DeviceProfile:
    """Load a profile from a YAML file, or by name from devices/profiles/."""
    path = Path(path)
    if not path.is_file() and (PROFILE_DIR / f"{path.name}.yaml").is_file():
        path = PROFILE_DIR / f"{path.name}.yaml"
    if not path.is_file():
        raise ProfileError(f"device profile not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping with at least 'name' and 'backend'")
    reference = data.get("reference")
    if isinstance(reference, dict) and isinstance(reference.get("model"), str):
        beside = path.parent / reference["model"]  # a reference file named relative to its profile
        if shipped_reference(reference["model"]) is None and beside.is_file():
            data["reference"] = {**reference, "model": str(beside.resolve())}
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise ProfileError(f"{path}: {where}: {first['msg']}") from None
