"""The one trial loop: fill free slots, poll, record, tell the observers; until done or stopped.

Every kind of trial work runs through ``TrialLoop``: stage 1 (the search), stage 2 (full
training of the winners), and the evaluators still to come. What differs is a ``Stage``:

- ``next_trial()``: the id of a stored trial to run next, or None when nothing is left
  to submit. A stage may answer a trial without running it (e.g. from the store); it
  returns that trial's id with the row already finished, and the loop only reports it.
- ``spec(trial)``: the ``TrialSpec`` the executor runs.
- ``record(trial_id, worker, result)``: write the outcome to the store (one transaction).
- ``stop_reason()``: why to stop now (stop rules), or None.

Observers see what happened (progress display, TensorBoard, the controller's updates,
and later early stopping, which may call ``loop.executor.cancel``). Ax's split, in small:
the executor is the runner, the stage holds the metric, this loop orchestrates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from search.experiment.store import Store, TrialRow
from search.trials.executors import Executor
from search.trials.spec import TrialResult, TrialSpec

INTERRUPTED = "interrupted; resume with mnas search --resume"


class Stage(ABC):
    """One kind of trial work: what runs next, what a result means, when to stop."""

    done_reason = "done"

    @abstractmethod
    def next_trial(self) -> int | None:
        """The next stored trial to run (or one answered already), or None when none is left."""

    @abstractmethod
    def spec(self, trial: TrialRow) -> TrialSpec:
        """The spec of a stored trial."""

    @abstractmethod
    def record(self, trial_id: int, worker: str, result: TrialResult) -> None:
        """Store a finished trial's outcome."""

    def stop_reason(self) -> str | None:
        return None


class Observer:
    """Hooks on the loop's events; each does nothing unless overridden."""

    def on_start(self, loop: TrialLoop) -> None: ...

    def on_submitted(self, trial: TrialRow, worker: str) -> None: ...

    def on_recorded(self, trial: TrialRow) -> None:
        """A trial finished and is in the store (``trial`` is its row)."""

    def on_poll(self) -> None:
        """After every poll of the executor (about twice a second)."""

    def on_stop(self, reason: str) -> None: ...


class TrialLoop:
    def __init__(self, stage: Stage, executor: Executor, store: Store, observers: list[Observer] | tuple = (), poll_s: float = 0.5):
        self.stage, self.executor, self.store = stage, executor, store
        self.observers = list(observers)
        self.poll_s = poll_s

    def run(self) -> tuple[str, bool]:
        """Run until the stage has nothing left (reason, False) or must stop (reason, True).

        The executor is closed on the way out, whatever happens; a KeyboardInterrupt
        becomes a stop that a resume picks up.
        """
        for o in self.observers:
            o.on_start(self)
        reason, stopped = self.stage.done_reason, False
        try:
            while True:
                why = self.stage.stop_reason()
                if why:
                    reason, stopped = why, True
                    break
                exhausted = self._fill()
                if exhausted and self.executor.running() == 0:
                    break
                for finished in self.executor.poll(timeout=self.poll_s):
                    self.record(finished.trial_id, finished.worker, finished.result)
                for o in self.observers:
                    o.on_poll()
        except KeyboardInterrupt:
            reason, stopped = INTERRUPTED, True
        finally:
            self.executor.close()
            for o in self.observers:
                o.on_stop(reason)
        return reason, stopped

    def _fill(self) -> bool:
        """Submit trials to the free slots; True when the stage had nothing more to give."""
        while self.executor.free_slots() > 0:
            trial_id = self.stage.next_trial()
            if trial_id is None:
                return True
            trial = self.store.trial(trial_id)
            if trial.status.finished:  # answered without running
                self._recorded(trial)
                continue
            worker = self.executor.submit(self.stage.spec(trial))
            self.store.mark_running(trial_id, worker)
            for o in self.observers:
                o.on_submitted(trial, worker)
        return False

    def record(self, trial_id: int, worker: str, result: TrialResult) -> None:
        self.stage.record(trial_id, worker, result)
        self._recorded(self.store.trial(trial_id))

    def _recorded(self, trial: TrialRow) -> None:
        for o in self.observers:
            o.on_recorded(trial)
