"""Factorized hierarchical search spaces, defined as data (YAML).

A space is a base network plus, per block, the tokens the search may change; all layers of
a block share one choice of each (MnasNet's factorized hierarchical space). Tokens, always
in this order within a block:

    op         conv | sepconv | mbconv<e> (or mbconv, with an expansion token)
    kernel     1 | 3 | 5 | 7
    expansion  the inverted residual's expansion ratio (mbconv only)
    se         squeeze-and-excitation ratio (0 = none)
    skip       none | identity | pool
    act        relu | relu6 | hswish | swish
    filters    multipliers of the base block's filters, rounded to multiples of 8
               (0.75x down, 1.25x up, so the choices stay distinct: 16 -> 8, 16, 24)
    layers     layer-count deltas relative to the base block (a stride-2 block keeps >= 1)

A token with one choice is allowed (it is still a decision the controller sees); a token not
listed keeps the base block's value. Strides, the stem and the head come from the base.

The shipped ``mnasnet`` space (``mnas/spaces/mnasnet.yaml``) is the paper's: MobileNetV2's 7
blocks, 6 tokens each, 4 x 2 x 2 x 3 x 3 x 3 = 432 choices per block, 432^7 = 2.8e18
architectures (size_log10 18.44). MnasNet-A1 and -B1 lie *near* but not on this grid (A1's
block 5 has 112 filters where 1.25 x 96 = 120; B1's block 6 has 192 where 1.25 x 160 = 200):
the published models came from a space whose exact filter grid the paper does not give.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mnas.arch import Act, Architecture, BlockSpec, Skip, block_to_timm, mbconv, parse_op
from mnas.errors import ArchitectureError, SpaceError
from mnas.yamlfiles import read_yaml_mapping

TOKEN_NAMES: tuple[str, ...] = ("op", "kernel", "expansion", "se", "skip", "act", "filters", "layers")
SPACES_DIR = Path(__file__).with_name("spaces")


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


# ----- the space file -----------------------------------------------------------------------
class ChoiceLists(BaseModel):
    """The choice list of each token a block searches; ``[]`` keeps the base value (not searched)."""

    model_config = ConfigDict(extra="forbid")

    op: list[str] | None = None
    kernel: list[int] | None = None
    expansion: list[float] | None = None
    se: list[float] | None = None
    skip: list[Skip] | None = None
    act: list[Act] | None = None
    filters: list[float] | None = None
    layers: list[int] | None = None

    @field_validator("op")
    @classmethod
    def _ops(cls, ops):
        for op in ops or []:
            if op != "mbconv":
                parse_op(op)
        return ops

    @field_validator("kernel")
    @classmethod
    def _kernels(cls, kernels):
        bad = [k for k in kernels or [] if k not in (1, 3, 5, 7)]
        if bad:
            raise ValueError(f"kernels must be 1, 3, 5 or 7 (got {bad})")
        return kernels

    @field_validator("expansion")
    @classmethod
    def _expansions(cls, values):
        if any(not 1 <= v <= 16 for v in values or []):
            raise ValueError("expansion ratios must lie in 1..16")
        return values

    @field_validator("se")
    @classmethod
    def _se(cls, values):
        if any(not 0 <= v <= 1 for v in values or []):
            raise ValueError("SE ratios must lie in 0..1")
        return values

    @field_validator("filters")
    @classmethod
    def _filters(cls, values):
        if any(not 0 < v <= 4 for v in values or []):
            raise ValueError("filter multipliers must lie in (0, 4]")
        return values

    def merged(self, over: ChoiceLists | None) -> dict[str, list]:
        """These lists with a block's own lists laid over them; only the searched tokens."""
        mine = self.model_dump(exclude_none=True)
        mine.update(over.model_dump(exclude_none=True) if over else {})
        return {name: mine[name] for name in TOKEN_NAMES if mine.get(name)}


