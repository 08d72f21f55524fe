"""The question users ask of a controller: the most accurate model at or under my latency budget,
after the few hundred trials I can afford.

For hard budgets at the 25th, 50th and 75th percentiles of a table's latencies, every controller
searches the table's surrogate with MnasNet's hard constraint at that budget (alpha 0, beta -1)
and is scored, after 50/100/300/1000 proposals, by the true top-1 of the proposal it would
hand over: the best *observed* one at or under the budget (observations carry the table's
noise). Per controller and budget: mean and std over seeds, and the margin over random search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mnas.reward import Reward
from search.controllers.surrogate import Surrogate, TrialTable, run_controller

PERCENTILES = (25, 50, 75)
CHECKPOINTS = (50, 100, 300, 1000)


@dataclass
class BudgetRow:
    kind: str
    percentile: int
    budget_ms: float
    best_under: dict[int, list[float]]  # proposals -> true top-1 per seed (NaN: nothing under the budget yet)
    seconds: float

    def mean(self, n: int) -> float | None:
        values = self.best_under.get(n)
        return float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else None

    def std(self, n: int) -> float | None:
        values = self.best_under.get(n)
        return float(np.nanstd(values, ddof=1)) if values and np.sum(~np.isnan(values)) > 1 else None


def runs_over_seeds(kind: str, surrogate: Surrogate, reward: Reward, proposals: int, seeds: list[int], on_run=None) -> list:
    """One controller's runs against the surrogate, one per seed (``on_run`` hears each)."""
    runs = []
    for seed in seeds:
        runs.append(run_controller(kind, surrogate, reward, proposals, seed))
        if on_run:
            on_run(kind, seed, proposals)
    return runs


def budget_comparison(table: TrialTable, controllers: list[str], proposals: int, seeds: list[int],
                      surrogate: Surrogate | None = None, percentiles=PERCENTILES, on_run=None) -> list[BudgetRow]:
    surrogate = surrogate or Surrogate(table)
    latencies = np.array([r.latency_ms for r in table.rows])
    rows = []
    for pct in percentiles:
        budget = float(np.percentile(latencies, pct))
        reward = Reward(target_ms=budget, mode="hard")
        for kind in dict.fromkeys(["random", *controllers]):
            started = time.perf_counter()
            runs = runs_over_seeds(kind, surrogate, reward, proposals, seeds, on_run)
            best = {n: [r.best_under(budget, n) for r in runs] for n in CHECKPOINTS if n <= proposals}
            rows.append(BudgetRow(kind, pct, budget, best, time.perf_counter() - started))
    return rows


def format_budgets(rows: list[BudgetRow]) -> str:
    """Per budget, each controller's best top-1 under it (mean +- std over seeds) and its margin over random."""
    checkpoints = sorted({n for r in rows for n in r.best_under})
    lines = ["hard budgets (alpha 0, beta -1): true top-1 of the best observed proposal at or under the budget, "
             "mean +- std over seeds; (+x) = points above random",
             f"{'budget':<18} {'controller':<10} " + " ".join(f"{'@' + str(n):>17}" for n in checkpoints) + f" {'seconds':>8}"]
    for pct in dict.fromkeys(r.percentile for r in rows):
        mine = [r for r in rows if r.percentile == pct]
        base = next(r for r in mine if r.kind == "random")
        for r in mine:
            cells = []
            for n in checkpoints:
                m, s, b = r.mean(n), r.std(n), base.mean(n)
                margin = f" ({100 * (m - b):+.1f})" if m is not None and b is not None and r.kind != "random" else ""
                cells.append("-" if m is None else f"{m:.4f}+-{(s or 0):.3f}{margin}")
            lines.append(f"{'p' + str(pct) + f' {r.budget_ms:.3f} ms':<18} {r.kind:<10} " + " ".join(f"{c:>17}" for c in cells)
                         + f" {r.seconds:>8.0f}")
    return "\n".join(lines)


@dataclass
class ParetoRow:
    kind: str
    hypervolume: dict[int, list[float]]  # proposals -> hypervolume of the true (top-1, latency) points per seed
    seconds: float

    def mean(self, n: int) -> float | None:
        values = self.hypervolume.get(n)
        return float(np.mean(values)) if values else None

    def std(self, n: int) -> float | None:
        values = self.hypervolume.get(n)
        return float(np.std(values, ddof=1)) if values and len(values) > 1 else None


def pareto_reward(table: TrialTable) -> Reward:
    """Pareto mode over the table's own range: targets from its 10th to 90th latency percentile."""
    latencies = np.array([r.latency_ms for r in table.rows])
    return Reward(mode="pareto", target_ms=float(np.percentile(latencies, 90)), min_target_ms=float(np.percentile(latencies, 10)))


def pareto_comparison(table: TrialTable, controllers: list[str], proposals: int, seeds: list[int],
                      surrogate: Surrogate | None = None, on_run=None) -> tuple[Reward, list[ParetoRow]]:
    """Every controller in Pareto mode (a target drawn per proposal; Ax models both objectives),
    scored by the hypervolume of the true top-1 and latency of what it proposed, with the
    reward's reference point (top-1 0, the range's slow end)."""
    from search.pareto import as_minimization, hypervolume

    surrogate = surrogate or Surrogate(table)
    reward = pareto_reward(table)
    rows = []
    for kind in dict.fromkeys(["random", *controllers]):
        started = time.perf_counter()
        runs = runs_over_seeds(kind, surrogate, reward, proposals, seeds, on_run)
        volumes = {n: [hypervolume(as_minimization(r.accuracy[:n], r.latency_ms[:n]), reward.reference_point()) for r in runs]
                   for n in CHECKPOINTS if n <= proposals}
        rows.append(ParetoRow(kind, volumes, time.perf_counter() - started))
    return reward, rows


def format_pareto(reward: Reward | dict, rows: list[ParetoRow]) -> str:
    checkpoints = sorted({n for r in rows for n in r.hypervolume})
    low, high = (reward if isinstance(reward, Reward) else Reward.model_validate(reward)).target_range()
    base = next(r for r in rows if r.kind == "random")
    lines = [f"Pareto mode (targets drawn in {low:.3f}-{high:.3f} ms): hypervolume of the true top-1 x ms of the proposals, "
             "mean +- std over seeds; (+x%) = above random",
             f"{'controller':<10} " + " ".join(f"{'@' + str(n):>19}" for n in checkpoints) + f" {'seconds':>8}"]
    for r in rows:
        cells = []
        for n in checkpoints:
            m, s, b = r.mean(n), r.std(n), base.mean(n)
            margin = f" ({100 * (m / b - 1):+.1f}%)" if m is not None and b and r.kind != "random" else ""
            cells.append("-" if m is None else f"{m:.4f}+-{(s or 0):.4f}{margin}")
        lines.append(f"{r.kind:<10} " + " ".join(f"{c:>19}" for c in cells) + f" {r.seconds:>8.0f}")
    return "\n".join(lines)
