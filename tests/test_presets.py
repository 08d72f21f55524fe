"""Presets against their reference implementations: parameters and multiply-adds (fvcore: conv +
linear) of timm's models at 224 px, 1000 classes, measured with timm 1.0.31 in a scratch
environment (the project does not need timm), written here as numbers."""

import pytest

from mnas.costs import arch_info
from mnas.presets import PRESETS

# preset: (timm model, params, multiply-adds)
TIMM_COUNTS = {
    "mobilenet-v2": ("mobilenetv2_100", 3_504_872, 300_774_272),
    "mnasnet-a1": ("mnasnet_a1", 3_887_038, 311_579_072),
    "mnasnet-b1": ("mnasnet_b1", 4_383_312, 314_415_872),
    "mobilenet-v3-large": ("mobilenetv3_large_100", 5_483_032, 216_589_760),
    "mobilenet-v3-small": ("mobilenetv3_small_100", 2_542_856, 56_510_400),
    "efficientnet-b0": ("efficientnet_b0", 5_288_548, 385_814_752),
    "spnasnet-100": ("spnasnet_100", 4_421_616, 333_467_072),
    "fbnet-c": ("fbnetc_100", 5_572_200, 384_960_160),
}


def test_every_preset_has_a_reference():
    assert set(TIMM_COUNTS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(TIMM_COUNTS))
def test_preset_counts_match_timm(name):
    _, params, macs = TIMM_COUNTS[name]
    info = arch_info(PRESETS[name])
    assert info["params"] == params
    assert abs(info["macs"] / macs - 1) < 0.01, (info["macs"], macs)
