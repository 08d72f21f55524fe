"""Controllers compared in seconds: a surrogate of a space's proxy accuracy and latency, fitted
on a table of architectures that were really trained and measured (NAS-Bench style).

A ``TrialTable`` is a JSON file: the space, how the proxy trained and how latency was measured,
and one row per architecture (token indices, top-1, latency). ``Surrogate(table)`` learns top-1 and
log-latency from the tokens (one-hot per token) and reports its
held-out Kendall tau and R^2, so a reader knows how far to trust the comparison. The model is
ridge regression on one-hot tokens (additive per-token effects): on the shipped table it ranked
held-out architectures better than gradient-boosted trees (top-1 Kendall tau 0.41 vs 0.36).
``run_controller`` drives any controller against it, as a search would (ask, reward, tell).

The shipped table (``load_table("cifar10-16px")``) is 200 MnasNet-space architectures trained
on a CIFAR-10 proxy on a CPU; ``benchmarks/controllers.py build`` regenerates or extends it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mnas.reward import Reward
from mnas.space import load_space

TABLES = Path(__file__).resolve().parents[1] / "tables"


@dataclass
class TableRow:
    indices: list[int]
    accuracy: float
    latency_ms: float
    train_seconds: float = 0.0


@dataclass
class TrialTable:
    space: str | dict  # a shipped space's name, or a space definition (what an experiment records)
    proxy: dict
    latency: dict
    rows: list[TableRow] = field(default_factory=list)
    accuracy_noise_std: float | None = None  # top-1 std between repeated trainings of one architecture, if measured

    def save(self, path: str | Path) -> None:
        doc = {"format": "mnas-trial-table", "version": 1, **asdict(self)}
        Path(path).write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrialTable:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != "mnas-trial-table":
            raise ValueError(f"{path} is not an mnas trial table")
        return cls(doc["space"], doc["proxy"], doc["latency"], [TableRow(**r) for r in doc["rows"]], doc.get("accuracy_noise_std"))

    def noise_std(self) -> float:
        """Observation noise of top-1: the table's own figure, else the pooled std of architectures
        trained more than once in it, else 0 (the surrogate then answers without noise)."""
        if self.accuracy_noise_std is not None:
            return float(self.accuracy_noise_std)
        groups: dict[tuple, list[float]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r.indices), []).append(r.accuracy)
        repeated = [np.var(v, ddof=1) for v in groups.values() if len(v) > 1]
        return float(np.sqrt(np.mean(repeated))) if repeated else 0.0


def load_table(name_or_path: str) -> TrialTable:
    """A shipped table by name (``search/tables/NAME.json``) or a table file."""
    path = TABLES / f"{name_or_path}.json"
    return TrialTable.load(path if path.exists() else name_or_path)


def one_hot(cardinalities: list[int], indices) -> np.ndarray:
    indices = np.atleast_2d(np.asarray(indices, int))
    offsets = np.concatenate([[0], np.cumsum(cardinalities)[:-1]])
    out = np.zeros((len(indices), int(sum(cardinalities))), np.float32)
    rows = np.repeat(np.arange(len(indices)), len(cardinalities))
    out[rows, (indices + offsets).ravel()] = 1
    return out


@dataclass
class Fit:
    kendall_tau: float
    r2: float
    mean_abs_error: float


class Surrogate:
    """Top-1 and latency of any architecture of the table's space, learned from the table.

    For each of the two, the model with the best held-out Kendall tau is kept: ridge regression
    on one-hot tokens (additive token effects) or gradient-boosted trees on the token indices
    (interactions between choices). ``observe`` adds the table's observation noise to top-1, as
    a real proxy training would answer.
    """

    def __init__(self, table: TrialTable, seed: int = 0):
        self.table, self.space = table, load_space(table.space)
        self.cards = self.space.cardinalities
        indices = np.asarray([r.indices for r in table.rows], int)
        acc = np.array([r.accuracy for r in table.rows])
        lat = np.log([r.latency_ms for r in table.rows])
        self.held_out, self.candidates, self.models, self._fitted = {}, {}, {}, {}
        for target, y in (("accuracy", acc), ("latency", lat)):
            fits = {name: _held_out(make, self._features(name, indices), y, seed) for name, make in MODELS.items()}
            best = max(fits, key=lambda name: fits[name].kendall_tau)
            self.candidates[target] = {name: asdict(f) for name, f in fits.items()}
            self.held_out[target], self.models[target] = fits[best], best
            self._fitted[target] = MODELS[best]().fit(self._features(best, indices), y)
        self.noise_std = table.noise_std()

    def _features(self, model: str, indices) -> np.ndarray:
        indices = np.atleast_2d(np.asarray(indices, int))
        return indices.astype(np.float32) if model == "boosted trees" else one_hot(self.cards, indices)

    def predict(self, indices) -> tuple[np.ndarray, np.ndarray]:
        acc = self._fitted["accuracy"].predict(self._features(self.models["accuracy"], indices))
        lat = self._fitted["latency"].predict(self._features(self.models["latency"], indices))
        return acc, np.exp(lat)

    def observe(self, accuracy: float, rng: np.random.Generator) -> float:
        """What a training of an architecture of this true top-1 reports (noise of repeated trainings)."""
        return float(accuracy + rng.normal(0.0, self.noise_std)) if self.noise_std else float(accuracy)


def _ridge():
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(-2, 3, 12))


def _boosted():
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=5, random_state=0)


MODELS = {"ridge": _ridge, "boosted trees": _boosted}


def _held_out(model, x, y, seed: int, folds: int = 5) -> Fit:
    """Five-fold cross-validated predictions: Kendall tau, R^2 and mean absolute error."""
    from scipy.stats import kendalltau
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    predicted = cross_val_predict(model(), x, y, cv=KFold(folds, shuffle=True, random_state=seed))
    return Fit(float(kendalltau(predicted, y).statistic), float(r2_score(y, predicted)), float(np.mean(np.abs(predicted - y))))


@dataclass
class ControllerRun:
    kind: str
    seed: int
    rewards: np.ndarray
    accuracy: np.ndarray  # the surrogate's top-1 of each proposal (what the model would really reach)
    latency_ms: np.ndarray
    observed: np.ndarray | None = None  # the top-1 the controller was told (with the table's noise)

    def best_after(self, n: int) -> float:
        return float(self.rewards[:n].max())

    def best_under(self, budget_ms: float, n: int) -> float:
        """The true top-1 of the proposal a user would pick after ``n``: the best *observed* top-1
        among those at or under the latency budget (NaN when none is)."""
        observed = self.accuracy if self.observed is None else self.observed
        ok = np.nonzero(self.latency_ms[:n] <= budget_ms)[0]
        return float(self.accuracy[ok[np.argmax(observed[ok])]]) if len(ok) else float("nan")

    def first_reaching(self, value: float) -> int | None:
        """1-based proposal count at which the running best first reaches ``value``."""
        hits = np.nonzero(np.maximum.accumulate(self.rewards) >= value)[0]
        return int(hits[0]) + 1 if len(hits) else None


def run_controller(kind: str, surrogate: Surrogate, reward: Reward, proposals: int, seed: int, **options) -> ControllerRun:
    """``proposals`` asks and tells of controller ``kind`` with the surrogate's figures."""
    import torch

    from search.controllers.targets import controller_for

    torch.set_num_threads(1)
    controller = controller_for(kind, surrogate.space, seed, reward, **options)
    noise = np.random.default_rng(1_000_003 + seed)  # the same trainings' noise for every controller of a seed
    rewards, accs, lats, seen = [], [], [], []
    for _ in range(proposals):
        proposal = controller.ask()
        (acc,), (lat,) = surrogate.predict([proposal.indices])
        told = surrogate.observe(float(acc), noise)
        value = reward(told, float(lat))
        controller.tell(proposal, value, {"accuracy": told, "latency_ms": float(lat), "memory_mb": None})
        rewards.append(value), accs.append(acc), lats.append(lat), seen.append(told)
    return ControllerRun(kind, seed, np.array(rewards), np.array(accs), np.array(lats), np.array(seen))


