"""The proxy-design tool chain end to end, as a user runs it, with each step's time and figures.

    python benchmarks/proxy_design.py digits  [--out runs/bench-proxy-digits]
    python benchmarks/proxy_design.py cifar10 [--data ../shared/data/cifar10] [--out ...]
    python benchmarks/proxy_design.py cifar10-gpu --data ../shared/data/cifar10   # the GPU-scale run

Runs ``mnas proxy check``, ``baseline``, ``select``, ``reference``, ``search`` and ``variance``
(each ``--json``, in one study directory, so a killed run continues where it stopped) and
prints a table: per step its wall time and what it found (reference accuracies, tau per
setting, the winner, the variance). The presets:

- ``digits``: scikit-learn's digits, 12 candidates -> 6 models, reference 8 epochs at
  16 px, grid epochs x resolution; minutes on 2 CPU cores.
- ``cifar10``: CIFAR-10 at CPU scale: proxy 16 px, width 0.5, 2 epochs on 10% of the
  stage-1 training split; reference 6 epochs on 25% at 16 px; grid epochs x resolution x
  data_fraction.
- ``cifar10-gpu``: the shipped ``search/configs/cifar10-proxy.yaml`` proxy (5 epochs, 32 px,
  all of the split) in the grid against a 20-epoch reference: the tau of the shipped setting.
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
LATENCY = {"device": "x86-ort-1t-quick", "resolution": 64}

PRESETS = {
    "digits": {
        "config": {"proxy": {"data": "digits", "epochs": 2, "batch_size": 32, "resolution": 16, "width_mult": 0.5},
                   "max_parallel_trials": 2, "trial_timeout_s": 600},
        "candidates": 12, "models": 6, "reference_epochs": 8, "repeats": 4, "tune_trials": 6,
        "grid": ["epochs=1,2,4", "resolution=8,16"],
    },
    "cifar10": {
        "config": {"proxy": {"data": "npz:{data}", "epochs": 2, "batch_size": 64, "resolution": 16, "width_mult": 0.5,
                             "data_fraction": 0.1}, "max_parallel_trials": 2, "trial_timeout_s": 1800},
        "candidates": 12, "models": 6, "reference_epochs": 6, "reference_fraction": 0.25, "repeats": 4,
        "grid": ["epochs=1,2", "resolution=8,16", "data_fraction=0.05,0.1"],
    },
    "cifar10-gpu": {
        "config": {"proxy": {"data": "npz:{data}", "epochs": 5, "batch_size": 256, "resolution": 32},
                   "max_parallel_trials": 8, "trial_timeout_s": 3600, "executor": {"trials_per_gpu": "auto"}},
        "candidates": 30, "models": 10, "reference_epochs": 20, "repeats": 5,
        "grid": ["epochs=1,2,5", "resolution=16,32", "data_fraction=0.25,1.0"],
    },
}


def mnas(*args: str) -> tuple[dict | list, float]:
    exe = Path(sys.executable).with_name("mnas")
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *args, "--json"], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"mnas {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", choices=sorted(PRESETS))
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    preset = PRESETS[args.preset]
    out = (args.out or REPO / "runs" / f"bench-proxy-{args.preset}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = {"name": f"bench-proxy-{args.preset}", "seed": 0, "latency": LATENCY, "reward": {"target_ms": 0.75}, "max_trials": 100,
              **json.loads(json.dumps(preset["config"]).replace("{data}", args.data))}
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cfg, study = str(config_path), ["--out", str(out)]
    figures, times = {"preset": args.preset, "machine": machine_line()}, {}

    figures["check"], times["check"] = mnas("proxy", "check", cfg)
    tune = ["--tune", "--tune-trials", str(preset["tune_trials"])] if preset.get("tune_trials") else []
    figures["baseline"], times["baseline"] = mnas("proxy", "baseline", cfg, "--epochs", str(preset["reference_epochs"]), *tune, *study)
    figures["select"], times["select"] = mnas("proxy", "select", cfg, "--candidates", str(preset["candidates"]),
                                              "--models", str(preset["models"]), *study)
    ref_args = ["--epochs", str(preset["reference_epochs"])] + (["--data-fraction", str(preset["reference_fraction"])]
                                                                 if "reference_fraction" in preset else [])
    figures["reference"], times["reference"] = mnas("proxy", "reference", cfg, *ref_args, *study)
    grid = [g for item in preset["grid"] for g in ("--grid", item)]
    figures["search"], times["search"] = mnas("proxy", "search", cfg, *grid, *study)
    figures["variance"], times["variance"] = mnas("proxy", "variance", cfg, "--repeats", str(preset["repeats"]), *study)
    figures["times_s"] = times
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=float))
    print_summary(figures)


def print_summary(f: dict) -> None:
    t = f["times_s"]
    print(f"\n{f['machine']}\npreset {f['preset']}")
    print("| step | wall (s) | result |\n|---|---|---|")
    print(f"| check | {t['check']:.0f} | {len(f['check']['warnings'])} warning(s); largest model ~{f['check']['facts'].get('largest_trial_s', 0):.0f} s a trial |")
    b = f["baseline"]["baseline"]
    tuned = f["baseline"].get("tuned")
    if tuned:
        print(f"| baseline --tune | | batch {tuned['batch']['batch_size']}; best recipe {tuned['recipe']} top-1 {tuned['best']['top1']:.3f} "
              f"(std over {len(tuned['trials'])} recipes {tuned['std']:.3f}) |")
    print(f"| baseline ({b['epochs']} epochs) | {t['baseline']:.0f} | top-1 {b['top1']:.3f}, within 1 pt of best from epoch "
          f"{b['plateau_epoch']}; {b['images_per_s']:.0f} img/s |")
    print(f"| select | {t['select']:.0f} | {len(f['select'])} models, {min(m['latency_ms'] for m in f['select']):.3f}-"
          f"{max(m['latency_ms'] for m in f['select']):.3f} ms, proxy top-1 {min(m['proxy_accuracy'] for m in f['select']):.3f}-"
          f"{max(m['proxy_accuracy'] for m in f['select']):.3f} |")
    ref = f["reference"]
    print(f"| reference ({ref['epochs']} epochs) | {t['reference']:.0f} | top-1 " + ", ".join(f"{n} {a:.3f}" for n, a in sorted(ref["accuracy"].items()))
          + "; tau of epoch e vs final: " + ", ".join(f"{s['tau_vs_final']:.2f}" for s in ref["settle"]) + " |")
    s = f["search"]
    print(f"| search | {t['search']:.0f} | winner: {s['winner']['label'] if s['winner'] else 'none'} |")
    v = f["variance"]
    print(f"| variance | {t['variance']:.0f} | top-1 {v['mean']:.4f} +- {v['std']:.4f} over {v['repeats']} seeds; {'noisy' if v['noisy'] else 'ok'}: {v['rule']} |")
    print("\n| setting | status | tau | p | spearman | s / trial | mean top-1 | passes |\n|---|---|---|---|---|---|---|---|")
    for r in sorted(s["rows"], key=lambda r: r["estimated_cost"]):
        fmt = lambda v, d=3: "-" if v is None or v != v else f"{v:.{d}f}"  # noqa: E731
        print(f"| {r['label']} | {r['status']} ({r['trained']}) | {fmt(r['tau'])} | {fmt(r['tau_p'])} | {fmt(r['spearman'])} | "
              f"{fmt(r['seconds_per_trial'], 1)} | {fmt(r['mean_accuracy'])} | {'yes' if r['passes'] else 'no'} |")
    if s["zero_cost"]:
        print("\n| zero-cost score | tau vs reference | tau vs winner |\n|---|---|---|")
        for z in s["zero_cost"]:
            winner = "-" if z["tau_proxy"] is None else f"{z['tau_proxy']:.3f}"
            print(f"| {z['score']} | {z['tau_reference']:.3f} | {winner} |")


if __name__ == "__main__":
    main()
