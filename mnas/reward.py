"""MnasNet's multi-objective reward: ACC x (LAT/T)^w, w = alpha if LAT <= T else beta.

Soft constraint (the paper's main search): alpha = beta = -0.07, so doubling latency must
buy about 5% relative accuracy to keep the reward. Hard constraint: alpha = 0, beta = -1:
plain accuracy under the target, a steep penalty over it. An optional memory term of the
same form multiplies in: (MEM/M)^w' with its own target M and exponents.
Every input is stored with each trial, so rewards can be recomputed for other targets.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRESET_EXPONENTS = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}


class Reward(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_ms: float = Field(gt=0, description="latency target T on the target device")
    mode: Literal["soft", "hard", "custom"] = "soft"
    alpha: float | None = Field(default=None, description="exponent when LAT <= T (custom mode)")
    beta: float | None = Field(default=None, description="exponent when LAT > T (custom mode)")
    memory_target_mb: float | None = Field(default=None, gt=0)
    memory_mode: Literal["soft", "hard", "custom"] = "soft"
    memory_alpha: float | None = None
    memory_beta: float | None = None

    @model_validator(mode="after")
    def _exponents(self) -> "Reward":
        if self.mode == "custom" and (self.alpha is None or self.beta is None):
            raise ValueError("mode 'custom' needs both alpha and beta")
        if self.memory_mode == "custom" and self.memory_target_mb and (self.memory_alpha is None or self.memory_beta is None):
            raise ValueError("memory_mode 'custom' needs both memory_alpha and memory_beta")
        return self

    def exponents(self) -> tuple[float, float]:
        return (self.alpha, self.beta) if self.mode == "custom" else PRESET_EXPONENTS[self.mode]

    def memory_exponents(self) -> tuple[float, float]:
        return (self.memory_alpha, self.memory_beta) if self.memory_mode == "custom" else PRESET_EXPONENTS[self.memory_mode]

    def __call__(self, accuracy: float, latency_ms: float, memory_mb: float | None = None) -> float:
        if not (math.isfinite(accuracy) and math.isfinite(latency_ms)) or latency_ms <= 0:
            raise ValueError(f"reward needs finite accuracy and positive latency (got {accuracy}, {latency_ms})")
        alpha, beta = self.exponents()
        value = accuracy * _factor(latency_ms, self.target_ms, alpha, beta)
        if self.memory_target_mb is not None:
            if memory_mb is None or memory_mb <= 0:
                raise ValueError("a memory target is set but the trial has no positive memory figure")
            m_alpha, m_beta = self.memory_exponents()
            value *= _factor(memory_mb, self.memory_target_mb, m_alpha, m_beta)
        return value


def _factor(value: float, target: float, alpha: float, beta: float) -> float:
    return (value / target) ** (alpha if value <= target else beta)
