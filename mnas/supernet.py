"""A weight-sharing supernet over a search space: one set of weights for every architecture.

Sharing follows what works on MobileNet-like spaces (SPOS, OFA, BigNAS):

- conv, sepconv and mbconv are separate weight sets per layer (a choice between kinds);
- inside a kind everything is elastic: a smaller kernel is the centre of the largest, widths
  and expansions are the first channels of the widest, a block's first n layers serve depth n;
- SE and the pool shortcut's projection have their own weights, sliced the same way;
- BatchNorm keeps one set of statistics per channel; a candidate recomputes them for its path
  (``mnas.train.calibrate_bn``) before it is evaluated.

The parameter and buffer names of a layer's kind match the ordinary blocks (``mnas.blocks``),
so :meth:`Supernet.extract` copies weights by name, slicing each tensor to the extracted
module's shape (centre crop on the kernel). The supernet's forward for a path computes the
same operations on the same slices, so the extracted model gives the same outputs in eval mode.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mnas.arch import Architecture, BlockSpec, mid_channels
from mnas.blocks import BN_EPS, BN_MOMENTUM, se_reduced
from mnas.layers import extreme_architecture  # noqa: F401  (re-exported: the sandwich rule's paths)
from mnas.model import MnasModel, build_model, init_weights_tf, round_filters
from mnas.space import SearchSpace

_ACTS = {"relu": F.relu, "relu6": F.relu6, "hswish": F.hardswish, "swish": F.silu}


class SlicedBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first C channels of the widest layer (C = the input's channels)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)


class SlicedConv(nn.Module):
    """A convolution whose output channels, input channels and kernel are cut from the largest."""

    def __init__(self, in_max: int, out_max: int, kernel_max: int, depthwise: bool = False, bias: bool = False):
        super().__init__()
        self.depthwise, self.kernel_max = depthwise, kernel_max
        self.weight = nn.Parameter(torch.empty(out_max, 1 if depthwise else in_max, kernel_max, kernel_max))
        self.bias = nn.Parameter(torch.zeros(out_max)) if bias else None

    def forward(self, x: torch.Tensor, out: int, kernel: int = 1, stride: int = 1) -> torch.Tensor:
        cin = x.shape[1]
        w = self.weight[:cin] if self.depthwise else self.weight[:out, :cin]
        if kernel != self.kernel_max:
            lo = (self.kernel_max - kernel) // 2
            w = w[:, :, lo:lo + kernel, lo:lo + kernel]
        b = None if self.bias is None else self.bias[: w.shape[0]]
        return F.conv2d(x, w, b, stride, kernel // 2, groups=cin if self.depthwise else 1)


def _init_conv(conv: SlicedConv) -> None:
    """TF init (as ``init_weights_tf``) on the largest shape."""
    o, i, k, _ = conv.weight.shape
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (k * k * (1 if conv.depthwise else o))))


class SlicedSE(nn.Module):
    def __init__(self, channels_max: int, reduced_max: int):
        super().__init__()
        self.conv_reduce = SlicedConv(channels_max, reduced_max, 1, bias=True)
        self.conv_expand = SlicedConv(reduced_max, channels_max, 1, bias=True)

    def forward(self, x: torch.Tensor, reduced: int, act: str, hard_gate: bool) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.conv_expand(_ACTS[act](self.conv_reduce(s, reduced)), x.shape[1])
        return x * (F.hardsigmoid(s) if hard_gate else torch.sigmoid(s))


class Choice:
    """What one layer of a path runs: its block's choices plus this layer's widths and stride."""

    def __init__(self, block: BlockSpec, out: int, stride: int, act: str, se_style: str):
        self.block, self.out, self.stride, self.act, self.se_style = block, out, stride, act, se_style

    def se(self, x: torch.Tensor, module: SlicedSE | None, in_chs: int) -> torch.Tensor:
        if not self.block.se or module is None:
            return x
        reduced = se_reduced(x.shape[1], in_chs, self.block.se, self.se_style)
        expanded = self.se_style == "expanded"
        return module(x, reduced, "relu" if expanded else self.act, expanded)


class ConvKind(nn.Module):
    def __init__(self, in_max, out_max, kernel_max, se_reduced_max):
        super().__init__()
        self.conv = SlicedConv(in_max, out_max, kernel_max)
        self.bn1 = SlicedBatchNorm(out_max)
        self.se = SlicedSE(out_max, se_reduced_max) if se_reduced_max else None

    def forward(self, x, c: Choice):
        in_chs = x.shape[1]
        x = _ACTS[c.act](self.bn1(self.conv(x, c.out, c.block.kernel, c.stride)))
        return c.se(x, self.se, in_chs)


class SepconvKind(nn.Module):
    def __init__(self, in_max, out_max, kernel_max, se_reduced_max):
        super().__init__()
        self.conv_dw = SlicedConv(in_max, in_max, kernel_max, depthwise=True)
        self.bn1 = SlicedBatchNorm(in_max)
        self.se = SlicedSE(in_max, se_reduced_max) if se_reduced_max else None
        self.conv_pw = SlicedConv(in_max, out_max, 1)
        self.bn2 = SlicedBatchNorm(out_max)

    def forward(self, x, c: Choice):
        in_chs = x.shape[1]
        x = _ACTS[c.act](self.bn1(self.conv_dw(x, in_chs, c.block.kernel, c.stride)))
        x = c.se(x, self.se, in_chs)
        return self.bn2(self.conv_pw(x, c.out))


class MbconvKind(nn.Module):
    def __init__(self, in_max, out_max, kernel_max, mid_max, se_reduced_max):
        super().__init__()
        self.conv_pw = SlicedConv(in_max, mid_max, 1)
        self.bn1 = SlicedBatchNorm(mid_max)
        self.conv_dw = SlicedConv(mid_max, mid_max, kernel_max, depthwise=True)
        self.bn2 = SlicedBatchNorm(mid_max)
        self.se = SlicedSE(mid_max, se_reduced_max) if se_reduced_max else None
        self.conv_pwl = SlicedConv(mid_max, out_max, 1)
        self.bn3 = SlicedBatchNorm(out_max)

    def forward(self, x, c: Choice):
        in_chs = x.shape[1]
        mid = mid_channels(in_chs, c.block.expansion)
        x = _ACTS[c.act](self.bn1(self.conv_pw(x, mid)))
        x = _ACTS[c.act](self.bn2(self.conv_dw(x, mid, c.block.kernel, c.stride)))
        x = c.se(x, self.se, in_chs)
        return self.bn3(self.conv_pwl(x, c.out))


class PoolShortcutKind(nn.Module):
    """The ``pool`` skip: 3x3 average pool with the layer's stride, then 1x1 conv + BN when widths differ."""

    def __init__(self, in_max, out_max):
        super().__init__()
        self.proj = SlicedConv(in_max, out_max, 1)
        self.bn = SlicedBatchNorm(out_max)

    def forward(self, x, c: Choice):
        x = F.avg_pool2d(x, 3, c.stride, 1)
        return x if x.shape[1] == c.out else self.bn(self.proj(x, c.out))


