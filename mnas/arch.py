"""The architecture format: a stem, a list of blocks, a head.

An :class:`Architecture` is immutable and hashable, so it can be a dict key (the search
caches evaluated architectures by it), and it round-trips through JSON and timm block
strings. Validation errors name the offending field, e.g. ``blocks.2.kernel``.

Semantics of one block (``layers`` identical layers; the first one carries the block's
``stride`` and changes the channel count to ``filters``, the others use stride 1 and keep
the channels):

* ``op``: ``conv`` (regular kxk conv + BN + act), ``sepconv`` (depthwise kxk + BN + act,
  then a linear 1x1 projection + BN), ``mbconv<e>`` (inverted residual with expansion e:
  1x1 expand + BN + act, depthwise kxk + BN + act, linear 1x1 + BN). The expanded width is
  input x e when that is a whole number (the TF reference), otherwise rounded to a multiple
  of 8 as timm does for MobileNetV3's fractional ratios (e2.3, e3.67).
* ``act``: the block's activation; absent = the network's ``act`` (relu, relu6, hswish, swish).
* ``se``: squeeze-and-excitation ratio. The network's ``se_style`` says how it is built:
  ``input`` (MnasNet, EfficientNet): reduced channels = max(1, int(layer input channels x
  se)), the block's activation, a sigmoid gate; ``expanded`` (MobileNetV3): reduced =
  the SE's own (expanded) width x se rounded to a multiple of 8, ReLU, a hard-sigmoid gate.
* ``skip``:

  - ``none``: no shortcut.
  - ``identity``: ``x + f(x)`` on every layer whose stride is 1 and whose input and output
    channels are equal. The first layer of a block that changes resolution or channels
    has no shortcut (as in MobileNetV2 and the TF MnasNet code).
  - ``pool``: every layer gets a shortcut, including the first: the input goes through a
    3x3 average pool with the layer's stride (padding 1) and, only when the channel count
    changes, a 1x1 conv + BN to the new width; the result is added to ``f(x)``.

* ``layers = 0``: the block is absent; the next block receives this block's input.
  Allowed only for stride-1 blocks, so that the network's resolution schedule stays intact
  (in the MobileNetV2-based space only blocks 1 and 7, both stride 1, can reach 0 layers).

The network's ``head_style``: ``conv`` (1x1 conv + BN + act, then global pooling) or
``efficient`` (MobileNetV3's efficient last stage: global pooling, then a 1x1 conv with bias
and the activation, no BN). Fields added after the first release (a block's ``act``,
``se_style``, ``head_style``) are left out of the JSON at their defaults, so an older
architecture keeps its JSON text and its experiment key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mnas.errors import ArchitectureError

Skip = Literal["none", "identity", "pool"]
Act = Literal["relu", "relu6", "hswish", "swish"]

# MnasNet's own choices (the default search space); the format allows more
OPS: tuple[str, ...] = ("conv", "sepconv", "mbconv3", "mbconv6")
KERNELS: tuple[int, ...] = (3, 5)
SE_RATIOS: tuple[float, ...] = (0.0, 0.25)
SKIPS: tuple[str, ...] = ("none", "identity", "pool")
ACTS: tuple[str, ...] = ("relu", "relu6", "hswish", "swish")

_OP = re.compile(r"^(conv|sepconv|mbconv)(\d+(?:\.\d+)?)?$")


def mbconv(expansion: float) -> str:
    """The op name of an inverted residual with this expansion (``mbconv6``, ``mbconv2.5``)."""
    return f"mbconv{float(expansion):g}"


def parse_op(op: str) -> tuple[str, float]:
    """(family, expansion) of an op name; raises ValueError for anything else."""
    m = _OP.match(str(op))
    if not m or (m.group(1) == "mbconv") != (m.group(2) is not None):
        raise ValueError("must be conv, sepconv or mbconv<expansion> (e.g. mbconv6, mbconv2.5)")
    expansion = float(m.group(2)) if m.group(2) else 1.0
    if not 1 <= expansion <= 16:
        raise ValueError(f"expansion {expansion:g} is outside 1..16")
    return m.group(1), expansion


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor``, never dropping more than 10% (TF/timm rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def round_filters(filters: int, width_mult: float = 1.0, divisor: int = 8) -> int:
    """TF ``round_filters``: a width multiplier's channel count (scaled, then ``make_divisible``)."""
    return filters if width_mult == 1.0 else make_divisible(filters * width_mult, divisor)


