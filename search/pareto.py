"""The accuracy/latency (and memory) trade-off: which trials are not dominated, their Pareto
ranks, and the hypervolume they cover above a reference point.

Everything here works on points in minimization form (accuracy negated), so one definition of
"dominates" serves every objective count. The hypervolume is exact (slicing along the last
objective, a sweep in two dimensions): O(n log n) for two objectives, O(n^2 log n) for three,
fast enough for the few thousand trials of a search. Imports no torch.
"""

from __future__ import annotations

import numpy as np


def as_minimization(accuracy, latency_ms, memory_mb=None) -> np.ndarray:
    """Rows of (-accuracy, latency[, memory]): every column is better when lower."""
    columns = [-np.asarray(accuracy, float), np.asarray(latency_ms, float)]
    if memory_mb is not None:
        columns.append(np.asarray(memory_mb, float))
    return np.column_stack(columns)


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_ranks(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 1 for the front, 2 for the front of the rest, and so on."""
    points = np.asarray(points, float)
    ranks = np.zeros(len(points), int)
    remaining = np.arange(len(points))
    rank = 0
    while len(remaining):
        rank += 1
        sub = points[remaining]
        # no_worse[j, i]: row j is no worse than row i everywhere; better[j, i]: better somewhere
        no_worse = np.all(sub[:, None, :] <= sub[None, :, :], axis=2)
        better = np.any(sub[:, None, :] < sub[None, :, :], axis=2)
        beaten = np.any(no_worse & better, axis=0)
        ranks[remaining[~beaten]] = rank
        remaining = remaining[beaten]
    return ranks


def hypervolume(points: np.ndarray, reference) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimization form);
    points not strictly better than the reference in every objective add nothing."""
    points, reference = np.asarray(points, float).reshape(-1, len(reference)), np.asarray(reference, float)
    points = points[np.all(points < reference, axis=1)]
    return _hv(points, reference) if len(points) else 0.0


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        volume, lowest = 0.0, reference[1]
        for x, y in points[np.lexsort((points[:, 1], points[:, 0]))]:
            if y < lowest:
                volume += (reference[0] - x) * (lowest - y)
                lowest = y
        return float(volume)
    order = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(order)):
        top = order[i + 1, -1] if i + 1 < len(order) else reference[-1]
        if top > order[i, -1]:
            volume += _hv(order[: i + 1, :-1], reference[:-1]) * (top - order[i, -1])
    return float(volume)


def hypervolume_curve(points: np.ndarray, reference) -> np.ndarray:
    """Hypervolume of the first n points, for every n (points in the order they finished)."""
    points = np.asarray(points, float)
    curve, front = np.zeros(len(points)), []
    for n, point in enumerate(points):
        if any(dominates(f, point) or np.array_equal(f, point) for f in front):
            curve[n] = curve[n - 1]
            continue
        front = [f for f in front if not dominates(point, f)] + [point]
        curve[n] = hypervolume(np.array(front), reference)
    return curve
