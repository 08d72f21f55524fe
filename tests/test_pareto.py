"""Pareto mode: the front, ranks and hypervolume on known values (and against moocore where it is
installed), the reward's thresholds, the per-proposal targets that scalar controllers learn from,
and a real search whose status and report give the front and its hypervolume."""

import json

import numpy as np
import pytest
from conftest import run_cli
from pydantic import ValidationError
from search_helpers import tiny_config, write_config
from test_controllers import CARDS

from mnas.reward import Reward
from search.controllers import Proposal, make_controller
from search.controllers.targets import RandomTargets
from search.experiment.store import Store
from search.pareto import as_minimization, hypervolume, hypervolume_curve, pareto_ranks


def test_hypervolume_and_ranks_on_known_points():
    points = as_minimization([0.8, 0.6, 0.5, 0.9], [10.0, 5.0, 8.0, 30.0])  # (0.5, 8 ms) is beaten by (0.6, 5 ms)
    assert pareto_ranks(points).tolist() == [1, 1, 2, 1]
    # reference (top-1 0, 20 ms): (0.9, 30 ms) is over the threshold and adds nothing;
    # 0.8 x (20 - 10) + 0.6 x (10 - 5) = 11
    assert hypervolume(points, (0.0, 20.0)) == pytest.approx(11.0)
    assert hypervolume(points, (-0.7, 20.0)) == pytest.approx(0.1 * 10)  # only (0.8, 10 ms) clears top-1 0.7
    assert hypervolume(points[:0], (0.0, 20.0)) == 0.0
    cube = np.array([[-1.0, 1.0, 1.0], [-0.5, 0.5, 2.0]])  # two boxes against (0, 2, 3): 1x1x2 + 0.5x1.5x1 - overlap 0.5x1x1
    assert hypervolume(cube, (0.0, 2.0, 3.0)) == pytest.approx(2.0 + 0.75 - 0.5)
    curve = hypervolume_curve(points, (0.0, 20.0))
    assert curve.tolist() == pytest.approx([8.0, 11.0, 11.0, 11.0])  # never falls; dominated points add nothing


def test_hypervolume_matches_moocore():
    moocore = pytest.importorskip("moocore")  # installed with the ax extra
    rng = np.random.default_rng(0)
    for d in (2, 3):
        points = rng.uniform(0, 1, size=(60, d))
        assert hypervolume(points, np.ones(d)) == pytest.approx(moocore.hypervolume(points, ref=np.ones(d)), rel=1e-9)


def test_reward_in_pareto_mode():
    r = Reward(target_ms=40, mode="pareto", accuracy_threshold=0.3, memory_target_mb=20)
    assert r.target_range() == (10.0, 40.0) and r.reference_point() == (-0.3, 40.0, 20.0)
    assert r(0.7, 30, 10) == pytest.approx(0.7) and r(0.7, 80, 10) == pytest.approx(0.35)  # hard at target_ms
    assert r(0.7, 30, 10, target_ms=15) == pytest.approx(0.35)  # a drawn target replaces it
    with pytest.raises(ValidationError, match="must be below target_ms"):
        Reward(target_ms=40, mode="pareto", min_target_ms=50)
    with pytest.raises(ValidationError, match="belong to mode 'pareto'"):
        Reward(target_ms=40, accuracy_threshold=0.5)


def test_scalar_controllers_learn_the_hard_reward_at_a_target_drawn_per_proposal():
    reward = Reward(target_ms=40, mode="pareto", min_target_ms=5)
    controller = RandomTargets(make_controller("evolution", CARDS, 0, population=3, tournament=2), reward, seed=0)
    proposals = [controller.ask() for _ in range(20)]
    targets = [p.meta["target_ms"] for p in proposals]
    assert all(5 <= t <= 40 for t in targets) and min(targets) < 10 and max(targets) > 20  # log-uniform over the range
    controller.tell(proposals[0], 0.0, {"accuracy": 0.8, "latency_ms": 2 * targets[0], "memory_mb": None})
    assert controller.inner.population[-1][1] == pytest.approx(0.4)  # half the accuracy at twice its own target
    clone = RandomTargets(make_controller("evolution", CARDS, 5, population=3, tournament=2), reward, seed=5)
    clone.load_bytes(controller.to_bytes())
    a, b = clone.ask(), controller.ask()
    assert a.indices == b.indices and a.meta == b.meta