def has_shortcut(skip: str, in_chs: int, out_chs: int, stride: int) -> bool:
    """Whether a layer adds a shortcut: always for ``pool``, for ``identity`` only where shapes match."""
    return skip == "pool" or (skip == "identity" and stride == 1 and in_chs == out_chs)


def mid_channels(in_chs: int, expansion: float) -> int:
    """Expanded width of an inverted residual: exact when whole, else rounded as timm."""
    value = in_chs * expansion
    return int(round(value)) if abs(value - round(value)) < 1e-6 else make_divisible(value)


class BlockSpec(BaseModel):
    """One block: ``layers`` identical layers sharing op, kernel, SE, skip and filters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: str
    kernel: Literal[1, 3, 5, 7]
    se: float = Field(default=0.0, ge=0.0, le=1.0)
    skip: Skip = "identity"
    filters: int = Field(ge=1, le=4096)
    layers: int = Field(ge=0, le=16)
    stride: Literal[1, 2] = 1
    act: Act | None = None

    @field_validator("op")
    @classmethod
    def _known_op(cls, value: str) -> str:
        family, expansion = parse_op(value)
        return mbconv(expansion) if family == "mbconv" else family

    @model_validator(mode="after")
    def _empty_block_keeps_resolution(self) -> BlockSpec:
        if self.layers == 0 and self.stride != 1:
            raise ValueError("a block with 0 layers must have stride 1 (it would drop a downsampling step)")
        return self

    @property
    def family(self) -> str:
        """conv, sepconv or mbconv."""
        return parse_op(self.op)[0]

    @property
    def expansion(self) -> float:
        return parse_op(self.op)[1]


class Architecture(BaseModel):
    """A whole network: stem width, blocks, head width and activation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stem: int = Field(default=32, ge=1, le=1024)
    blocks: tuple[BlockSpec, ...] = Field(min_length=1, max_length=32)
    head: int = Field(default=1280, ge=1, le=8192)
    act: Act = "relu"
    se_style: Literal["input", "expanded"] = "input"
    head_style: Literal["conv", "efficient"] = "conv"

    @model_validator(mode="before")
    @classmethod
    def _block_act_defaults_to_network(cls, data):
        """One spelling per network: a block act equal to the network's is stored as absent."""
        if isinstance(data, dict) and isinstance(data.get("blocks"), (list, tuple)):
            act = data.get("act", "relu")
            blocks = [{k: v for k, v in b.items() if not (k == "act" and v in (None, act))} if isinstance(b, dict) else b
                      for b in data["blocks"]]
            data = {**data, "blocks": blocks}
        return data

    # ----- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = self.model_dump(mode="json")
        for name, default in (("se_style", "input"), ("head_style", "conv")):
            if data[name] == default:
                del data[name]
        for block in data["blocks"]:
            if block["act"] is None:
                del block["act"]
        return data

    def block_act(self, block: BlockSpec) -> str:
        return block.act or self.act

    def canonical(self) -> str:
        """The architecture's identity as text: its JSON with sorted keys, a block of 0 layers
        written without its (inert) op, kernel, SE, skip and filters. Two architectures are the
        same network exactly when these agree; stores and caches key on it (or on ``key``)."""
        data = self.to_dict()
        data["blocks"] = [b if b["layers"] else {"layers": 0, "stride": b["stride"]} for b in data["blocks"]]
        return json.dumps(data, sort_keys=True)

    def key(self) -> str:
        """A short stable key of ``canonical`` (20 hex digits of its SHA-256), as stores record it."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:20]

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ArchitectureError(_describe(exc)) from None

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"architecture JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ArchitectureError("architecture JSON must be an object with 'blocks'")
        return cls.from_dict(data)

    # ----- timm block strings -----------------------------------------------------------
    def to_timm(self) -> list[str]:
        """One timm block string per non-empty block (``poolskip`` is an mnas extension)."""
        return [block_to_timm(b) for b in self.blocks if b.layers > 0]

    @classmethod
    def from_timm(cls, strings: list[str] | str, stem: int = 32, head: int = 1280, act: str | None = None,
                  se_style: str = "input", head_style: str = "conv") -> Architecture:
        """Blocks from timm strings; the rest (stem, head, activation, SE and head styles) as given.
        Without ``act``: the activation every block names (``nre``), else ReLU."""
        if isinstance(strings, str):
            strings = [s for s in re.split(r"[,\s]+", strings) if s]
        if not strings:
            raise ArchitectureError("no timm block strings given")
        blocks = [block_from_timm(text, where=f"block string {i + 1} ({text!r})") for i, text in enumerate(strings)]
        named = {b.get("act") for b in blocks}
        if act is None:
            act = named.pop() if len(named) == 1 and None not in named else "relu"
        return cls.from_dict({"stem": stem, "head": head, "act": act, "se_style": se_style, "head_style": head_style,
                              "blocks": blocks})

    def summary(self) -> str:
        return ", ".join(self.to_timm())

    def widened(self, width_mult: float) -> Architecture:
        """This network at a width multiplier, as an architecture of its own: stem and block
        filters scaled as the model builder scales them (the head kept), so that building the
        result at width 1.0 builds this one at ``width_mult``. A baseline matched to a latency
        target by its width is then an ordinary architecture (measured, exported, trained)."""
        if width_mult <= 0:
            raise ArchitectureError(f"width multiplier must be positive (got {width_mult})")
        blocks = [b.model_copy(update={"filters": round_filters(b.filters, width_mult)}) for b in self.blocks]
        return self.model_copy(update={"stem": round_filters(self.stem, width_mult), "blocks": tuple(blocks)})


def _describe(exc: ValidationError) -> str:
    parts = []
    errors = exc.errors()
    if any(e["type"] != "too_short" for e in errors):  # a bad block also empties the tuple; report only the cause
        errors = [e for e in errors if e["type"] != "too_short"]
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or "architecture"
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"{loc}: {msg}{shown}")
    return "invalid architecture: " + "; ".join(parts)


_TIMM_TYPES = {"cn": "conv", "ds": "sepconv", "ir": "mbconv"}
_TIMM_ACTS = {"re": "relu", "r6": "relu6", "hs": "hswish", "sw": "swish"}


def block_to_timm(block: BlockSpec) -> str:
    kind = {"conv": "cn", "sepconv": "ds", "mbconv": "ir"}[block.family]
    parts = [kind, f"r{block.layers}", f"k{block.kernel}", f"s{block.stride}"]
    if kind == "ir":
        parts.append(f"e{block.expansion:g}")
    parts.append(f"c{block.filters}")
    if block.se:
        parts.append(f"se{block.se:g}")
    if block.skip == "none":
        parts.append("noskip")
    elif block.skip == "pool":
        parts.append("poolskip")
    if block.act:
        parts.append("n" + {v: k for k, v in _TIMM_ACTS.items()}[block.act])
    return "_".join(parts)


def block_from_timm(text: str, where: str = "block string") -> dict:
    """Parse one timm block string into BlockSpec fields (``act`` only if it names one)."""
    tokens = text.strip().split("_")
    kind = tokens[0]
    if kind not in _TIMM_TYPES:
        raise ArchitectureError(f"{where}: block type {kind!r} is not supported (use cn, ds or ir)")
    fields: dict = {"skip": "identity", "stride": 1, "layers": 1}
    expansion = 1.0
    for tok in tokens[1:]:
        if tok == "noskip":
            fields["skip"] = "none"
        elif tok == "skip":
            fields["skip"] = "identity"
        elif tok == "poolskip":
            fields["skip"] = "pool"
        elif tok.startswith("se"):
            fields["se"] = _number(tok[2:], "se", where, float)
        elif tok.startswith("n") and tok[1:] in _TIMM_ACTS:
            fields["act"] = _TIMM_ACTS[tok[1:]]
        elif tok[:1] in ("r", "k", "s", "e", "c"):
            key = {"r": "layers", "k": "kernel", "s": "stride", "e": "expansion", "c": "filters"}[tok[0]]
            value = _number(tok[1:], key, where, float if key == "expansion" else int)
            if key == "stride" and value >= 10:  # TF style s22 / s11
                value = value % 10
            if key == "expansion":
                expansion = value
            else:
                fields[key] = value
        else:
            raise ArchitectureError(f"{where}: unknown option {tok!r}")
    if "filters" not in fields:
        raise ArchitectureError(f"{where}: missing output channels (c<N>)")
    if "kernel" not in fields:
        raise ArchitectureError(f"{where}: missing kernel size (k<N>)")
    if kind == "ir":
        if not 1 <= expansion <= 16:
            raise ArchitectureError(f"{where}: expansion e{expansion:g} is outside 1..16")
        fields["op"] = mbconv(expansion)
    else:
        if expansion != 1:
            raise ArchitectureError(f"{where}: {kind} blocks have expansion 1 (got e{expansion:g})")
        fields["op"] = _TIMM_TYPES[kind]
    return fields


def _number(text: str, name: str, where: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise ArchitectureError(f"{where}: {name} value {text!r} is not a number") from None
