"""The paper's controller: an LSTM policy over the tokens trained by PPO (or plain REINFORCE).

Its options and registration live here, light; the policy itself (``search.controllers.rnn``)
imports torch and is loaded only when a search builds one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from search.controllers.registry import ControllerOptions, register_controller


class PolicyGradientOptions(ControllerOptions):
    type: Literal["ppo", "reinforce"] = "ppo"
    batch: int = Field(default=10, ge=1, description="finished trials per policy update")
    hidden: int = Field(default=100, ge=1)
    lr: float = Field(default=3.5e-4, gt=0)
    epochs: int = Field(default=4, ge=1, description="PPO epochs over each batch")
    clip: float = Field(default=0.2, gt=0)
    entropy_weight: float = Field(default=1e-5, ge=0)
    baseline_decay: float = Field(default=0.95, ge=0, lt=1)


def _build(algorithm: str):
    def build(cardinalities, seed=0, tokens=None, **options):
        from search.controllers.rnn import PolicyGradientController

        return PolicyGradientController(cardinalities, seed, algorithm=algorithm, **options)

    return build


register_controller("ppo", PolicyGradientOptions, _build("ppo"))
register_controller("reinforce", PolicyGradientOptions, _build("reinforce"))
