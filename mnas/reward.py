"""MnasNet's multi-objective reward: ACC x (LAT/T)^w, w = alpha if LAT <= T else beta.

Soft constraint (the paper's main search): alpha = beta = -0.07, so doubling latency must
buy about 5% relative accuracy to keep the reward. Hard constraint: alpha = 0, beta = -1:
plain accuracy under the target, a steep penalty over it. An optional memory term of the
same form multiplies in: (MEM/M)^w' with its own target M and exponents.
Every input is stored with each trial, so rewards can be recomputed for other targets.

Pareto mode searches for the whole accuracy/latency (and memory) trade-off instead of one
target: ``target_ms`` (and ``memory_target_mb``) and ``accuracy_threshold`` bound the front
(worse models are not wanted; they make the hypervolume's reference point). The stored reward
is the hard-constraint reward at ``target_ms``; controllers that learn one scalar are told the
hard-constraint reward at a target drawn per proposal from [``min_target_ms``, ``target_ms``]
(log-uniform), so that over a search they are asked for the best model at every latency of
the range; Ax models accuracy and latency themselves.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRESET_EXPONENTS = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0), "pareto": (0.0, -1.0)}


class Reward(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_ms: float = Field(gt=0, description="latency target T on the target device")
    mode: Literal["soft", "hard", "custom", "pareto"] = "soft"
    min_target_ms: float | None = Field(default=None, gt=0, description="pareto: the fastest end of the latency range "
                                        "(default target_ms / 4)")
    accuracy_threshold: float = Field(default=0.0, ge=0, lt=1, description="pareto: the least accuracy wanted on the front")
    alpha: float | None = Field(default=None, description="exponent when LAT <= T (custom mode)")
    beta: float | None = Field(default=None, description="exponent when LAT > T (custom mode)")
    memory_target_mb: float | None = Field(default=None, gt=0)
    memory_mode: Literal["soft", "hard", "custom"] = "soft"
    memory_alpha: float | None = None
    memory_beta: float | None = None

    @model_validator(mode="after")
    def _exponents(self) -> Reward:
        if self.mode == "custom" and (self.alpha is None or self.beta is None):
            raise ValueError("mode 'custom' needs both alpha and beta")
        if self.memory_mode == "custom" and self.memory_target_mb and (self.memory_alpha is None or self.memory_beta is None):
            raise ValueError("memory_mode 'custom' needs both memory_alpha and memory_beta")
        if self.min_target_ms is not None and self.min_target_ms >= self.target_ms:
            raise ValueError(f"min_target_ms ({self.min_target_ms}) must be below target_ms ({self.target_ms})")
        if self.mode != "pareto" and (self.min_target_ms is not None or self.accuracy_threshold):
            raise ValueError("min_target_ms and accuracy_threshold belong to mode 'pareto'")
        return self

    @property
    def pareto(self) -> bool:
        return self.mode == "pareto"

    def target_range(self) -> tuple[float, float]:
        """Pareto mode: the latency range whose targets the scalar controllers are given."""
        return (self.min_target_ms or self.target_ms / 4, self.target_ms)

    def reference_point(self) -> tuple[float, ...]:
        """The hypervolume's reference in minimization form: (-accuracy, latency[, memory])."""
        point = (-self.accuracy_threshold, self.target_ms)
        return point + ((self.memory_target_mb,) if self.memory_target_mb is not None else ())

    def exponents(self) -> tuple[float, float]:
        return (self.alpha, self.beta) if self.mode == "custom" else PRESET_EXPONENTS[self.mode]

    def memory_exponents(self) -> tuple[float, float]:
        if self.pareto:  # a threshold of the front, like target_ms
            return PRESET_EXPONENTS["hard"]
        return (self.memory_alpha, self.memory_beta) if self.memory_mode == "custom" else PRESET_EXPONENTS[self.memory_mode]

    def __call__(self, accuracy: float, latency_ms: float, memory_mb: float | None = None,
                 target_ms: float | None = None) -> float:
        """The reward; ``target_ms`` replaces the configured target (Pareto mode's drawn targets)."""
        if not (math.isfinite(accuracy) and math.isfinite(latency_ms)) or latency_ms <= 0:
            raise ValueError(f"reward needs finite accuracy and positive latency (got {accuracy}, {latency_ms})")
        alpha, beta = self.exponents()
        value = accuracy * _factor(latency_ms, target_ms or self.target_ms, alpha, beta)
        if self.memory_target_mb is not None:
            if memory_mb is None or memory_mb <= 0:
                raise ValueError("a memory target is set but the trial has no positive memory figure")
            m_alpha, m_beta = self.memory_exponents()
            value *= _factor(memory_mb, self.memory_target_mb, m_alpha, m_beta)
        return value


def _factor(value: float, target: float, alpha: float, beta: float) -> float:
    return (value / target) ** (alpha if value <= target else beta)
