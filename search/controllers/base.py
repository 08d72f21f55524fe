"""The controller interface: ask for an architecture, tell its reward, save and restore.

A proposal carries ``meta`` (e.g. the sampling log-probability PPO needs); the search
stores it with the trial and hands it back with the reward, so an update never depends
on state that a crash could lose.

Controllers learn token indices; those that model the tokens themselves (Ax) also get the
space's ``tokens`` (names and choices).

Failed trials are never told: a controller learns only from real measurements, and a
failed proposal simply drops out of its batch (no made-up accuracy, no penalty reward).
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass
class Proposal:
    indices: list[int]
    meta: dict = field(default_factory=dict)


class Controller(ABC):
    name = "base"

    def __init__(self, cardinalities: list[int], seed: int = 0):
        self.cardinalities = list(cardinalities)
        self.seed = seed
        self.updates = 0

    @abstractmethod
    def ask(self) -> Proposal:
        """The next architecture to evaluate, as token indices."""

    @abstractmethod
    def tell(self, proposal: Proposal, reward: float, outcome: dict | None = None) -> bool:
        """Record a finished trial's reward; True when this caused a policy update (a checkpoint).

        ``outcome`` holds the trial's own figures (accuracy, latency_ms, memory_mb) for
        controllers that model them separately (Ax in Pareto mode); the others learn the reward."""

    def replay_ask(self, proposal: Proposal) -> None:
        """Bring the controller past an ask the store logged after its checkpoint (resume).

        Controllers whose asks are reproducible ask again and must propose the same; a
        controller that can take a logged proposal as its own overrides this."""
        again = self.ask()
        if again.indices != proposal.indices:
            raise ValueError(f"it now proposes {again.indices}, the store holds {proposal.indices}")

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to continue exactly where this controller is."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        ...

    def to_bytes(self) -> bytes:
        import torch  # the checkpoint format; imported when a search saves, not when a config is read

        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        return buffer.getvalue()

    def load_bytes(self, data: bytes) -> None:
        import torch

        self.load_state_dict(torch.load(io.BytesIO(data), weights_only=False))
