"""Early stopping on a real proxy: the same search with and without it, a few seeds.

    python benchmarks/early_stopping.py [--trials 20] [--epochs 4] [--seeds 0 1] [--rule median]

The demo's proxy (digits, 16 px, width 0.5) trained for ``--epochs`` epochs, in-process ORT
latency at 64 px, PPO, one trial at a time (so trial time is not shared). Reports per run the
total trial time, the best reward and its trial; "saved" compares each seed's runs, and the
spread of the runs without early stopping over the seeds is the run-to-run noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

from search.config import load_config  # noqa: E402
from search.experiment.directory import open_search  # noqa: E402
from search.experiment.store import Store  # noqa: E402
from search.stages.stage1 import run_search  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "search" / "configs" / "demo.yaml"


def run(seed: int, trials: int, epochs: int, rule: str | None, out: Path) -> dict:
    base = load_config(DEMO)
    data = base.model_dump()
    data.update(seed=seed, max_trials=trials, max_parallel_trials=1,
                early_stopping=None if rule is None else {"rule": rule, "min_epochs": 1, "min_completed": 5})
    data["proxy"]["epochs"] = epochs
    config = type(base).model_validate(data)
    config = open_search(config, out, resume=False)
    started = time.perf_counter()
    outcome = run_search(config, out, progress=False)
    wall = time.perf_counter() - started
    store = Store(out)
    try:
        rows = store.trials()
    finally:
        store.close()
    trial_s = sum((t["ended"] or 0) - (t["started"] or 0) for t in rows if t["started"])
    best = outcome.best
    return {"wall": wall, "trial_s": trial_s, "best": best["reward"], "best_trial": best["id"], "best_top1": best["accuracy"],
            "stopped": outcome.counts["early_stopped"], "succeeded": outcome.counts["succeeded"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rule", default="median", choices=["median", "percentile"])
    args = parser.parse_args()
    print(machine_line())
    print(f"\n{args.trials} trials, {args.epochs} epochs, rule {args.rule} (min_epochs 1, min_completed 5)\n")
    print("| seed | early stopping | trial time (s) | wall (s) | stopped | best reward (trial, top-1) | time saved |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            off = run(seed, args.trials, args.epochs, None, Path(tmp) / f"off-{seed}")
            on = run(seed, args.trials, args.epochs, args.rule, Path(tmp) / f"on-{seed}")
            for name, r in (("off", off), (args.rule, on)):
                saved = "" if r is off else f"{1 - on['trial_s'] / off['trial_s']:.0%}"
                print(f"| {seed} | {name} | {r['trial_s']:.0f} | {r['wall']:.0f} | {r['stopped']} | "
                      f"{r['best']:.4f} ({r['best_trial']}, {r['best_top1']:.3f}) | {saved} |", flush=True)


if __name__ == "__main__":
    main()
