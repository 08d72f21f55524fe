"""Build a PyTorch network from an :class:`Architecture`.

Layout as in the references: conv_stem, bn1, act1, blocks (one ``nn.Sequential`` per block,
empty blocks left out), conv_head, bn2, act2, global average pool, dropout 0.2, classifier.
With ``head_style: efficient`` (MobileNetV3) the pool comes before conv_head, which then has
a bias and no BN (bn2 is ``nn.Identity``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mnas.arch import Architecture, BlockSpec, round_filters  # noqa: F401  (round_filters: re-exported)
from mnas.blocks import ConvLayer, DepthwiseSeparable, InvertedResidual, activation, batch_norm
from mnas.layers import LayerConfig
from mnas.recipe import check_width_mult, small_input_cuts  # noqa: F401  (small_input_cuts: re-exported)


def make_layer(block: BlockSpec, in_chs: int, out_chs: int, stride: int, act: str, se_style: str = "input") -> nn.Module:
    common = dict(se_ratio=block.se, skip=block.skip, act=act, se_style=se_style)
    if block.family == "conv":
        return ConvLayer(in_chs, out_chs, block.kernel, stride, **common)
    if block.family == "sepconv":
        return DepthwiseSeparable(in_chs, out_chs, block.kernel, stride, **common)
    return InvertedResidual(in_chs, out_chs, block.kernel, stride, block.expansion, **common)


def head_parts(in_chs: int, head: int, act: str, style: str) -> tuple[nn.Module, nn.Module, nn.Module]:
    """conv_head, bn2, act2: 1x1 conv + BN (``conv``) or, after pooling, 1x1 conv with bias (``efficient``)."""
    if style == "efficient":
        return nn.Conv2d(in_chs, head, 1, bias=True), nn.Identity(), activation(act)
    return nn.Conv2d(in_chs, head, 1, bias=False), batch_norm(head), activation(act)


class MnasModel(nn.Module):
    """``stride_cuts`` turns the first N stride-2 steps (the stem first) into stride 1."""

    def __init__(
        self, arch: Architecture, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, stride_cuts: int = 0
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1 (got {num_classes})")
        check_width_mult(width_mult)
        self.arch = arch
        cuts_left = stride_cuts

        def stride_of(stride: int) -> int:
            nonlocal cuts_left
            if stride == 2 and cuts_left > 0:
                cuts_left -= 1
                return 1
            return stride

        stem = round_filters(arch.stem, width_mult)
        self.conv_stem = nn.Conv2d(3, stem, 3, stride_of(2), 1, bias=False)
        self.bn1 = batch_norm(stem)
        self.act1 = activation(arch.act)

        in_chs, stages = stem, []
        for block in arch.blocks:
            out_chs = round_filters(block.filters, width_mult)
            layers = []
            first_stride = stride_of(block.stride) if block.layers else 1
            for i in range(block.layers):
                layers.append(make_layer(block, in_chs, out_chs, first_stride if i == 0 else 1, arch.block_act(block), arch.se_style))
                in_chs = out_chs
            if layers:
                stages.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*stages)

        self.pool_first = arch.head_style == "efficient"
        self.conv_head, self.bn2, self.act2 = head_parts(in_chs, arch.head, arch.act, arch.head_style)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(arch.head, num_classes)
        init_weights_tf(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map before pooling."""
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        return x if self.pool_first else self.act2(self.bn2(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.pool_first:
            x = self.act2(self.bn2(self.conv_head(x.mean((2, 3), keepdim=True)))).flatten(1)
        else:
            x = x.mean((2, 3))
        return self.classifier(self.dropout(x))


def init_weights_tf(model: nn.Module) -> None:
    """TF MnasNet init: conv ~ N(0, sqrt(2 / fan_out)), BN = identity, dense uniform.

    TF bounds the dense layer by 1/sqrt(out_features); that matches 1/sqrt(in_features)
    within 12% for 1000 classes but gives logits of std ~5 at the start for 10 classes,
    so the bound here is 1/sqrt(in_features), which is right for any class count.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def build_model(
    arch: Architecture, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2, stride_cuts: int = 0
) -> MnasModel:
    return MnasModel(arch, num_classes=num_classes, width_mult=width_mult, dropout=dropout, stride_cuts=stride_cuts)


class Head(nn.Module):
    """The network's end as one layer: conv head and global average pool (in the style's order), classifier."""

    def __init__(self, in_chs: int, head: int, num_classes: int, act: str, style: str = "conv"):
        super().__init__()
        self.pool_first = style == "efficient"
        self.conv_head, self.bn2, self.act2 = head_parts(in_chs, head, act, style)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_first:
            x = self.act2(self.bn2(self.conv_head(x.mean((2, 3), keepdim=True)))).flatten(1)
        else:
            x = self.act2(self.bn2(self.conv_head(x))).mean((2, 3))
        return self.classifier(x)


def build_layer(layer: LayerConfig) -> nn.Module:
    """One layer alone, made exactly as the network builder makes it (per-layer latency)."""
    if layer.kind == "stem":
        module = nn.Sequential(nn.Conv2d(3, layer.cout, 3, layer.stride, 1, bias=False), batch_norm(layer.cout), activation(layer.act))
    elif layer.kind == "head":
        module = Head(layer.cin, layer.cout, layer.classes, layer.act, layer.head_style)
    else:
        module = make_layer(layer.block(), layer.cin, layer.cout, layer.stride, layer.act, layer.se_style)
    init_weights_tf(module)
    return module
