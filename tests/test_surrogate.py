"""The shipped table of really trained architectures, the surrogate fitted on it (its held-out
quality is measured, not assumed), and ``mnas controllers compare`` driving controllers on it."""

import json

import numpy as np
import pytest
from conftest import run_cli

from mnas.reward import Reward
from mnas.space import SearchSpace
from search.controllers.surrogate import Surrogate, TrialTable, load_table, one_hot, run_controller


@pytest.fixture(scope="module")
def table():
    return load_table("cifar10-16px")


def test_the_shipped_table_is_real_trained_architectures_of_the_space(table):
    space = SearchSpace()
    assert table.space == "mnasnet" and len(table.rows) >= 200
    assert all(space.decode(r.indices) for r in table.rows[:20])
    acc = np.array([r.accuracy for r in table.rows])
    lat = np.array([r.latency_ms for r in table.rows])
    assert 0.1 < acc.min() < acc.max() < 1 and acc.std() > 0.02  # trained above chance (0.1), and they differ
    assert (lat > 0).all() and lat.max() / lat.min() > 2
    assert table.proxy["resolution"] == 16 and table.latency["device"] == "x86-ort-1t-quick"


def test_one_hot_marks_one_choice_per_token():
    cards = [4, 2, 3]
    x = one_hot(cards, [[3, 0, 2], [0, 1, 0]])
    assert x.shape == (2, 9) and x.sum(axis=1).tolist() == [3, 3]
    assert np.flatnonzero(x[0]).tolist() == [3, 4, 8] and np.flatnonzero(x[1]).tolist() == [0, 5, 6]


def test_the_surrogate_ranks_held_out_architectures(table, tmp_path):
    surrogate = Surrogate(table)
    acc, lat = surrogate.held_out["accuracy"], surrogate.held_out["latency"]
    # measured on the shipped table: top-1 tau 0.41, R^2 0.35; log-latency tau 0.55, R^2 0.53 (sub-ms latencies at 64 px)
    assert acc.kendall_tau > 0.3 and acc.r2 > 0.2 and lat.kendall_tau > 0.45 and lat.r2 > 0.4, surrogate.held_out
    predicted_acc, predicted_lat = surrogate.predict([r.indices for r in table.rows[:5]])
    assert predicted_acc.shape == (5,) and (predicted_lat > 0).all()
    run = run_controller("random", surrogate, Reward(target_ms=1.0), 30, seed=0)
    assert len(run.rewards) == 30 and run.first_reaching(run.rewards.max()) == int(np.argmax(run.rewards)) + 1
    copy = tmp_path / "t.json"
    table.save(copy)
    assert TrialTable.load(copy).rows == table.rows


def test_cli_compares_controllers_on_the_table():
    r = json.loads(run_cli("controllers", "compare", "-c", "evolution", "--proposals", "120", "--seed", "0", "--seed", "1",
                           "--json").stdout)
    kinds = [s["kind"] for s in r["summaries"]]
    assert kinds == ["random", "evolution"] and r["rows"] >= 200 and set(r["random_best"]) == {"0", "1"}
    for s in r["summaries"]:
        assert s["proposals"] == 120 and s["best_at"]["100"] > 0 and s["best_at"]["300"] is None
    assert [(b["kind"], b["percentile"]) for b in r["budgets"]] == [(k, p) for p in (25, 50, 75) for k in ("random", "evolution")]
    assert all(sorted(b["best_under"]) == ["100", "50"] and len(b["best_under"]["50"]) == 2 for b in r["budgets"])
    assert [p["kind"] for p in r["pareto"]] == ["random", "evolution"] and r["pareto_reward"]["mode"] == "pareto"
    assert all(sorted(p["hypervolume"]) == ["100", "50"] and all(v > 0 for v in p["hypervolume"]["100"]) for p in r["pareto"])
    assert set(r["models"]) == {"accuracy", "latency"} and r["noise_std"] == 0.0  # the shipped table has no repeated trainings
    bad = run_cli("controllers", "compare", "-c", "bayes", check=False)
    assert bad.returncode == 2 and "unknown controller(s) ['bayes']" in bad.stderr
    missing = run_cli("controllers", "compare", "--table", "/nonexistent.json", check=False)
    assert missing.returncode == 2 and "cannot read trial table" in missing.stderr and "Traceback" not in missing.stderr


