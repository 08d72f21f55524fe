"""Questions asked of an experiment's store, each answered in one place.

- ``stop_reason``: the search's stop rules (failure budget, failure rate over a window,
  patience). The search loop and ``mnas status`` both call it, so status never advises a
  stop that the search would not make.
- ``trial_frame``: every trial as one pandas row (for analysis, reports, notebooks).
- ``succeeded``: the succeeded trials of a stage, by default only those actually evaluated
  (an answer from the store repeats another trial and is left out).
- ``top_distinct``: the k best architectures by reward, each once (Pareto mode: the front
  first, then the next front, by reward within a front).
- ``objective_points``: the trials' objectives in minimization form (Pareto analysis).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mnas.reward import Reward
from search.config import SearchConfig
from search.experiment.store import Store
from search.pareto import as_minimization, pareto_ranks
from search.trials.spec import TrialStatus

REWARDED_SQL = "(" + ", ".join(f"'{s}'" for s in TrialStatus.rewarded()) + ")"  # statuses with a reward, as SQL

FRAME_COLUMNS = [
    "id", "stage", "status", "cached", "accuracy", "latency_ms", "memory_mb", "reward", "error_kind", "error",
    "worker", "created", "started", "ended", "seconds", "train_seconds", "params", "macs", "latency_predicted_ms",
    "latency_measured_ms", "arch", "arch_key", "architecture", "indices", "zero_cost",
]


def stop_reason(store: Store, config: SearchConfig, stage: int = 1) -> str | None:
    """Why the search must stop now, or None to go on."""
    failed = store.counts(stage)["failed"]
    budget = config.failure_budget()
    if failed > budget:
        return f"failure budget exhausted: {failed} failed trials > max_failed_trials {budget}"
    rule = config.stop
    recent = store.recent_statuses(stage, rule.failure_window)
    if len(recent) == rule.failure_window:
        bad = recent.count("failed")
        if bad / len(recent) > rule.max_failure_rate:
            return f"too many failures: {bad} of the last {len(recent)} trials failed (> {rule.max_failure_rate:.0%})"
    if rule.patience and store.trials_since_best(stage) >= rule.patience:
        return f"no improvement in the last {rule.patience} trials"
    return None


def latency_scale(store: Store) -> float:
    """How a predictor's figures compare with this search's real measurements so far
    (median of measured / predicted; 1.0 before the first pair): the online correction."""
    pairs = store.latency_pairs(1)
    return float(np.median([m / p for p, m in pairs])) if pairs else 1.0


def prefilter_threshold(store: Store, prefilter) -> float | None:
    """The prefilter's bar for the next trial: the ``quantile`` of the chosen zero-cost score over
    the stage-1 trials trained so far (None until ``min_trials`` have it, or without a prefilter)."""
    if prefilter is None:
        return None
    rows = store.db.execute(
        "SELECT json_extract(metrics, '$.zero_cost.' || ?) FROM trials WHERE stage = 1 AND status IN " + REWARDED_SQL + " "
        "AND cached_from IS NULL", (prefilter.score,)).fetchall()
    scores = [v for (v,) in rows if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.quantile(scores, prefilter.quantile)) if len(scores) >= prefilter.min_trials else None


def trial_frame(store: Store) -> pd.DataFrame:
    """One row per trial (stage 1 and 2): status, metrics, reward, timings, size, architecture."""
    from mnas.arch import Architecture

    rows = []
    for t in store.trials(stage=None):
        metrics = t["metrics"] or {}
        costs = metrics.get("costs") or {}
        lat = metrics.get("latency") or {}
        rows.append({
            "id": t["id"], "stage": t["stage"], "status": t["status"], "cached": t["cached_from"] is not None,
            "accuracy": t["accuracy"], "latency_ms": t["latency_ms"], "memory_mb": t["memory_mb"], "reward": t["reward"],
            "error_kind": t["error_kind"], "error": t["error"], "worker": t["worker"],
            "created": t["created"], "started": t["started"], "ended": t["ended"],
            "seconds": (t["ended"] - t["started"]) if t["ended"] and t["started"] else np.nan,
            "train_seconds": metrics.get("timings", {}).get("train_s", np.nan),
            "params": costs.get("params", np.nan), "macs": costs.get("macs", np.nan),
            "latency_predicted_ms": lat.get("predicted_ms", np.nan), "latency_measured_ms": lat.get("latency_ms", np.nan),
            "arch": Architecture.from_dict(t["architecture"]).summary(),
            "arch_key": t["arch_key"], "architecture": t["architecture"], "indices": t["indices"],
            "zero_cost": metrics.get("zero_cost") or {},
        })
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def succeeded(df: pd.DataFrame, stage: int = 1, fresh: bool = True) -> pd.DataFrame:
    """Succeeded trials of ``stage``; ``fresh`` leaves out answers from the store (repeats)."""
    mask = (df.stage == stage) & (df.status == "succeeded")
    if fresh:
        mask &= ~df.cached.astype(bool)
    return df[mask]


def top_distinct(df: pd.DataFrame, k: int, stage: int = 1, reward: Reward | None = None) -> pd.DataFrame:
    """The ``k`` best architectures of ``stage`` by reward, each once (its first best trial);
    for a Pareto-mode ``reward``, by Pareto rank first."""
    done = succeeded(df, stage).sort_values(["reward", "id"], ascending=[False, True]).drop_duplicates("arch_key")
    if reward is not None and reward.pareto and len(done):
        done = done.assign(pareto_rank=pareto_ranks(objective_points(done, reward)))
        done = done.sort_values(["pareto_rank", "reward", "id"], ascending=[True, False, True]).drop(columns="pareto_rank")
    return done.head(k)


def objective_points(df: pd.DataFrame, reward: Reward) -> np.ndarray:
    """(-accuracy, latency[, memory when the reward has a memory target]) per row."""
    memory = df.memory_mb.astype(float) if reward.memory_target_mb is not None else None
    return as_minimization(df.accuracy.astype(float), df.latency_ms.astype(float), memory)
