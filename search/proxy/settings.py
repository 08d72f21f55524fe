"""``mnas proxy reference`` and ``mnas proxy search``: which cheap proxy ranks models as full training does.

The reference is the selected models trained with the full recipe (the config's recipe for
``--epochs`` epochs, on all of the stage-1 training split), with a learning curve each. A proxy setting is
a set of overrides of the config's recipe (epochs, resolution, width, data fraction, ...);
each is trained on the same models and judged by the Kendall tau of its accuracies against
the reference. Settings run cheapest first (estimated by epochs x data x pixels x width^2);
a setting whose best reachable tau falls below the threshold is abandoned. The winner is
the cheapest measured setting with tau >= ``min_tau``.

An epoch-e point of the reference curve is not an e-epoch proxy (the cosine schedule of an
E-epoch run is still high at e), so curves are reported as how early the reference ranking
settles, and a setting is reused only where it trains exactly the same thing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from search.proxy.ranks import agreement, best_reachable_tau
from search.proxy.select import selected_models
from search.proxy.study import Job, Study, StudyError, parse_setting, setting_label

REFERENCE, SETTING = "reference", "setting"


def reference_jobs(study: Study, epochs: int, data_fraction: float = 1.0, repeats: int = 1) -> list[Job]:
    """The selected models with the full recipe, ``repeats`` times each: repeat 0 with the
    config's seed (the jobs a study without repeats trained), repeat r with the seed + r."""
    setting = {"epochs": epochs, "data_fraction": data_fraction}
    seeds = [None] + [study.config.seed + r for r in range(1, repeats)]
    return [Job.make(REFERENCE, name, arch, setting, seed=seed, curve=True) for seed in seeds for name, arch in selected_models(study)]


def self_agreement(runs: list[dict[str, float]]) -> dict | None:
    """How well the reference agrees with itself: Kendall tau between every two repeats
    (trained alike, seeds apart) over the models both finished; None with one repeat. A
    reference that does not agree with itself cannot tell a proxy that ranks from one that
    does not, so ``mnas proxy search`` is only as good as this figure."""
    if len(runs) < 2:
        return None
    pairs = []
    for i, j in itertools.combinations(range(len(runs)), 2):
        names = sorted(set(runs[i]) & set(runs[j]))
        pairs.append({"repeats": [i, j], **agreement([runs[i][n] for n in names], [runs[j][n] for n in names]).as_dict()})
    taus = [p["tau"] for p in pairs if not math.isnan(p["tau"])]
    spread = [float(np.std([r[n] for r in runs if n in r], ddof=1)) for n in sorted(set.intersection(*map(set, runs)))]
    return {"tau": float(np.mean(taus)) if taus else math.nan, "pairs": pairs,
            "accuracy_std": float(np.sqrt(np.mean(np.square(spread)))) if spread else math.nan}


def run_reference(study: Study, epochs: int | None, log: Callable[[str], None], executor: str | None = None,
                  data_fraction: float | None = None, repeats: int | None = None) -> dict:
    """Train the selected models with the full recipe (all of the stage-1 training split unless
    ``data_fraction`` says less), ``repeats`` times with other seeds; stored as ``reference``
    (the mean accuracy per model, and the repeats' agreement with each other)."""
    earlier = study.get("reference") or {}
    epochs = epochs or earlier.get("epochs") or 4 * study.config.proxy.epochs
    data_fraction = data_fraction or earlier.get("data_fraction") or 1.0
    repeats = repeats or earlier.get("repeats") or 1
    jobs = reference_jobs(study, epochs, data_fraction, repeats)
    results = study.run(jobs, executor_kind=executor, log=log)
    by_seed: dict = {}
    for j in jobs:
        if j in results and results[j].ok:
            by_seed.setdefault(j.seed, {})[j.name] = results[j].accuracy
    runs = [by_seed.get(seed, {}) for seed in dict.fromkeys(j.seed for j in jobs)]
    names = sorted(set.intersection(*map(set, runs)))  # models every repeat finished
    if len(names) < 3:
        raise StudyError(f"only {len(names)} reference models trained in every repeat; the reference needs at least 3")
    accuracy = {n: float(np.mean([r[n] for r in runs])) for n in names}
    first = [j for j in jobs if j.seed is None and j in results]
    curves = {j.name: [p["top1"] for p in results[j].train.get("history", []) if p.get("top1") is not None] for j in first}
    settle = []
    for e in range(min(len(curves[n]) for n in names if curves.get(n)) if any(curves.get(n) for n in names) else 0):
        a = agreement([curves[n][e] for n in names], [runs[0][n] for n in names])
        settle.append({"epoch": e + 1, "tau_vs_final": a.tau})
    seconds = [results[j].seconds for j in jobs if j in results and results[j].seconds]
    reference = {"epochs": epochs, "data_fraction": data_fraction, "repeats": repeats, "accuracy": accuracy,
                 "runs": runs, "self_agreement": self_agreement(runs), "settle": settle,
                 "seconds_per_model": float(np.mean(seconds)) if seconds else None}
    study.put("reference", reference)
    return reference


