"""Search configuration (YAML), validated with pydantic; errors name the field."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

import search.controllers  # noqa: F401  (the shipped controllers register themselves)
from mnas.errors import MnasError
from mnas.recipe import Recipe, TrainConfig
from mnas.reward import Reward
from mnas.yamlfiles import read_yaml_mapping
from search.controllers.registry import ControllerOptions, parse_controller_options
from search.plugins import EVALUATORS, EXECUTORS, check_name


class ConfigError(MnasError):
    """A search config is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpaceConfig(_Strict):
    """The search space: a shipped name (mnasnet, mobilenetv3, proxylessnas, tiny) or a space
    YAML file; ``space: NAME`` is short for ``space: {name: NAME}``. When a search starts, the
    space's definition is recorded with it, so resuming never reads the file again and a
    changed file cannot change a running search."""

    name: str = "mnasnet"
    act: Literal["relu", "relu6", "hswish", "swish"] | None = Field(default=None, description="overrides the space's activation")
    base: Literal["mobilenet-v2"] | None = Field(default=None, description="configs before spaces as data: the mnasnet space's base")
    definition: dict | None = Field(default=None, description="recorded when a search starts; leave it out")

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, data):
        return {"name": data} if isinstance(data, str) else data

    def build(self):
        """The SearchSpace (a SpaceError names the problem in a bad space file)."""
        from mnas.space import load_space

        return load_space(self.definition or self.name, act=self.act)

    def recorded(self) -> SpaceConfig:
        return self.model_copy(update={"definition": self.build().to_file(), "act": None})


class PrefilterConfig(_Strict):
    """Skip training a candidate whose training-free score (mnas.zero_cost) is below the
    ``quantile`` of the scores of the trials trained so far, once ``min_trials`` have one. The
    skipped trial is recorded as ``prefiltered`` (its scores, no accuracy, no latency), counts
    toward max_trials, and is not told to the controller (as a failure is not). Off unless
    set: turn it on only where ``mnas proxy search`` or ``mnas report`` measured a high tau
    between that score and accuracy."""

    score: Literal["params", "macs", "synflow", "zico"] = "zico"
    quantile: float = Field(default=0.1, gt=0, lt=1)
    min_trials: int = Field(default=20, ge=2)


class ProxyConfig(Recipe):
    """The proxy task, fixed for the whole search: the data, its stage-1 split, and the
    training recipe (every field of ``mnas.recipe.Recipe``) that every trial uses."""

    data: str = Field(description="digits | npz:DIR | imagefolder:DIR")
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    split_seed: int = 0
    data_fraction: float = Field(default=1.0, gt=0, le=1, description="share of the stage-1 training split each trial "
                                 "trains on (per class, seeded); validation stays whole")
    prefilter: PrefilterConfig | None = Field(default=None, description="skip candidates whose zero-cost score is far below the rest")

    def tunable(self) -> bool:
        """Whether a setting is left to measurement on the GPU (search.trials.tuning)."""
        return self.precision == "auto" or self.channels_last is None

    def train_config(self, seed: int = 0, **overrides) -> TrainConfig:
        """The TrainConfig one trial runs: this recipe, the search's seed, and overrides
        (e.g. stage 2's epochs, or the precision measured at search start)."""
        return TrainConfig(**{**self.recipe(), **overrides}, seed=seed)


