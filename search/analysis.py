"""Analysis of an experiment: trials as a DataFrame, the search curve, the Pareto front,
and stop advice following Vertex AI NAS's rules.

    from search.analysis import load_trials
    df = load_trials("runs/demo")          # one row per trial, for notebooks
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mnas.arch import Architecture
from mnas.errors import MnasError
from search.config import parse_config
from search.store import STORE_NAME, Store

CONVERGENCE_WINDOW = 50
NOT_RISING_AFTER = 500


def open_store(directory: str | Path) -> Store:
    directory = Path(directory)
    if not (directory / STORE_NAME).is_file():
        raise MnasError(f"{directory} is not an experiment directory (no {STORE_NAME})")
    return Store(directory)


def load_trials(directory: str | Path) -> pd.DataFrame:
    """One row per trial (stage 1 and 2): status, metrics, reward, timings, architecture."""
    store = open_store(directory)
    try:
        rows = []
        for t in store.trials(stage=None):
            metrics = t["metrics"] or {}
            rows.append({
                "id": t["id"], "stage": t["stage"], "status": t["status"], "cached": t["cached_from"] is not None,
                "accuracy": t["accuracy"], "latency_ms": t["latency_ms"], "memory_mb": t["memory_mb"], "reward": t["reward"],
                "error_kind": t["error_kind"], "error": t["error"], "worker": t["worker"],
                "created": t["created"], "started": t["started"], "ended": t["ended"],
                "seconds": (t["ended"] - t["started"]) if t["ended"] and t["started"] else np.nan,
                "train_seconds": metrics.get("timings", {}).get("train_s", np.nan),
                "arch": Architecture.from_dict(t["architecture"]).summary(),
                "arch_key": t["arch_key"], "architecture": t["architecture"],
            })
        return pd.DataFrame(rows, columns=[
            "id", "stage", "status", "cached", "accuracy", "latency_ms", "memory_mb", "reward", "error_kind", "error",
            "worker", "created", "started", "ended", "seconds", "train_seconds", "arch", "arch_key", "architecture",
        ])
    finally:
        store.close()


def load_config_of(directory: str | Path):
    store = open_store(directory)
    try:
        return parse_config(store.get_meta("config"), "stored config")
    finally:
        store.close()


def search_curve(df: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Stage-1 finished trials in order of completion, with running best, rolling mean and variance."""
    done = df[(df.stage == 1) & (df.status == "succeeded")].sort_values("ended").reset_index(drop=True)
    done["order"] = np.arange(1, len(done) + 1)
    done["best"] = done.reward.cummax()
    done["rolling_mean"] = done.reward.rolling(window, min_periods=1).mean()
    done["rolling_var"] = done.reward.rolling(window, min_periods=2).var()
    return done


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Succeeded stage-1 trials not beaten on both accuracy and latency (lower latency is better)."""
    done = df[(df.stage == 1) & (df.status == "succeeded") & (~df.cached)].sort_values(["latency_ms", "accuracy"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in done.iterrows():
        if row.accuracy > best:
            front.append(row)
            best = row.accuracy
    return pd.DataFrame(front, columns=df.columns)


def advice(df: pd.DataFrame, window: int = CONVERGENCE_WINDOW) -> dict:
    """What to do next, with the numbers behind it (Vertex AI NAS's rules of thumb)."""
    stage1 = df[df.stage == 1]
    finished = stage1[stage1.status.isin(["succeeded", "failed"])]
    failed = int((finished.status == "failed").sum())
    curve = search_curve(df)
    facts = {
        "finished": int(len(finished)), "succeeded": int(len(curve)), "failed": failed,
        "running": int((stage1.status == "running").sum()), "pending": int((stage1.status == "pending").sum()),
        "failure_rate": failed / len(finished) if len(finished) else 0.0,
        "best_reward": float(curve.best.iloc[-1]) if len(curve) else None,
    }
    recent = finished.sort_values("ended").tail(20)
    if len(recent) >= 10 and (recent.status == "failed").mean() > 0.2:
        return {"verdict": "stop: too many failures", "why": f"{int((recent.status == 'failed').sum())} of the last {len(recent)} trials failed (> 20%); fix the cause (see failures by kind) before spending more", **facts}
    if len(curve) >= 2 * window:
        var_then = float(curve.reward.iloc[-2 * window:-window].var())
        var_now = float(curve.reward.iloc[-window:].var())
        best_then = float(curve.best.iloc[-window - 1])
        facts.update(variance_previous=var_then, variance_recent=var_now)
        if var_now < 0.5 * var_then and facts["best_reward"] <= best_then * 1.001:
            return {"verdict": "converged: stop", "why": f"reward variance fell from {var_then:.2e} to {var_now:.2e} over the last {window} trials and the best did not improve", **facts}
    if len(curve) >= NOT_RISING_AFTER:
        first = float(curve.rolling_mean.iloc[window - 1])
        last = float(curve.rolling_mean.iloc[-1])
        if last <= first:
            return {"verdict": "stop: not rising", "why": f"after {len(curve)} trials the rolling mean reward ({last:.4f}) is no higher than at the start ({first:.4f})", **facts}
    return {"verdict": "keep going", "why": "no stop rule applies yet (converging, failures, or not rising after 500 trials)", **facts}
