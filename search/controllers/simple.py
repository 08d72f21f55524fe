"""Baselines without a learned policy: uniform random search and regularized evolution."""

from __future__ import annotations

import collections
from typing import Literal

import numpy as np
from pydantic import Field

from search.controllers.base import Controller, Proposal
from search.controllers.registry import ControllerOptions, register_controller


class RandomController(Controller):
    name = "random"

    def __init__(self, cardinalities, seed=0):
        super().__init__(cardinalities, seed)
        self.rng = np.random.default_rng(seed)

    def ask(self) -> Proposal:
        return Proposal([int(self.rng.integers(c)) for c in self.cardinalities])

    def tell(self, proposal, reward, outcome=None) -> bool:
        return False

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state) -> None:
        self.rng.bit_generator.state = state["rng"]


class EvolutionController(Controller):
    """Regularized (aging) evolution, Real et al. 2019.

    Until ``population`` results are in, proposals are random. Then: draw ``tournament``
    members of the population, mutate one token of the best, and let the oldest member
    age out when a new result arrives.
    """

    name = "evolution"

    def __init__(self, cardinalities, seed=0, population: int = 20, tournament: int = 5):
        super().__init__(cardinalities, seed)
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament size must be in 1..population ({population}), got {tournament}")
        self.rng = np.random.default_rng(seed)
        self.population_size, self.tournament = population, tournament
        self.population: collections.deque = collections.deque()

    def ask(self) -> Proposal:
        if len(self.population) < self.population_size:
            return Proposal([int(self.rng.integers(c)) for c in self.cardinalities])
        members = [self.population[i] for i in self.rng.choice(len(self.population), self.tournament, replace=False)]
        parent = max(members, key=lambda m: m[1])[0]
        child = list(parent)
        pos = int(self.rng.integers(len(child)))
        child[pos] = (child[pos] + int(self.rng.integers(1, self.cardinalities[pos]))) % self.cardinalities[pos]
        return Proposal(child, {"parent": list(parent)})

    def tell(self, proposal, reward, outcome=None) -> bool:
        self.population.append((list(proposal.indices), float(reward)))
        if len(self.population) > self.population_size:
            self.population.popleft()
        return False

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "population": list(self.population)}

    def load_state_dict(self, state) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.population = collections.deque((list(i), r) for i, r in state["population"])


class RandomOptions(ControllerOptions):
    type: Literal["random"] = "random"


class EvolutionOptions(ControllerOptions):
    type: Literal["evolution"] = "evolution"
    population: int = Field(default=20, ge=1)
    tournament: int = Field(default=5, ge=1)


register_controller("random", RandomOptions, lambda cardinalities, seed=0, tokens=None: RandomController(cardinalities, seed))
register_controller("evolution", EvolutionOptions,
                    lambda cardinalities, seed=0, tokens=None, **options: EvolutionController(cardinalities, seed, **options))
