"""Controllers on a synthetic reward with a known optimum: a hidden preferred choice per
token, times a latency-like penalty for bigger choices. K = 300 proposals, seeds 0-2."""

import numpy as np
import pytest
import torch

from mnas.space import SearchSpace
from search.controllers import Proposal, make_controller

CARDS = SearchSpace().cardinalities
PREFERRED = [int(x) for x in np.random.default_rng(123).integers(0, CARDS)]
K = 300
MARGIN = 0.1


def synthetic_reward(indices):
    hits = sum(a == b for a, b in zip(indices, PREFERRED)) / len(indices)
    latency = 1 + sum(i / (c - 1) for i, c in zip(indices, CARDS)) / len(indices)
    return hits * (latency / 1.5) ** -0.5


def best_after(kind, seed, k=K, **options):
    torch.set_num_threads(1)
    controller = make_controller(kind, CARDS, seed, **options)
    best = 0.0
    for _ in range(k):
        p = controller.ask()
        r = synthetic_reward(p.indices)
        best = max(best, r)
        controller.tell(p, r)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_and_evolution_beat_random(seed):
    random_best = best_after("random", seed)
    ppo_best = best_after("ppo", seed)  # the shipped defaults (normalised advantages, lr 5e-3, elite replay)
    evolution_best = best_after("evolution", seed)
    assert ppo_best >= random_best + MARGIN, (ppo_best, random_best)
    assert evolution_best >= random_best + MARGIN, (evolution_best, random_best)


@pytest.mark.parametrize("kind", ["ppo", "reinforce", "random", "evolution"])
def test_same_seed_same_results_same_proposals(kind):
    def run():
        c = make_controller(kind, CARDS, 7, **({"batch": 3} if kind in ("ppo", "reinforce") else {"population": 4, "tournament": 2} if kind == "evolution" else {}))
        out = []
        for _ in range(12):
            p = c.ask()
            out.append(p.indices)
            c.tell(p, synthetic_reward(p.indices))
        return out, c

    a, ca = run()
    b, _ = run()
    assert a == b
    # state round trip: a restored controller proposes what the original does next
    clone = make_controller(kind, CARDS, 99, **({"batch": 3} if kind in ("ppo", "reinforce") else {"population": 4, "tournament": 2} if kind == "evolution" else {}))
    clone.load_bytes(ca.to_bytes())
    assert clone.ask().indices == ca.ask().indices


def test_ppo_updates_every_batch_and_moves_the_policy():
    c = make_controller("ppo", CARDS, 0, batch=4, lr=0.01)
    before = {k: v.clone() for k, v in c.policy.state_dict().items()}
    updates = [c.tell(c.ask(), 0.1 * i) for i in range(8)]
    assert updates == [False, False, False, True] * 2 and c.updates == 2
    assert any(not torch.equal(before[k], v) for k, v in c.policy.state_dict().items())


def test_evolution_mutates_one_token_of_a_tournament_winner():
    c = make_controller("evolution", CARDS, 0, population=5, tournament=5)
    for i in range(5):
        c.tell(Proposal(c.ask().indices), float(i))
    best = c.population[-1][0]
    child = c.ask().indices
    assert sum(a != b for a, b in zip(child, best)) == 1
    with pytest.raises(ValueError):
        make_controller("evolution", CARDS, 0, population=3, tournament=5)
    with pytest.raises(ValueError, match="unknown controller"):
        make_controller("bayes", CARDS)


PLUGIN = '''
"""A controller as a user adds one: this file and its one registration."""
from typing import Literal

from search.controllers import Controller, Proposal, register_controller
from search.controllers.registry import ControllerOptions


class WalkFirst(Controller):
    """Every token at its first choice, one token moved to its second in turn."""

    name = "walk-first"

    def __init__(self, cardinalities, seed=0, stride=1):
        super().__init__(cardinalities, seed)
        self.asked, self.stride = 0, stride

    def ask(self):
        indices = [0] * len(self.cardinalities)
        k = (self.asked * self.stride) % len(indices)
        indices[k] = min(1, self.cardinalities[k] - 1)
        self.asked += 1
        return Proposal(indices)

    def tell(self, proposal, reward, outcome=None):
        return False

    def state_dict(self):
        return {"asked": self.asked}

    def load_state_dict(self, state):
        self.asked = state["asked"]


class WalkFirstOptions(ControllerOptions):
    type: Literal["walk-first"] = "walk-first"
    stride: int = 1


register_controller("walk-first", WalkFirstOptions, lambda cards, seed=0, tokens=None, **o: WalkFirst(cards, seed, **o))
'''


