"""``mnas proxy select``: a handful of models spread over the space's latency and accuracy range.

As Vertex's proxy-design tools do: sample candidates, get each one's latency from the
config's source (measured, or predicted with its predictor) and its accuracy from one
training with the config's proxy, then drop the most similar until ``models`` remain
(repeatedly, of the closest pair in (accuracy, log latency) scaled to [0, 1], the one
nearer to the rest). Later steps rank exactly these models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mnas.arch import Architecture
from search.proxy.study import Job, Study, StudyError

STEP = "select"


def sample_candidates(study: Study, count: int) -> list[Architecture]:
    """``count`` distinct architectures of the config's space, from the config's seed."""
    space = study.config.space.build()
    rng = np.random.default_rng([study.config.seed, 14])
    found: dict[Architecture, None] = {}
    for _ in range(count * 50):
        found.setdefault(space.sample(rng))
        if len(found) == count:
            break
    return list(found)


def candidate_latencies(study: Study, archs: list[Architecture], log: Callable[[str], None]) -> list[dict]:
    """Latency and memory of each candidate, kept in the store as they come (a rerun measures
    only the missing ones)."""
    from latency_service.client import LatencyServiceError

    lat = study.config.latency
    known = study.get("candidate_latency") or {}
    num_classes = lat.num_classes or study.context.num_classes
    predictor = None
    if lat.predictor:
        from search.latency.predictor import Predictor

        predictor = Predictor.load(lat.predictor)
    for i, arch in enumerate(archs):
        key = arch.key()
        if key in known:
            continue
        if predictor is not None:
            p = predictor.predict(arch, lat.resolution)
            known[key] = {"latency_ms": p.latency_ms, "memory_mb": p.peak_memory_mb, "predicted": True}
        else:
            from search.latency.measure import measure_latency

            try:
                measured, _ = measure_latency(lat, arch, num_classes)
            except LatencyServiceError as exc:
                raise StudyError(f"latency source unusable: {exc}") from None
            known[key] = {"latency_ms": measured["latency_ms"], "memory_mb": measured["peak_memory_mb"], "predicted": False}
        study.put("candidate_latency", known)
        log(f"latency {i + 1}/{len(archs)}: {known[key]['latency_ms']:.3f} ms" + (" (predicted)" if predictor else ""))
    return [known[a.key()] for a in archs]


def spread_out(accuracy: np.ndarray, latency_ms: np.ndarray, keep: int) -> list[int]:
    """Indices of ``keep`` points spread over (accuracy, log latency), both scaled to [0, 1]."""
    def scaled(v):
        v = np.asarray(v, float)
        span = np.ptp(v)
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    points = np.stack([scaled(accuracy), scaled(np.log(latency_ms))], axis=1)
    left = list(range(len(points)))
    while len(left) > keep:
        sub = points[left]
        dist = np.linalg.norm(sub[:, None] - sub[None], axis=2)
        np.fill_diagonal(dist, np.inf)
        i, j = np.unravel_index(np.argmin(dist), dist.shape)
        second = lambda k, dist=dist: np.sort(dist[k])[1] if len(left) > 2 else 0.0  # noqa: E731
        left.pop(i if second(i) <= second(j) else j)
    return left


def select_models(study: Study, candidates: int, models: int, log: Callable[[str], None], executor: str | None = None) -> list[dict]:
    """Sample, measure, train once with the config's proxy, keep ``models`` spread out; stored
    in the study as ``selected`` (name, architecture, latency, memory, proxy accuracy)."""
    if models < 3 or candidates < models:
        raise StudyError(f"need at least 3 models and candidates >= models (got --candidates {candidates} --models {models})")
    archs = sample_candidates(study, candidates)
    if len(archs) < models:
        raise StudyError(f"the space has only {len(archs)} distinct architectures near this seed; ask for fewer models")
    latency = candidate_latencies(study, archs, log)
    jobs = [Job.make(STEP, f"c{i}", arch) for i, arch in enumerate(archs)]
    results = study.run(jobs, executor_kind=executor, log=log)
    usable = [i for i, job in enumerate(jobs) if job in results and results[job].ok]
    if len(usable) < models:
        failed = [results[j].row["error_kind"] for j in jobs if j in results and not results[j].ok]
        raise StudyError(f"only {len(usable)} of {len(jobs)} candidates trained ({len(failed)} failed: {sorted(set(failed))}); "
                         f"fix the proxy (mnas proxy check) or ask for fewer models")
    acc = np.array([results[jobs[i]].accuracy for i in usable])
    lat = np.array([latency[i]["latency_ms"] for i in usable])
    chosen = [usable[k] for k in spread_out(acc, lat, models)]
    chosen.sort(key=lambda i: latency[i]["latency_ms"])
    selected = [{"name": f"m{rank}", "candidate": f"c{i}", "architecture": archs[i].to_dict(), **latency[i],
                 "proxy_accuracy": results[jobs[i]].accuracy} for rank, i in enumerate(chosen)]
    study.put("selected", {"candidates": len(archs), "models": selected})
    return selected


def selected_models(study: Study) -> list[tuple[str, Architecture]]:
    selected = study.get("selected", "mnas proxy select")
    return [(m["name"], Architecture.from_dict(m["architecture"])) for m in selected["models"]]
