"""Stage 2: fully train the top-k architectures of stage 1 and test them.

Each is trained on all training data for the stage-2 epochs and evaluated on the test
split, through the same trial loop and executors as the search; its final reward uses the
stage-2 accuracy and the stage-1 latency and memory (the same model on the same device).
Resumable: finished stage-2 trials are kept, interrupted ones run again.

After a one-shot search, ``init="shared"`` starts each winner from the weights it has in the
supernet (extracted, BN statistics recomputed) instead of a fresh initialisation. Those are
separate stage-2 trials (key ``ARCH_KEY@shared``), so both starts can be run and compared.

With ``quantize`` (int8 or dynamic), each trained winner is also quantized after training and
tested as the deployed file (``search.trials.quantized``): float and quantized top-1 side by side.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from mnas.errors import MnasError
from search.config import SearchConfig
from search.experiment import queries
from search.experiment.directory import prepare_trials
from search.experiment.store import Store, TrialRow
from search.stages.loop import Stage, TrialLoop
from search.stages.stage1 import record_result
from search.trials.executors import make_executor
from search.trials.spec import TrialContext, TrialResult, TrialSpec
from search.trials.tuning import measured_settings, slots_per_gpu


class FullTrainingStage(Stage):
    """Stage 2 of the given stage-1 leaders: one trial each, trained for ``epochs``."""

    def __init__(self, context: TrialContext, store: Store, leaders: list[TrialRow], epochs: int, init: str = "scratch",
                 shared_weights=None):
        self.context, self.store, self.epochs, self.init = context, store, epochs, init
        self.shared_weights = shared_weights  # init="shared": (trial id, architecture) -> a state-dict file
        store.reset_interrupted(stage=2)
        existing = {t["arch_key"]: t for t in store.trials(stage=2)}
        self.stage1_of: dict[int, dict] = {}
        self.queue: deque[int] = deque()
        for s1 in leaders:
            key = stage2_key(s1.arch_key, init)
            s2 = existing.get(key)
            s2_id = s2.id if s2 else store.add_trial(s1.architecture, key, s1.indices, {"stage1_trial": s1.id, "init": init}, stage=2)
            self.stage1_of[s2_id] = s1
            if s2 is None or s2.status != "succeeded":
                self.queue.append(s2_id)

    def next_trial(self) -> int | None:
        return self.queue.popleft() if self.queue else None

    def spec(self, trial: TrialRow) -> TrialSpec:
        spec = self.context.spec(trial.id, trial.architecture, stage=2, epochs=self.epochs)
        if self.init == "shared":
            spec = spec.model_copy(update={"init_weights": str(self.shared_weights(trial.id, spec.architecture))})
        lat = self.context.config.latency
        if lat.predictor:  # stage 1 predicted its latency: the winners are measured for real
            num_classes = lat.num_classes or self.context.num_classes
            spec = spec.model_copy(update={"latency": lat.model_copy(update={"predictor": None, "measure_every": None,
                                                                              "num_classes": num_classes}), "measure": True})
        return spec

    def record(self, trial_id: int, worker: str, result: TrialResult) -> None:
        s1 = self.stage1_of[trial_id]
        record_result(self.context.config, self.store, trial_id, worker, result, latency_ms=s1.latency_ms, memory_mb=s1.memory_mb)


def stage2_key(arch_key: str, init: str) -> str:
    return arch_key if init == "scratch" else f"{arch_key}@{init}"


def supernet_weights(config: SearchConfig, directory: Path):
    """A function writing a stage-2 trial's starting weights, extracted from the experiment's supernet."""
    from search.oneshot.training import supernet_dir

    if config.evaluator != "supernet":
        raise MnasError("--init shared starts from a supernet's weights; this experiment's evaluator is proxy")
    evaluator = None

    def write(trial_id: int, arch) -> Path:
        nonlocal evaluator
        import torch

        from search.oneshot.evaluator import SupernetEvaluator

        path = directory / "trials" / str(trial_id) / "init.pt"
        if not path.is_file():
            evaluator = evaluator or SupernetEvaluator(config, supernet_dir(config, directory))
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(evaluator.extract(arch).state_dict(), path)
        return path

    return write


def run_stage2(config: SearchConfig, directory: Path, top: int, epochs: int, executor_kind: str | None = None,
               init: str = "scratch", quantize: str | None = None, quantize_format: str | None = None) -> list[dict]:
    """Returns one row per architecture: stage-1 trial, stage-2 trial, the checkpoint path and,
    with ``quantize``, the quantized model's test accuracy (``quantized``)."""
    directory = Path(directory).resolve()
    if init not in ("scratch", "shared"):
        raise MnasError(f"--init must be scratch or shared (got {init!r})")
    store = Store(directory)
    try:
        ids = queries.top_distinct(queries.trial_frame(store), top, reward=config.reward).id
        leaders = [store.trial(int(i)) for i in ids]
        if not leaders:
            raise MnasError(f"{directory} has no succeeded stage-1 trials to train")
        tuning = measured_settings(config, directory)
        context = prepare_trials(config, directory, tuning, check_latency=False)
        stage = FullTrainingStage(context, store, leaders, epochs, init, supernet_weights(config, directory) if init == "shared" else None)
        executor = make_executor(executor_kind or config.executor.type, directory, config.max_parallel_trials,
                                 slots_per_gpu(config.executor, tuning), config.trial_timeout_s * max(1, epochs), config.executor.ray_address)
        reason, stopped = TrialLoop(stage, executor, store).run()
        if stopped:  # only an interrupt stops stage 2; finished trials are kept
            raise MnasError("stage 2 was interrupted; run the same mnas stage2 command again to continue")
        rows = []
        by_key = {t["arch_key"]: t for t in store.trials(stage=2)}
        fmt = quantize_format or (quantization_format(config) if quantize else None)
        for s1 in leaders:
            s2 = by_key[stage2_key(s1.arch_key, init)]
            trial_dir = directory / "trials" / str(s2.id)
            row = {"stage1": s1, "stage2": s2, "checkpoint": str(trial_dir / "checkpoint.pt")}
            if quantize and s2.status == "succeeded":
                from search.trials.quantized import quantized_accuracy

                row["quantized"] = quantized_accuracy(trial_dir, context.data, quantize, fmt)
            rows.append(row)
        return rows
    finally:
        store.close()


def quantization_format(config: SearchConfig) -> str:
    """The model format the search's latency source runs (what its winners deploy as)."""
    from latency_service.client import LatencyServiceError

    try:
        measurer = config.latency.measurer()
        try:
            return measurer.model_format()
        finally:
            measurer.close()
    except LatencyServiceError as exc:
        raise MnasError(f"cannot ask the latency source which format to quantize to ({exc}); give --quantize-format onnx|tflite") from None
