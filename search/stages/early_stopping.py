"""Learning curves of stage-1 trials, and stopping the hopeless ones by them.

Every stage-1 trial appends its latency and each epoch's validation top-1 and loss to
``trials/ID/curve.jsonl`` as it trains (``search.trials.curves.CurveWriter``); ``CurveWatcher``
copies them into the store while the search runs. With ``early_stopping:`` in the config
it also applies the rule (Ax's percentile strategy; the median rule is its 50th
percentile): after epoch e >= ``min_epochs``, a trial whose top-1 is below the chosen
percentile of the top-1 at epoch e of the trials that trained to the end (at least
``min_completed`` of them) is cancelled. It is recorded as ``early_stopped`` with its curve
and its latency, and the controller is told the reward of its last evaluation (the trial's
metrics say ``early_stopped``), so it learns that the architecture was poor without the
search paying for the rest of its training. Early-stopped trials never enter the top-k.

The curve file lives in the experiment directory: with Ray on several machines that
directory must be shared (as for stage-2 checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search.config import EarlyStoppingConfig
from search.experiment.store import Store, TrialRow
from search.stages.loop import Observer
from search.trials.curves import curve_file
from search.trials.spec import TrialResult


def stop_threshold(point: dict, completed: list[list[dict]], rule: EarlyStoppingConfig, epochs: int) -> float | None:
    """The top-1 a trial at ``point`` had to reach to go on, if it did not; None to let it run."""
    epoch = point["epoch"]
    if epoch < rule.min_epochs or epoch >= epochs or point.get("top1") is None:
        return None
    values = [p["top1"] for curve in completed for p in curve if p["epoch"] == epoch and p.get("top1") is not None]
    if len(values) < rule.min_completed:
        return None
    threshold = float(np.percentile(values, rule.threshold_percentile()))
    return threshold if point["top1"] < threshold else None


class CurveWatcher(Observer):
    """Copies running trials' curves into the store; with a rule, cancels trials below it."""

    def __init__(self, store: Store, directory: Path, epochs: int, rule: EarlyStoppingConfig | None = None):
        self.store, self.directory, self.epochs, self.rule = store, Path(directory), epochs, rule
        self.seen: dict[int, int] = {}  # trial id -> epochs already in the store
        self.stopped: dict[int, TrialResult] = {}  # cancelled by the rule, until their result comes back
        self.loop = None

    def on_start(self, loop) -> None:
        self.loop = loop

    def on_submitted(self, trial: TrialRow, worker: str) -> None:
        self.seen[trial.id] = 0

    def on_poll(self) -> None:
        for trial in self.store.trials(stage=1, status="running"):
            header, fresh = self._sync(trial.id)
            if fresh and self.rule is not None and trial.id not in self.stopped:
                self._judge(trial.id, header)

    def on_recorded(self, trial: TrialRow) -> None:
        if trial["cached_from"] is None and trial.stage == 1:
            self._sync(trial.id)  # the epochs written since the last poll
        self.seen.pop(trial.id, None)

    def _sync(self, trial_id: int) -> tuple[dict, list[dict]]:
        from search.trials.curves import read_curve

        header, points = read_curve(curve_file(self.directory, trial_id))
        fresh = points[self.seen.get(trial_id, 0):]
        if fresh:
            self.store.add_curve(trial_id, fresh)
            self.seen[trial_id] = len(points)
        return header, fresh

    def _judge(self, trial_id: int, header: dict) -> None:
        curves = self.store.curves(1)
        completed = [curves[t["id"]] for t in self.store.trials(stage=1, status="succeeded") if t["id"] in curves]
        point = curves[trial_id][-1]
        threshold = stop_threshold(point, completed, self.rule, self.epochs)
        if threshold is None or self.loop is None:
            return
        how = {"epoch": point["epoch"], "of_epochs": self.epochs, "top1": point["top1"], "threshold": threshold,
               "rule": self.rule.rule, "percentile": self.rule.threshold_percentile(), "completed": len(completed)}
        self.stopped[trial_id] = TrialResult(
            status="early_stopped", accuracy=point["top1"], latency_ms=header.get("latency_ms"), memory_mb=header.get("memory_mb"),
            metrics={"early_stopped": how, "curve": curves[trial_id]},
            seconds=sum(p.get("seconds") or 0.0 for p in curves[trial_id]))
        self.loop.executor.cancel(trial_id)

    def outcome(self, trial_id: int, result: TrialResult) -> TrialResult:
        """The result to record: the early stop, for a trial this watcher cancelled (not one that finished first)."""
        stopped = self.stopped.pop(trial_id, None)
        if stopped is not None and result.status == "failed" and result.error_kind == "cancelled":
            return stopped
        return result
