"""Stage 2: fully train the top-k architectures of stage 1 and test them.

Each is trained on all training data for the stage-2 epochs and evaluated on the test
split, with the same executor machinery; its final reward uses the stage-2 accuracy and
the stage-1 latency and memory (the same model on the same device). Resumable: finished
stage-2 trials are kept, interrupted ones run again.
"""

from __future__ import annotations

from pathlib import Path

from mnas.errors import MnasError
from search.executors import make_executor
from search.scheduler import Orchestrator


def top_architectures(orchestrator: Orchestrator, k: int) -> list[dict]:
    seen, top = set(), []
    for t in sorted(orchestrator.store.trials(stage=1, status="succeeded"), key=lambda t: -t["reward"]):
        if t["arch_key"] not in seen:
            seen.add(t["arch_key"])
            top.append(t)
        if len(top) == k:
            break
    return top


def run_stage2(orchestrator: Orchestrator, top: int, epochs: int) -> list[dict]:
    """Returns one row per architecture: stage-1 trial, stage-2 trial and their figures."""
    o = orchestrator
    o.prepare()
    leaders = top_architectures(o, top)
    if not leaders:
        raise MnasError(f"{o.dir} has no succeeded stage-1 trials to train")
    o.store.reset_interrupted(stage=2)
    existing = {t["arch_key"]: t for t in o.store.trials(stage=2)}
    queue = []
    for s1 in leaders:
        s2 = existing.get(s1["arch_key"])
        if s2 is None:
            s2_id = o.store.add_trial(s1["architecture"], s1["arch_key"], s1["indices"], {"stage1_trial": s1["id"]}, stage=2)
            s2 = o.store.trial(s2_id)
        if s2["status"] != "succeeded":
            queue.append((s1, s2))
    cfg = o.config
    executor = make_executor(o.executor_kind, o.dir, cfg.max_parallel_trials, o.trials_per_gpu(), cfg.trial_timeout_s * max(1, epochs), cfg.executor.ray_address)
    stage1_of = {s2["id"]: s1 for s1, s2 in queue}
    try:
        while queue or o.store.counts(2)["running"]:
            while queue and executor.free_slots() > 0:
                s1, s2 = queue.pop(0)
                worker = executor.submit(s2["id"], o.spec(s2, stage=2, epochs=epochs))
                o.store.mark_running(s2["id"], worker)
            for finished in executor.poll(timeout=0.5):
                result, s1 = finished.result, stage1_of[finished.trial_id]
                if result.get("status") != "succeeded":
                    o.store.fail(finished.trial_id, result.get("error", "unknown error"), result.get("error_kind", "error"))
                    continue
                reward = o.reward(result["accuracy"], s1["latency_ms"], s1["memory_mb"])
                o.store.finish(finished.trial_id, accuracy=result["accuracy"], latency_ms=s1["latency_ms"], memory_mb=s1["memory_mb"],
                               reward=reward, metrics=result.get("metrics", {}))
    finally:
        executor.shutdown()
    rows = []
    by_key = {t["arch_key"]: t for t in o.store.trials(stage=2)}
    for s1 in leaders:
        s2 = by_key[s1["arch_key"]]
        rows.append({"stage1": s1, "stage2": s2, "checkpoint": str(Path(o.dir, "trials", str(s2["id"]), "checkpoint.pt"))})
    return rows
