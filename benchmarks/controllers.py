"""Which controller finds good models fastest, on real trial data (a surrogate benchmark).

    python benchmarks/controllers.py build [--n 200] [--workers 2]     # train and measure the table
    python benchmarks/controllers.py run [--proposals 1000] [--seeds 0 1 2 3 4] [--ax-proposals 150]
    python benchmarks/controllers.py variants --variant NAME=KIND[:JSON_OPTIONS] ... [--budgets 25 50 75]

``build`` samples ``--n`` architectures of the MnasNet space (seeded), trains each on a
CIFAR-10 proxy (``../shared/data/cifar10``: a stratified 5,000-image training subset, top-1 on
2,000 other training images, 16 px, width 0.5, 3 epochs, one thread per worker) and measures
its latency with the in-process ``x86-ort-1t-quick`` profile at 64 px (after all training,
alone on the machine). Rows are appended to a ``.partial.jsonl`` as they finish, so a killed
build continues. The table goes to ``search/tables/cifar10-16px.json`` (``search.controllers.surrogate``).

``run`` fits the surrogate (held-out Kendall tau and R^2 printed), then drives every controller
for ``--proposals`` proposals per seed with the soft reward at T = the table's median latency,
and prints per controller: proposals to reach random search's best-of-``--proposals`` (per seed),
the best reward at 100/300/1,000 and the hypervolume (top-1 x ms, reference (0, 2T)) at 300.
Ax refits its model on every proposal, so it runs ``--ax-proposals`` only.

``variants`` asks the hard-budget question of controller option sets (e.g.
``--variant paper=ppo-paper --variant lr3=ppo:'{"lr": 3e-3, "elite": 0}'``): the true top-1 of the
best observed proposal under each budget after 100 and 300 proposals, points above random, mean
and worst seed; how the shipped PPO defaults were chosen.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

from search.controllers.surrogate import TABLES, TableRow, TrialTable, compare, format_comparison  # noqa: E402

TABLE = TABLES / "cifar10-16px.json"
PROXY = {"data": "cifar10 (npz, JPEG copy)", "train_images": 5000, "val_images": 2000, "resolution": 16,
         "width_mult": 0.5, "epochs": 3, "batch_size": 64, "lr": 0.05}
LATENCY = {"device": "x86-ort-1t-quick", "resolution": 64, "format": "onnx", "num_classes": 10}


# ----- build -----------------------------------------------------------------------------
def _subsets(data: str):
    from mnas.data import load_dataset, stratified_split

    ds = load_dataset(f"npz:{data}")
    n = len(ds.train)
    keep, _ = stratified_split(ds.train.labels, 1 - (PROXY["train_images"] + PROXY["val_images"]) / n, seed=0)
    pool = ds.train.subset(keep)
    train_idx, val_idx = stratified_split(pool.labels, PROXY["val_images"] / len(pool), seed=0)
    return pool.subset(train_idx), pool.subset(val_idx), ds.num_classes


def _train_one(job):
    import torch

    from mnas.space import SearchSpace
    from mnas.train import TrainConfig, train_model

    torch.set_num_threads(1)
    i, indices, data = job
    global _DATA
    if "_DATA" not in globals():
        _DATA = _subsets(data)
    train, val, classes = _DATA
    cfg = TrainConfig(epochs=PROXY["epochs"], batch_size=PROXY["batch_size"], resolution=PROXY["resolution"],
                      width_mult=PROXY["width_mult"], lr=PROXY["lr"], device="cpu", seed=0)
    started = time.perf_counter()
    metrics = train_model(SearchSpace().decode(indices), train, val, classes, cfg)
    return i, indices, float(metrics["top1"]), time.perf_counter() - started


def build(args) -> None:
    from mnas.space import SearchSpace

    space = SearchSpace()
    rng = np.random.default_rng(2026)
    wanted = [space.sample_indices(rng) for _ in range(args.n)]
    partial = TABLE.with_suffix(".partial.jsonl")
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            row = json.loads(line)
            done[row["i"]] = row
    jobs = [(i, idx, args.data) for i, idx in enumerate(wanted) if i not in done]
    print(f"{machine_line()}\n{len(done)} trained before, {len(jobs)} to train with {args.workers} workers", flush=True)
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool, partial.open("a") as log:
        for k, (i, idx, top1, seconds) in enumerate(pool.imap_unordered(_train_one, jobs), 1):
            done[i] = {"i": i, "indices": idx, "accuracy": top1, "train_seconds": round(seconds, 2)}
            log.write(json.dumps(done[i]) + "\n")
            log.flush()
            if k % 10 == 0 or k == len(jobs):
                eta = (time.perf_counter() - started) / k * (len(jobs) - k)
                print(f"  trained {k}/{len(jobs)} (last top-1 {top1:.3f}, {seconds:.1f} s; ETA {eta / 60:.1f} min)", flush=True)
    measure_latency(space, done, partial)
    table = TrialTable("mnasnet", PROXY, LATENCY, [TableRow(r["indices"], r["accuracy"], r["latency_ms"], r["train_seconds"])
                                                   for _, r in sorted(done.items())])
    table.save(TABLE)
    print(f"wrote {TABLE}: {len(table.rows)} architectures; training {sum(r.train_seconds for r in table.rows) / 60:.0f} "
          f"worker-minutes; top-1 {min(r.accuracy for r in table.rows):.3f}-{max(r.accuracy for r in table.rows):.3f}")


def measure_latency(space, done: dict, partial: Path) -> None:
    """Every row without a latency, measured alone (no training running)."""
    import tempfile

    from latency_service.client import make_measurer
    from mnas.export import export_architecture

    missing = [i for i, r in done.items() if "latency_ms" not in r]
    if not missing:
        return
    source = make_measurer(device=LATENCY["device"])
    try:
        with tempfile.TemporaryDirectory() as tmp, partial.open("a") as log:
            for k, i in enumerate(sorted(missing), 1):
                path = export_architecture(space.decode(done[i]["indices"]), Path(tmp) / f"{i}.onnx", "onnx",
                                           LATENCY["resolution"], LATENCY["num_classes"])
                done[i]["latency_ms"] = round(float(source.measure(path)["latency_ms"]), 5)
                log.write(json.dumps(done[i]) + "\n")
                log.flush()
                if k % 50 == 0:
                    print(f"  measured {k}/{len(missing)}", flush=True)
    finally:
        source.close()


# ----- run -------------------------------------------------------------------------------
def run(args) -> None:
    table = TrialTable.load(args.table)
    print(machine_line())
    result = compare(table, args.controllers, args.proposals, args.seeds, args.ax_proposals, name=args.table,
                     on_run=lambda kind, seed, n: print(f"  {kind} seed {seed}: {n} proposals", flush=True))
    print(format_comparison(result))


def variants(args) -> None:
    from mnas.reward import Reward
    from search.controllers.surrogate import Surrogate, run_controller

    table = TrialTable.load(args.table)
    surrogate = Surrogate(table)
    latencies = np.array([r.latency_ms for r in table.rows])
    parsed = {"random": ("random", {})}
    for item in args.variant:
        name, _, spec = item.partition("=")
        kind, _, options = spec.partition(":")
        parsed[name] = (kind, json.loads(options) if options else {})
    print(machine_line())
    print(f"{'budget':<8} {'variant':<14} {'after 100 (+random, worst seed)':>34} {'after 300':>30} {'seconds':>8}")
    for pct in args.budgets:
        budget = float(np.percentile(latencies, pct))
        reward = Reward(target_ms=budget, mode="hard")
        base = None
        for name, (kind, options) in parsed.items():
            started = time.perf_counter()
            runs = [run_controller(kind, surrogate, reward, args.proposals, seed, **options) for seed in args.seeds]
            best = {n: np.array([r.best_under(budget, n) for r in runs]) for n in (100, 300) if n <= args.proposals}
            base = base or best
            cells = [f"{best[n].mean():.4f} {100 * (best[n] - base[n]).mean():+.1f} ({100 * (best[n] - base[n]).min():+.1f})" for n in best]
            print(f"p{pct:<7} {name:<14} " + " ".join(f"{c:>32}" for c in cells) + f" {time.perf_counter() - started:>8.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--n", type=int, default=200)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    r = sub.add_parser("run")
    r.add_argument("--table", default=str(TABLE))
    r.add_argument("--proposals", type=int, default=1000)
    r.add_argument("--ax-proposals", type=int, default=150)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    r.add_argument("--controllers", nargs="+", default=["random", "evolution", "ppo", "reinforce", "ax"])
    v = sub.add_parser("variants")
    v.add_argument("--table", default=str(TABLE))
    v.add_argument("--variant", action="append", required=True, help="NAME=KIND[:JSON options]; random always runs first")
    v.add_argument("--proposals", type=int, default=300)
    v.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    v.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 75], help="latency percentiles of the table")
    args = parser.parse_args()
    {"build": build, "run": run, "variants": variants}[args.command](args)


if __name__ == "__main__":
    main()
