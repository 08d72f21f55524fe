"""The stage-1 search loop: propose, run, record, learn; resumable at any point.

Runner (executors), metric (the trial's accuracy, latency and memory, turned into the
reward here) and orchestration (this module) are kept apart, as in Ax.

Resume: finished trials stay; trials found pending or running are run again with the
same architecture; the controller is restored from its last checkpoint and then replays
the asks and tells logged after it, so it continues exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from mnas.arch import Architecture
from mnas.errors import MnasError
from mnas.space import SearchSpace
from search.config import SearchConfig, parse_config
from search.controllers import Proposal, make_controller
from search.executors import gpu_count, make_executor
from search.store import Store


def arch_key(arch: Architecture) -> str:
    return hashlib.sha256(json.dumps(arch.to_dict(), sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class SearchOutcome:
    directory: Path
    reason: str
    counts: dict
    best: dict | None
    seconds: float
    stopped_early: bool = False


class Orchestrator:
    def __init__(self, config: SearchConfig, directory: Path, executor_kind: str | None = None, progress: bool = True,
                 tensorboard: bool = False):
        self.config = config
        self.dir = Path(directory)
        self.store = Store(self.dir)
        self.space = SearchSpace(act=config.space.act)
        torch.set_num_threads(1)  # the controller is tiny; leave the cores to the trials
        self.controller = make_controller(config.controller.type, self.space.cardinalities, config.seed, **config.controller.options())
        self.executor_kind = executor_kind or config.executor.type
        self.progress = progress
        self.data_cache: str | None = None
        self._tuning: dict | None = None
        self.num_classes: int | None = None
        self.tb = None
        if tensorboard:  # scalars per finished trial in DIR/tensorboard, for people who live in TensorBoard
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"))

    # ----- set-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Fail fast on a bad dataset or an unreachable latency source, before any trial runs."""
        from latency_service.client import LatencyServiceError, make_measurer
        from mnas.data import load_dataset
        from search.trial import cache_trial_data

        dataset = load_dataset(self.config.proxy.data)
        self.num_classes = dataset.num_classes
        cache = cache_trial_data(dataset, self.config.proxy.val_fraction, self.config.proxy.split_seed, self.dir / "data")
        self.data_cache = str(cache) if cache else None
        lat = self.config.latency
        try:
            measurer = make_measurer(url=lat.url, device=lat.device, token=_token(lat.token_env))
            measurer.devices()
            measurer.close()
        except LatencyServiceError as exc:
            raise MnasError(f"latency source unusable: {exc}") from None

    def tuning(self) -> dict | None:
        """Precision, layout and packing measured on this machine's GPU (DIR/tuning.json).

        Measured once per experiment, on the first GPU, when any of them is ``auto``; a
        resumed search reuses the file. Without a GPU there is nothing to measure: CPU slots
        come from ``max_parallel_trials``.
        """
        if self._tuning is not None:
            return self._tuning or None
        proxy, packing = self.config.proxy, self.config.executor.trials_per_gpu
        path = self.dir / "tuning.json"
        self._tuning = {}
        if (proxy.tunable() or packing == "auto") and proxy.device in ("auto", "cuda") and gpu_count() > 0:
            if path.is_file():
                self._tuning = json.loads(path.read_text())
            else:
                from search.tuning import tune

                if self.progress:
                    print("tuning: measuring precision, layout and trials per GPU on this GPU (once per experiment) ...", flush=True)
                self._tuning = tune(proxy.model_dump(), "cuda:0", max_per_gpu=8 if packing == "auto" else 1)
                path.write_text(json.dumps(self._tuning, indent=1))
                if self.progress:
                    t = self._tuning
                    print(f"tuning: {t['precision']}, channels_last={t['channels_last']}, {t['trials_per_gpu']} trial(s) per GPU "
                          f"({max(p.get('images_per_s', 0) for p in t['packing']):.0f} images/s in all; {t['seconds']:.0f} s)", flush=True)
        return self._tuning or None

    def trials_per_gpu(self) -> int:
        packing = self.config.executor.trials_per_gpu
        if packing != "auto":
            return packing
        tuned = self.tuning()
        return tuned["trials_per_gpu"] if tuned else 1

    def restore_controller(self) -> int:
        """Load the last checkpoint and replay later events; returns the number replayed."""
        checkpoint = self.store.latest_checkpoint()
        after = 0
        if checkpoint:
            after, state = checkpoint
            self.controller.load_bytes(state)
        events = self.store.events_after(after)
        for _, kind, trial_id in events:
            trial = self.store.trial(trial_id)
            if kind == "ask":
                proposal = self.controller.ask()
                if proposal.indices != trial["indices"]:
                    raise MnasError(f"controller replay diverged at trial {trial_id}; the store and the controller disagree")
            elif kind == "tell":
                self.controller.tell(Proposal(trial["indices"], trial["meta"] or {}), trial["reward"])
        return len(events)

    def spec(self, trial: dict, stage: int = 1, epochs: int | None = None) -> dict:
        proxy = self.config.proxy.model_dump()
        tuned = self.tuning()
        if tuned:  # the measured choice replaces auto; explicit settings stay as written
            if proxy["precision"] == "auto":
                proxy["precision"] = tuned["precision"]
            if proxy["channels_last"] is None:
                proxy["channels_last"] = tuned["channels_last"]
        latency = self.config.latency.model_dump()
        latency["num_classes"] = latency["num_classes"] or self.num_classes
        return {
            "trial_id": trial["id"],
            "stage": stage,
            "architecture": trial["architecture"],
            "proxy": proxy,
            "latency": latency,
            "data_cache": self.data_cache,
            "seed": self.config.seed,
            "epochs": epochs,
            "checkpoint_dir": str(self.dir / "trials" / str(trial["id"])) if stage == 2 else None,
        }

    # ----- the loop --------------------------------------------------------------------------
    def run(self) -> SearchOutcome:
        cfg = self.config
        started = time.time()
        self.prepare()
        self.restore_controller()
        pending = deque(self.store.reset_interrupted(stage=1))
        executor = make_executor(self.executor_kind, self.dir, cfg.max_parallel_trials, self.trials_per_gpu(), cfg.trial_timeout_s, cfg.executor.ray_address)
        recent = deque(maxlen=cfg.stop.failure_window)
        for t in self.store.trials(stage=1):
            if t["status"] in ("succeeded", "failed"):
                recent.append(t["status"] == "failed")
        reason, stopped = "max_trials reached", False
        display = _Progress(self, started) if self.progress else None
        try:
            while True:
                counts = self.store.counts(1)
                total = sum(counts.values())
                stop = self.stop_reason(counts, recent)
                if stop:
                    reason, stopped = stop, True
                    break
                # fill free slots: interrupted trials first, then new proposals
                while executor.free_slots() > 0 and (pending or total < cfg.max_trials):
                    if pending:
                        trial = self.store.trial(pending.popleft())
                    else:
                        trial = self.propose()
                        total += 1
                        if trial is None:  # answered from the store
                            continue
                    worker = executor.submit(trial["id"], self.spec(trial))
                    self.store.mark_running(trial["id"], worker)
                if not executor_running(executor) and not pending and total >= cfg.max_trials:
                    break
                for finished in executor.poll(timeout=0.5):
                    failed = self.record(finished.trial_id, finished.worker, finished.result)
                    recent.append(failed)
                if display:
                    display.update()
        except KeyboardInterrupt:
            reason, stopped = "interrupted; resume with mnas search --resume", True
        finally:
            executor.shutdown()
            if display:
                display.close()
            if self.tb is not None:
                self.tb.close()
        counts = self.store.counts(1)
        best = self.best()
        self.store.set_meta("last_stop", {"reason": reason, "at": time.time()})
        return SearchOutcome(self.dir, reason, counts, best, time.time() - started, stopped)

    def stop_reason(self, counts: dict, recent: deque) -> str | None:
        cfg = self.config
        if counts["failed"] > cfg.failure_budget():
            return f"failure budget exhausted: {counts['failed']} failed trials > max_failed_trials {cfg.failure_budget()}"
        if len(recent) == recent.maxlen and sum(recent) / len(recent) > cfg.stop.max_failure_rate:
            return f"too many failures: {sum(recent)} of the last {len(recent)} trials failed (> {cfg.stop.max_failure_rate:.0%})"
        if cfg.stop.patience:
            rewards = self.store.rewards(1)
            if len(rewards) > cfg.stop.patience:
                best_at = max(range(len(rewards)), key=rewards.__getitem__)
                if len(rewards) - 1 - best_at >= cfg.stop.patience:
                    return f"no improvement in the last {cfg.stop.patience} trials"
        return None

    def propose(self) -> dict | None:
        """Ask the controller; an architecture already evaluated is answered from the store.

        Each trial row and its ask/tell events are written in one transaction, so a kill at
        any instant leaves the store and the controller's event log in agreement.
        """
        proposal = self.controller.ask()
        arch = self.space.decode(proposal.indices)
        key = arch_key(arch)
        previous = self.store.find_result(key)
        with self.store.transaction():
            trial_id = self.store.add_trial(arch.to_dict(), key, proposal.indices, proposal.meta)
            self.store.log_event("ask", trial_id)
            if previous is not None:
                reward = self.reward(previous["accuracy"], previous["latency_ms"], previous["memory_mb"])
                self.store.mark_running(trial_id, "store")
                self.store.finish(trial_id, accuracy=previous["accuracy"], latency_ms=previous["latency_ms"],
                                  memory_mb=previous["memory_mb"], reward=reward, metrics=previous["metrics"], cached_from=previous["id"])
                seq = self.store.log_event("tell", trial_id)
        if previous is None:
            return self.store.trial(trial_id)
        self._tell(proposal, reward, seq)
        return None

    def reward(self, accuracy, latency_ms, memory_mb) -> float:
        return self.config.reward(accuracy, latency_ms, memory_mb)

    def record(self, trial_id: int, worker: str, result: dict) -> bool:
        """Store a finished trial and tell the controller; True if it failed."""
        failed = self._record(trial_id, result)
        if self.tb is not None:
            counts = self.store.counts(1)
            step = counts["succeeded"] + counts["failed"]
            self.tb.add_scalar("trials/failed", counts["failed"], step)
            if not failed:
                t = self.store.trial(trial_id)
                for name in ("reward", "accuracy", "latency_ms", "memory_mb"):
                    self.tb.add_scalar(f"trial/{name}", t[name], step)
                self.tb.add_scalar("search/best_reward", self.best()["reward"], step)
            self.tb.flush()
        return failed

    def _record(self, trial_id: int, result: dict) -> bool:
        if result.get("status") != "succeeded":
            self.store.fail(trial_id, result.get("error", "unknown error"), result.get("error_kind", "error"))
            return True
        try:
            reward = self.reward(result["accuracy"], result["latency_ms"], result["memory_mb"])
        except (ValueError, TypeError) as exc:
            self.store.fail(trial_id, f"cannot compute the reward: {exc}", "reward")
            return True
        with self.store.transaction():
            self.store.finish(trial_id, accuracy=result["accuracy"], latency_ms=result["latency_ms"], memory_mb=result["memory_mb"],
                              reward=reward, metrics=result.get("metrics", {}))
            seq = self.store.log_event("tell", trial_id)
        trial = self.store.trial(trial_id)
        self._tell(Proposal(trial["indices"], trial["meta"] or {}), reward, seq)
        return False

    def _tell(self, proposal: Proposal, reward: float, seq: int) -> None:
        """Tell the controller a result already logged as event ``seq``; checkpoint after updates."""
        updated = self.controller.tell(proposal, reward)
        if updated:
            self.store.save_checkpoint(self.controller.to_bytes(), seq)

    def best(self, stage: int = 1) -> dict | None:
        return self.store.best_trial(stage)


