"""Proxy-trial throughput: a naive pipeline against mnas's fast path, on the same 16 architectures.

    python benchmarks/proxy_throughput.py --data ../shared/data/cifar10            # GPU: full 5-epoch proxy
    python benchmarks/proxy_throughput.py --limit 2000 --val-limit 1000 --epochs 1  # CPU reference
    # under a 10-minute limit per command: run the paths apart, then combine
    python benchmarks/proxy_throughput.py --paths naive --json naive.json
    python benchmarks/proxy_throughput.py --paths optimized --json optimized.json
    python benchmarks/proxy_throughput.py --combine naive.json optimized.json

Both paths train the CIFAR-10 stage-1 proxy (90% of train, 5 epochs, 32 px, batch 256 as in
search/configs/cifar10-proxy.yaml, the fixed recipe) and evaluate top-1 on the held-out 10%, for the same 16 architectures sampled
from the search space (seeds 0-15):

* naive: one fp32 NCHW trial at a time per GPU, in one process, fed by a standard
  torch DataLoader with torchvision transforms on the CPU (random crop with 4 px padding,
  horizontal flip, to float, normalise) and pinned memory;
* optimized: mnas's own path, the one a search runs: a fresh subprocess per trial
  (``python -m search.trials.run``), the split held on the GPU as uint8, augmentation there,
  precision/layout and trials per GPU measured by ``search.trials.tuning`` (or given), packed.

Prints a per-architecture table and a summary: trials/hour, speed-up, mean top-1 of each
path and the Kendall tau between their rankings; ``--json`` keeps everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import machine_line  # noqa: E402

from mnas.data import MEAN, STD, ArraySource, load_dataset, stratified_split  # noqa: E402
from mnas.space import SearchSpace  # noqa: E402
from mnas.train import TrainConfig, train_model  # noqa: E402
from search.trials.data import write_trial_arrays  # noqa: E402


# ----- the naive baseline: torchvision transforms in DataLoader workers --------------------------
class _TorchvisionImages(torch.utils.data.Dataset):
    def __init__(self, source: ArraySource, train: bool):
        from torchvision.transforms import v2

        self.x, self.y = source.x, source.y
        steps = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
        self.transform = v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize((MEAN / 255).tolist(), (STD / 255).tolist())])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = torch.from_numpy(np.ascontiguousarray(self.x[i])).permute(2, 0, 1)  # uint8 CHW
        return self.transform(img), int(self.y[i])


class DataLoaderSource:
    """A source whose batches come ready (float NCHW) from a standard DataLoader."""

    def __init__(self, source: ArraySource, train: bool, workers: int, pin: bool):
        self.dataset, self.workers, self.pin = _TorchvisionImages(source, train), workers, pin

    def __len__(self):
        return len(self.dataset)

    def batches(self, batch_size, shuffle, seed, resolution):
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.workers,
                                             pin_memory=self.pin, generator=torch.Generator().manual_seed(seed))
        yield from loader


def run_naive(archs, train, val, cfg: TrainConfig, workers: int) -> tuple[list[dict], float]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    naive_cfg = cfg.model_copy(update={"precision": "fp32", "channels_last": False, "data_on_device": False, "compile": "off", "device": device})
    results, t0 = [], time.perf_counter()
    for i, arch in enumerate(archs):
        t = time.perf_counter()
        m = train_model(arch, DataLoaderSource(train, True, workers, device == "cuda"), DataLoaderSource(val, False, workers, device == "cuda"), 10, naive_cfg)
        results.append({"arch": i, "top1": m["top1"], "seconds": time.perf_counter() - t, "images_per_s": m["images_per_s"]})
        print(f"  naive {i + 1}/{len(archs)}: top-1 {m['top1']:.4f}, {results[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    return results, time.perf_counter() - t0


# ----- the optimized path: the search's own trial subprocesses ----------------------------------
def run_optimized(archs, cache: Path, cfg: TrainConfig, per_gpu: int, parallel: int, work: Path) -> tuple[list[dict], float]:
    """The search's own trials (no latency: training alone is timed), through the search's trial loop."""
    from search.trials.executors import LocalExecutor
    from search.trials.spec import TrialData, TrialSpec

    data = TrialData(spec=f"npz:{cache}", cache=str(cache))
    results: dict[int, dict] = {}
    queue = list(enumerate(archs))
    t0 = time.perf_counter()
    with LocalExecutor(work, parallel, per_gpu, timeout_s=3600) as executor:
        while queue or executor.running():
            while queue and executor.free_slots() > 0:
                i, arch = queue.pop(0)
                executor.submit(TrialSpec(trial_id=i, architecture=arch, train=cfg, data=data))
            for done in executor.poll(timeout=0.2):
                r = done.result
                if r.status != "succeeded":
                    raise SystemExit(f"optimized trial {done.trial_id} failed: {r.error}")
                train = r.metrics["train"]
                results[done.trial_id] = {"arch": done.trial_id, "top1": r.accuracy, "seconds": r.metrics["timings"]["total_s"],
                                          "images_per_s": train["images_per_s"], "precision": train["precision"],
                                          "channels_last": train["channels_last"], "data_on_device": train["data_on_device"],
                                          "first_step_s": train["first_step_seconds"], "worker": done.worker}
                print(f"  optimized {len(results)}/{len(archs)}: arch {done.trial_id} top-1 {r.accuracy:.4f} on {done.worker}", file=sys.stderr, flush=True)
    return [results[i] for i in sorted(results)], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--archs", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256, help="as search/configs/cifar10-proxy.yaml")
    parser.add_argument("--limit", type=int, default=None, help="train on this many stage-1 images (stratified); CPU runs")
    parser.add_argument("--val-limit", type=int, default=None, help="evaluate on this many held-out images (stratified)")
    parser.add_argument("--paths", default="naive,optimized", help="naive, optimized, compiled (optimized + torch.compile)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="naive DataLoader workers")
    parser.add_argument("--trials-per-gpu", default="auto", help="auto (search.trials.tuning) or a count")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--work", default="runs/proxy-throughput")
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--combine", nargs="+", default=None, metavar="JSON",
                        help="print one report from earlier --json runs (e.g. naive and optimized run separately)")
    args = parser.parse_args()
    if args.combine:
        reports = [json.loads(Path(f).read_text()) for f in args.combine]
        report = {**reports[0], "paths": {k: v for r in reports for k, v in r["paths"].items()}}
        print(f"# {report['machine']}")
        print_report(report)
        return

    ds = load_dataset(f"npz:{args.data}")
    train, val = ds.stage1(seed=0, val_fraction=0.1)
    if args.limit and args.limit < len(train):
        keep, _ = stratified_split(train.labels, 1 - args.limit / len(train), seed=0)
        train = train.subset(keep)
    if args.val_limit and args.val_limit < len(val):
        keep, _ = stratified_split(val.labels, 1 - args.val_limit / len(val), seed=0)
        val = val.subset(keep)
    train, val = ArraySource(np.ascontiguousarray(train.x), train.y), ArraySource(np.ascontiguousarray(val.x), val.y)
    space = SearchSpace()
    archs = [space.sample(seed) for seed in range(args.archs)]
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, resolution=32, precision=args.precision)
    work = Path(args.work)
    gpus = torch.cuda.device_count()

    report = {"machine": machine_line(), "train_images": len(train), "val_images": len(val), "epochs": args.epochs, "archs": args.archs, "paths": {}}
    print(f"# {report['machine']}")
    print(f"# CIFAR-10 stage-1 proxy: {len(train):,} train / {len(val):,} held-out images, {args.epochs} epochs, 32 px, batch {args.batch_size}; "
          f"{args.archs} architectures sampled from the space (seeds 0-{args.archs - 1})")
    paths = args.paths.split(",")
    if "naive" in paths:
        rows, wall = run_naive(archs, train, val, cfg, args.workers)
        report["paths"]["naive"] = {"trials": rows, "wall_s": wall, "setting": f"fp32 NCHW, DataLoader {args.workers} workers, 1 trial per {'GPU' if gpus else 'machine'}"}
        save(report, args.json_out)
        if gpus:
            torch.cuda.empty_cache()  # hand the naive run's cached blocks back before trials share the GPU
    cache = write_trial_arrays(train, val, val, ds.num_classes, ds.classes, work / "data")
    tuning = None
    for name in [p for p in paths if p in ("optimized", "compiled")]:
        per_gpu, parallel = 1, os.cpu_count() or 1
        if gpus:
            if args.trials_per_gpu == "auto":
                from search.trials.tuning import tune

                if tuning is None:
                    tuning = tune({"resolution": 32, "batch_size": args.batch_size, "width_mult": 1.0, "precision": args.precision}, "cuda:0")
                    report["tuning"] = tuning
                per_gpu = tuning["trials_per_gpu"]
            else:
                per_gpu = int(args.trials_per_gpu)
            parallel = gpus * per_gpu
        opt = cfg.model_copy(update={"compile": "off" if name == "optimized" else "default"})
        if tuning:  # tune() keeps a pinned --precision, so its choice is always the one to use
            opt = opt.model_copy(update={"precision": tuning["precision"], "channels_last": tuning["channels_last"]})
        rows, wall = run_optimized(archs, cache, opt, per_gpu, parallel, work / name)
        first = rows[0]
        if gpus:
            setting = f"{first['precision']}, channels_last={first['channels_last']}, data on device={first['data_on_device']}, {parallel} trials at once ({per_gpu} per GPU)"
        else:
            setting = f"{first['precision']}, {parallel} CPU trials at once"
        if opt.compile != "off":
            setting += f", torch.compile {opt.compile}"
        report["paths"][name] = {"trials": rows, "wall_s": wall, "setting": setting, "compile": opt.compile}
        save(report, args.json_out)  # after every path: a later one may run out of time
    print_report(report)
    save(report, args.json_out)


def save(report: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=1))


def print_report(report: dict) -> None:
    from scipy.stats import kendalltau

    paths = report["paths"]
    names = list(paths)
    print("\n| arch | " + " | ".join(f"{n} top-1 | {n} s" for n in names) + " |")
    print("|---|" + "---|---|" * len(names))
    for i in range(report["archs"]):
        print(f"| {i} | " + " | ".join(f"{paths[n]['trials'][i]['top1']:.4f} | {paths[n]['trials'][i]['seconds']:.1f}" for n in names) + " |")
    print("\n| path | setting | trials/hour | speed-up | mean top-1 | delta top-1 (pt) | Kendall tau vs naive |")
    print("|---|---|---|---|---|---|---|")
    base = paths.get("naive")
    for n in names:
        p = paths[n]
        rate = 3600 * len(p["trials"]) / p["wall_s"]
        acc = np.array([t["top1"] for t in p["trials"]])
        p.update(trials_per_hour=rate, mean_top1=float(acc.mean()))
        if base and n != "naive":
            ref = np.array([t["top1"] for t in base["trials"]])
            p.update(speedup=rate / (3600 * len(base["trials"]) / base["wall_s"]), delta_pt=100 * float(acc.mean() - ref.mean()),
                     kendall_tau=float(kendalltau(ref, acc).statistic))
            print(f"| {n} | {p['setting']} | {rate:.0f} | {p['speedup']:.2f}x | {acc.mean():.4f} | {p['delta_pt']:+.2f} | {p['kendall_tau']:.3f} |")
        else:
            print(f"| {n} | {p['setting']} | {rate:.0f} | 1.00x | {acc.mean():.4f} | | |")


if __name__ == "__main__":
    main()
