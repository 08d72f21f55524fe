"""Analysis of an experiment: trials as a DataFrame, the search curve, the Pareto front and
its hypervolume over trials, and stop advice following Vertex AI NAS's rules.

    from search.results.analysis import load_trials
    df = load_trials("runs/demo")          # one row per trial, for notebooks

Imports no torch: ``mnas status`` and ``mnas report`` only read the store.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mnas.reward import Reward
from search.config import SearchConfig
from search.experiment import queries
from search.experiment.directory import open_store, stored_config

CONVERGENCE_WINDOW = 50
NOT_RISING_AFTER = 500


def load_trials(directory: str | Path) -> pd.DataFrame:
    """One row per trial (stage 1 and 2): status, metrics, reward, timings, architecture."""
    store = open_store(directory)
    try:
        return queries.trial_frame(store)
    finally:
        store.close()


def load_config_of(directory: str | Path) -> SearchConfig:
    store = open_store(directory)
    try:
        return stored_config(store)
    finally:
        store.close()


def load_experiment(directory: str | Path) -> tuple[SearchConfig, pd.DataFrame, dict]:
    """The config, the trials and the advice, from one opening of the store."""
    store = open_store(directory)
    try:
        config = stored_config(store)
        df = queries.trial_frame(store)
        return config, df, advice(df, queries.stop_reason(store, config), reward=config.reward)
    finally:
        store.close()


def search_curve(df: pd.DataFrame, window: int = 20) -> pd.DataFrame:
    """Stage-1 succeeded trials (repeats included) in order of completion, with running best,
    rolling mean and variance."""
    done = queries.succeeded(df, 1, fresh=False).sort_values("ended").reset_index(drop=True)
    done["order"] = np.arange(1, len(done) + 1)
    done["best"] = done.reward.cummax()
    done["rolling_mean"] = done.reward.rolling(window, min_periods=1).mean()
    done["rolling_var"] = done.reward.rolling(window, min_periods=2).var()
    return done


def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """Evaluated stage-1 trials not beaten on both accuracy and latency (lower latency is better)."""
    done = queries.succeeded(df, 1).sort_values(["latency_ms", "accuracy"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in done.iterrows():
        if row.accuracy > best:
            front.append(row)
            best = row.accuracy
    return pd.DataFrame(front, columns=df.columns)


def hypervolume_progress(df: pd.DataFrame, reward: Reward) -> pd.DataFrame:
    """Stage-1 evaluated trials in order of completion with the hypervolume of the front found
    so far (reference point: the reward's thresholds; accuracy x ms, x MB with a memory target)."""
    from search.pareto import hypervolume_curve

    done = queries.succeeded(df, 1).sort_values("ended").reset_index(drop=True)
    done["order"] = np.arange(1, len(done) + 1)
    done["hypervolume"] = hypervolume_curve(queries.objective_points(done, reward), reward.reference_point()) if len(done) else []
    return done


def pareto_facts(df: pd.DataFrame, reward: Reward) -> dict:
    """Pareto mode's progress: the front's size and its hypervolume now and at half the trials."""
    progress = hypervolume_progress(df, reward)
    if progress.empty:
        return {"front_size": 0, "hypervolume": 0.0, "hypervolume_at_half": 0.0}
    from search.pareto import pareto_ranks

    hv = progress.hypervolume
    front = pareto_ranks(queries.objective_points(progress.drop_duplicates("arch_key"), reward)) == 1
    return {"front_size": int(front.sum()), "hypervolume": float(hv.iloc[-1]),
            "hypervolume_at_half": float(hv.iloc[(len(hv) - 1) // 2])}


def trials_per_host(df: pd.DataFrame) -> dict[str, int]:
    """Trials per machine that ran them (a worker is ``slot@host``; ``store``/``supernet`` have no host)."""
    workers = df.worker.dropna() if "worker" in df else pd.Series([], dtype=object)
    hosts = workers.map(lambda w: w.split("@", 1)[1] if "@" in w else w)
    return {str(h): int(n) for h, n in hosts.value_counts().sort_index().items()}


def advice(df: pd.DataFrame, stop_reason: str | None = None, window: int = CONVERGENCE_WINDOW,
           reward: Reward | None = None) -> dict:
    """What to do next, with the numbers behind it (Vertex AI NAS's rules of thumb).

    ``stop_reason`` is the search's own stop rule (``queries.stop_reason``): when it
    applies, the advice is to stop for that reason, exactly as the search would.
    """
    stage1 = df[df.stage == 1]
    finished = stage1[stage1.status.isin(["succeeded", "failed", "early_stopped", "prefiltered"])]
    failed = int((finished.status == "failed").sum())
    curve = search_curve(df)
    facts = {
        "finished": int(len(finished)), "succeeded": int(len(curve)), "failed": failed,
        "early_stopped": int((finished.status == "early_stopped").sum()),
        "prefiltered": int((finished.status == "prefiltered").sum()),
        "running": int((stage1.status == "running").sum()), "pending": int((stage1.status == "pending").sum()),
        "failure_rate": failed / len(finished) if len(finished) else 0.0,
        "best_reward": float(curve.best.iloc[-1]) if len(curve) else None,
        "hosts": trials_per_host(stage1),
    }
    if reward is not None and reward.pareto:
        facts.update(pareto_facts(df, reward))
    if stop_reason:
        return {"verdict": f"stop: {stop_reason.split(':')[0]}", "why": f"the search's stop rule: {stop_reason}", **facts}
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


def choice_effects(df: pd.DataFrame, space) -> pd.DataFrame:
    """Per searched token and choice: how many evaluated stage-1 trials took it, and their mean
    reward and accuracy (the workflow's last step: which choices matter, what to shrink)."""
    done = queries.succeeded(df, 1)
    done = done[done.indices.map(lambda v: isinstance(v, list) and len(v) == len(space.tokens))]
    rows = []
    for t, token in enumerate(space.tokens):
        if len(token.choices) < 2:
            continue
        picked = done.indices.map(lambda v, t=t: v[t])
        for i, choice in enumerate(token.choices):
            mine = done[picked == i]
            rows.append({"block": token.block + 1, "token": token.name, "choice": str(choice), "trials": len(mine),
                         "mean_reward": mine.reward.mean() if len(mine) else np.nan,
                         "mean_accuracy": mine.accuracy.mean() if len(mine) else np.nan})
    out = pd.DataFrame(rows, columns=["block", "token", "choice", "trials", "mean_reward", "mean_accuracy"])
    if len(out):  # how far apart a token's choices are: the tokens that matter first
        spread = out.groupby(["block", "token"]).mean_reward.transform(lambda r: r.max() - r.min())
        out = out.assign(reward_spread=spread).sort_values(["reward_spread", "block", "token"], ascending=[False, True, True])
    return out.reset_index(drop=True)


def zero_cost_agreement(df: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau of each training-free score (mnas.zero_cost) against the proxy accuracy of the
    evaluated stage-1 trials, and against the stage-2 accuracy where the winners were trained."""
    from search.proxy.ranks import agreement

    done = queries.succeeded(df, 1)
    stage2 = queries.succeeded(df, 2).drop_duplicates("arch_key").set_index("arch_key").accuracy
    scores = sorted({k for z in done.zero_cost for k, v in z.items() if k not in ("seconds", "error") and isinstance(v, (int, float))})
    rows = []
    for score in scores:
        has = done[done.zero_cost.map(lambda z, s=score: np.isfinite(z.get(s, np.nan)))]
        values = has.zero_cost.map(lambda z, s=score: z[s])
        row = {"score": score, "trials": len(has), "tau_proxy": agreement(values.tolist(), has.accuracy.tolist()).tau}
        both = has[has.arch_key.isin(stage2.index)].drop_duplicates("arch_key")
        row["tau_stage2"] = agreement(both.zero_cost.map(lambda z, s=score: z[s]).tolist(), stage2[both.arch_key].tolist()).tau \
            if len(both) >= 3 else np.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=["score", "trials", "tau_proxy", "tau_stage2"])