@pytest.mark.slow  # ~45 s; Ax itself is covered by test_ax_controller, Pareto mode by the search test below
def test_ax_in_pareto_mode_models_accuracy_and_latency():
    pytest.importorskip("ax")
    from mnas.space import SearchSpace
    from search.controllers.bayes import pareto_objectives

    space = SearchSpace()
    reward = Reward(target_ms=40, mode="pareto", accuracy_threshold=0.2)
    c = make_controller("ax", space.cardinalities, 0, tokens=space.tokens, initial_trials=3, objectives=pareto_objectives(reward))
    config = c.client._experiment.optimization_config
    assert config.is_moo_problem
    assert {t.metric_names[0]: t.bound for t in config.objective_thresholds} == {"accuracy": 0.2, "latency_ms": 40.0}
    for i in range(4):
        p = c.ask()
        c.tell(p, 0.0, {"accuracy": 0.5 + 0.1 * i, "latency_ms": 10.0 + 5 * i, "memory_mb": None})
    assert c.generation_step() == "MBM" and space.decode(c.ask().indices)  # the multi-objective model proposes
    with pytest.raises(ValueError, match="needs latency_ms"):
        c.tell(Proposal(p.indices, {"ax_trial": 4}), 0.0, {"accuracy": 0.5})


def test_scalar_controllers_are_wrapped_in_pareto_mode(tmp_path):
    from mnas.space import SearchSpace
    from search.config import parse_config
    from search.stages.stage1 import new_controller

    pareto = {"target_ms": 5.0, "mode": "pareto"}
    controller = new_controller(parse_config(tiny_config(tmp_path, reward=pareto)), SearchSpace())
    assert isinstance(controller, RandomTargets) and controller.inner.name == "ppo"
    assert not isinstance(new_controller(parse_config(tiny_config(tmp_path)), SearchSpace()), RandomTargets)


@pytest.mark.slow  # ~40 s; the front and hypervolume are tested on fixed points above
def test_a_pareto_search_reports_its_front_and_hypervolume(tmp_path):
    """Pareto mode end to end with a scalar controller (a latency target drawn per proposal); the
    same with Ax and a resume is the slow test below."""
    cfg = tiny_config(tmp_path, max_trials=3, controller={"type": "random"}, reward={"target_ms": 5.0, "mode": "pareto"})
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    trials = Store(out).trials()
    assert [t["status"] for t in trials] == ["succeeded"] * 3 and all("target_ms" in t["meta"] for t in trials)
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    points = as_minimization([t["accuracy"] for t in trials], [t["latency_ms"] for t in trials])
    assert status["hypervolume"] == pytest.approx(hypervolume(points, (0.0, 5.0)))
    assert status["front_size"] == int((pareto_ranks(points) == 1).sum()) >= 1
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert 'id="hypervolume"' in page and f"Pareto front: {status['front_size']} architectures" in page


@pytest.mark.slow  # ~70-140 s of Ax start-up and fits; Ax's resume is covered by test_ax_controller, Pareto search by the test above
def test_an_ax_pareto_search_resumes_and_reports_its_front_and_hypervolume(tmp_path):
    pytest.importorskip("ax")
    cfg = tiny_config(tmp_path, max_trials=3, max_parallel_trials=1, controller={"type": "ax", "initial_trials": 3, "batch": 2},
                      reward={"target_ms": 5.0, "mode": "pareto"})
    out = tmp_path / "exp"
    run_cli("search", str(write_config(tmp_path / "c.yaml", cfg)), "--out", str(out), "--no-progress", timeout=600)
    store = Store(out)
    assert store.checkpoint_count() == 1  # after the second told trial; the third is replayed on resume
    run_cli("search", str(write_config(tmp_path / "more.yaml", {**cfg, "max_trials": 4})), "--resume", str(out),
            "--no-progress", timeout=600)
    trials = Store(out).trials()
    assert [t["meta"]["ax_trial"] for t in trials] == [0, 1, 2, 3]  # the restored Ax experiment goes on
    assert [t["status"] for t in trials] == ["succeeded"] * 4 and len({t["arch_key"] for t in trials}) == 4
    assert all(t["reward"] == pytest.approx(t["accuracy"]) for t in trials)  # all under 5 ms: the stored reward is top-1
    status = json.loads(run_cli("status", str(out), "--json").stdout)
    points = as_minimization([t["accuracy"] for t in trials], [t["latency_ms"] for t in trials])
    assert status["hypervolume"] == pytest.approx(hypervolume(points, (0.0, 5.0)))
    assert status["front_size"] == int((pareto_ranks(points) == 1).sum()) >= 1
    assert 0 < status["hypervolume_at_half"] <= status["hypervolume"]
    assert "Pareto front" in run_cli("status", str(out)).stdout
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text()
    assert 'id="hypervolume"' in page and f"Pareto front: {status['front_size']} architectures" in page
