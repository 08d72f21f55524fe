import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnas.errors import ArchitectureError
from mnas.presets import PRESETS
from mnas.space import SearchSpace, scale_filters

SPACE = SearchSpace()


def test_size_and_layout():
    info = SPACE.info()
    assert info["num_blocks"] == 7
    assert info["choices_per_block"] == 432
    assert info["size"] == 432**7
    assert info["size_log10"] == pytest.approx(7 * math.log10(432), abs=1e-4) == pytest.approx(18.4484, abs=1e-4)
    assert info["num_tokens"] == 42
    names = [t["name"] for t in info["tokens"][:6]]
    assert names == ["op", "kernel", "se", "skip", "filters", "layers"]
    assert info["tokens"][0]["choices"] == ["conv", "sepconv", "mbconv3", "mbconv6"]


def test_filter_and_layer_grids_follow_mobilenet_v2():
    assert SPACE.block_choices(0)["filters"] == (8, 16, 24)  # 16 x {0.75, 1, 1.25}, kept distinct
    assert SPACE.block_choices(1)["filters"] == (16, 24, 32)
    assert SPACE.block_choices(4)["filters"] == (72, 96, 120)
    assert SPACE.block_choices(3)["layers"] == (3, 4, 5)
    assert SPACE.block_choices(0)["layers"] == (0, 1, 2)
    assert scale_filters(160, 1.25) == 200 and scale_filters(16, 0.75) == 8
    for i in range(7):
        assert len(set(SPACE.block_choices(i)["filters"])) == 3


def test_presets_membership():
    mbv2 = PRESETS["mobilenet-v2"].model_copy(update={"act": "relu"})
    assert SPACE.contains(mbv2)
    assert SPACE.encode(mbv2) == [1, 0, 0, 1, 1, 1] + [3, 0, 0, 1, 1, 1] * 6
    assert SPACE.decode(SPACE.encode(mbv2)) == mbv2
    # A1 and B1 are near the grid but not on it: the error names the off-grid field
    with pytest.raises(ArchitectureError, match=r"blocks.4.filters = 112"):
        SPACE.encode(PRESETS["mnasnet-a1"])
    with pytest.raises(ArchitectureError, match=r"blocks.5.filters = 192 is not in the space"):
        SPACE.encode(PRESETS["mnasnet-b1"])
    with pytest.raises(ArchitectureError, match="act"):
        SPACE.encode(PRESETS["mobilenet-v2"])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_sample_encode_decode_are_inverse(seed):
    rng = np.random.default_rng(seed)
    indices = SPACE.sample_indices(rng)
    arch = SPACE.decode(indices)
    assert SPACE.encode(arch) == indices
    assert SPACE.decode(SPACE.encode(arch)) == arch


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutation_changes_exactly_one_token(seed):
    rng = np.random.default_rng(seed)
    arch = SPACE.sample(rng)
    child = SPACE.mutate(arch, rng)
    diff = [a != b for a, b in zip(SPACE.encode(arch), SPACE.encode(child))]
    assert sum(diff) == 1
    assert child != arch


def test_sampling_is_seeded_and_covers_choices():
    assert SPACE.sample(5) == SPACE.sample(5)
    assert SPACE.sample(5) != SPACE.sample(6)
    rng = np.random.default_rng(0)
    seen = np.zeros(6 * 4, dtype=int)
    for _ in range(400):
        idx = SPACE.sample_indices(rng)
        seen[idx[0]] += 1
    assert all(seen[:4] > 60)  # all four ops drawn for block 1, roughly uniformly


def test_decode_rejects_bad_indices():
    with pytest.raises(ArchitectureError, match="expected 42"):
        SPACE.decode([0] * 41)
    with pytest.raises(ArchitectureError, match="out of range"):
        SPACE.decode([9] + [0] * 41)
