"""An architecture as the sequence of layers a runtime executes, for latency prediction.

A network built by ``mnas.model`` (width 1.0, no stride cuts: the model as exported for
measurement) is the stem, then each block's layers, then the head (1x1 conv, pooling and
classifier). Each is a ``LayerConfig``: everything that decides its cost on a device
(kind, op, kernel, SE, skip, stride, widths, input size). ``space_layers`` lists every
layer configuration a search space can produce at a resolution, which is what a latency
predictor measures. Torch-free: a predictor file plus this module answer for any
architecture without PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Literal

from mnas.arch import Architecture, BlockSpec, has_shortcut, make_divisible, mid_channels, parse_op


@dataclass(frozen=True, order=True)
class LayerConfig:
    kind: Literal["stem", "layer", "head"]
    cin: int
    cout: int
    size: int  # input height = width
    stride: int = 1
    op: str = "conv"
    kernel: int = 3
    se: float = 0.0
    skip: str = "none"
    act: str = "relu"
    classes: int = 0  # head only
    se_style: str = "input"
    head_style: str = "conv"

    @property
    def key(self) -> str:
        """Stable text id (the predictor's table key); the later styles only when not at their defaults."""
        later = {"se_style": "input", "head_style": "conv"}
        return "|".join(f"{k}={v}" for k, v in asdict(self).items() if later.get(k) != v)

    @property
    def out_size(self) -> int:
        return -(-self.size // self.stride)

    def block(self) -> BlockSpec:
        """This layer as a one-layer block (how the model builder makes it)."""
        return BlockSpec(op=self.op, kernel=self.kernel, se=self.se, skip=self.skip, filters=self.cout, layers=1, stride=self.stride,
                         act=self.act)

    def costs(self) -> dict[str, float]:
        """What the layer computes, from the config: multiply-adds split by the kind of kernel
        that runs them (full kxk convolutions, 1x1 pointwise ones, depthwise ones, which are
        memory-bound and slower per multiply-add, and dense ones: the classifier and SE), their
        total, weights (elements, all and the largest single tensor) and activation sizes
        (elements), and the operators a runtime executes (convolutions with their batch norm
        folded in, activations, SE steps, shortcut adds)."""
        hw_in, hw_out = self.size * self.size, self.out_size * self.out_size
        k2 = self.kernel * self.kernel
        act_ops = 2 if self.act == "swish" else 1  # x * sigmoid(x); the others export as one operator
        full = pointwise = depthwise = dense = 0
        if self.kind == "stem":
            tensors, ops = [self.cout * 3 * k2], 1 + act_ops
            full = tensors[0] * hw_out
        elif self.kind == "head":
            conv_area = 1 if self.head_style == "efficient" else hw_in  # the efficient head pools first (and flattens)
            pointwise, dense = conv_area * self.cin * self.cout, self.cout * self.classes
            tensors = [self.cin * self.cout, self.cout * self.classes]
            ops = 3 + act_ops + (self.head_style == "efficient")
        else:
            family, expansion = parse_op(self.op)
            mid = mid_channels(self.cin, expansion) if family == "mbconv" else self.cin
            if family == "conv":
                tensors, ops = [self.cin * self.cout * k2], 1 + act_ops
                full = tensors[0] * hw_out
            elif family == "sepconv":
                tensors, ops = [self.cin * k2, self.cin * self.cout], 2 + act_ops
                depthwise, pointwise = self.cin * k2 * hw_out, self.cin * self.cout * hw_out
            else:
                tensors, ops = [self.cin * mid, mid * k2, mid * self.cout], 3 + 2 * act_ops
                depthwise, pointwise = mid * k2 * hw_out, self.cin * mid * hw_in + mid * self.cout * hw_out
            if self.se:
                width = self.cout if family == "conv" else mid
                reduced = make_divisible(width * self.se) if self.se_style == "expanded" else max(1, int(self.cin * self.se))
                tensors += [width * reduced, reduced * width]
                dense += 2 * width * reduced
                ops += 5 + (1 if self.se_style == "expanded" else act_ops)  # mean, reduce, act (relu: timm's), expand, gate, scale
            if self.skip == "pool":
                ops += 2  # average pool, add
                if self.cin != self.cout:
                    tensors.append(self.cin * self.cout)
                    pointwise += self.cin * self.cout * hw_out
                    ops += 1
            elif has_shortcut(self.skip, self.cin, self.cout, self.stride):
                ops += 1
        return {"macs": float(full + pointwise + depthwise + dense), "conv_macs": float(full), "pointwise_macs": float(pointwise),
                "depthwise_macs": float(depthwise), "dense_macs": float(dense), "params": float(sum(tensors)),
                "largest_tensor": float(max(tensors)), "ops": float(ops),
                "act_in": float(self.cin * hw_in), "act_out": float(self.cout * hw_out), "act_peak": float(self._live_peak(hw_in, hw_out))}

    def _live_peak(self, hw_in: int, hw_out: int) -> int:
        """The most activation elements alive at once inside the layer: each step holds its input
        and output tensor, and the layer's input stays alive to the end where a shortcut adds it.
        This, not the layer's input and output, sets what a runtime's memory planner must hold at
        high resolution (an inverted residual's expanded tensors)."""
        act_in, act_out = self.cin * hw_in, self.cout * hw_out
        if self.kind == "stem":
            chain = [act_in, act_out]
        elif self.kind == "head":
            chain = [act_in, self.cout * (1 if self.head_style == "efficient" else hw_in), self.classes]
        else:
            family, expansion = parse_op(self.op)
            if family == "conv":
                chain = [act_in, act_out, *([act_out] if self.se else [])]  # the SE gate writes a scaled copy
            else:
                mid = self.cin if family == "sepconv" else mid_channels(self.cin, expansion)
                expanded = [] if family == "sepconv" else [mid * hw_in]
                chain = [act_in, *expanded, mid * hw_out, *([mid * hw_out] if self.se else []), act_out]
        kept = self.kind == "layer" and has_shortcut(self.skip, self.cin, self.cout, self.stride)
        return max(a + b + (act_in if kept and i > 0 else 0) for i, (a, b) in enumerate(zip(chain, chain[1:])))


def arch_layers(arch: Architecture, resolution: int, num_classes: int = 1000) -> list[tuple[int, LayerConfig]]:
    """(block index, layer) pairs in execution order; the stem is block -1, the head block 7 (len(blocks))."""
    size = resolution
    out: list[tuple[int, LayerConfig]] = [(-1, LayerConfig("stem", 3, arch.stem, size, 2, act=arch.act))]
    size, cin = out[0][1].out_size, arch.stem
    for b, block in enumerate(arch.blocks):
        for i in range(block.layers):
            layer = LayerConfig("layer", cin, block.filters, size, block.stride if i == 0 else 1, block.op, block.kernel, block.se,
                                block.skip, arch.block_act(block), se_style=arch.se_style)
            out.append((b, layer))
            size, cin = layer.out_size, block.filters
    out.append((len(arch.blocks), LayerConfig("head", cin, arch.head, size, act=arch.act, classes=num_classes,
                                              head_style=arch.head_style)))
    return out


def space_layers(space, resolution: int, num_classes: int = 1000) -> list[LayerConfig]:
    """Every layer configuration that some architecture of ``space`` (a SearchSpace) runs."""
    base = space.base
    size = resolution
    layers = {LayerConfig("stem", 3, base.stem, size, 2, act=base.act)}
    size = -(-size // 2)
    widths = {base.stem}  # the possible widths entering the next block
    for b in range(space.num_blocks):
        choices = space.block_choices(b)
        stride = base.blocks[b].stride
        ops = {space.block_op(op, e) for op in choices["op"] for e in choices["expansion"]}
        for op, kernel, se, skip, act, cout in product(sorted(ops), choices["kernel"], choices["se"], choices["skip"], choices["act"],
                                                       choices["filters"]):
            common = dict(op=op, kernel=kernel, se=se, skip=skip, act=act, se_style=base.se_style)
            if max(choices["layers"]) > 0:
                for cin in widths:
                    layers.add(LayerConfig("layer", cin, cout, size, stride, **common))
            if max(choices["layers"]) > 1:
                layers.add(LayerConfig("layer", cout, cout, -(-size // stride), 1, **common))
        out_widths = set(choices["filters"])
        widths = (widths | out_widths) if min(choices["layers"]) == 0 else out_widths
        size = -(-size // stride)
    for cin in widths:
        layers.add(LayerConfig("head", cin, base.head, size, act=base.act, classes=num_classes, head_style=base.head_style))
    return sorted(layers)


def extreme_architecture(space, resolution: int, largest: bool = True) -> Architecture:
    """The space's architecture with the most (or fewest) multiply-adds: coordinate ascent over
    the tokens on these torch-free layer costs; two passes settle it for the shipped spaces.
    The one-shot supernet trains these two paths every step (the sandwich rule)."""
    def macs(indices):
        total = sum(layer.costs()["macs"] for _, layer in arch_layers(space.decode(indices), resolution))
        return total if largest else -total

    cards = space.cardinalities
    best = [c - 1 if largest else 0 for c in cards]
    for _ in range(2):
        for t, n in enumerate(cards):
            best[t] = max(range(n), key=lambda i: (macs(best[:t] + [i] + best[t + 1:]), i if largest else -i))
    return space.decode(best)
