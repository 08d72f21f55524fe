"""What a trial pays before and around its training: a fresh ``python -m search.trials.run`` process
against a fork of the local executor's warm server (``search.trials.process``).

    python benchmarks/trial_startup.py [CONFIG] [--archs 5]

The same stage-1 trials (the config's proxy and latency; architectures sampled with seeds
0..N-1), one at a time, alternating the two ways of starting them so that the machine's
drift falls on both. Per way: the median wall time from start to result, the trial's own
training, export and measurement time, and the rest (imports, data, scores, bookkeeping).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _machine import machine_line  # noqa: E402

from mnas.data import load_dataset  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402
from search.config import load_config  # noqa: E402
from search.trials.executors import LocalExecutor, threads_per_trial  # noqa: E402
from search.trials.spec import TrialContext, TrialResult  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run_exec(spec, work: Path) -> tuple[float, TrialResult]:
    """The trial as its own interpreter: imports torch and the trial's modules every time."""
    trial_dir = work / "exec" / str(spec.trial_id)
    trial_dir.mkdir(parents=True)
    (trial_dir / "spec.json").write_text(spec.to_json())
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(spec.torch_threads), "MNAS_SEARCH_PID": str(os.getpid())}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.trials.run", str(trial_dir / "spec.json"), str(trial_dir / "result.json")],
                   check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t, TrialResult.from_json((trial_dir / "result.json").read_text())


def run_fork(executor: LocalExecutor, spec) -> tuple[float, TrialResult]:
    t = time.perf_counter()
    executor.submit(spec)
    while not (done := executor.poll(timeout=0.2)):
        pass
    return time.perf_counter() - t, done[0].result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default=str(REPO / "search" / "configs" / "demo.yaml"))
    parser.add_argument("--archs", type=int, default=5)
    args = parser.parse_args()
    config = load_config(args.config)
    num_classes = load_dataset(config.proxy.data).num_classes
    space = SearchSpace()
    rows: dict[str, list[dict]] = {"python -m search.trials.run": [], "forked from the warm server": []}
    with tempfile.TemporaryDirectory(prefix="mnas-startup-") as tmp:
        work = Path(tmp)
        ctx = TrialContext.create(config, num_classes, cache=str(work / "data"))
        threads = threads_per_trial(1)
        with LocalExecutor(work / "fork", max_parallel=1, timeout_s=config.trial_timeout_s) as executor:
            run_fork(executor, ctx.spec(999, space.sample(999)))  # starts the server: paid once per search, reported apart
            for i in range(args.archs):
                spec = ctx.spec(i + 1, space.sample(i)).model_copy(update={"torch_threads": threads})
                for name, run in (("python -m search.trials.run", lambda spec=spec: run_exec(spec, work)),
                                  ("forked from the warm server", lambda spec=spec: run_fork(executor, spec))):
                    wall, result = run()
                    assert result.status == "succeeded", result.error
                    timings = result.metrics["timings"]
                    rows[name].append({"wall": wall, **timings})
                    print(f"  {name}: trial {i + 1} {wall:.1f} s", file=sys.stderr, flush=True)
    print(f"# {machine_line()}")
    print(f"# {config.name}: {args.archs} stage-1 trials each way, one at a time, {threads} threads")
    print("\n| trial started as | wall per trial (s) | training + evaluation | export | measurement | the rest |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "train_s", "export_s", "measure_s")}
        rest = statistics.median(r["wall"] - r["train_s"] - r["export_s"] - r["measure_s"] for r in runs)
        print(f"| {name} | {med['wall']:.2f} | {med['train_s']:.2f} | {med['export_s']:.2f} | {med['measure_s']:.2f} | {rest:.2f} |")


if __name__ == "__main__":
    main()
