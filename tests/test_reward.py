import math

import pytest
from pydantic import ValidationError

from mnas.reward import Reward


def test_soft_reward_follows_the_paper():
    r = Reward(target_ms=75)
    assert r(0.75, 75) == pytest.approx(0.75)
    # doubling latency costs ~5%: a model at 2T needs 5% more accuracy for the same reward
    assert r(0.75 * 1.05, 150) == pytest.approx(r(0.75, 75), rel=0.002)
    assert r(0.75, 37.5) == pytest.approx(0.75 * 2**0.07)  # faster than T is rewarded too
    assert r(0.75, 150) == pytest.approx(0.75 * 2**-0.07)


def test_hard_reward():
    r = Reward(target_ms=75, mode="hard")
    assert r(0.7, 30) == pytest.approx(0.7) and r(0.7, 75) == pytest.approx(0.7)
    assert r(0.7, 150) == pytest.approx(0.35)


def test_custom_and_memory_terms():
    r = Reward(target_ms=10, mode="custom", alpha=-0.1, beta=-0.5, memory_target_mb=50)
    expected = 0.8 * (20 / 10) ** -0.5 * (25 / 50) ** -0.07
    assert r(0.8, 20, 25) == pytest.approx(expected)
    with pytest.raises(ValueError, match="memory"):
        r(0.8, 20, None)
    with pytest.raises(ValidationError, match="alpha and beta"):
        Reward(target_ms=10, mode="custom", alpha=-0.1)
    with pytest.raises(ValueError, match="finite"):
        Reward(target_ms=10)(math.nan, 5)
    with pytest.raises(ValidationError):
        Reward(target_ms=0)
