"""Bayesian optimization with Ax: Sobol points first, then Ax's model-based generation.

The space's tokens become Ax choice parameters, ordered where their values are (kernel,
expansion, filters, layers) and unordered for the rest (op, SE, skip, activation); a token
with one choice is fixed and left out. Every ``ask`` is an Ax trial left running until its
result is told, so proposals made for parallel slots are pending-aware. A failed trial is
never told (the controller interface's rule) and stays pending in Ax, which keeps Ax from
proposing that point again.

Ax re-seeds torch and numpy around each generation, so the same seed and results give the
same proposals. The checkpoint is Ax's own JSON snapshot (experiment and generation strategy),
compressed; on resume, the asks the store logged after it are attached to the Ax experiment
as they were proposed (same trial numbers), rather than generated again: a restored model is
refit and need not repeat a proposal bit for bit (at the switch from Sobol to the model it
does not), while the experiment it learns from must be exactly the store's.

Objectives: the scalar reward (``reward``, maximized), or in Pareto mode accuracy
(maximized) and latency (and memory), minimized, with thresholds that bound the front.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from mnas.errors import MnasError
from search.controllers.base import Controller, Proposal
from search.controllers.registry import ControllerOptions, register_controller

ORDERED_TOKENS = ("kernel", "expansion", "filters", "layers")


@dataclass(frozen=True)
class Objective:
    """One outcome Ax optimizes; ``threshold`` bounds the front (worse values are not wanted)."""

    metric: str  # accuracy, latency_ms, memory_mb or reward
    minimize: bool = False
    threshold: float | None = None


SCALAR = (Objective("reward"),)


def pareto_objectives(reward) -> tuple[Objective, ...]:
    """Pareto mode: accuracy up, latency (and memory) down, bounded by the reward's thresholds."""
    objectives = (Objective("accuracy", threshold=reward.accuracy_threshold), Objective("latency_ms", True, reward.target_ms))
    if reward.memory_target_mb is not None:
        objectives += (Objective("memory_mb", True, reward.memory_target_mb),)
    return objectives


def _ax():
    try:
        with quiet():
            from ax.api.client import Client
            from ax.api.configs import ChoiceParameterConfig
    except ImportError as exc:  # the optional extra
        raise MnasError("controller 'ax' needs ax-platform, which is not installed: pip install 'mnas[ax]'") from exc
    for handler in logging.getLogger("ax").handlers:
        handler.setLevel(logging.WARNING)  # Ax logs every trial at INFO; its advice: quiet the handler
    return Client, ChoiceParameterConfig