def parse_grid(items: list[str]) -> list[dict]:
    """``["epochs=1,2", "resolution=16,32"]`` -> every combination, each a checked setting."""
    axes = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise StudyError(f"--grid takes FIELD=V1,V2,... (got {item!r})")
        parsed = []
        for v in values.split(","):
            try:
                parsed.append(int(v) if v.strip().lstrip("-").isdigit() else float(v))
            except ValueError:
                raise StudyError(f"--grid {name}: {v!r} is not a number") from None
        axes[name.strip()] = parsed
    if not axes:
        raise StudyError("give at least one --grid FIELD=V1,V2,...")
    settings = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    return [parse_setting(s, f"--grid {setting_label(s)}") for s in settings]


def estimated_cost(study: Study, setting: dict) -> float:
    """Relative training cost of a setting against the config's proxy (1.0)."""
    p = study.config.proxy
    get = lambda k: setting.get(k, getattr(p, k))  # noqa: E731
    return (get("epochs") / p.epochs) * (get("data_fraction") / p.data_fraction) * (get("resolution") / p.resolution) ** 2 \
        * (get("width_mult") / p.width_mult) ** 2


def search_settings(study: Study, grid: list[dict], min_tau: float, log: Callable[[str], None], executor: str | None = None) -> dict:
    """Train every setting on the selected models (cheapest first, hopeless ones abandoned) and rank them."""
    reference = study.get("reference", "mnas proxy reference")["accuracy"]
    models = [(n, a) for n, a in selected_models(study) if n in reference]
    grid = sorted(grid, key=lambda s: estimated_cost(study, s))
    jobs = [Job.make(SETTING, name, arch, setting) for setting in grid for name, arch in models]

    def hopeless(job: Job, done: dict) -> bool:
        known = {j.name: r.accuracy for j, r in done.items() if j.step == SETTING and j.setting == job.setting and r.ok}
        failed = any(not r.ok for j, r in done.items() if j.step == SETTING and j.setting == job.setting)
        return failed or best_reachable_tau(known, reference) < min_tau

    results = study.run(jobs, abandon=hopeless, executor_kind=executor, log=log)
    rows = [setting_row(study, setting, models, reference, results, min_tau) for setting in grid]
    passing = [r for r in rows if r["passes"]]
    winner = min(passing, key=lambda r: r["seconds_per_trial"]) if passing else None
    outcome = {"min_tau": min_tau, "rows": rows, "winner": winner, "zero_cost": zero_cost_agreement(study, models, reference, results, winner)}
    study.put("search", outcome)
    return outcome


def setting_row(study: Study, setting: dict, models, reference: dict, results: dict, min_tau: float) -> dict:
    from search.trials.tuning import slots_per_gpu

    mine = {j.name: r for j, r in results.items() if j.step == SETTING and j.setting == setting}
    ok = {n: r.accuracy for n, r in mine.items() if r.ok}
    names = [n for n, _ in models if n in ok]
    a = agreement([ok[n] for n in names], [reference[n] for n in names])
    seconds = [r.seconds for r in mine.values() if r.ok and r.seconds]
    complete = len(names) == len(models)
    status = "complete" if complete else ("failed" if any(not r.ok for r in mine.values()) else "abandoned")
    per_trial = float(np.mean(seconds)) if seconds else math.nan
    on_gpu = any(r.train.get("device", "cpu") != "cpu" for r in mine.values() if r.ok)  # a CUDA device's name
    share = 1.0 / slots_per_gpu(study.config.executor, study.tuning)  # a trial's share of its GPU
    return {
        "setting": setting, "label": setting_label(setting), "status": status, "trained": len(names), **a.as_dict(),
        "seconds_per_trial": per_trial, "gpu_seconds_per_trial": per_trial * share if on_gpu else None,
        "mean_accuracy": float(np.mean(list(ok.values()))) if ok else math.nan, "estimated_cost": estimated_cost(study, setting),
        "passes": complete and not math.isnan(a.tau) and a.tau >= min_tau,
    }


def zero_cost_agreement(study: Study, models, reference: dict, results: dict, winner: dict | None) -> list[dict]:
    """Each training-free score's tau against the reference accuracy and the winning proxy's."""
    from mnas.zero_cost import SCORES

    ref = study.get("reference")
    ref_jobs = {j.name: r for j, r in study.stored(reference_jobs(study, ref["epochs"], ref.get("data_fraction", 1.0))).items() if r.ok}
    names = [n for n, _ in models if n in ref_jobs and ref_jobs[n].zero_cost]
    proxy = {}
    if winner:
        proxy = {j.name: r.accuracy for j, r in results.items() if j.step == SETTING and j.setting == winner["setting"] and r.ok}
    out = []
    for score in SCORES:
        values = [ref_jobs[n].zero_cost.get(score) for n in names]
        if len(values) < 3 or any(v is None or not np.isfinite(v) for v in values):
            continue
        row = {"score": score, "tau_reference": agreement(values, [reference[n] for n in names]).tau}
        both = [n for n in names if n in proxy]
        row["tau_proxy"] = agreement([ref_jobs[n].zero_cost[score] for n in both], [proxy[n] for n in both]).tau if len(both) >= 3 else None
        out.append(row)
    return out


def winner_block(study: Study, setting: dict) -> dict:
    """The config's ``proxy:`` block with the winning setting: paste it into a search config."""
    proxy = study.config.proxy.model_dump(mode="json", exclude_none=True)
    return {"proxy": {**proxy, **setting}}
