"""Ax's Bayesian optimization as a controller: parameters from the space's tokens, pending-aware
proposals, the same proposals for the same seed, an exact state round trip. (A real Ax search
that resumes is in test_pareto.py, in Pareto mode; beating random search on the synthetic reward is in the slow set: each model
step refits a GP, seconds per proposal on this CPU.)"""

import numpy as np
import pytest

pytest.importorskip("ax")

from test_controllers import CARDS, synthetic_reward  # noqa: E402

from mnas.space import SearchSpace, load_space  # noqa: E402
from search.controllers import make_controller  # noqa: E402

SPACE = SearchSpace()


def ax(seed=0, space=SPACE, **options):
    return make_controller("ax", space.cardinalities, seed, tokens=space.tokens, **options)


def drive(controller, n):
    proposals = []
    for _ in range(n):
        p = controller.ask()
        proposals.append(p.indices)
        controller.tell(p, synthetic_reward(p.indices))
    return proposals


def test_parameters_follow_the_tokens_ordered_where_values_are():
    c = ax()
    parameters = c.client._experiment.search_space.parameters
    assert len(parameters) == 42 and parameters["b3_kernel"].is_ordered and parameters["b3_layers"].is_ordered
    assert not parameters["b3_op"].is_ordered and not parameters["b3_skip"].is_ordered  # SE: two values, order is moot
    assert parameters["b3_op"].values == ["conv", "sepconv", "mbconv3", "mbconv6"]
    assert c.client._generation_strategy.name == "Center+Sobol+MBM:fast"
    assert ax(saasbo=True).client._generation_strategy.name == "Center+Sobol+MBM:quality"  # Ax's (warped) SAAS model
    # a space with fixed tokens: they are not Ax parameters, and proposals hold them at index 0
    tiny = load_space("tiny")
    fixed = [i for i, c in enumerate(tiny.cardinalities) if c == 1]
    c = ax(space=tiny)
    assert len(c.client._experiment.search_space.parameters) == len(tiny.cardinalities) - len(fixed)
    p = c.ask()
    assert all(p.indices[i] == 0 for i in fixed) and tiny.decode(p.indices)


def test_same_seed_same_proposals_and_an_exact_round_trip():
    a, b = ax(7, initial_trials=3), ax(7, initial_trials=3)
    first = drive(a, 4)  # centre, two Sobol points, then the first model-based proposal
    assert a.generation_step() == "MBM" and first == drive(b, 4)
    assert len({tuple(p) for p in first}) == 4 and drive(ax(8, initial_trials=3), 2) != first[:2]
    clone = ax(99)
    clone.load_bytes(a.to_bytes())
    # the restored experiment is the original's, trial for trial; the model is refit from it (Ax
    # warm-starts a refit from the previous fit, which a restore does not have), so the next
    # proposal is a new model-based point, not necessarily the same one bit for bit
    arms = lambda c: {i: t.arm.parameters for i, t in c.client._experiment.trials.items()}  # noqa: E731
    results = lambda c: sorted(c.client._experiment.lookup_data().df["mean"].round(9))  # noqa: E731
    assert clone.told == 4 and clone.seed == 7 and clone.generation_step() == "MBM"
    assert arms(clone) == arms(a) and results(clone) == results(a)
    assert tuple(clone.ask().indices) not in {tuple(p) for p in first}


def test_parallel_slots_get_distinct_pending_aware_proposals_and_failures_stay_pending():
    c = ax(0, initial_trials=2)
    pending = [c.ask() for _ in range(4)]  # more slots than initial points: Sobol keeps proposing
    assert len({tuple(p.indices) for p in pending}) == 4 and [p.meta["ax_trial"] for p in pending] == [0, 1, 2, 3]
    checkpoints = [c.tell(p, 0.5, None) for p in pending[:3]]  # the fourth "failed": never told
    assert checkpoints == [False, False, False] and c.told == 3
    statuses = {t.index: t.status.name for t in c.client._experiment.trials.values()}
    assert statuses == {0: "COMPLETED", 1: "COMPLETED", 2: "COMPLETED", 3: "RUNNING"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_ax_beats_random_on_the_synthetic_reward(seed):
    k = 40
    rng = np.random.default_rng(seed)
    random_best = max(synthetic_reward([int(rng.integers(c)) for c in CARDS]) for _ in range(k))
    ax_best = max(synthetic_reward(p) for p in drive(ax(seed), k))
    assert ax_best >= random_best + 0.05, (ax_best, random_best)
