"""Candidates evaluated through a trained supernet, and the executor that makes them trials.

A candidate's accuracy is its path's top-1 on the stage-1 validation split after its BN
statistics are recomputed on ``supernet.bn_images`` training images (the shared running
statistics belong to no single path). Latency and memory come from the config's latency
source exactly as for a proxy trial (``search.trials.run.trial_latency``), so rewards are
comparable between the two evaluators. Evaluations run in the search's own process, one
at a time: each takes a fraction of a second to a few seconds, so process start-up (the
price of isolation for multi-minute proxy trials) would dominate.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from mnas.arch import Architecture
from mnas.errors import MnasError
from search.config import SearchConfig
from search.oneshot.training import SupernetSetup, build_supernet, is_trained, read_checkpoint
from search.trials.executors import Executor, Finished, cancelled, threads_per_trial
from search.trials.spec import TrialResult, TrialSpec

EVAL_BATCH = 256


class SupernetEvaluator:
    """Loads a finished supernet once; ``evaluate(arch)`` gives that path's top-1."""

    def __init__(self, config: SearchConfig, directory: Path):
        from mnas.accel import plan_for
        from mnas.train import place_data
        from search.trials.data import load_trial_data
        from search.trials.spec import TrialData

        directory = Path(directory)
        if not is_trained(directory):
            raise MnasError(f"{directory} holds no finished supernet; train it with mnas supernet train CONFIG --out {directory}")
        proxy = config.proxy
        data = TrialData.of(proxy)
        train, val, num_classes = load_trial_data(data, stage=1)
        ckpt = read_checkpoint(directory)
        mine, theirs = SupernetSetup.of(config, num_classes).to_dict(), dict(ckpt["setup"])
        for key in ("space", "recipe", "num_classes", "data"):
            if mine[key] != theirs[key]:
                raise MnasError(f"the supernet in {directory} was trained with another {key.replace('num_', '')}; "
                                "train one for this config (mnas supernet train)")
        self.directory, self.num_classes = directory, num_classes
        # one large batch recomputes BN and one evaluates: a candidate costs a few forward passes
        recipe = proxy.train_config(config.seed)
        self.cfg = recipe.model_copy(update={"bn_calibration_images": config.supernet.bn_images,
                                             "batch_size": max(recipe.batch_size, EVAL_BATCH)})
        self.execution = plan_for(self.cfg)
        self.device = self.execution.device
        self.net = build_supernet(ckpt["setup"])
        self.net.load_state_dict(ckpt["model"])
        self.net = self.execution.place(self.net)
        limit = config.supernet.eval_images
        if limit is not None and limit < len(val):
            import numpy as np

            val = val.subset(np.arange(limit))
        self.train = place_data(train, self.device, self.cfg.data_on_device)
        self.val = place_data(val, self.device, self.cfg.data_on_device)
        self.epochs = ckpt["epoch"]

    def evaluate(self, arch: Architecture) -> dict:
        from mnas.train import calibrate_bn, evaluate

        t0 = time.perf_counter()
        path = self.net.path(arch)
        calibrate_bn(path, self.train, self.cfg, self.execution)
        result = evaluate(path, self.val, self.cfg, self.execution)
        return {**result, "seconds": time.perf_counter() - t0}

    def extract(self, arch: Architecture):
        """``arch`` as an ordinary model with the shared weights and its recomputed BN statistics."""
        from mnas.train import calibrate_bn

        path = self.net.path(arch)
        calibrate_bn(path, self.train, self.cfg, self.execution)
        return self.net.extract(arch).cpu().eval()


class SupernetExecutor(Executor):
    """Runs stage-1 specs in this process through a ``SupernetEvaluator``, one per poll."""

    def __init__(self, config: SearchConfig, directory: Path):
        import torch

        torch.set_num_threads(threads_per_trial(1))
        self.evaluator = SupernetEvaluator(config, directory)
        self.queue: deque[TrialSpec] = deque()
        self.cancelled: list[int] = []

    @property
    def capacity(self) -> int:
        return 1

    def running(self) -> int:
        return len(self.queue) + len(self.cancelled)

    def submit(self, spec: TrialSpec) -> str:
        self.queue.append(spec)
        return "supernet"

    def poll(self, timeout: float = 0.5) -> list[Finished]:
        if self.cancelled:
            done, self.cancelled = [Finished(t, "supernet", cancelled()) for t in self.cancelled], []
            return done
        if not self.queue:
            return []
        spec = self.queue.popleft()
        return [Finished(spec.trial_id, "supernet", self.run(spec))]

    def run(self, spec: TrialSpec) -> TrialResult:
        from search.trials.run import classify_failure, trial_latency

        t0 = time.perf_counter()
        try:
            lat = trial_latency(spec, self.evaluator.num_classes)
            result = self.evaluator.evaluate(spec.architecture)
        except Exception as exc:  # the trial fails; the search goes on (as a proxy trial's would)
            return TrialResult.failure(classify_failure(exc), f"{exc.__class__.__name__}: {exc}", time.perf_counter() - t0)
        timings = {**lat.timings, "evaluate_s": result["seconds"], "total_s": time.perf_counter() - t0}
        metrics = {"evaluator": "supernet", "supernet": {"directory": str(self.evaluator.directory), "epochs": self.evaluator.epochs,
                                                          "bn_images": self.evaluator.cfg.bn_calibration_images},
                   "train": {"top1": result["top1"], "eval_loss": result["loss"], "eval_images": result["images"]},
                   "latency": lat.record, "timings": timings, "costs": lat.costs}
        return TrialResult(status="succeeded", accuracy=result["top1"], latency_ms=lat.latency_ms, memory_mb=lat.memory_mb,
                           metrics=metrics, seconds=time.perf_counter() - t0)

    def cancel(self, trial_id: int) -> bool:
        before = len(self.queue)
        self.queue = deque(s for s in self.queue if s.trial_id != trial_id)
        if len(self.queue) < before:
            self.cancelled.append(trial_id)
        return len(self.queue) < before

    def close(self) -> None:
        self.queue.clear()
