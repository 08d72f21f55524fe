"""A proxy-design study: the short trainings that the proxy tools run, kept in an experiment store.

Every training is a ``Job``: an architecture, a proxy setting (overrides of the config's
recipe, and ``data_fraction``), a seed. Jobs run as trials of ``PROXY_STAGE`` through the
search's ``TrialLoop`` and executors (local processes or Ray; packed on GPUs as the config
says), and each is stored under a key of exactly what it trains: a rerun, a resume after a
kill, or another tool that needs the same training finds it done and trains nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnas.arch import Architecture
from mnas.errors import MnasError
from mnas.recipe import Recipe, TrainConfig
from search.config import SearchConfig
from search.experiment.store import Store, TrialRow
from search.stages.loop import Observer, Stage, TrialLoop
from search.trials.curves import curve_file
from search.trials.spec import TrialContext, TrialResult, TrialSpec

PROXY_STAGE = 3  # store stage of proxy-design trainings, apart from a search's stages 1 and 2
# what a proxy setting may change: the recipe's training fields and the share of the data
SETTING_FIELDS = tuple(f for f in Recipe.model_fields if f not in ("device", "data_on_device", "compile")) + ("data_fraction",)
# the parts of a config a study's results depend on: another value makes it another study
STUDY_FIELDS = ("space", "latency", "seed")
STUDY_PROXY_FIELDS = ("data", "val_fraction", "split_seed")


class StudyError(MnasError):
    """A proxy study cannot go on as asked (missing step, other config, bad setting)."""


def parse_setting(values: dict, where: str = "setting") -> dict:
    """A proxy setting checked field by field (the recipe's own bounds); one clear error."""
    from pydantic import ValidationError

    unknown = sorted(set(values) - set(SETTING_FIELDS))
    if unknown:
        raise StudyError(f"{where}: unknown proxy field(s) {', '.join(unknown)}; use {', '.join(SETTING_FIELDS)}")
    recipe = {k: v for k, v in values.items() if k != "data_fraction"}
    try:
        Recipe(**recipe)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise StudyError(f"{where}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if "data_fraction" in values and not 0 < float(values["data_fraction"]) <= 1:
        raise StudyError(f"{where}: data_fraction must be in (0, 1] (got {values['data_fraction']})")
    return dict(values)


def setting_label(setting: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(setting.items())) or "(the config's proxy)"


@dataclass(frozen=True)
class Job:
    """One training of a study: ``step`` says which tool asked for it, ``name`` which model it is;
    ``setting`` holds the proxy overrides as sorted (field, value) pairs (a Job is hashable)."""

    step: str
    name: str
    architecture: Architecture
    setting_items: tuple = ()
    seed: int | None = None  # None: the config's seed
    curve: bool = False  # evaluate after every epoch (baseline, reference, variance)

    @classmethod
    def make(cls, step: str, name: str, architecture: Architecture, setting: dict | None = None, seed: int | None = None,
             curve: bool = False) -> Job:
        return cls(step, name, architecture, tuple(sorted((setting or {}).items())), seed, curve)

    @property
    def setting(self) -> dict:
        return dict(self.setting_items)


@dataclass
class JobResult:
    job: Job
    row: dict

    @property
    def ok(self) -> bool:
        return self.row.status == "succeeded"

    @property
    def accuracy(self) -> float | None:
        return self.row.accuracy if self.ok else None

    @property
    def seconds(self) -> float | None:
        timings = (self.row["metrics"] or {}).get("timings") or {}
        return timings.get("total_s")

    @property
    def train(self) -> dict:
        return (self.row["metrics"] or {}).get("train") or {}

    @property
    def zero_cost(self) -> dict:
        return (self.row["metrics"] or {}).get("zero_cost") or {}


class Study:
    """A study directory: its store, the config it was made for, and the shared trial context."""

    def __init__(self, config: SearchConfig, directory: str | Path):
        self.config, self.dir = config, Path(directory).resolve()  # trial processes run with another cwd
        self.store = Store(self.dir)
        made_for = self.store.get_meta("proxy_study")
        mine = study_identity(config)
        if made_for is None:
            if self.store.get_meta("config") is not None:
                raise StudyError(f"{self.dir} holds a search; give the proxy tools their own directory (--out)")
            self.store.set_meta("proxy_study", mine)
            self.store.set_meta("created", time.time())
        elif made_for != mine:
            changed = [k for k in mine if made_for.get(k) != mine[k]]
            raise StudyError(f"{self.dir} is a proxy study of another config (its {', '.join(changed)} differ); use another --out")
        self._context: TrialContext | None = None
        self.tuning = None  # the measured GPU settings, once the context is prepared

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, key: str, step_hint: str | None = None):
        value = self.store.get_meta(key)
        if value is None and step_hint:
            raise StudyError(f"{self.dir} has no {key} yet: run {step_hint} first")
        return value

    def put(self, key: str, value) -> None:
        self.store.set_meta(key, value)

    @property
    def context(self) -> TrialContext:
        """The data cache and the config's recipe with measured GPU settings (once per study)."""
        if self._context is None:
            from search.experiment.directory import prepare_trials
            from search.trials.tuning import measured_settings

            tuning = measured_settings(self.config, self.dir)
            self._context = prepare_trials(self.config, self.dir, tuning, check_latency=False)
            self.tuning = tuning
        return self._context

    def refresh_context(self) -> None:
        """After the config's recipe changed (a tuned recipe): rebuild the shared context."""
        self._context = None

    def train_config(self, job: Job) -> TrainConfig:
        recipe = {k: v for k, v in job.setting.items() if k != "data_fraction"}
        seed = {"seed": job.seed} if job.seed is not None else {}
        return self.context.train.model_copy(update={**recipe, **seed})

    def data_fraction(self, job: Job) -> float:
        return float(job.setting.get("data_fraction", self.config.proxy.data_fraction))

    def job_key(self, job: Job) -> str:
        what = {"architecture": job.architecture.to_dict(), "train": self.train_config(job).model_dump(mode="json"),
                "data_fraction": self.data_fraction(job), "curve": job.curve}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]

    def run(self, jobs: list[Job], abandon: Callable[[Job, dict[Job, JobResult]], bool] | None = None,
            executor_kind: str | None = None, log: Callable[[str], None] | None = None) -> dict[Job, JobResult]:
        """Train every job not trained yet (in order, in parallel slots); returns each job's result.

        ``abandon(job, results so far)`` is asked before a job is submitted: True skips it (a
        proxy setting that can no longer reach its threshold). Skipped jobs are absent from
        the answer.
        """
        from search.trials.executors import make_executor
        from search.trials.tuning import slots_per_gpu

        self.context  # noqa: B018  (data cache and GPU settings before the first job)
        stage = JobStage(self, jobs, abandon)
        if stage.queue:
            epochs = max(self.train_config(j).epochs for j in jobs)
            timeout = self.config.trial_timeout_s * max(1.0, epochs / self.config.proxy.epochs)
            cfg = self.config
            executor = make_executor(executor_kind or cfg.executor.type, self.dir, cfg.max_parallel_trials,
                                     slots_per_gpu(cfg.executor, self.tuning), timeout, cfg.executor.ray_address)
            observers = [JobLog(stage, log)] if log else []
            reason, stopped = TrialLoop(stage, executor, self.store, observers).run()
            if stopped:
                raise StudyError(f"{reason.split(';')[0]}; run the same command again to continue (finished trainings are kept)")
        return stage.results()


    def stored(self, jobs: list[Job]) -> dict[Job, JobResult]:
        """The results of those jobs already trained (by key, whichever tool trained them); trains nothing."""
        by_key = {}
        for row in self.store.trials(stage=PROXY_STAGE):
            if row.status in ("succeeded", "failed"):
                by_key.setdefault(row["meta"].get("key"), row)
        return {job: JobResult(job, by_key[k]) for job in jobs if (k := self.job_key(job)) in by_key}


