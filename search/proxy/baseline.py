"""``mnas proxy baseline``: the baseline's full training curve, and (``--tune``) the recipe itself.

The curve answers how long full training takes and where it flattens. ``--tune`` sets the
recipe before any search, as the Deep Learning Tuning Playbook starts a project: first
the batch size by measured training throughput (the largest that fits and still raises
images/s by ``BATCH_GAIN``), then a quasi-random (scrambled Sobol) search over learning rate,
weight decay and label smoothing for the baseline at the proxy's epochs. The best settings
then stay fixed for every trial of the search: architecture search must not mix in
hyperparameter search.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np

from mnas.arch import Architecture
from mnas.presets import load_architecture
from search.proxy.study import Job, Study, StudyError

BASELINE, BATCH, TUNE = "baseline", "batch", "tune"
PLATEAU_PT = 0.01  # the curve has flattened once top-1 is within 1 point of its best
BATCH_GAIN = 0.10  # a larger batch is kept only if it trains >= 10% more images/s
BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
# quasi-random ranges: lr as a factor of the batch's default peak (0.2 x batch/256), log-uniform
LR_FACTORS, WEIGHT_DECAY, LABEL_SMOOTHING = (0.25, 4.0), (1e-5, 1e-3), (0.0, 0.2)


def baseline_architecture(study: Study, arch: str | None) -> Architecture:
    """``arch`` (a preset, JSON file or timm strings), or the space's own base network."""
    return load_architecture(arch) if arch else study.config.space.build().base


def plateau_epoch(curve: list[float]) -> int | None:
    """The first epoch (1-based) whose top-1 is within ``PLATEAU_PT`` of the curve's best."""
    if not curve:
        return None
    best = max(curve)
    return next(e + 1 for e, v in enumerate(curve) if v >= best - PLATEAU_PT)


def run_baseline(study: Study, arch: Architecture, epochs: int | None, log: Callable[[str], None], executor: str | None = None) -> dict:
    epochs = epochs or 4 * study.config.proxy.epochs
    job = Job.make(BASELINE, "baseline", arch, {"epochs": epochs, "data_fraction": 1.0}, curve=True)  # the full recipe: all the split
    result = study.run([job], executor_kind=executor, log=log).get(job)
    if result is None or not result.ok:
        why = f"{result.row['error_kind']}: {(result.row['error'] or '').splitlines()[0]}" if result else "it did not run"
        raise StudyError(f"the baseline's training failed ({why})")
    train = result.train
    history = [p for p in train.get("history", []) if p.get("top1") is not None]
    curve = [p["top1"] for p in history]
    out = {
        "architecture": arch.to_dict(), "summary": arch.summary(), "epochs": epochs, "top1": result.accuracy,
        "curve": history, "plateau_epoch": plateau_epoch(curve), "train_seconds": train.get("train_seconds"),
        "seconds": result.seconds, "images_per_s": train.get("images_per_s"), "device": train.get("device"),
    }
    study.put("baseline", out)
    return out


