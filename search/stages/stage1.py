"""Stage 1, the search: the controller proposes, trials run, rewards teach the controller.

``run_search`` puts the parts together: measured GPU settings and the trial context
(computed once, before the loop), the controller restored from the store, a
``SearchStage`` for the loop, and the observers (controller updates, progress, TensorBoard).

Resume: finished trials stay; trials found pending or running are run again with the
same architecture; the controller is restored from its last checkpoint and then replays
the asks and tells logged after it, so it continues exactly where it stopped.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mnas.errors import MnasError
from mnas.space import SearchSpace
from search.config import SearchConfig
from search.controllers import Controller, Proposal
from search.controllers.targets import controller_for
from search.experiment import queries
from search.experiment.directory import prepare_trials
from search.experiment.preflight import search_start_checks
from search.experiment.store import Store, TrialRow
from search.plugins import EVALUATORS, load
from search.stages.early_stopping import CurveWatcher
from search.stages.loop import Observer, Stage, TrialLoop
from search.stages.observers import ProgressDisplay, TensorBoardScalars
from search.trials.executors import make_executor
from search.trials.spec import TrialContext, TrialResult, TrialSpec
from search.trials.tuning import measured_settings, slots_per_gpu


def record_result(config: SearchConfig, store: Store, trial_id: int, worker: str, result: TrialResult,
          latency_ms: float | None = None, memory_mb: float | None = None, tell: bool = False) -> bool:
    """Store a finished trial with its reward (or its failure); True if it succeeded (or was
    stopped early: recorded with the reward of its last evaluation).

    ``latency_ms``/``memory_mb`` stand in where the result has none (stage 2 reuses stage 1's
    figures unless it measured them itself);
    ``tell`` logs the 'tell' event in the same transaction, for the controller's replay.
    """
    if result.status == "failed":
        store.fail(trial_id, result.error or "unknown error", result.error_kind or "error", worker=worker)
        return False
    if result.status == "prefiltered":  # not trained: no reward, and (like a failure) not told
        store.finish(trial_id, accuracy=None, latency_ms=None, memory_mb=None, reward=None, metrics=result.metrics,
                     worker=worker, status="prefiltered")
        return False
    latency_ms = result.latency_ms if result.latency_ms is not None else latency_ms
    memory_mb = result.memory_mb if result.memory_mb is not None else memory_mb
    try:
        reward = config.reward(result.accuracy, latency_ms, memory_mb)
    except (ValueError, TypeError) as exc:
        store.fail(trial_id, f"cannot compute the reward: {exc}", "reward", worker=worker)
        return False
    with store.transaction():
        store.finish(trial_id, accuracy=result.accuracy, latency_ms=latency_ms, memory_mb=memory_mb, reward=reward,
                     metrics=result.metrics, worker=worker, status=result.status)
        if tell:
            store.log_event("tell", trial_id)
    return True


class SearchStage(Stage):
    """Stage 1: interrupted trials first, then the controller's proposals up to max_trials."""

    done_reason = "max_trials reached"

    def __init__(self, context: TrialContext, store: Store, controller: Controller, space: SearchSpace,
                 curves: CurveWatcher | None = None):
        self.context, self.store, self.controller, self.space = context, store, controller, space
        self.config = context.config
        self.curves = curves
        self.pending = deque(store.reset_interrupted(stage=1))

    def next_trial(self) -> int | None:
        if self.pending:
            return self.pending.popleft()
        if sum(self.store.counts(1).values()) >= self.config.max_trials:
            return None
        return self.propose()

    def propose(self) -> int:
        """Ask the controller; an architecture already evaluated is answered from the store.

        The trial row and its events are written in one transaction, so a kill at any
        instant leaves the store and the controller's event log in agreement.
        """
        proposal = self.controller.ask()
        arch = self.space.decode(proposal.indices)
        key = arch.key()
        previous = self.store.find_result(key)
        with self.store.transaction():
            trial_id = self.store.add_trial(arch.to_dict(), key, proposal.indices, proposal.meta)
            self.store.log_event("ask", trial_id)
            if previous is not None:
                reward = self.config.reward(previous["accuracy"], previous["latency_ms"], previous["memory_mb"])
                self.store.mark_running(trial_id, "store")
                self.store.finish(trial_id, accuracy=previous["accuracy"], latency_ms=previous["latency_ms"],
                                  memory_mb=previous["memory_mb"], reward=reward, metrics=previous["metrics"], cached_from=previous["id"])
                self.store.log_event("tell", trial_id)
        return trial_id

    def spec(self, trial: TrialRow) -> TrialSpec:
        lat = self.config.latency
        below = queries.prefilter_threshold(self.store, self.config.proxy.prefilter)
        if not lat.predictor:
            return self.context.spec(trial.id, trial.architecture, prefilter_below=below)
        measure = bool(lat.measure_every) and trial.id % lat.measure_every == 0
        return self.context.spec(trial.id, trial.architecture, measure=measure, latency_scale=queries.latency_scale(self.store),
                                 prefilter_below=below)

    def record(self, trial_id: int, worker: str, result: TrialResult) -> None:
        if self.curves is not None:
            result = self.curves.outcome(trial_id, result)
        record_result(self.config, self.store, trial_id, worker, result, tell=True)

    def stop_reason(self) -> str | None:
        return queries.stop_reason(self.store, self.config)


