"""One-shot search end to end, and whether the supernet ranks architectures as proxy trainings do.

    python benchmarks/oneshot.py digits  [--out runs/bench-oneshot-digits]
    python benchmarks/oneshot.py cifar10 [--data ../shared/data/cifar10]
    python benchmarks/oneshot.py cifar10-gpu --data ../shared/data/cifar10      # the GPU-scale run

Steps, each timed, in one directory (a killed run continues: the supernet resumes, the search
resumes, finished rank trainings are kept in rank.json):

1. ``mnas supernet train`` on the preset's proxy data and space;
2. ``mnas search`` with ``evaluator: supernet`` for ``candidates`` proposals (evolution);
3. ``mnas stage2 --top 3`` (train from scratch on all training data, test split);
4. the baseline: MobileNetV2 trained with the same stage-2 recipe (all training data, test
   split, the stage-2 epochs), so the winners are read against a known hand-designed network;
5. the rank check: ``rank_archs`` architectures spread over the space's multiply-add range,
   each trained stand-alone with the proxy recipe (the multi-trial method's own number) and
   evaluated through the supernet; Kendall tau (scipy) between the two, with its p-value.
   ``benchmarks/oneshot_rank.py`` asks the same question with repeats and supernet settings.

``--baseline-only`` builds the predictor and runs step 4 alone, to add the baseline row to an
earlier run's figures. Prints one table and writes it as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# latency: a predictor built for the device first (timed apart): measuring 1,000 candidates
# in-process would cost ~0.7 s each here, more than evaluating them through the supernet.
PRESETS = {
    "digits": {
        "config": {"space": "proxylessnas", "proxy": {"data": "digits", "epochs": 2, "batch_size": 32, "resolution": 16, "width_mult": 0.35},
                   "latency": {"device": "x86-ort-1t-quick", "resolution": 32},
                   "supernet": {"epochs": 10, "random_paths": 2, "bn_images": 256}},
        "candidates": 1000, "stage2_epochs": 6, "rank_archs": 20, "predictor": {"layers": 150, "models": 30},
    },
    "cifar10": {
        "config": {"space": "proxylessnas", "proxy": {"data": "npz:{data}", "epochs": 2, "batch_size": 64, "resolution": 16,
                                                      "width_mult": 0.35, "data_fraction": 0.2},
                   "latency": {"device": "x86-ort-1t-quick", "resolution": 32},
                   "supernet": {"epochs": 6, "random_paths": 2, "bn_images": 512, "eval_images": 1000}},
        "candidates": 300, "stage2_epochs": 4, "rank_archs": 20, "predictor": {"layers": 150, "models": 30},
    },
    "cifar10-gpu": {
        "config": {"space": "mnasnet", "proxy": {"data": "npz:{data}", "epochs": 5, "batch_size": 256, "resolution": 32},
                   "latency": {"device": "x86-ort-1t", "resolution": 224},
                   "supernet": {"epochs": 120, "random_paths": 2, "bn_images": 2048}},
        "candidates": 3000, "stage2_epochs": 100, "rank_archs": 30, "predictor": {"layers": 400, "models": 60},
    },
}


def build_predictor(out: Path, preset: dict, classes: int) -> tuple[Path, float]:
    lat = preset["config"]["latency"]
    path = out / "predictor.json"
    if not path.is_file():
        mnas("predictor", "build", "--device", lat["device"], "--resolution", str(lat["resolution"]), "--num-classes", str(classes),
             "--space", preset["config"]["space"], "--layers", str(preset["predictor"]["layers"]),
             "--models", str(preset["predictor"]["models"]), "--out", str(path))
    from mnas.space import load_space
    from search.latency.predictor import Predictor

    base = load_space(preset["config"]["space"]).base  # the target T: the space's base network, predicted
    return path, Predictor.load(path).predict(base, lat["resolution"]).latency_ms


def mnas(*args: str, timeout: float = 24 * 3600) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mnas")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"mnas {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def spread_architectures(space, resolution: int, count: int, seed: int = 12345) -> list:
    """``count`` architectures at evenly spaced quantiles of the MACs of ``20 x count`` samples."""
    import numpy as np

    from mnas.layers import arch_layers

    rng = np.random.default_rng(seed)
    pool = [space.sample(rng) for _ in range(20 * count)]
    macs = np.array([sum(layer.costs()["macs"] for _, layer in arch_layers(a, resolution)) for a in pool])
    order = np.argsort(macs)
    return [pool[order[int(round(q))]] for q in np.linspace(0, len(pool) - 1, count)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def rank_check(config_path: Path, supernet: Path, count: int, store_path: Path, log) -> dict:
    """Stand-alone proxy top-1 vs supernet top-1 for ``count`` architectures spread over MACs."""

    from mnas.train import train_model
    from search.config import load_config
    from search.oneshot.evaluator import SupernetEvaluator
    from search.proxy.ranks import agreement
    from search.trials.data import load_trial_data
    from search.trials.spec import TrialData

    config = load_config(config_path)
    picks = spread_architectures(config.space.build(), config.proxy.resolution, count)
    done = json.loads(store_path.read_text()) if store_path.is_file() else {}
    proxy = config.proxy
    data = TrialData.of(proxy)
    train, val, classes = load_trial_data(data, stage=1)
    for i, arch in enumerate(picks):
        key = arch.to_json()
        if key not in done:
            metrics = train_model(arch, train, val, classes, proxy.train_config(config.seed))
            done[key] = {"proxy": metrics["top1"], "seconds": metrics["train_seconds"]}
            store_path.write_text(json.dumps(done))
            log(f"rank: {i + 1}/{count} stand-alone top-1 {metrics['top1']:.4f} ({metrics['train_seconds']:.1f} s)")
    evaluator = SupernetEvaluator(config, supernet)
    t0 = time.perf_counter()
    shared = [evaluator.evaluate(a)["top1"] for a in picks]
    eval_s = (time.perf_counter() - t0) / len(picks)
    alone = [done[a.to_json()]["proxy"] for a in picks]
    agree = agreement(shared, alone)
    return {"n": agree.n, "tau": agree.tau, "tau_p": agree.tau_p, "spearman": agree.spearman, "seconds_per_eval": eval_s,
            "supernet_top1": shared, "proxy_top1": alone}


def baseline(config_path: Path, epochs: int, predictor: Path, tuning_dir: Path, cache: Path, log) -> dict:
    """MobileNetV2 trained as a stage-2 trial of the same config (same recipe, data, test split and,
    on a GPU, the precision and layout measured in ``tuning_dir``, as ``mnas stage2`` uses); cached."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from mnas.presets import PRESETS as ARCHITECTURES
    from search.config import load_config
    from search.experiment.directory import prepare_trials
    from search.latency.predictor import Predictor
    from search.trials.run import run_trial
    from search.trials.tuning import measured_settings

    config = load_config(config_path)
    arch = ARCHITECTURES["mobilenet-v2"]
    context = prepare_trials(config, None, measured_settings(config, tuning_dir, log), check_latency=False)
    result = run_trial(context.spec(0, arch, stage=2, epochs=epochs))
    if result.status != "succeeded":
        raise SystemExit(f"MobileNetV2 baseline failed: {result.error}")
    row = {"architecture": "mobilenet-v2", "test_top1": result.accuracy, "seconds": result.seconds,
           "latency_ms": Predictor.load(predictor).predict(arch, config.latency.resolution).latency_ms}
    cache.write_text(json.dumps(row))
    log(f"MobileNetV2 baseline: test top-1 {row['test_top1']:.4f} ({row['seconds']:.0f} s)")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--candidates", type=int, help="override the preset's search size")
    parser.add_argument("--skip-rank", action="store_true")
    parser.add_argument("--baseline-only", action="store_true", help="only the predictor and the MobileNetV2 row")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    out = (args.out or REPO / "runs" / f"bench-oneshot-{args.preset}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    candidates = args.candidates or preset["candidates"]
    cfg = json.loads(json.dumps(preset["config"]).replace("{data}", args.data))
    (predictor, target), predictor_s = timed(lambda: build_predictor(out, preset, 10))
    log(f"predictor ready ({predictor_s:.0f} s); T = {target:.4f} ms (the space's base network)")
    cfg["latency"]["predictor"] = str(predictor)
    cfg["reward"] = {"target_ms": round(target, 4), "mode": "soft"}
    cfg.update(name=f"oneshot-{args.preset}", seed=0, evaluator="supernet", max_trials=candidates,
               controller={"type": "evolution", "population": 50, "tournament": 10},
               supernet={**cfg["supernet"], "directory": str(out / "supernet")})
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    exp = out / "exp"

    def base_row() -> dict:  # the search's tuning when it ran, else measured once for the baseline
        return baseline(config_path, preset["stage2_epochs"], predictor, exp if exp.is_dir() else out, out / "baseline.json", log)

    def base_line(row: dict) -> str:
        return (f"MobileNetV2 (same stage-2 recipe, {preset['stage2_epochs']} epochs): test top-1 {row['test_top1']:.4f} at "
                f"{row['latency_ms']:.3f} ms (predicted), {row['seconds']:.0f} s")

    if args.baseline_only:
        row = base_row()
        print(machine_line())
        print(base_line(row))
        if args.json:
            args.json.write_text(json.dumps({"preset": args.preset, "machine": machine_line(), "baseline": row}, indent=2))
        return

    _, train_s = timed(lambda: mnas("supernet", "train", str(config_path), "--out", str(out / "supernet")))
    log(f"supernet trained in {train_s:.0f} s")
    search_args = ["search", "--resume", str(exp)] if (exp / "experiment.sqlite").is_file() else ["search", str(config_path), "--out", str(exp)]
    _, search_s = timed(lambda: mnas(*search_args, "--no-progress"))
    log(f"search of {candidates} candidates in {search_s:.0f} s")
    _, stage2_s = timed(lambda: mnas("stage2", str(exp), "--top", "3", "--epochs", str(preset["stage2_epochs"])))
    status = json.loads(mnas("status", str(exp), "--json").stdout)
    from search.experiment.store import Store

    store = Store(exp)
    finals = store.trials(stage=2, status="succeeded")
    stage1 = store.trials(stage=1, status="succeeded")
    store.close()
    base = base_row()
    rank = None
    if not args.skip_rank:
        rank, rank_s = timed(lambda: rank_check(config_path, out / "supernet", preset["rank_archs"], out / "rank.json", log))
        rank["wall_s"] = rank_s
    result = {"preset": args.preset, "machine": machine_line(), "candidates": candidates, "evaluated": len(stage1),
              "predictor_build_s": predictor_s, "target_ms": target,
              "supernet_train_s": train_s, "search_s": search_s, "stage2_s": stage2_s, "end_to_end_s": train_s + search_s + stage2_s,
              "stage2": [{"architecture": t["architecture"], "test_top1": t["accuracy"], "latency_ms": t["latency_ms"]} for t in finals],
              "best_stage1": status.get("best"), "baseline": base, "rank": rank}
    print(machine_line())
    print(f"| step | seconds |\n|---|---|\n| latency predictor build (once per device) | {predictor_s:.0f} |\n| supernet training | {train_s:.0f} |\n| search ({candidates} proposals, "
          f"{len(stage1)} evaluated) | {search_s:.0f} |\n| stage 2, top 3 x {preset['stage2_epochs']} epochs | {stage2_s:.0f} |\n"
          f"| end to end | {train_s + search_s + stage2_s:.0f} |")
    for t in finals:
        print(f"stage 2: test top-1 {t['accuracy']:.4f} at {t['latency_ms']:.3f} ms")
    print(base_line(base))
    if rank:
        print(f"rank check: n={rank['n']} Kendall tau {rank['tau']:.3f} (p={rank['tau_p']:.3g}), Spearman {rank['spearman']:.3f}; "
              f"{rank['seconds_per_eval']:.2f} s per supernet evaluation")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
