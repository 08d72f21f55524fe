"""Search controllers behind one ask/tell interface, one registration each (``registry``):
ppo and reinforce (``ppo``), random and evolution (``simple``), ax (``bayes``)."""

from search.controllers import bayes, ppo, simple  # noqa: F401  (their registrations)
from search.controllers.base import Controller, Proposal
from search.controllers.registry import controller_kind, controller_names, register_controller


def make_controller(kind: str, cardinalities: list[int], seed: int = 0, tokens=None, **options) -> Controller:
    """A controller of a registered ``kind``; ``tokens`` (the space's) for those that need names and choices.

    ``options`` are checked by the kind's options model, whose defaults fill the rest: a
    controller built here is the one a config with the same ``controller:`` block builds."""
    registered = controller_kind(kind)
    checked = registered.options.model_validate({**options, "type": kind})
    return registered.factory(cardinalities, seed, tokens=tokens, **checked.kwargs())


__all__ = ["Controller", "Proposal", "controller_names", "make_controller", "register_controller"]