class LatencyConfig(_Strict):
    """Where latency and memory come from: latency service URL(s) or a device profile measured in-process."""

    url: str | list[str] | None = Field(default=None, description="a latency service, or a list of them: requests go to the "
                                        "least-queued one and move to another when one is down")
    target: str | None = Field(default=None, description="with url: the device or pool at the service(s); default: each service's only one")
    device: str | None = None
    token_env: str = "MNAS_LATENCY_TOKEN"
    resolution: int = Field(default=224, ge=8, le=1024, description="input size the model is measured at")
    num_classes: int | None = Field(default=None, ge=1, description="classifier size when measured; default the dataset's")
    predictor: str | None = Field(default=None, description="predictor file (mnas predictor build) for this device: trials are predicted")
    measure_every: int | None = Field(default=None, ge=1, description="with a predictor: also measure every Nth trial for real "
                                      "and rescale predictions by what those measurements showed (hybrid)")
    measure_best: bool = Field(default=True, description="with a predictor and measure_every: also measure each new best for "
                               "real (recorded beside its prediction and used by the correction; its reward stays as told)")
    measure_alone: bool = Field(default=True, description="CPU searches with an in-process device: pause the other trials' "
                                "training while one measures, so that training does not bias the figure")
    quantize: Literal["int8", "dynamic"] | None = Field(default=None, description="measure the model as deployed: int8 (static, "
                                                        "per-channel) or dynamic (int8 weights) quantized; None: float32")

    def token(self) -> str | None:
        return os.environ.get(self.token_env)

    def measurer(self):
        """A client for this source (latency_service.client), to be closed after use."""
        from latency_service.client import make_measurer

        return make_measurer(url=self.url, device=self.device, token=self.token(), target=self.target)

    @model_validator(mode="after")
    def _one_source(self) -> LatencyConfig:
        if bool(self.url) == bool(self.device):
            raise ValueError("set exactly one of url (a latency service, or a list of them) or device (a profile measured in-process)")
        if self.target and not self.url:
            raise ValueError("target names a device or pool at a latency service: it needs url")
        if self.measure_every and not self.predictor:
            raise ValueError("measure_every needs a predictor (it says how often a predicted trial is also measured)")
        if self.quantize and self.predictor:
            raise ValueError("a predictor predicts the float model; with quantize, trials measure the quantized model (leave out predictor)")
        return self


class StopConfig(_Strict):
    failure_window: int = Field(default=20, ge=1, description="recent finished trials the failure rate is taken over")
    max_failure_rate: float = Field(default=0.2, gt=0, le=1)
    patience: int | None = Field(default=None, ge=1, description="stop after this many trials without a better reward")


class EarlyStoppingConfig(_Strict):
    """Stop a stage-1 trial whose validation top-1 after epoch e lies below the ``percentile``-th
    percentile of the finished trials' top-1 at epoch e (Ax's percentile rule; ``median`` = 50),
    once it has trained ``min_epochs`` and at least ``min_completed`` trials reached epoch e."""

    rule: Literal["percentile", "median"] = "percentile"
    percentile: float = Field(default=25, gt=0, lt=100, description="percentile rule only")
    min_epochs: int = Field(default=1, ge=1)
    min_completed: int = Field(default=5, ge=1)

    def threshold_percentile(self) -> float:
        return 50.0 if self.rule == "median" else self.percentile


class ExecutorConfig(_Strict):
    type: str = Field(default="local", description="where trials run: a registered executor (search.plugins.EXECUTORS: local, ray)")
    trials_per_gpu: int | Literal["auto"] = Field(default=1, description="trials packed on one GPU; auto measures it at search start")
    ray_address: str | None = Field(default=None, description="an existing Ray cluster; None starts a local Ray")

    @field_validator("type")
    @classmethod
    def _registered(cls, value: str) -> str:
        return check_name(EXECUTORS, value)

    @model_validator(mode="after")
    def _packing_range(self) -> ExecutorConfig:
        if self.trials_per_gpu != "auto" and not 1 <= self.trials_per_gpu <= 16:
            raise ValueError("trials_per_gpu must be 1-16 or auto")
        return self


