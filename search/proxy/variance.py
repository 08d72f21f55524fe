"""``mnas proxy variance``: how much one architecture's proxy accuracy moves between seeds.

The same architecture is trained ``repeats`` times under one proxy setting, each with its
own seed (initialization, data order, augmentation). Reported: the standard deviation and
range of the final top-1, and the curve's roughness (mean absolute second difference of the
per-epoch top-1, in points: 0 for a straight or smoothly bending curve).

The rule for the warning: a search can only tell two architectures apart when their
difference exceeds the noise of both results, about 2 x std. So the std is compared with
the typical gap between architectures under the same setting (the median gap between
neighbouring accuracies of the study's selected models, from ``mnas proxy search`` or
``select``): when 2 x std >= that gap, most of the ranking the controller sees is noise.
Without such models in the study, a std above 1 point warns.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mnas.arch import Architecture
from search.proxy.study import Job, Study, StudyError

VARIANCE = "variance"
NOISE_FACTOR = 2.0
FALLBACK_STD = 0.01


def roughness(curve: list[float]) -> float:
    return float(np.mean(np.abs(np.diff(curve, n=2)))) if len(curve) >= 3 else math.nan


def model_gap(study: Study, setting: dict) -> tuple[float | None, str | None]:
    """Median gap between neighbouring accuracies of the selected models under ``setting``
    (trained by ``mnas proxy search``, or by ``select`` for the config's own proxy)."""
    from search.proxy.settings import SETTING

    if not study.get("selected"):
        return None, None
    from search.proxy.select import selected_models

    jobs = [Job.make(SETTING, name, arch, setting) for name, arch in selected_models(study)]
    accs = [r.accuracy for r in study.stored(jobs).values() if r.ok]
    if len(accs) < 3:
        return None, None
    return float(np.median(np.diff(np.sort(accs)))), f"{len(accs)} selected models"


def run_variance(study: Study, arch: Architecture, setting: dict, repeats: int, log: Callable[[str], None],
                 executor: str | None = None) -> dict:
    if repeats < 2:
        raise StudyError("--repeats must be at least 2 to measure a spread")
    base = study.config.seed
    jobs = [Job.make(VARIANCE, "repeat", arch, setting, seed=base + k, curve=True) for k in range(repeats)]
    results = study.run(jobs, executor_kind=executor, log=log)
    done = [results[j] for j in jobs if j in results and results[j].ok]
    if len(done) < 2:
        raise StudyError(f"only {len(done)} of {repeats} repeats trained; check the proxy with mnas proxy check")
    accs = np.array([r.accuracy for r in done])
    curves = [[p["top1"] for p in r.train.get("history", []) if p.get("top1") is not None] for r in done]
    std = float(np.std(accs, ddof=1))
    gap, gap_from = model_gap(study, setting)
    if gap is not None:
        noisy = NOISE_FACTOR * std >= gap
        rule = f"2 x std {NOISE_FACTOR * std:.4f} vs median gap between neighbouring models {gap:.4f} ({gap_from})"
    else:
        noisy = std > FALLBACK_STD
        rule = f"std {std:.4f} vs {FALLBACK_STD} (no models trained under this setting in the study to compare with)"
    out = {"architecture": arch.to_dict(), "setting": setting, "repeats": len(done), "top1": accs.tolist(),
           "mean": float(accs.mean()), "std": std, "range": float(np.ptp(accs)),
           "roughness": float(np.nanmean([roughness(c) for c in curves])) if any(len(c) >= 3 for c in curves) else math.nan,
           "model_gap": gap, "noisy": bool(noisy), "rule": rule}
    study.put("variance", out)
    return out
