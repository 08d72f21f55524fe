"""Does the supernet rank architectures as stand-alone training does, and which supernet settings help?

    python benchmarks/oneshot_rank.py digits --archs 20 \
        --supernet epochs=10 epochs=30 epochs=30,random_paths=1 --reference-epochs 6 --repeats 2

``--archs`` architectures spread evenly over the space's multiply-add range (seeded) are trained
stand-alone with the preset's proxy recipe (``oneshot.py``'s presets), ``--repeats`` times with
different seeds, and once more for each ``--reference-epochs`` (a longer training: is the short
proxy itself a good reference?). Each ``--supernet`` setting (``key=value`` pairs of the config's
``supernet:`` block, comma-separated) trains one supernet, then every architecture is evaluated
through it. Printed per supernet: Kendall tau (scipy, p-value) and Spearman against the proxy
(mean over repeats) and against each longer reference; and the noise ceiling: the tau between
two repeats of the proxy itself, which no evaluator can be expected to beat against it.
Everything is cached under ``--out`` (stand-alone results in ``standalone.json``, one directory
per supernet), so a killed run continues and added settings reuse the trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line  # noqa: E402
from oneshot import PRESETS, REPO, spread_architectures  # noqa: E402


def standalone(config, archs: list, epochs: int, seed: int, cache: Path, log) -> list[float]:
    """Top-1 of each architecture trained alone with the proxy recipe (``epochs``, ``seed``); cached."""
    from mnas.train import train_model
    from search.trials.data import load_trial_data
    from search.trials.spec import TrialData

    done = json.loads(cache.read_text()) if cache.is_file() else {}
    data = None
    for i, arch in enumerate(archs):
        key = f"{arch.to_json()}|{epochs}|{seed}"
        if key in done:
            continue
        if data is None:
            data = load_trial_data(TrialData.of(config.proxy), stage=1)
        train, val, classes = data
        metrics = train_model(arch, train, val, classes, config.proxy.train_config(seed, epochs=epochs))
        done[key] = {"top1": metrics["top1"], "seconds": metrics["train_seconds"]}
        cache.write_text(json.dumps(done))
        log(f"stand-alone {epochs} epochs seed {seed}: {i + 1}/{len(archs)} top-1 {metrics['top1']:.4f} ({metrics['train_seconds']:.1f} s)")
    return [done[f"{a.to_json()}|{epochs}|{seed}"]["top1"] for a in archs]


def parse_setting(text: str) -> dict:
    """``epochs=30,random_paths=1`` -> {"epochs": 30, "random_paths": 1} (values read as YAML)."""
    import yaml

    pairs = [p.split("=", 1) for p in text.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--supernet {text!r}: expected key=value[,key=value...]")
    return {k.strip(): yaml.safe_load(v) for k, v in pairs}


def supernet_scores(config, setting: dict, archs: list, out: Path, log) -> tuple[list[float], float, float]:
    """Train (or resume) the supernet of ``setting`` and evaluate ``archs`` through it."""
    from search.oneshot.evaluator import SupernetEvaluator
    from search.oneshot.training import train_supernet

    config = config.model_copy(update={"supernet": config.supernet.model_copy(update=setting)})
    slug = "-".join(f"{k}{v}" for k, v in sorted(setting.items())) or "default"
    directory = out / f"supernet-{slug}"
    stamp = directory / "train_seconds.json"
    t0 = time.perf_counter()
    train_supernet(config, directory, log=log)
    spent = time.perf_counter() - t0
    if not stamp.is_file() or spent > 5:
        prior = json.loads(stamp.read_text())["seconds"] if stamp.is_file() else 0.0
        stamp.write_text(json.dumps({"seconds": prior + spent}))
    train_s = json.loads(stamp.read_text())["seconds"]
    evaluator = SupernetEvaluator(config, directory)
    t0 = time.perf_counter()
    scores = [evaluator.evaluate(a)["top1"] for a in archs]
    return scores, train_s, (time.perf_counter() - t0) / len(archs)


def main() -> None:
    import numpy as np
    import torch

    from search.config import SearchConfig
    from search.proxy.ranks import agreement

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--supernet", nargs="+", default=["epochs=10"], help="supernet settings, one per supernet")
    parser.add_argument("--reference-epochs", type=int, nargs="*", default=[])
    parser.add_argument("--repeats", type=int, default=2, help="proxy trainings per architecture (seeds 0..)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    preset = PRESETS[args.preset]
    out = (args.out or REPO / "runs" / f"bench-oneshot-rank-{args.preset}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    raw = json.loads(json.dumps(preset["config"]).replace("{data}", args.data))
    raw.pop("latency")
    config = SearchConfig.model_validate({**raw, "name": "oneshot-rank", "seed": 0, "max_trials": 1, "evaluator": "supernet",
                                          "latency": {"device": "x86-ort-1t-quick", "resolution": 32},
                                          "reward": {"target_ms": 1.0, "mode": "soft"}})
    archs = spread_architectures(config.space.build(), config.proxy.resolution, args.archs)
    cache = out / "standalone.json"
    repeats = [standalone(config, archs, config.proxy.epochs, seed, cache, log) for seed in range(args.repeats)]
    proxy = list(np.mean(repeats, axis=0))
    references = {e: standalone(config, archs, e, 0, cache, log) for e in args.reference_epochs}
    result = {"preset": args.preset, "machine": machine_line(), "archs": len(archs), "proxy_epochs": config.proxy.epochs,
              "proxy_repeats": repeats, "references": {str(e): r for e, r in references.items()}, "supernets": []}
    lines = [machine_line(), "",
             f"{len(archs)} architectures, proxy = {config.proxy.epochs} epochs (mean of {args.repeats} seeds), "
             f"top-1 {min(proxy):.3f}-{max(proxy):.3f}"]
    if args.repeats >= 2:
        ceiling = agreement(repeats[0], repeats[1])
        result["noise_ceiling"] = ceiling.tau
        lines.append(f"noise ceiling: proxy seed 0 vs seed 1, Kendall tau {ceiling.tau:.3f} (p={ceiling.tau_p:.2g})")
    for e, ref in references.items():
        a = agreement(proxy, ref)
        lines.append(f"proxy vs {e}-epoch stand-alone training: Kendall tau {a.tau:.3f} (p={a.tau_p:.2g}), Spearman {a.spearman:.3f}")
    header = "| supernet setting | train (s) | s per eval | supernet top-1 | tau vs proxy (p) | Spearman |" + \
        "".join(f" tau vs {e} ep (p) |" for e in references)
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    for text in args.supernet:
        setting = parse_setting(text)
        scores, train_s, eval_s = supernet_scores(config, setting, archs, out, log)
        vs_proxy = agreement(scores, proxy)
        row = {"setting": setting, "train_s": train_s, "eval_s": eval_s, "top1": scores,
               "tau_proxy": vs_proxy.tau, "tau_proxy_p": vs_proxy.tau_p, "spearman_proxy": vs_proxy.spearman, "tau_references": {}}
        cells = [f"| {text} | {train_s:.0f} | {eval_s:.2f} | {min(scores):.3f}-{max(scores):.3f} | "
                 f"{vs_proxy.tau:.3f} ({vs_proxy.tau_p:.2g}) | {vs_proxy.spearman:.3f} |"]
        for e, ref in references.items():
            a = agreement(scores, ref)
            row["tau_references"][str(e)] = [a.tau, a.tau_p]
            cells.append(f" {a.tau:.3f} ({a.tau_p:.2g}) |")
        result["supernets"].append(row)
        lines.append("".join(cells))
        log(lines[-1])
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