def executor_running(executor) -> bool:
    return executor.free_slots() < executor.capacity


def _token(env_name: str) -> str | None:
    return os.environ.get(env_name)


def open_search(config: SearchConfig | None, directory: Path, resume: bool) -> SearchConfig:
    """Record a new experiment's config, or load (and optionally extend) a resumed one's."""
    store = Store(directory)
    try:
        stored = store.get_meta("config")
        if resume:
            if stored is None:
                raise MnasError(f"{directory} holds no search to resume (no config in {store.path.name})")
            old = parse_config(stored, "stored config")
            if config is None:
                return old
            fixed = ("space", "proxy", "latency", "reward", "controller", "seed")
            changed = [k for k in fixed if getattr(old, k) != getattr(config, k)]
            if changed:
                raise MnasError(f"a resumed search keeps its {', '.join(changed)}; only max_trials, parallelism, stop rules and the executor may change")
            store.set_meta("config", config.model_dump(mode="json"))
            return config
        if stored is not None:
            raise MnasError(f"{directory} already holds a search; use --resume {directory} to continue it, or another --out")
        store.set_meta("config", config.model_dump(mode="json"))
        store.set_meta("created", time.time())
        return config
    finally:
        store.close()


class _Progress:
    """Live progress: done / running / failed, best reward and architecture, elapsed and ETA."""

    def __init__(self, orchestrator: Orchestrator, started: float):
        from rich.live import Live

        self.o, self.started = orchestrator, started
        self.live = Live(self.render(), refresh_per_second=2, transient=False)
        self.live.start()

    def render(self):
        from rich.table import Table

        counts = self.o.store.counts(1)
        best = self.o.best()
        finished = counts["succeeded"] + counts["failed"]
        elapsed = time.time() - self.started
        remaining = max(0, self.o.config.max_trials - sum(counts.values())) + counts["running"] + counts["pending"]
        eta = elapsed / finished * remaining if finished else float("nan")
        table = Table(show_header=False, title=f"mnas search: {self.o.config.name}")
        table.add_row("trials", f"{finished}/{self.o.config.max_trials} done, {counts['running']} running, {counts['failed']} failed")
        if best:
            table.add_row("best reward", f"{best['reward']:.4f} (top-1 {best['accuracy']:.3f}, {best['latency_ms']:.2f} ms) trial {best['id']}")
            table.add_row("best arch", Architecture.from_dict(best["architecture"]).summary())
        table.add_row("elapsed / ETA", f"{elapsed:.0f} s / {'?' if eta != eta else f'{eta:.0f} s'}")
        return table

    def update(self):
        self.live.update(self.render())

    def close(self):
        self.update()
        self.live.stop()
