"""Search controllers behind one ask/tell interface: ppo, reinforce, random, evolution, ax."""

from search.controllers.base import Controller, Proposal
from search.controllers.rnn import PolicyGradientController
from search.controllers.simple import EvolutionController, RandomController

CONTROLLERS = ("ppo", "reinforce", "random", "evolution", "ax")


def make_controller(kind: str, cardinalities: list[int], seed: int = 0, tokens=None, **options) -> Controller:
    """A controller of ``kind``; ``tokens`` (the space's) for those that need names and choices."""
    if kind in ("ppo", "reinforce"):
        return PolicyGradientController(cardinalities, seed, algorithm=kind, **options)
    if kind == "random":
        return RandomController(cardinalities, seed, **options)
    if kind == "evolution":
        return EvolutionController(cardinalities, seed, **options)
    if kind == "ax":
        from search.controllers.bayes import AxController  # imports Ax (an optional extra) only when asked

        return AxController(cardinalities, seed, tokens=tokens, **options)
    raise ValueError(f"unknown controller {kind!r}; use one of {', '.join(CONTROLLERS)}")


__all__ = ["CONTROLLERS", "Controller", "Proposal", "make_controller"]