def median_latency(table: TrialTable) -> float:
    return float(np.median([r.latency_ms for r in table.rows]))


@dataclass
class ControllerSummary:
    kind: str
    proposals: int
    to_reach_random: list[int | None]  # per seed: proposals until random's best-of-N is matched
    best_at: dict[int, float | None]  # mean over seeds of the best reward after n proposals
    hypervolume_at_300: float | None
    seconds: float


@dataclass
class Comparison:
    table: str
    rows: int
    held_out: dict
    target_ms: float
    random_best: dict[int, float]
    summaries: list[ControllerSummary]
    models: dict = field(default_factory=dict)  # the surrogate's model per target, chosen by held-out tau
    noise_std: float = 0.0
    budgets: list = field(default_factory=list)  # search.controllers.budgets.BudgetRow per controller and budget (filled by its caller)
    pareto: list = field(default_factory=list)  # search.controllers.budgets.ParetoRow per controller (filled by its caller)
    pareto_reward: dict | None = None  # the Pareto-mode reward those rows were searched with (Reward.model_dump())


def compare(table: TrialTable, controllers: list[str], proposals: int, seeds: list[int], ax_proposals: int | None = None,
            name: str = "", on_run=None, surrogate: Surrogate | None = None) -> Comparison:
    """Every controller against the table's surrogate, with the soft reward at T = the table's
    median latency. Random search's best-of-``proposals`` per seed is the bar; the hypervolume
    (top-1 x ms) of the first 300 proposals has reference (top-1 0, 2T)."""
    import time

    from search.pareto import as_minimization, hypervolume

    surrogate = surrogate or Surrogate(table, seed=0)
    target = median_latency(table)
    reward = Reward(target_ms=target)
    kinds = list(dict.fromkeys(["random", *controllers]))
    runs, seconds = {}, {}
    for kind in kinds:
        n = ax_proposals if kind == "ax" and ax_proposals else proposals
        started = time.perf_counter()
        for seed in seeds:
            runs[kind, seed] = run_controller(kind, surrogate, reward, n, seed)
            if on_run:
                on_run(kind, seed, n)
        seconds[kind] = time.perf_counter() - started
    bar = {seed: runs["random", seed].best_after(proposals) for seed in seeds}
    summaries = []
    for kind in kinds:
        done = [runs[kind, s] for s in seeds]
        n = len(done[0].rewards)
        best_at = {k: (float(np.mean([r.best_after(k) for r in done])) if n >= k else None) for k in (100, 300, 1000)}
        hv = (float(np.mean([hypervolume(as_minimization(r.accuracy[:300], r.latency_ms[:300]), (0.0, 2 * target)) for r in done]))
              if n >= 300 else None)
        summaries.append(ControllerSummary(kind, n, [r.first_reaching(bar[r.seed]) for r in done], best_at, hv, seconds[kind]))
    return Comparison(name, len(table.rows), {k: asdict(v) for k, v in surrogate.held_out.items()}, target, bar, summaries,
                      surrogate.models, surrogate.noise_std)


