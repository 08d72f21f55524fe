"""Search configuration (YAML), validated with pydantic; errors name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnas.errors import MnasError
from mnas.reward import Reward
from mnas.train import TrainConfig


class ConfigError(MnasError):
    """A search config is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    base: Literal["mobilenet-v2"] = "mobilenet-v2"
    act: Literal["relu", "relu6"] = "relu"


class ProxyConfig(_Strict):
    """The proxy task, fixed for the whole search (same recipe for every trial)."""

    data: str = Field(description="digits | npz:DIR | imagefolder:DIR")
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    split_seed: int = 0
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=128, ge=1)
    resolution: int = Field(default=32, ge=8, le=1024)
    lr: float | None = Field(default=None, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    width_mult: float = Field(default=1.0, gt=0, le=8)
    stride_cuts: int | None = Field(default=None, ge=0, le=6)
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(default="auto", description="auto: measured on the GPU at search start (search.tuning); fp32 on the CPU")
    channels_last: bool | None = Field(default=None, description="None: measured on the GPU at search start; on (2.4-2.9x faster) on the CPU")
    data_on_device: bool | None = Field(default=None, description="hold the split on the GPU; default when it fits")
    compile: Literal["off", "default", "reduce-overhead"] = "off"

    @field_validator("compile", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        return "off" if value is False else value  # YAML reads a bare `off` as false

    def tunable(self) -> bool:
        return self.precision == "auto" or self.channels_last is None

    def train_config(self, epochs: int | None = None) -> TrainConfig:
        fields = self.model_dump(exclude={"data", "val_fraction", "split_seed"})
        if epochs is not None:
            fields["epochs"] = epochs
        return TrainConfig(**fields)


class LatencyConfig(_Strict):
    """Where latency and memory come from: a service URL or a device profile measured in-process."""

    url: str | None = None
    device: str | None = None
    token_env: str = "MNAS_LATENCY_TOKEN"
    resolution: int = Field(default=224, ge=8, le=1024, description="input size the model is measured at")
    num_classes: int | None = Field(default=None, ge=1, description="classifier size when measured; default the dataset's")

    @model_validator(mode="after")
    def _one_source(self) -> "LatencyConfig":
        if bool(self.url) == bool(self.device):
            raise ValueError("set exactly one of url (a latency service) or device (a profile measured in-process)")
        return self


class ControllerConfig(_Strict):
    type: Literal["ppo", "reinforce", "random", "evolution"] = "ppo"
    batch: int = Field(default=10, ge=1, description="finished trials per policy update")
    hidden: int = Field(default=100, ge=1)
    lr: float = Field(default=3.5e-4, gt=0)
    epochs: int = Field(default=4, ge=1, description="PPO epochs over each batch")
    clip: float = Field(default=0.2, gt=0)
    entropy_weight: float = Field(default=1e-5, ge=0)
    baseline_decay: float = Field(default=0.95, ge=0, lt=1)
    population: int = Field(default=20, ge=1)
    tournament: int = Field(default=5, ge=1)

    def options(self) -> dict:
        if self.type in ("ppo", "reinforce"):
            return self.model_dump(include={"batch", "hidden", "lr", "epochs", "clip", "entropy_weight", "baseline_decay"})
        if self.type == "evolution":
            return {"population": self.population, "tournament": self.tournament}
        return {}


class StopConfig(_Strict):
    failure_window: int = Field(default=20, ge=1, description="recent finished trials the failure rate is taken over")
    max_failure_rate: float = Field(default=0.2, gt=0, le=1)
    patience: int | None = Field(default=None, ge=1, description="stop after this many trials without a better reward")


class ExecutorConfig(_Strict):
    type: Literal["local", "ray"] = "local"
    trials_per_gpu: int | Literal["auto"] = Field(default=1, description="trials packed on one GPU; auto measures it at search start")
    ray_address: str | None = Field(default=None, description="an existing Ray cluster; None starts a local Ray")

    @model_validator(mode="after")
    def _packing_range(self) -> "ExecutorConfig":
        if self.trials_per_gpu != "auto" and not 1 <= self.trials_per_gpu <= 16:
            raise ValueError("trials_per_gpu must be 1-16 or auto")
        return self


class SearchConfig(_Strict):
    name: str = "search"
    seed: int = 0
    space: SpaceConfig = SpaceConfig()
    proxy: ProxyConfig
    latency: LatencyConfig
    reward: Reward
    controller: ControllerConfig = ControllerConfig()
    max_trials: int = Field(ge=1)
    max_parallel_trials: int = Field(default=1, ge=1)
    max_failed_trials: int | None = Field(default=None, ge=0, description="default: a third of max_trials")
    trial_timeout_s: float = Field(default=3600, gt=0)
    stop: StopConfig = StopConfig()
    executor: ExecutorConfig = ExecutorConfig()

    def failure_budget(self) -> int:
        return self.max_failed_trials if self.max_failed_trials is not None else max(1, self.max_trials // 3)


def parse_config(data: dict, source: str = "config") -> SearchConfig:
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "config"
            parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source}: " + "; ".join(parts)) from None


def load_config(path: str | Path) -> SearchConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search config is a YAML mapping")
    return parse_config(data, str(path))
