"""What crosses the process boundary for one trial: a ``TrialSpec`` in, a ``TrialResult`` out.

Both are pydantic models, serialised once (``to_json`` / ``from_json``) by the local
executor and passed as objects to Ray. Specs are built in one place,
``TrialContext.spec``, from what every trial of an experiment shares (the config, the
data, the measured GPU settings); a trial never restates a config default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from mnas.arch import Architecture
from mnas.recipe import TrainConfig
from search.config import LatencyConfig, SearchConfig
from search.trials.curves import curve_file


class TrialStatus(str, Enum):
    """A stored trial's status; the one place that says which statuses end a trial and which
    carry an accuracy and a reward (a stopped trial's last evaluation is its result)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EARLY_STOPPED = "early_stopped"
    PREFILTERED = "prefiltered"

    @property
    def finished(self) -> bool:
        return self not in (TrialStatus.PENDING, TrialStatus.RUNNING)

    @property
    def carries_reward(self) -> bool:
        return self in (TrialStatus.SUCCEEDED, TrialStatus.EARLY_STOPPED)

    @classmethod
    def rewarded(cls) -> tuple[str, ...]:
        return tuple(s.value for s in cls if s.carries_reward)


FINISHED: tuple[str, ...] = tuple(s.value for s in TrialStatus if s.finished)
ErrorKind = Literal[
    "latency",    # the latency source refused or could not measure the model
    "nan_loss",   # training diverged
    "cuda_oom",   # out of GPU memory (only this trial's process)
    "oom",        # out of host memory
    "timeout",    # ran over trial_timeout_s
    "crash",      # the trial process died without a result
    "cancelled",  # stopped by the search (executor.cancel)
    "reward",     # the result could not be turned into a reward
    "error",      # anything else; the error text says what
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes):
        return cls.model_validate_json(text)


class TrialData(_Frozen):
    """Where a trial's images come from: the proxy's data spec and its stage-1 split, or the
    experiment's cache of that split as plain .npy (mapped by every trial)."""

    spec: str
    val_fraction: float = 0.1
    split_seed: int = 0
    cache: str | None = None
    train_fraction: float = 1.0  # stage 1: train on this share of the split (proxy.data_fraction)

    @classmethod
    def of(cls, proxy, cache: str | None = None) -> TrialData:
        """The data of a config's proxy task (``ProxyConfig``): its spec, stage-1 split and fraction."""
        return cls(spec=proxy.data, val_fraction=proxy.val_fraction, split_seed=proxy.split_seed, cache=cache,
                   train_fraction=proxy.data_fraction)


class TrialSpec(_Frozen):
    trial_id: int
    stage: Literal[1, 2] = 1
    architecture: Architecture
    train: TrainConfig
    data: TrialData
    latency: LatencyConfig | None = None  # None: train only (stage 2 reuses stage 1's figures)
    checkpoint_dir: str | None = None
    init_weights: str | None = None  # stage 2: start from this state dict (a supernet's shared weights) instead of a fresh init
    torch_threads: int | None = None  # set by the executor for its slot
    measure: bool = True  # with a predictor: also measure for real (always without one)
    latency_scale: float = 1.0  # with a predictor: measured / predicted, as seen so far in this search
    measure_alone_in: str | None = None  # CPU searches: the directory whose lock and flag pause training while one measures
    curve_path: str | None = None  # stage 1: where the trial appends its latency and each epoch's evaluation (JSON lines)
    prefilter_score: str | None = None  # proxy.prefilter: skip training when this zero-cost score ...
    prefilter_below: float | None = None  # ... is below this (the running quantile of the trained trials)


class TrialResult(_Frozen):
    """A trial's outcome. ``early_stopped``: the search stopped it by its learning curve; its
    accuracy is the last epoch's evaluation and its metrics hold the curve. ``prefiltered``: not
    trained, its zero-cost score fell below the prefilter's threshold (metrics hold the scores)."""

    status: Literal["succeeded", "failed", "early_stopped", "prefiltered"]
    accuracy: float | None = None
    latency_ms: float | None = None
    memory_mb: float | None = None
    metrics: dict = {}
    error_kind: ErrorKind | None = None
    error: str | None = None
    seconds: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> TrialResult:
        if TrialStatus(self.status).carries_reward and self.accuracy is None:
            raise ValueError(f"a {self.status} trial has an accuracy")
        if self.status == "failed" and (self.error_kind is None or not self.error):
            raise ValueError("a failed trial has an error kind and text")
        return self

    @classmethod
    def failure(cls, kind: ErrorKind, error: str, seconds: float | None = None) -> TrialResult:
        return cls(status="failed", error_kind=kind, error=error, seconds=seconds)


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one experiment shares, fixed before the first trial runs."""

    config: SearchConfig
    data: TrialData
    num_classes: int
    train: TrainConfig  # the proxy recipe with the measured GPU settings applied
    directory: Path | None = None
    measure_alone: bool = False  # pause the other trials' training while one measures in-process (search.latency.quiet)

    @classmethod
    def create(cls, config: SearchConfig, num_classes: int, cache: str | None = None, tuning=None,
               directory: Path | None = None, measure_alone: bool = False) -> TrialContext:
        proxy = config.proxy
        measured = {}
        if tuning is not None:  # the measured choice replaces auto; explicit settings stay as written
            if proxy.precision == "auto":
                measured["precision"] = tuning.precision
            if proxy.channels_last is None:
                measured["channels_last"] = tuning.channels_last
        data = TrialData.of(proxy, cache)
        return cls(config, data, num_classes, proxy.train_config(config.seed, **measured), directory, measure_alone and directory is not None)

    def spec(self, trial_id: int, architecture: Architecture | dict, stage: Literal[1, 2] = 1, epochs: int | None = None,
             measure: bool = True, latency_scale: float = 1.0, prefilter_below: float | None = None) -> TrialSpec:
        arch = architecture if isinstance(architecture, Architecture) else Architecture.from_dict(architecture)
        latency = None
        if stage == 1:
            lat = self.config.latency
            latency = lat.model_copy(update={"num_classes": lat.num_classes or self.num_classes})
        train = self.train.model_copy(update={"epochs": epochs}) if epochs else self.train
        checkpoint = str(self.directory / "trials" / str(trial_id)) if stage == 2 and self.directory else None
        curve = str(curve_file(self.directory, trial_id)) if stage == 1 and self.directory else None
        return TrialSpec(trial_id=trial_id, stage=stage, architecture=arch, train=train, data=self.data, latency=latency,
                         checkpoint_dir=checkpoint, measure=measure or latency is None or not latency.predictor, latency_scale=latency_scale,
                         measure_alone_in=str(self.directory) if self.measure_alone else None, curve_path=curve,
                         prefilter_score=self.config.proxy.prefilter.score if prefilter_below is not None else None,
                         prefilter_below=prefilter_below)