class ElasticLayer(nn.Module):
    """One layer position of one block: a weight set per kind the block can take, and the pool shortcut."""

    def __init__(self, kinds: dict[str, nn.Module], pool: PoolShortcutKind | None):
        super().__init__()
        self.kinds = nn.ModuleDict(kinds)
        self.shortcut = pool

    def forward(self, x: torch.Tensor, c: Choice) -> torch.Tensor:
        out = self.kinds[c.block.family](x, c)
        skip = c.block.skip
        if skip == "pool":
            out = out + self.shortcut(x, c)
        elif skip == "identity" and c.stride == 1 and x.shape[1] == c.out:
            out = out + x
        return out


class Supernet(nn.Module):
    """Every architecture of ``space`` in one module; ``forward(x, arch)`` runs one path.

    ``width_mult`` and ``stride_cuts`` are the proxy recipe's, so an extracted model is the
    model the proxy trainings build for that architecture (``build_model``).
    """

    def __init__(self, space: SearchSpace, num_classes: int, width_mult: float = 1.0, dropout: float = 0.2, stride_cuts: int = 0):
        super().__init__()
        self.space, self.num_classes = space, num_classes
        self.width_mult, self.dropout_p, self.stride_cuts = width_mult, dropout, stride_cuts
        base = space.base
        strides = _cut_strides([2] + [b.stride for b in base.blocks], stride_cuts)
        self.stem_stride, self.block_strides = strides[0], strides[1:]
        stem = round_filters(base.stem, width_mult)
        self.conv_stem = nn.Conv2d(3, stem, 3, self.stem_stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS, momentum=BN_MOMENTUM)

        widths_in = {stem}  # every width the next block's input can have
        blocks = []
        for i in range(space.num_blocks):
            choices = space.block_choices(i)
            outs = {round_filters(f, width_mult) for f in choices["filters"]}
            in_max, out_max = max(widths_in), max(outs)
            kernel_max = max(choices["kernel"])
            families = {_family(op) for op in choices["op"]}
            expansions = {e for op in choices["op"] for e in _expansions(op, choices["expansion"])}
            skips = set(choices["skip"])
            layers = []
            for j in range(max(choices["layers"])):
                lin = in_max if j == 0 else out_max
                kinds = {}
                if "conv" in families:
                    kinds["conv"] = ConvKind(lin, out_max, kernel_max, _se_max(out_max, lin, choices["se"], base.se_style))
                if "sepconv" in families:
                    kinds["sepconv"] = SepconvKind(lin, out_max, kernel_max, _se_max(lin, lin, choices["se"], base.se_style))
                if "mbconv" in families:
                    mid = max(mid_channels(lin, e) for e in expansions)
                    kinds["mbconv"] = MbconvKind(lin, out_max, kernel_max, mid, _se_max(mid, lin, choices["se"], base.se_style))
                layers.append(ElasticLayer(kinds, PoolShortcutKind(lin, out_max) if "pool" in skips else None))
            blocks.append(nn.ModuleList(layers))
            widths_in = outs | (widths_in if min(choices["layers"]) == 0 else set())
        self.blocks = nn.ModuleList(blocks)

        head_in = max(widths_in)
        self.pool_first = base.head_style == "efficient"
        self.conv_head = SlicedConv(head_in, base.head, 1, bias=self.pool_first)
        self.bn2 = nn.Identity() if self.pool_first else nn.BatchNorm2d(base.head, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.classifier = nn.Linear(base.head, num_classes)
        init_weights_tf(self)
        for m in self.modules():
            if isinstance(m, SlicedConv):
                _init_conv(m)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ----- one path ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        act = _ACTS[arch.act]
        x = act(self.bn1(self.conv_stem(x)))
        for i, block in enumerate(arch.blocks):
            out = round_filters(block.filters, self.width_mult)
            for j in range(block.layers):
                c = Choice(block, out, self.block_strides[i] if j == 0 else 1, arch.block_act(block), arch.se_style)
                x = self.blocks[i][j](x, c)
        if self.pool_first:
            x = act(self.conv_head(x.mean((2, 3), keepdim=True), self.conv_head.weight.shape[0])).flatten(1)
        else:
            x = act(self.bn2(self.conv_head(x, self.conv_head.weight.shape[0]))).mean((2, 3))
        return self.classifier(F.dropout(x, self.dropout_p, self.training) if self.dropout_p > 0 else x)

    def path(self, arch: Architecture) -> SupernetPath:
        """``arch``'s path as an ordinary module (``model(x)``), for the shared training and evaluation code."""
        self.space.encode(arch)  # raises naming the field that is off the space's grid
        return SupernetPath(self, arch)

    # ----- extraction -------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Architecture) -> MnasModel:
        """An ordinary model of ``arch`` carrying the shared weights (and BN statistics)."""
        self.space.encode(arch)
        model = build_model(arch, self.num_classes, self.width_mult, self.dropout_p, self.stride_cuts)
        _copy_sliced(self.conv_stem, model.conv_stem)
        _copy_sliced(self.bn1, model.bn1)
        stages = iter(model.blocks)
        for i, block in enumerate(arch.blocks):
            if not block.layers:
                continue
            for j, layer in enumerate(next(stages)):
                shared = self.blocks[i][j]
                kind = shared.kinds[block.family]
                for name, module in layer.named_children():
                    if name == "shortcut":
                        if block.skip == "pool":
                            _copy_sliced(shared.shortcut, module)
                    elif hasattr(kind, name) and getattr(kind, name) is not None:
                        _copy_sliced(getattr(kind, name), module)
        _copy_sliced(self.conv_head, model.conv_head)
        _copy_sliced(self.bn2, model.bn2)
        _copy_sliced(self.classifier, model.classifier)
        return model


class SupernetPath(nn.Module):
    """One architecture's path through a supernet, called like the model it stands for."""

    def __init__(self, supernet: Supernet, arch: Architecture):
        super().__init__()
        self.supernet, self.arch = supernet, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, self.arch)