def test_a_new_controller_is_one_file_and_one_registration_and_a_search_runs_it(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO
    from search_helpers import tiny_config, write_config

    from search.experiment.store import Store

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "walk_first.py").write_text(PLUGIN)
    cfg = {**tiny_config(tmp_path), "max_trials": 3, "plugins": ["walk_first"], "controller": {"type": "walk-first", "stride": 2}}
    config = write_config(tmp_path / "walk.yaml", cfg)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), os.environ.get("PYTHONPATH", "")])}
    mnas = [str(type(tmp_path)(sys.executable).with_name("mnas"))]
    proc = subprocess.run([*mnas, "search", str(config), "--out", str(tmp_path / "exp"), "--no-progress"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    store = Store(tmp_path / "exp")
    trials = store.trials()
    recorded = store.get_meta("config")["controller"]
    store.close()
    assert len(trials) == 3 and all(t["status"] == "succeeded" for t in trials)
    from mnas.space import load_space

    cards = load_space("mnasnet").cardinalities
    expected = []
    for i in range(3):  # the plug-in's proposals in its order: token 2i moved to its second choice
        indices = [0] * len(cards)
        indices[2 * i] = min(1, cards[2 * i] - 1)
        expected.append(indices)
    assert [t["indices"] for t in trials] == expected
    assert recorded == {"type": "walk-first", "stride": 2}
    # the search's trials as a trial table, as mnas controllers compare reads one
    exported = subprocess.run([*mnas, "controllers", "table", str(tmp_path / "exp"), "--out", str(tmp_path / "t.json")],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert exported.returncode == 0, exported.stderr[-2000:]
    from search.controllers.surrogate import load_table

    table = load_table(str(tmp_path / "t.json"))
    assert [r.indices for r in table.rows] == expected and [r.accuracy for r in table.rows] == [t["accuracy"] for t in trials]
    assert table.space["name"] == "mnasnet" and table.latency["resolution"] == cfg["latency"]["resolution"]
    bad = write_config(tmp_path / "bad.yaml", {**cfg, "controller": {"type": "walk-first", "stride": "two"}})
    refused = subprocess.run([*mnas, "search", str(bad), "--out", str(tmp_path / "bad")], capture_output=True, text=True, env=env,
                             cwd=REPO, timeout=120)
    assert refused.returncode == 2 and "controller.stride" in refused.stderr and "Traceback" not in refused.stderr
    missing = write_config(tmp_path / "missing.yaml", {**cfg, "plugins": ["no_such_plugin"]})
    refused = subprocess.run([*mnas, "search", str(missing), "--out", str(tmp_path / "missing")], capture_output=True, text=True,
                             cwd=REPO, timeout=120)
    assert refused.returncode == 2 and "plugins: cannot import 'no_such_plugin'" in refused.stderr


def test_the_shipped_ppo_and_the_paper_preset_differ_only_in_the_documented_options():
    from search.controllers.registry import own_options, parse_controller_options

    shipped, paper = make_controller("ppo", CARDS, 0), make_controller("ppo-paper", CARDS, 0)
    assert (shipped.normalize, shipped.elite, shipped.elite_weight, shipped.optimizer.param_groups[0]["lr"]) == (True, 10, 0.3, 5e-3)
    assert (paper.normalize, paper.elite, paper.elite_weight, paper.optimizer.param_groups[0]["lr"]) == (False, 0, 0.0, 3.5e-4)
    assert parse_controller_options({"type": "ppo-paper"}).batch == parse_controller_options({"type": "ppo"}).batch == 10
    # an experiment stored before these options resumes with the update it started with
    assert own_options({"type": "ppo", "lr": 3.5e-4, "batch": 10})["normalize"] is False
    assert parse_controller_options(own_options({"type": "ppo", "normalize": True})).elite == 10
    with pytest.raises(Exception, match="lr"):
        make_controller("ppo", CARDS, 0, lr=-1.0)


def test_priority_queue_keeps_the_best_distinct_architectures_and_survives_a_restart():
    c = make_controller("ppo", CARDS, 0, batch=5, elite=3)
    told = []
    for _ in range(10):
        p = c.ask()
        told.append((synthetic_reward(p.indices), p.indices))
        c.tell(p, told[-1][0])
    best = sorted(told, key=lambda t: -t[0])[:3]
    assert [r for r, _ in c.elites] == pytest.approx([r for r, _ in best]) and [a for _, a in c.elites] == [a for _, a in best]
    assert c.spread is not None and c.spread > 0
    clone = make_controller("ppo", CARDS, 1, batch=5, elite=3)
    clone.load_bytes(c.to_bytes())
    assert clone.elites == c.elites and clone.spread == c.spread and clone.ask().indices == c.ask().indices
