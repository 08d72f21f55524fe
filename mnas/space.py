"""MnasNet's factorized hierarchical search space around a base network (MobileNetV2).

Each of the base's blocks is searched on its own; all layers of a block share one choice
of op, kernel, SE ratio, skip op and filters, and the block's depth moves by -1, 0 or +1
layers. Six tokens per block, in this order:

    op       conv | sepconv | mbconv3 | mbconv6
    kernel   3 | 5
    se       0 | 0.25
    skip     none | identity | pool
    filters  0.75x | 1.0x | 1.25x the base block's filters
    layers   -1 | +0 | +1 layers relative to the base block

4 x 2 x 2 x 3 x 3 x 3 = 432 choices per block; with MobileNetV2's 7 blocks the space
holds 432^7 = 2.8e18 architectures (size_log10 = 18.44).

Filter multiples are rounded to multiples of 8: 0.75x rounds down, 1.25x rounds up, so
the three choices stay distinct for every base width (16 -> 8, 16, 24). Strides, the stem
and the head come from the base. MnasNet-A1 and -B1 lie *near* but not on this grid (A1's
block 5 has 112 filters where 1.25 x 96 = 120; B1's block 6 has 192 where 1.25 x 160 = 200):
the published models came from a space whose exact filter grid the paper does not give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mnas.arch import KERNELS, OPS, SE_RATIOS, SKIPS, Architecture, BlockSpec
from mnas.errors import ArchitectureError
from mnas.presets import PRESETS

FILTER_MULTS: tuple[float, ...] = (0.75, 1.0, 1.25)
LAYER_DELTAS: tuple[int, ...] = (-1, 0, 1)
TOKEN_NAMES: tuple[str, ...] = ("op", "kernel", "se", "skip", "filters", "layers")


def scale_filters(base: int, mult: float, divisor: int = 8) -> int:
    """Scale a width and round it to a multiple of ``divisor`` away from the base width."""
    value = base * mult
    if mult < 1:
        rounded = math.floor(value / divisor) * divisor
    elif mult > 1:
        rounded = math.ceil(value / divisor) * divisor
    else:
        rounded = round(value / divisor) * divisor
    return max(divisor, int(rounded))


@dataclass(frozen=True)
class Token:
    """One decision of the controller: which block, which field, and its choices."""

    block: int
    name: str
    choices: tuple

    def to_dict(self) -> dict:
        return {"block": self.block, "name": self.name, "choices": list(self.choices)}


@dataclass(frozen=True)
class SearchSpace:
    base: Architecture = field(default_factory=lambda: PRESETS["mobilenet-v2"])
    act: str = "relu"
    ops: tuple[str, ...] = OPS
    kernels: tuple[int, ...] = KERNELS
    se_ratios: tuple[float, ...] = SE_RATIOS
    skips: tuple[str, ...] = SKIPS
    filter_mults: tuple[float, ...] = FILTER_MULTS
    layer_deltas: tuple[int, ...] = LAYER_DELTAS

    # ----- layout -----------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.base.blocks)

    def block_choices(self, i: int) -> dict[str, tuple]:
        """The concrete values each token of block ``i`` can take."""
        base = self.base.blocks[i]
        return {
            "op": self.ops,
            "kernel": self.kernels,
            "se": self.se_ratios,
            "skip": self.skips,
            "filters": tuple(scale_filters(base.filters, m) for m in self.filter_mults),
            "layers": tuple(max(0, base.layers + d) for d in self.layer_deltas),
        }

    @property
    def tokens(self) -> list[Token]:
        return [
            Token(i, name, choices)
            for i in range(self.num_blocks)
            for name, choices in self.block_choices(i).items()
        ]

    @property
    def cardinalities(self) -> list[int]:
        return [len(t.choices) for t in self.tokens]

    @property
    def size(self) -> int:
        return math.prod(self.cardinalities)

    @property
    def size_log10(self) -> float:
        return sum(math.log10(c) for c in self.cardinalities)

    def info(self) -> dict:
        return {
            "base": self.base.summary(),
            "num_blocks": self.num_blocks,
            "choices_per_block": math.prod(len(c) for c in self.block_choices(0).values()),
            "size": self.size,
            "size_log10": round(self.size_log10, 4),
            "num_tokens": len(self.tokens),
            "tokens": [t.to_dict() for t in self.tokens],
        }

    # ----- tokens <-> architecture ------------------------------------------------------
    def decode(self, indices: list[int] | np.ndarray) -> Architecture:
        tokens = self.tokens
        if len(indices) != len(tokens):
            raise ArchitectureError(f"expected {len(tokens)} token indices, got {len(indices)}")
        values: list[dict] = [{} for _ in range(self.num_blocks)]
        for tok, idx in zip(tokens, indices):
            idx = int(idx)
            if not 0 <= idx < len(tok.choices):
                raise ArchitectureError(f"token block {tok.block + 1} {tok.name}: index {idx} out of range 0..{len(tok.choices) - 1}")
            values[tok.block][tok.name] = tok.choices[idx]
        blocks = [BlockSpec(stride=b.stride, **v) for b, v in zip(self.base.blocks, values)]
        return Architecture(stem=self.base.stem, head=self.base.head, act=self.act, blocks=tuple(blocks))

    def encode(self, arch: Architecture) -> list[int]:
        """Token indices of ``arch``; raises naming the first field that is off the grid."""
        if len(arch.blocks) != self.num_blocks:
            raise ArchitectureError(f"architecture has {len(arch.blocks)} blocks, the space has {self.num_blocks}")
        for name in ("stem", "head", "act"):
            expected = self.act if name == "act" else getattr(self.base, name)
            if getattr(arch, name) != expected:
                raise ArchitectureError(f"{name} is {getattr(arch, name)!r}; the space fixes it at {expected!r}")
        indices = []
        for tok in self.tokens:
            block = arch.blocks[tok.block]
            if block.stride != self.base.blocks[tok.block].stride:
                raise ArchitectureError(f"blocks.{tok.block}.stride differs from the base network's")
            value = getattr(block, tok.name)
            if value not in tok.choices:
                raise ArchitectureError(
                    f"blocks.{tok.block}.{tok.name} = {value!r} is not in the space (choices: {list(tok.choices)})"
                )
            indices.append(tok.choices.index(value))
        return indices

    def contains(self, arch: Architecture) -> bool:
        try:
            self.encode(arch)
        except ArchitectureError:
            return False
        return True

    # ----- sampling and mutation --------------------------------------------------------
    def sample_indices(self, rng: np.random.Generator) -> list[int]:
        return [int(rng.integers(c)) for c in self.cardinalities]

    def sample(self, seed_or_rng: int | np.random.Generator = 0) -> Architecture:
        rng = np.random.default_rng(seed_or_rng) if isinstance(seed_or_rng, (int, np.integer)) else seed_or_rng
        return self.decode(self.sample_indices(rng))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Change exactly one token of ``arch`` to a different choice."""
        indices = self.encode(arch)
        cards = self.cardinalities
        position = int(rng.integers(len(indices)))
        offset = int(rng.integers(1, cards[position]))
        indices[position] = (indices[position] + offset) % cards[position]
        return self.decode(indices)