def _copy_sliced(src: nn.Module, dst: nn.Module) -> None:
    """Copy every tensor of ``dst`` from the same name in ``src``: leading slices, centre-cropped kernels."""
    theirs = dict(src.named_parameters()) | dict(src.named_buffers())
    for name, tensor in list(dst.named_parameters()) + list(dst.named_buffers()):
        source = theirs[name]
        if tensor.ndim == 0:
            tensor.copy_(source)
            continue
        index = [slice(0, n) for n in tensor.shape]
        if tensor.ndim == 4:
            lo = (source.shape[2] - tensor.shape[2]) // 2
            index[2] = index[3] = slice(lo, lo + tensor.shape[2])
        tensor.copy_(source[tuple(index)])


def _cut_strides(strides: list[int], cuts: int) -> list[int]:
    """The first ``cuts`` stride-2 steps become stride 1 (as ``MnasModel``'s ``stride_cuts``)."""
    out = []
    for s in strides:
        if s == 2 and cuts > 0:
            cuts -= 1
            s = 1
        out.append(s)
    return out


def _family(op: str) -> str:
    return "mbconv" if op.startswith("mbconv") else op


def _expansions(op: str, expansion_choices: tuple) -> tuple:
    if op == "mbconv":
        return tuple(expansion_choices)
    if op.startswith("mbconv"):
        return (float(op[len("mbconv"):]),)
    return ()


def _se_max(channels: int, in_chs: int, ratios: tuple, style: str) -> int:
    """The widest SE reduction any choice needs (rounding to 8 may overshoot by one step); 0: no SE choice."""
    on = [r for r in ratios if r]
    return max(se_reduced(channels, in_chs, r, style) for r in on) + (8 if style == "expanded" else 0) if on else 0