class SupernetConfig(_Strict):
    """One-shot search (``evaluator: supernet``): one weight-sharing supernet trained on the proxy
    data's stage-1 split with the proxy recipe (batch, lr, resolution, width, ...) for ``epochs``;
    each candidate is then its path's top-1 on the stage-1 validation split after BN statistics
    are recomputed for that path. ``directory``: a supernet trained before (``mnas supernet
    train``); default: the experiment's own ``supernet/``, trained when the search starts."""

    epochs: int = Field(default=20, ge=1, description="supernet training epochs (a path sees ~1/paths of the steps)")
    sandwich: bool = Field(default=True, description="each step trains the largest and smallest paths too (BigNAS)")
    random_paths: int = Field(default=2, ge=1, description="random paths per step (uniform per token, SPOS)")
    distill: bool = Field(default=True, description="in-place distillation: other paths learn the largest path's outputs")
    clip_grad_norm: float = Field(default=5.0, gt=0, description="clip the summed gradients of a step's paths to this norm")
    bn_images: int = Field(default=1024, ge=1, description="training images that recompute a candidate's BN statistics")
    eval_images: int | None = Field(default=None, ge=1, description="validation images per candidate; default the whole split")
    directory: str | None = None


class SearchConfig(_Strict):
    name: str = "search"
    seed: int = 0
    space: SpaceConfig = SpaceConfig()
    proxy: ProxyConfig
    latency: LatencyConfig
    reward: Reward
    plugins: list[str] = Field(default=[], description="modules imported before the config is read, e.g. one that "
                               "registers a controller (search.controllers.registry)")
    controller: SerializeAsAny[ControllerOptions] = Field(default_factory=lambda: parse_controller_options({}), description=
                                                          "type: a registered controller (ppo, reinforce, random, evolution, ax, "
                                                          "or a plug-in's) and that controller's own options")
    max_trials: int = Field(ge=1)
    max_parallel_trials: int = Field(default=1, ge=1)
    max_failed_trials: int | None = Field(default=None, ge=0, description="default: a third of max_trials")
    trial_timeout_s: float = Field(default=3600, gt=0)
    stop: StopConfig = StopConfig()
    early_stopping: EarlyStoppingConfig | None = Field(default=None, description="stop hopeless trials by their learning curves")
    executor: ExecutorConfig = ExecutorConfig()
    evaluator: str = Field(default="proxy", description="a registered evaluator (search.plugins.EVALUATORS): proxy: train each candidate (multi-trial); "
                                                    "supernet: evaluate it through a weight-sharing supernet (one-shot)")
    supernet: SupernetConfig = SupernetConfig()

    @field_validator("evaluator")
    @classmethod
    def _registered_evaluator(cls, value: str) -> str:
        return check_name(EVALUATORS, value)

    @field_validator("controller", mode="before")
    @classmethod
    def _registered_controller(cls, value):
        return parse_controller_options(value)

    @model_validator(mode="after")
    def _supernet_trains_nothing_per_trial(self) -> SearchConfig:
        if self.evaluator == "supernet":
            if self.early_stopping is not None:
                raise ValueError("early_stopping stops trainings; with evaluator: supernet no candidate is trained (leave it out)")
            if self.proxy.prefilter is not None:
                raise ValueError("proxy.prefilter skips trainings; with evaluator: supernet no candidate is trained (leave it out)")
        return self

    def failure_budget(self) -> int:
        return self.max_failed_trials if self.max_failed_trials is not None else max(1, self.max_trials // 3)


def import_plugins(modules) -> None:
    """Import the config's plug-in modules (their registrations run); one clear error if one is missing."""
    import importlib

    for name in modules or []:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plugins: cannot import {name!r} ({exc}); is it on PYTHONPATH?") from None


def parse_config(data: dict, source: str = "config") -> SearchConfig:
    if isinstance(data, dict):
        import_plugins(data.get("plugins"))
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err["loc"]) or "config"
            msg = err["msg"].removeprefix("Value error, ")
            if err["loc"] and (inner := re.match(r"([a-z_]+): (.*)", msg, re.S)):  # a validator naming a field inside its own
                where, msg = f"{where}.{inner[1]}", inner[2]
            parts.append(f"{where}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(parts)) from None


def load_config(path: str | Path) -> SearchConfig:
    return parse_config(read_yaml_mapping(path, ConfigError, "search config"), str(path))