@contextlib.contextmanager
def quiet():
    """Ax's internal deprecations (pandas, its own API) and GP jitter notes are not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=r".*not p\.d\., added jitter.*")
        yield


class AxController(Controller):
    name = "ax"

    def __init__(self, cardinalities, seed=0, tokens=None, saasbo: bool = False, initial_trials: int | None = None,
                 checkpoint_every: int = 10, objectives: tuple[Objective, ...] = SCALAR):
        super().__init__(cardinalities, seed)
        if tokens is None or len(tokens) != len(self.cardinalities):
            raise ValueError("controller 'ax' needs the space's tokens (names and choices)")
        self.tokens = [(f"b{t.block + 1}_{t.name}", t.name, tuple(t.choices)) for t in tokens]
        self.saasbo, self.initial_trials, self.checkpoint_every = saasbo, initial_trials, checkpoint_every
        self.objectives = tuple(objectives)
        self.told = 0
        self.client = self._new_client()

    # ----- Ax set-up --------------------------------------------------------------------
    def _new_client(self):
        Client, Choice = _ax()
        with quiet():
            return self._configure(Client(random_seed=self.seed), Choice)

    def _configure(self, client, Choice):
        parameters = []
        for name, kind, choices in self.tokens:
            if len(choices) < 2:
                continue
            value_type = {bool: "bool", int: "int", float: "float", str: "str"}[type(choices[0])]
            parameters.append(Choice(name=name, values=list(choices), parameter_type=value_type,
                                     is_ordered=kind in ORDERED_TOKENS))
        client.configure_experiment(parameters=parameters, name="mnas")
        objective = ", ".join(("-" if o.minimize else "") + o.metric for o in self.objectives)
        bounds = [f"{o.metric} {'<=' if o.minimize else '>='} {o.threshold}" for o in self.objectives
                  if o.threshold is not None]
        client.configure_optimization(objective=objective, outcome_constraints=bounds or None)
        # "quality" is Ax's fully Bayesian SAAS model, meant for many parameters and few trials;
        # "fast" its default GP. Sobol keeps proposing while the first results are outstanding,
        # so a search with more slots than Sobol points never waits for the model.
        client.configure_generation_strategy(method="quality" if self.saasbo else "fast",
                                             initialization_budget=self.initial_trials,
                                             initialization_random_seed=self.seed,
                                             allow_exceeding_initialization_budget=True)
        return client

    # ----- ask / tell -------------------------------------------------------------------
    def ask(self) -> Proposal:
        with quiet():
            ((index, parameters),) = self.client.get_next_trials(max_trials=1).items()
        indices = [choices.index(parameters[name]) if len(choices) > 1 else 0 for name, _, choices in self.tokens]
        return Proposal(indices, {"ax_trial": index})

    def replay_ask(self, proposal) -> None:
        with quiet():
            index = self.client.attach_trial(parameters=self.parameters(proposal.indices))
        if index != proposal.meta.get("ax_trial"):
            raise ValueError(f"the Ax experiment is at trial {index}, the store's proposal was Ax trial {proposal.meta.get('ax_trial')}")

    def tell(self, proposal, reward, outcome=None) -> bool:
        values = {"reward": reward, **(outcome or {})}
        missing = [o.metric for o in self.objectives if values.get(o.metric) is None]
        if missing:
            raise ValueError(f"controller 'ax' needs {', '.join(missing)} for every told trial")
        raw = {o.metric: float(values[o.metric]) for o in self.objectives}
        with quiet():
            self.client.complete_trial(proposal.meta["ax_trial"], raw_data=raw)
        self.told += 1
        self.updates += 1
        return self.told % self.checkpoint_every == 0

    def parameters(self, indices: list[int]) -> dict:
        """Ax's parameterization of token indices (the inverse of what ``ask`` returns)."""
        return {name: choices[i] for (name, _, choices), i in zip(self.tokens, indices) if len(choices) > 1}

    def generation_step(self) -> str:
        """The generation node that makes the next proposal (Sobol first, then the model)."""
        return self.client._generation_strategy.current_node_name

    # ----- state ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ax.json"
            with quiet():
                self.client.save_to_json_file(str(path))
            snapshot = path.read_bytes()
        return {"ax": zlib.compress(snapshot, 6), "seed": self.seed, "told": self.told, "updates": self.updates}

    def load_state_dict(self, state) -> None:
        Client, _ = _ax()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "ax.json"
            path.write_bytes(zlib.decompress(state["ax"]))
            with quiet():
                client = Client.load_from_json_file(str(path))
        client._random_seed = state["seed"]  # the snapshot holds the experiment, not the client's seed
        self.client, self.seed, self.told, self.updates = client, state["seed"], state["told"], state["updates"]


class AxOptions(ControllerOptions):
    type: Literal["ax"] = "ax"
    batch: int = Field(default=10, ge=1, description="finished trials per checkpoint of Ax's state")
    saasbo: bool = Field(default=False, description="Ax's fully Bayesian SAAS model (many parameters, few trials; slow)")
    initial_trials: int | None = Field(default=None, ge=1, description="space-filling (centre + Sobol) proposals "
                                       "before the model; default: Ax's choice")

    def kwargs(self) -> dict:
        return {"saasbo": self.saasbo, "initial_trials": self.initial_trials, "checkpoint_every": self.batch}


register_controller("ax", AxOptions, lambda cardinalities, seed=0, tokens=None, **options: AxController(cardinalities, seed, tokens=tokens, **options))