def batch_throughput(study: Study, arch: Architecture, log, executor: str | None = None, sizes: list[int] | None = None) -> dict:
    """Images/s of one short epoch per batch size; the largest that fits and still gains."""
    from search.trials.executors import gpu_count

    n_train = len(np.load(study.context.data.cache + "/y_train.npy", mmap_mode="r")) if study.context.data.cache else 50_000
    sizes = sorted(sizes) if sizes else [b for b in BATCH_SIZES if gpu_count() or b <= 512]  # 1024 only on a GPU
    jobs = [Job.make(BATCH, f"b{b}", arch, {"batch_size": b, "epochs": 1, "data_fraction": min(1.0, max(0.05, 50 * b / n_train))})
            for b in sizes]

    def past_the_best(job: Job, done: dict) -> bool:  # stop once a smaller batch failed or did not gain
        smaller = [(j.setting["batch_size"], r) for j, r in done.items() if j.step == BATCH and j.setting["batch_size"] < job.setting["batch_size"]]
        smaller.sort(key=lambda p: p[0])
        if any(not r.ok for _, r in smaller):
            return True
        rates = [r.train.get("images_per_s", 0.0) for _, r in smaller]
        return len(rates) >= 2 and rates[-1] < max(rates[:-1]) * (1 + BATCH_GAIN)

    results = study.run(jobs, abandon=past_the_best, executor_kind=executor, log=log)
    rows, chosen = [], None
    for job in jobs:
        r = results.get(job)
        if r is None:  # not tried: a smaller batch already stopped gaining
            break
        if not r.ok:
            rows.append({"batch_size": job.setting["batch_size"], "fits": False, "error_kind": r.row["error_kind"]})
            break
        ips = r.train.get("images_per_s", 0.0)
        rows.append({"batch_size": job.setting["batch_size"], "fits": True, "images_per_s": ips})
        if chosen is None or ips >= chosen["images_per_s"] * (1 + BATCH_GAIN):
            chosen = rows[-1]
        else:
            break
    if chosen is None:
        raise StudyError(f"the baseline trains at no batch size of {sizes}: {rows}")
    return {"rows": rows, "batch_size": chosen["batch_size"]}


def quasi_random_settings(trials: int, batch_size: int, seed: int) -> list[dict]:
    from scipy.stats import qmc

    base = 0.2 * batch_size / 256
    with warnings.catch_warnings():  # any count is fine here: the balance of 2^k points is not needed
        warnings.simplefilter("ignore", UserWarning)
        points = qmc.Sobol(d=3, scramble=True, seed=seed).random(trials)
    out = []
    for u_lr, u_wd, u_ls in points:
        lr = base * LR_FACTORS[0] * (LR_FACTORS[1] / LR_FACTORS[0]) ** u_lr
        wd = WEIGHT_DECAY[0] * (WEIGHT_DECAY[1] / WEIGHT_DECAY[0]) ** u_wd
        ls = LABEL_SMOOTHING[0] + (LABEL_SMOOTHING[1] - LABEL_SMOOTHING[0]) * u_ls
        out.append({"batch_size": batch_size, "lr": float(f"{lr:.4g}"), "weight_decay": float(f"{wd:.3g}"), "label_smoothing": round(float(ls), 3)})
    return out


def tune_recipe(study: Study, arch: Architecture, trials: int, log: Callable[[str], None], executor: str | None = None,
                batch_sizes: list[int] | None = None) -> dict:
    """Batch size by throughput, then ``trials`` quasi-random recipes; the best, with the spread."""
    batch = batch_throughput(study, arch, log, executor, batch_sizes)
    settings = quasi_random_settings(trials, batch["batch_size"], study.config.seed)
    current = {"batch_size": batch["batch_size"]}  # the config's own lr/wd/ls at the chosen batch, for comparison
    jobs = [Job.make(TUNE, "current", arch, current)] + [Job.make(TUNE, f"t{i}", arch, s) for i, s in enumerate(settings)]
    results = study.run(jobs, executor_kind=executor, log=log)
    rows = [{"name": j.name, **j.setting, "top1": results[j].accuracy if j in results and results[j].ok else None} for j in jobs]
    done = [r for r in rows if r["top1"] is not None]
    if not done:
        raise StudyError("no tuning trial trained; check the proxy with mnas proxy check")
    best = max(done, key=lambda r: r["top1"])
    accs = sorted((r["top1"] for r in done), reverse=True)
    tuned = {k: best[k] for k in ("batch_size", "lr", "weight_decay", "label_smoothing") if k in best}
    out = {"batch": batch, "trials": rows, "best": best, "recipe": tuned, "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan,
           "top3_range": float(accs[0] - accs[min(2, len(accs) - 1)])}
    study.put("tuned", out)
    return out