def test_the_best_under_a_budget_is_the_true_top1_of_the_best_observed_proposal_under_it():
    from search.controllers.surrogate import ControllerRun

    run = ControllerRun("x", 0, rewards=np.zeros(4), accuracy=np.array([0.50, 0.40, 0.70, 0.45]),
                        latency_ms=np.array([1.0, 0.8, 2.0, 0.9]), observed=np.array([0.48, 0.46, 0.72, 0.41]))
    assert run.best_under(1.0, 4) == 0.50  # 0.70 is over the budget; 0.48 observed beats 0.46 and 0.41
    assert run.best_under(0.9, 4) == 0.40  # observed 0.46 > 0.41: the user takes it, its true top-1 is 0.40
    assert run.best_under(0.85, 1) != run.best_under(0.85, 1)  # nothing under the budget yet: NaN


def test_observation_noise_is_the_tables_own_or_pooled_from_repeated_trainings():
    from search.controllers.surrogate import TableRow, TrialTable

    rows = [TableRow([0, 1], 0.50, 1.0), TableRow([0, 1], 0.54, 1.0), TableRow([1, 1], 0.30, 2.0), TableRow([1, 1], 0.36, 2.0),
            TableRow([1, 0], 0.40, 1.5)]
    table = TrialTable("tiny", {}, {}, rows)
    pooled = np.sqrt(np.mean([np.var([0.50, 0.54], ddof=1), np.var([0.30, 0.36], ddof=1)]))
    assert table.noise_std() == pytest.approx(pooled)
    assert TrialTable("tiny", {}, {}, rows, accuracy_noise_std=0.01).noise_std() == 0.01
    assert TrialTable("tiny", {}, {}, rows[-1:]).noise_std() == 0.0


def test_hard_budgets_at_three_percentiles_score_every_controller_against_random():
    from search.controllers.budgets import budget_comparison, format_budgets
    from search.controllers.surrogate import Surrogate, load_table

    table = load_table("cifar10-16px")
    rows = budget_comparison(table, ["evolution"], 60, [0, 1], Surrogate(table))
    lat = np.array([r.latency_ms for r in table.rows])
    assert [(r.kind, r.percentile) for r in rows] == [(k, p) for p in (25, 50, 75) for k in ("random", "evolution")]
    assert [r.budget_ms for r in rows[::2]] == pytest.approx([np.percentile(lat, p) for p in (25, 50, 75)])
    for r in rows:
        assert sorted(r.best_under) == [50] and len(r.best_under[50]) == 2 and 0 < r.mean(50) < 1
    text = format_budgets(rows)
    assert "p25" in text and "(+" in text or "(-" in text


def test_pareto_mode_scores_what_each_controller_proposed_by_its_hypervolume():
    from search.controllers.budgets import format_pareto, pareto_comparison
    from search.controllers.surrogate import Surrogate, load_table
    from search.pareto import as_minimization, hypervolume

    table = load_table("cifar10-16px")
    lat = np.array([r.latency_ms for r in table.rows])
    reward, rows = pareto_comparison(table, ["evolution"], 50, [0, 1], Surrogate(table))
    assert reward.pareto and reward.target_range() == pytest.approx((np.percentile(lat, 10), np.percentile(lat, 90)))
    assert [r.kind for r in rows] == ["random", "evolution"] and all(len(r.hypervolume[50]) == 2 for r in rows)
    # the whole table's own front bounds what any 50 proposals can cover
    table_hv = hypervolume(as_minimization([r.accuracy for r in table.rows], lat), reward.reference_point())
    assert all(0 < v < table_hv * 1.2 for r in rows for v in r.hypervolume[50])
    assert "Pareto mode (targets drawn in" in format_pareto(reward.model_dump(), rows)