class ControllerUpdates(Observer):
    """Tells the controller every result the store logged a 'tell' for; checkpoints after updates."""

    def __init__(self, controller: Controller, store: Store):
        self.controller, self.store = controller, store

    def on_recorded(self, trial: TrialRow) -> None:
        seq = self.store.tell_seq(trial.id) if trial.status.carries_reward else None
        if seq is None:  # failures are never told
            return
        if tell_controller(self.controller, trial):
            self.store.save_checkpoint(self.controller.to_bytes(), seq)


class MeasureNewBest(Observer):
    """Hybrid searches: a new best whose latency was only predicted is measured for real.

    The measurement goes beside the prediction in its metrics (``measured_after``) and into
    the online correction; its reward stays as the controller was told it, so that a resumed
    search replays exactly what happened.
    """

    def __init__(self, context: TrialContext, store: Store):
        self.context, self.store = context, store

    def on_recorded(self, trial: TrialRow) -> None:
        lat = (trial["metrics"] or {}).get("latency") or {}
        if trial.status != "succeeded" or trial["cached_from"] is not None or lat.get("measured", True):
            return
        if self.store.best_trial(1)["id"] != trial.id:
            return
        from search.latency.measure import measure_latency

        spec = self.context.spec(trial.id, trial.architecture)
        measured, _ = measure_latency(spec.latency, spec.architecture, self.context.num_classes, spec.measure_alone_in)
        metrics = dict(trial["metrics"])
        metrics["latency"] = {**lat, **measured, "measured": True, "measured_after": True}
        self.store.update_metrics(trial.id, metrics)


def restore_controller(controller: Controller, store: Store) -> int:
    """Load the last checkpoint and replay later events; returns the number replayed."""
    checkpoint = store.latest_checkpoint()
    after = 0
    if checkpoint:
        after, state = checkpoint
        controller.load_bytes(state)
    events = store.events_after(after)
    for _, kind, trial_id in events:
        trial = store.trial(trial_id)
        if kind == "ask":
            try:
                controller.replay_ask(Proposal(trial.indices, trial["meta"] or {}))
            except ValueError as exc:
                raise MnasError(f"controller replay diverged at trial {trial_id}; the store and the controller disagree: {exc}") from exc
        elif kind == "tell":
            tell_controller(controller, trial)
    return len(events)


def tell_controller(controller: Controller, trial: TrialRow) -> bool:
    """Tell a finished trial as the controller learns it: its reward and its own figures."""
    outcome = {"accuracy": trial.accuracy, "latency_ms": trial.latency_ms, "memory_mb": trial.memory_mb}
    return controller.tell(Proposal(trial.indices, trial["meta"] or {}), trial.reward, outcome)


def new_controller(config: SearchConfig, space: SearchSpace) -> Controller:
    import torch

    torch.set_num_threads(1)  # the controller is tiny; leave the cores to the trials
    return controller_for(config.controller.type, space, config.seed, config.reward, **config.controller.kwargs())


@dataclass
class SearchOutcome:
    directory: Path
    reason: str
    counts: dict
    best: dict | None
    seconds: float
    stopped_early: bool = False


def proxy_executor(config: SearchConfig, directory: Path, executor_kind: str | None, tuning, log=None):
    """The multi-trial evaluator: each candidate trained on the proxy by the config's executor."""
    return make_executor(executor_kind or config.executor.type, directory, config.max_parallel_trials,
                         slots_per_gpu(config.executor, tuning), config.trial_timeout_s, config.executor.ray_address)


def supernet_executor(config: SearchConfig, directory: Path, executor_kind: str | None = None, tuning=None, log=None):
    """The one-shot evaluator: the config's trained supernet, or the experiment's own, trained
    (or its training resumed) here first."""
    from search.oneshot.evaluator import SupernetExecutor
    from search.oneshot.training import is_trained, supernet_dir, train_supernet

    where = supernet_dir(config, directory)
    if not is_trained(where):
        if config.supernet.directory:
            raise MnasError(f"supernet.directory {where} holds no finished supernet; train it with mnas supernet train")
        train_supernet(config, where, log=log)
    return SupernetExecutor(config, where)


def run_search(config: SearchConfig, directory: Path, executor_kind: str | None = None, progress: bool = True,
               tensorboard: bool = False, controller: Controller | None = None) -> SearchOutcome:
    """Run (or resume) the stage-1 search of the experiment in ``directory``."""
    started = time.time()
    directory = Path(directory)
    store = Store(directory)
    try:
        space = config.space.build()
        tuning = measured_settings(config, directory, log=print if progress else None)
        context = prepare_trials(config, directory, tuning)
        search_start_checks(config, context, log=print if progress else (lambda line: None))
        controller = controller or new_controller(config, space)
        restore_controller(controller, store)
        curves = CurveWatcher(store, directory, context.train.epochs, config.early_stopping)
        observers: list[Observer] = [curves, ControllerUpdates(controller, store)]
        if config.latency.predictor and config.latency.measure_every and config.latency.measure_best:
            observers.append(MeasureNewBest(context, store))
        if progress:
            observers.append(ProgressDisplay(store, config, started))
        if tensorboard:
            observers.append(TensorBoardScalars(store, directory / "tensorboard"))
        evaluator = load(EVALUATORS, config.evaluator)
        executor = evaluator(config, directory, executor_kind, tuning, log=print if progress else None)
        reason, stopped = TrialLoop(SearchStage(context, store, controller, space, curves), executor, store, observers).run()
        store.set_meta("last_stop", {"reason": reason, "at": time.time()})
        return SearchOutcome(directory, reason, store.counts(1), store.best_trial(1), time.time() - started, stopped)
    finally:
        store.close()