class SpaceFile(BaseModel):
    """A space file: the base network, the choices of every block, per-block overrides."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    base: str | list[str] = Field(description="a preset name, or the base's timm block strings")
    stem: int | None = Field(default=None, ge=1, le=1024)
    head: int | None = Field(default=None, ge=1, le=8192)
    act: Act | None = None
    se_style: str | None = None
    head_style: str | None = None
    choices: ChoiceLists = ChoiceLists()
    blocks: list[ChoiceLists | str | None] | None = Field(
        default=None, description="one entry per base block: its own choice lists, {} for the defaults, or 'fixed'")

    @field_validator("blocks")
    @classmethod
    def _fixed_word(cls, entries):
        for i, entry in enumerate(entries or []):
            if isinstance(entry, str) and entry != "fixed":
                raise ValueError(f"entry {i} must be a mapping of choice lists, {{}} or 'fixed' (got {entry!r})")
        return entries


def _describe(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("ChoiceLists", "str")) or "space"
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return f"invalid search space {where}: " + "; ".join(parts)


# ----- the space ----------------------------------------------------------------------------
@dataclass(frozen=True, init=False, eq=False)
class SearchSpace:
    """A base network and the concrete choices of each block's searched tokens.

    ``SearchSpace()`` is the shipped ``mnasnet`` space; ``load_space(name_or_path)`` reads others.
    Two spaces are equal when they search the same architectures with the same token layout.
    """

    base: Architecture
    searched: tuple[tuple[tuple[str, tuple], ...], ...]  # per block: (token name, concrete choices)
    name: str = "custom"
    description: str = ""

    def __init__(self, base: Architecture | None = None, searched=None, name: str = "custom", description: str = "",
                 act: str | None = None):
        if base is None and searched is None:  # the paper's space (optionally with another activation)
            shipped = load_space("mnasnet", act=act)
            base, searched, name, description = shipped.base, shipped.searched, shipped.name, shipped.description
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "searched", tuple(tuple((n, tuple(c)) for n, c in block) for block in searched))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "description", description)

    def __eq__(self, other) -> bool:
        return isinstance(other, SearchSpace) and (self.base, self.searched) == (other.base, other.searched)

    def __hash__(self) -> int:
        return hash((self.base, self.searched))

    # ----- layout -----------------------------------------------------------------------
    @property
    def act(self) -> str:
        return self.base.act

    @property
    def num_blocks(self) -> int:
        return len(self.base.blocks)

    def block_choices(self, i: int) -> dict[str, tuple]:
        """Every field of block ``i`` (in token order) with the values it can take: the searched
        tokens' choices, one value for the rest (how the predictor enumerates the space's layers)."""
        base = self.base.blocks[i]
        searched = dict(self.searched[i])
        fixed = {"op": (base.family,) if "expansion" in searched else (base.op,), "kernel": (base.kernel,),
                 "expansion": (base.expansion,), "se": (base.se,), "skip": (base.skip,), "act": (self.base.block_act(base),),
                 "filters": (base.filters,), "layers": (base.layers,)}
        return {name: searched.get(name, fixed[name]) for name in TOKEN_NAMES}

    @staticmethod
    def block_op(op: str, expansion: float) -> str:
        """The op a block runs for an op choice (``mbconv`` = the expansion token's) and an expansion."""
        return mbconv(expansion) if op == "mbconv" else op

    @property
    def tokens(self) -> list[Token]:
        return [Token(i, name, choices) for i, block in enumerate(self.searched) for name, choices in block]

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
        per_block = [math.prod(len(c) for _, c in block) for block in self.searched]
        return {
            "name": self.name,
            "description": self.description,
            "base": self.base.summary(),
            "num_blocks": self.num_blocks,
            "searched_blocks": sum(1 for block in self.searched if block),
            "choices_per_block": per_block[0] if len(set(per_block)) == 1 else per_block,
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
        blocks = []
        for base, chosen in zip(self.base.blocks, values):
            fields = base.model_dump()
            fields.update({k: v for k, v in chosen.items() if k not in ("expansion", "op")})
            if "op" in chosen or "expansion" in chosen:
                op = chosen.get("op", base.family if "expansion" in chosen else base.op)
                fields["op"] = self.block_op(op, chosen.get("expansion", base.expansion))
            if fields["act"] == self.base.act:
                fields["act"] = None  # the one spelling: inherited
            blocks.append(BlockSpec(**fields))
        return self.base.model_copy(update={"blocks": tuple(blocks)})

    def encode(self, arch: Architecture) -> list[int]:
        """Token indices of ``arch``; raises naming the first field that is off the grid."""
        if len(arch.blocks) != self.num_blocks:
            raise ArchitectureError(f"architecture has {len(arch.blocks)} blocks, the space has {self.num_blocks}")
        for name in ("stem", "head", "act", "se_style", "head_style"):
            if getattr(arch, name) != getattr(self.base, name):
                raise ArchitectureError(f"{name} is {getattr(arch, name)!r}; the space fixes it at {getattr(self.base, name)!r}")
        indices = []
        for i, (block, base) in enumerate(zip(arch.blocks, self.base.blocks)):
            searched = dict(self.searched[i])
            values = {"op": block.family if "expansion" in searched else block.op, "kernel": block.kernel,
                      "expansion": block.expansion, "se": block.se, "skip": block.skip, "act": arch.block_act(block),
                      "filters": block.filters, "layers": block.layers}
            fixed = {"op": base.family if "expansion" in searched else base.op, "kernel": base.kernel, "expansion": base.expansion,
                     "se": base.se, "skip": base.skip, "act": self.base.block_act(base), "filters": base.filters,
                     "layers": base.layers}
            if block.stride != base.stride:
                raise ArchitectureError(f"blocks.{i}.stride differs from the base network's")
            if "expansion" in searched and block.family != "mbconv":
                values["expansion"] = searched["expansion"][0]  # no expansion without an inverted residual
            for name in TOKEN_NAMES:
                if name in searched:
                    if values[name] not in searched[name]:
                        raise ArchitectureError(f"blocks.{i}.{name} = {values[name]!r} is not in the space (choices: {list(searched[name])})")
                    indices.append(searched[name].index(values[name]))
                elif values[name] != fixed[name] and not (name == "expansion" and "op" in searched):
                    raise ArchitectureError(f"blocks.{i}.{name} = {values[name]!r}; the space fixes it at {fixed[name]!r}")
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
        """Change one token of ``arch`` to a different choice that gives a different architecture
        (changing the expansion of a block that is not an inverted residual changes nothing)."""
        cards = self.cardinalities
        movable = [i for i, c in enumerate(cards) if c > 1]
        for _ in range(100):
            if not movable:
                break
            indices = self.encode(arch)
            position = movable[int(rng.integers(len(movable)))]
            offset = int(rng.integers(1, cards[position]))
            indices[position] = (indices[position] + offset) % cards[position]
            mutant = self.decode(indices)
            if mutant != arch:
                return mutant
        raise ArchitectureError("no token of this space can change the architecture")

    # ----- as data ----------------------------------------------------------------------
    def to_file(self) -> dict:
        """This space as a space-file document (base as timm strings, concrete per-block lists)."""
        doc = {"name": self.name, "description": self.description, "base": self.base.to_timm(), "stem": self.base.stem,
               "head": self.base.head, "act": self.base.act, "se_style": self.base.se_style, "head_style": self.base.head_style}
        blocks = []
        for i, block in enumerate(self.searched):
            base = self.base.blocks[i]
            entry = {}
            for name, choices in block:
                if name == "filters":
                    entry[name] = [_multiplier(base.filters, w) for w in choices]
                elif name == "layers":
                    entry[name] = [n - base.layers for n in choices]
                else:
                    entry[name] = list(choices)
            blocks.append(entry or "fixed")
        doc["blocks"] = blocks
        return doc


def _multiplier(base: int, width: int) -> float:
    """A multiplier that scale_filters maps back to ``width`` (the plain ratio unless rounding disagrees)."""
    ratio = width / base
    for mult in (0.75, 1.0, 1.25, 0.5, 1.5, 2.0, ratio):
        if scale_filters(base, mult) == width:
            return round(mult, 4)
    return round(ratio, 4)


def build_space(spec: SpaceFile, where: str = "", act: str | None = None) -> SearchSpace:
    """Concrete choices from a space file; every error names its field."""
    from mnas.presets import load_architecture

    try:
        base = load_architecture(spec.base) if isinstance(spec.base, str) else Architecture.from_timm(spec.base, act=spec.act)
        updates = {k: getattr(spec, k) for k in ("stem", "head", "act", "se_style", "head_style") if getattr(spec, k) is not None}
        if act:
            updates["act"] = act
        base = Architecture.from_dict({**base.to_dict(), **updates})  # blocks without an act of their own follow it
    except ArchitectureError as exc:
        raise SpaceError(f"invalid search space {where}: base: {exc}") from None
    entries = spec.blocks if spec.blocks is not None else [None] * len(base.blocks)
    if len(entries) != len(base.blocks):
        raise SpaceError(f"invalid search space {where}: blocks: {len(entries)} entries for a base with {len(base.blocks)} blocks")
    searched = []
    for i, (block, entry) in enumerate(zip(base.blocks, entries)):
        lists = {} if entry == "fixed" else spec.choices.merged(entry if isinstance(entry, ChoiceLists) else None)
        searched.append(tuple((name, _concrete(name, values, block, lists, f"{where}: blocks.{i}.{name}")) for name, values in lists.items()))
    return SearchSpace(base, tuple(searched), spec.name, spec.description)


def _concrete(name: str, values: list, block: BlockSpec, lists: dict, where: str) -> tuple:
    def fail(message: str):
        raise SpaceError(f"invalid search space {where}: {message}")

    if name == "filters":
        out = tuple(scale_filters(block.filters, m) for m in values)
    elif name == "layers":
        out = tuple(max(0, block.layers + d) for d in values)
        if block.stride != 1 and 0 in out:
            fail(f"a delta of {min(values)} empties a stride-2 block of {block.layers} layers")
    elif name == "op":
        has_expansion = "expansion" in lists
        for op in values:
            named = op.startswith("mbconv") and op != "mbconv"
            if has_expansion and named:
                fail(f"{op} names its expansion; with an expansion token write mbconv")
            if op == "mbconv" and not has_expansion:
                fail("mbconv needs an expansion token (or write mbconv3, mbconv6, ...)")
        out = tuple(values)
    elif name == "expansion":
        if "op" not in lists and block.family != "mbconv":
            fail(f"the base block is {block.op}; an expansion choice needs an inverted residual (mbconv)")
        out = tuple(float(v) for v in values)
    elif name == "se":
        out = tuple(float(v) for v in values)
    else:
        out = tuple(values)
    if len(set(out)) != len(out):
        fail(f"choices {list(values)} give repeated values {list(out)}")
    return out


def shipped_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(ref: str | Path | dict = "mnasnet", act: str | None = None) -> SearchSpace:
    """A shipped space by name, a space YAML file, or a space-file document (a dict)."""
    if isinstance(ref, dict):
        doc, where = ref, "(recorded definition)"
    else:
        text = str(ref)
        path = SPACES_DIR / f"{text}.yaml" if text in shipped_spaces() else Path(text)
        if not path.is_file():
            raise SpaceError(f"search space {text!r} not found: not a shipped space ({', '.join(shipped_spaces())}) and no such file")
        doc, where = read_yaml_mapping(path, SpaceError, "search space file"), str(path)
    if not isinstance(doc, dict):
        raise SpaceError(f"search space {where} must be a mapping with name, base and choices")
    try:
        spec = SpaceFile.model_validate(doc)
    except ValidationError as exc:
        raise SpaceError(_describe(exc, where)) from None
    return build_space(spec, where, act)


KERNEL_LADDER: tuple[int, ...] = (3, 5, 7)
EXPANSION_LADDER: tuple[float, ...] = (1.0, 3.0, 4.0, 6.0)


def _near(ladder: tuple, value, radius: int) -> list:
    """The values within ``radius`` steps of ``value`` on an ordered ladder (``value`` joins it if off it)."""
    steps = sorted(set(ladder) | {value})
    i = steps.index(value)
    return steps[max(0, i - radius): i + radius + 1]


def space_around(arch: Architecture, radius: int = 1, name: str = "around", description: str = "") -> SearchSpace:
    """A smaller space centred on ``arch``: its ordered choices (kernel, expansion, filters, depth)
    within ``radius`` steps, its unordered ones (op, SE, skip, activation) kept; for a second,
    finer search around the best result of a first one."""
    if radius < 1:
        raise SpaceError(f"radius must be at least 1 (got {radius})")
    present = [b for b in arch.blocks if b.layers > 0]
    blocks = []
    for block in present:
        entry: dict = {}
        if block.kernel in KERNEL_LADDER:
            entry["kernel"] = _near(KERNEL_LADDER, block.kernel, radius)
        if block.family == "mbconv":
            entry["expansion"] = _near(EXPANSION_LADDER, block.expansion, radius)
        widths, mults = set(), []
        for m in (1 + 0.25 * d for d in range(-radius, radius + 1)):
            if m > 0 and scale_filters(block.filters, m) not in widths:
                widths.add(scale_filters(block.filters, m))
                mults.append(m)
        entry["filters"] = mults
        entry["layers"] = [d for d in range(-radius, radius + 1) if block.layers + d >= 1]
        blocks.append({k: v for k, v in entry.items() if len(v) > 1} or "fixed")
    doc = {"name": name, "description": description or f"radius {radius} around {arch.summary()}",
           "base": [block_to_timm(b) for b in present], "stem": arch.stem, "head": arch.head, "act": arch.act,
           "se_style": arch.se_style, "head_style": arch.head_style, "blocks": blocks}
    return load_space(doc)
