"""Rank agreement between a proxy's accuracies and the reference: Kendall's tau, Spearman's rho,
and the best tau a partly trained setting can still reach (to stop a hopeless setting early)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    n: int
    tau: float
    tau_p: float
    spearman: float

    def as_dict(self) -> dict:
        return {"n": self.n, "tau": self.tau, "tau_p": self.tau_p, "spearman": self.spearman}


def agreement(proxy: list[float], reference: list[float]) -> Agreement:
    """Kendall's tau-b (with its p-value) and Spearman's rho of two accuracy lists (scipy);
    NaN where fewer than two pairs or a list is constant."""
    from scipy.stats import kendalltau, spearmanr

    x, y = np.asarray(proxy, float), np.asarray(reference, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Agreement(len(x), math.nan, math.nan, math.nan)
    tau = kendalltau(x, y)
    return Agreement(len(x), float(tau.statistic), float(tau.pvalue), float(spearmanr(x, y).statistic))


def best_reachable_tau(known: dict[str, float], reference: dict[str, float]) -> float:
    """An upper bound of the Kendall tau-b that a setting can still reach when only the models
    in ``known`` have their proxy accuracy so far.

    Pairs of two known models count as they are (concordant +1, discordant -1, tied 0). Every
    other pair is given its best outcome: concordant where the reference orders it; where the
    reference ties it, a tie in the proxy too (which shrinks tau-b's denominator) when the
    figure is positive, no tie when it is not. When the bound is below the threshold, no
    outcome of the remaining trainings can pass.
    """
    names = list(reference)
    n = len(names)
    pairs = n * (n - 1) / 2
    score = ties_ref = ties_proxy = open_ties = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = names[i], names[j]
            ref = np.sign(reference[a] - reference[b])
            ties_ref += ref == 0
            if a in known and b in known:
                mine = np.sign(known[a] - known[b])
                ties_proxy += mine == 0
                score += mine * ref
            else:
                score += abs(ref)
                open_ties += ref == 0
    best = math.nan
    for proxy_ties in (ties_proxy, ties_proxy + open_ties):
        denominator = math.sqrt((pairs - ties_ref) * (pairs - proxy_ties))
        if denominator:
            best = score / denominator if math.isnan(best) else max(best, score / denominator)
    return best