def study_identity(config: SearchConfig) -> dict:
    data = config.model_dump(mode="json", include=set(STUDY_FIELDS))
    data["proxy"] = config.proxy.model_dump(mode="json", include=set(STUDY_PROXY_FIELDS))
    return data


class JobStage(Stage):
    """Runs a study's jobs that have no stored result; a job's result is its stored row."""

    done_reason = "all trainings done"

    def __init__(self, study: Study, jobs: list[Job], abandon=None):
        self.study, self.abandon = study, abandon
        store = study.store
        store.reset_interrupted(stage=PROXY_STAGE)
        stored = {}
        for row in store.trials(stage=PROXY_STAGE):
            stored.setdefault(row["meta"].get("key"), row)
        self.row_of: dict[Job, int] = {}
        self.job_of: dict[int, Job] = {}
        self.queue: list[int] = []  # row ids still to train, in the jobs' order

        for job in dict.fromkeys(jobs):
            key = study.job_key(job)
            row = stored.get(key)
            if row is None:
                meta = {"key": key, "step": job.step, "name": job.name, "setting": job.setting, "seed": job.seed}
                row = store.trial(store.add_trial(job.architecture.to_dict(), job.architecture.key(), None, meta, stage=PROXY_STAGE))
                stored[key] = row
            self.row_of[job] = row.id
            self.job_of.setdefault(row.id, job)
            if row.status == "pending" and row.id not in self.queue:
                self.queue.append(row.id)
        self.total = len(self.queue)

    def results(self) -> dict[Job, JobResult]:
        out = {}
        for job, row_id in self.row_of.items():
            row = self.study.store.trial(row_id)
            if row.status in ("succeeded", "failed"):
                out[job] = JobResult(job, row)
        return out

    def next_trial(self) -> int | None:
        while self.queue:
            row_id = self.queue.pop(0)
            if self.abandon is not None and self.abandon(self.job_of[row_id], self.results()):
                continue
            return row_id
        return None

    def spec(self, trial: TrialRow) -> TrialSpec:
        job = self.job_of[trial.id]
        data = self.study.context.data.model_copy(update={"train_fraction": self.study.data_fraction(job)})
        curve = str(curve_file(self.study.dir, trial.id)) if job.curve else None
        return TrialSpec(trial_id=trial.id, stage=1, architecture=job.architecture, train=self.study.train_config(job),
                         data=data, latency=None, curve_path=curve)

    def record(self, trial_id: int, worker: str, result: TrialResult) -> None:
        store = self.study.store
        if result.status == "failed":
            store.fail(trial_id, result.error or "unknown error", result.error_kind or "error", worker=worker)
            return
        with store.transaction():
            store.finish(trial_id, accuracy=result.accuracy, latency_ms=None, memory_mb=None, reward=None, metrics=result.metrics,
                         worker=worker)
            points = [p for p in (result.metrics.get("train") or {}).get("history", []) if p.get("top1") is not None]
            if points:
                store.add_curve(trial_id, points)


class JobLog(Observer):
    """One line per finished training (the proxy tools are batch commands, not a live display)."""

    def __init__(self, stage: JobStage, log: Callable[[str], None]):
        self.stage, self.log, self.done = stage, log, 0

    def on_recorded(self, trial: TrialRow) -> None:
        self.done += 1
        job = self.stage.job_of.get(trial.id)
        what = f"{job.step} {job.name} {setting_label(job.setting)}" + (f" seed {job.seed}" if job.seed is not None else "") if job else str(trial.id)
        outcome = f"top-1 {trial['accuracy']:.4f}" if trial.status == "succeeded" else f"failed: {trial['error_kind']}"
        self.log(f"[{self.done}/{self.stage.total}] {what}: {outcome}")
