"""Search cost: trials x average trial time / parallel trials, in days, GPU-hours and money.

The average trial time comes from an existing experiment (``--from DIR``: its finished,
freshly trained stage-1 trials) or from a few trials timed now (``--probe N``: real trials
of random architectures, run here exactly as the search would run them).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from mnas.errors import MnasError
from search.config import SearchConfig


def trial_seconds_from(directory: Path) -> list[float]:
    from search.experiment import queries
    from search.results.analysis import load_trials

    done = queries.succeeded(load_trials(directory), 1)
    if done.empty:
        raise MnasError(f"{directory} has no finished trials to time")
    return [float(s) for s in done.seconds.dropna()]


def trial_seconds_probe(config: SearchConfig, probes: int) -> list[float]:
    """Run ``probes`` real trials of random architectures exactly as the search would; their wall times."""
    import time

    from search.experiment.directory import prepare_trials
    from search.trials.run import run_trial

    space = config.space.build()
    times = []
    with tempfile.TemporaryDirectory(prefix="mnas-estimate-") as tmp:
        context = prepare_trials(config, Path(tmp))
        for i in range(probes):
            t0 = time.perf_counter()
            result = run_trial(context.spec(i + 1, space.sample(config.seed + 1000 + i)))
            if result.status != "succeeded":
                raise MnasError(f"probe trial {i + 1} failed ({result.error_kind}): {result.error.splitlines()[0]}")
            times.append(time.perf_counter() - t0)
    return times


def estimate(config: SearchConfig, trial_seconds: list[float], gpus_per_trial: float, price_per_gpu_hour: float,
             stage2_top: int = 10, stage2_epochs: int | None = None) -> dict:
    avg = statistics.fmean(trial_seconds)
    wall_s = config.max_trials * avg / config.max_parallel_trials
    gpu_hours = config.max_trials * avg * gpus_per_trial / 3600
    epochs2 = stage2_epochs or config.proxy.epochs * 20
    # stage 2 trains on all training data (1 / (1 - val_fraction) of the stage-1 split) for more epochs
    stage2_trial_s = avg * (epochs2 / config.proxy.epochs) / (1 - config.proxy.val_fraction)
    stage2_gpu_hours = stage2_top * stage2_trial_s * gpus_per_trial / 3600
    return {
        "trials": config.max_trials, "parallel": config.max_parallel_trials, "average_trial_s": avg, "timed_trials": len(trial_seconds),
        "search_wall_hours": wall_s / 3600, "search_days": wall_s / 86400, "search_gpu_hours": gpu_hours,
        "search_cost": gpu_hours * price_per_gpu_hour, "stage2_top": stage2_top, "stage2_epochs": epochs2,
        "stage2_gpu_hours": stage2_gpu_hours, "stage2_cost": stage2_gpu_hours * price_per_gpu_hour,
        "price_per_gpu_hour": price_per_gpu_hour, "gpus_per_trial": gpus_per_trial,
    }
