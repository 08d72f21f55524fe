"""Observers of the trial loop that show a search to people: live progress and TensorBoard."""

from __future__ import annotations

import time
from pathlib import Path

from mnas.arch import Architecture
from search.config import SearchConfig
from search.experiment.store import Store, TrialRow
from search.stages.loop import Observer


class ProgressDisplay(Observer):
    """Live progress: done / running / failed, best reward and architecture, elapsed and ETA."""

    def __init__(self, store: Store, config: SearchConfig, started: float):
        self.store, self.config, self.started = store, config, started
        self.live = None

    def on_start(self, loop) -> None:
        from rich.live import Live

        self.live = Live(self.render(), refresh_per_second=2, transient=False)
        self.live.start()

    def render(self):
        from rich.table import Table

        counts = self.store.counts(1)
        best = self.store.best_trial(1)
        finished = counts["succeeded"] + counts["failed"] + counts["early_stopped"] + counts["prefiltered"]
        elapsed = time.time() - self.started
        remaining = max(0, self.config.max_trials - sum(counts.values())) + counts["running"] + counts["pending"]
        eta = f"{elapsed / finished * remaining:.0f} s" if finished else "?"
        table = Table(show_header=False, title=f"mnas search: {self.config.name}")
        table.add_row("trials", f"{finished}/{self.config.max_trials} done, {counts['running']} running, {counts['failed']} failed, {counts['early_stopped']} stopped early")
        if best:
            table.add_row("best reward", f"{best['reward']:.4f} (top-1 {best['accuracy']:.3f}, {best['latency_ms']:.2f} ms) trial {best['id']}")
            table.add_row("best arch", Architecture.from_dict(best["architecture"]).summary())
        table.add_row("elapsed / ETA", f"{elapsed:.0f} s / {eta}")
        return table

    def on_poll(self) -> None:
        self.live.update(self.render())

    def on_stop(self, reason: str) -> None:
        if self.live is not None:
            self.live.update(self.render())
            self.live.stop()


class TensorBoardScalars(Observer):
    """Scalars per finished stage-1 trial in DIR/tensorboard, for people who live in TensorBoard."""

    def __init__(self, store: Store, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.store = store
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def on_recorded(self, trial: TrialRow) -> None:
        if trial.stage != 1:
            return
        counts = self.store.counts(1)
        step = counts["succeeded"] + counts["failed"]
        self.writer.add_scalar("trials/failed", counts["failed"], step)
        if trial.status == "succeeded":
            for name in ("reward", "accuracy", "latency_ms", "memory_mb"):
                self.writer.add_scalar(f"trial/{name}", trial[name], step)
            self.writer.add_scalar("search/best_reward", self.store.best_trial(1)["reward"], step)
        self.writer.flush()

    def on_stop(self, reason: str) -> None:
        self.writer.close()
