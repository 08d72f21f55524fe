"""Pareto mode for controllers that learn one scalar: a latency target drawn per proposal.

Each ``ask`` draws a target T log-uniformly from the reward's range and keeps it in the
proposal's meta; ``tell`` gives the wrapped controller the hard-constraint reward at that T
(accuracy under T, a steep penalty over it). Over a search the controller is asked for the
best model at every latency of the range, which is what a front is made of. The policy is not
told T (it is not conditioned on it): it learns architectures that do well across the range,
so the front's ends fill in more slowly than with Ax's multi-objective model.
"""

from __future__ import annotations

import math

import numpy as np

from mnas.reward import Reward
from search.controllers.base import Controller, Proposal


class RandomTargets(Controller):
    def __init__(self, inner: Controller, reward: Reward, seed: int = 0):
        super().__init__(inner.cardinalities, seed)
        self.inner, self.reward = inner, reward
        self.name = f"{inner.name}+targets"
        self.rng = np.random.default_rng([seed, 7])  # its own stream: the inner controller's stays as it was

    def ask(self) -> Proposal:
        proposal = self.inner.ask()
        low, high = self.reward.target_range()
        target = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return Proposal(proposal.indices, {**proposal.meta, "target_ms": round(target, 6)})

    def tell(self, proposal, reward, outcome=None) -> bool:
        outcome = outcome or {}
        scalar = self.reward(outcome["accuracy"], outcome["latency_ms"], outcome.get("memory_mb"),
                             target_ms=proposal.meta["target_ms"])
        told = self.inner.tell(proposal, scalar, outcome)
        self.updates = self.inner.updates
        return told

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state) -> None:
        self.inner.load_state_dict(state["inner"])
        self.rng.bit_generator.state = state["rng"]


def controller_for(kind: str, space, seed: int, reward: Reward, **options) -> Controller:
    """The controller a search runs for ``reward``: in Pareto mode Ax models the objectives
    themselves, every other kind is given a latency target drawn per proposal."""
    from search.controllers import make_controller

    if reward.pareto and kind == "ax":
        from search.controllers.bayes import pareto_objectives

        options = {**options, "objectives": pareto_objectives(reward)}
    controller = make_controller(kind, space.cardinalities, seed, tokens=space.tokens, **options)
    return RandomTargets(controller, reward, seed) if reward.pareto and kind != "ax" else controller