def format_comparison(result: Comparison) -> str:
    """The comparison as the text table the benchmark and ``mnas controllers compare`` print."""
    acc, lat = result.held_out["accuracy"], result.held_out["latency"]
    lines = [
        f"table {result.table}: {result.rows} trained architectures; surrogate 5-fold held-out top-1: Kendall tau "
        f"{acc['kendall_tau']:.3f}, R^2 {acc['r2']:.3f}, MAE {acc['mean_abs_error']:.4f}; log-latency: tau "
        f"{lat['kendall_tau']:.3f}, R^2 {lat['r2']:.3f} (models: top-1 {result.models.get('accuracy', '?')}, latency "
        f"{result.models.get('latency', '?')}, each the better held out; observation noise std {result.noise_std:.4f})",
        f"reward: soft at T = {result.target_ms:.3f} ms (the table's median latency); hypervolume in top-1 x ms, "
        f"reference (0, {2 * result.target_ms:.3f} ms)",
        "random's best per seed: " + ", ".join(f"{v:.4f}" for v in result.random_best.values()),
        f"{'controller':<10} {'proposals':>9} {'to reach random best (per seed)':<32} {'best@100':>9} {'best@300':>9} "
        f"{'best@1000':>9} {'HV@300':>8} {'seconds':>8}",
    ]
    for c in result.summaries:
        reach = " ".join(str(x) if x is not None else f">{c.proposals}" for x in c.to_reach_random)
        cells = [f"{c.best_at[k]:.4f}" if c.best_at[k] is not None else "-" for k in (100, 300, 1000)]
        hv = f"{c.hypervolume_at_300:.4f}" if c.hypervolume_at_300 is not None else "-"
        lines.append(f"{c.kind:<10} {c.proposals:>9} {reach:<32} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {hv:>8} {c.seconds:>8.0f}")
    return "\n".join(lines)

