"""Device profiles: how to measure on one target (YAML, validated with pydantic)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.errors import ProfileError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class AdbSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str | None = Field(default=None, description="adb -s SERIAL; None = the only device attached")
    adb: str = "adb"
    benchmark_binary: str = "/data/local/tmp/benchmark_model"
    remote_dir: str = "/data/local/tmp/mnas"
    use_xnnpack: bool = True


class DeviceProfile(BaseModel):
    """What a measurement on this device means; its hash keys the result cache."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    backend: Literal["onnxruntime", "litert", "android-adb"]
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

    @model_validator(mode="after")
    def _adb_needs_settings(self) -> "DeviceProfile":
        if self.backend == "android-adb" and self.adb is None:
            self.adb = AdbSettings()
        return self

    def settings_hash(self) -> str:
        """Hash of everything that changes a measurement (not the description or the precisions)."""
        return _digest(self.model_dump(exclude={"description", "precisions", "pool"}))

    def kind_hash(self) -> str:
        """Hash of what makes two devices measure alike: the settings without the name, the
        CPUs pinned to and the adb serial (which tell identical devices apart)."""
        data = self.model_dump(exclude={"name", "description", "precisions", "pool", "cpus"})
        if data.get("adb"):
            data["adb"].pop("serial", None)
        return _digest(data)

    @property
    def model_format(self) -> str:
        return "onnx" if self.backend == "onnxruntime" else "tflite"


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
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise ProfileError(f"{path}: {where}: {first['msg']}") from None
