"""The paper's controller: an LSTM policy over the tokens trained by PPO (or plain REINFORCE).

Two presets. ``ppo`` / ``reinforce`` are tuned for the few hundred trials users can afford:
advantages in units of the rewards' moving spread (a hard-constraint reward differs by a few
hundredths between architectures, so raw advantages barely move the policy), Adam at 5e-3,
and priority-queue training (each update also raises the likelihood of the 10 best
architectures seen so far). ``ppo-paper`` is MnasNet's controller exactly (raw advantages,
Adam at 3.5e-4, no replay), which needs thousands of trials. BENCHMARKS "Controllers under
hard budgets" has the figures behind the defaults.

Options and registration live here, light; the policy itself (``search.controllers.rnn``)
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
    lr: float = Field(default=5e-3, gt=0)
    epochs: int = Field(default=4, ge=1, description="PPO epochs over each batch")
    clip: float = Field(default=0.2, gt=0)
    entropy_weight: float = Field(default=1e-5, ge=0)
    baseline_decay: float = Field(default=0.95, ge=0, lt=1)
    normalize: bool = Field(default=True, description="advantages divided by the moving std of rewards")
    elite: int = Field(default=10, ge=0, description="best architectures kept for priority-queue training (0: none)")
    elite_weight: float = Field(default=0.3, ge=0, description="weight of the elite's log-likelihood in each update")

    @classmethod
    def stored_defaults(cls, stored: dict) -> dict:
        # experiments stored before these options ran the paper's update: they resume with it
        return {} if "normalize" in stored else {"normalize": False, "elite": 0, "elite_weight": 0.0}


class PaperPPOOptions(PolicyGradientOptions):
    """MnasNet's settings (Tan et al. 2019, after NASNet): for budgets of thousands of trials."""

    type: Literal["ppo-paper"] = "ppo-paper"
    lr: float = Field(default=3.5e-4, gt=0)
    normalize: bool = False
    elite: int = Field(default=0, ge=0)
    elite_weight: float = Field(default=0.0, ge=0)


def _build(algorithm: str):
    def build(cardinalities, seed=0, tokens=None, **options):
        from search.controllers.rnn import PolicyGradientController

        return PolicyGradientController(cardinalities, seed, algorithm=algorithm, **options)

    return build


register_controller("ppo", PolicyGradientOptions, _build("ppo"))
register_controller("reinforce", PolicyGradientOptions, _build("reinforce"))
register_controller("ppo-paper", PaperPPOOptions, _build("ppo"))
